"""mrisynth.metrics: the study's FID/KID/precision-recall, NVIDIA-exact (Karras et al. 2020),
plus weight-free metrics and a memorisation audit.

Modules: `detectors` (finding/fetching NVIDIA's detector files), `extractor` (feeding them),
`standin` (random networks of the same architectures, for tests), `feature_stats`, `fid`, `kid`,
`precision_recall` (the maths), `weightfree`, `pixfd` (weight-free Fréchet distance), `frd`,
`memorisation`, `registry` (metric names), `sources` (generated images from a network or files,
real images, feature cache), `records` (jsonl, best snapshot), `runner` (`check_metric_names`,
`compute_metrics`, `evaluate_and_record`), `eval_options` (`EvalOptions`, the detector pool),
`outcomes` (one metric's result from a generated stream), `evaluations` (`evaluate_snapshots`
of a run, `evaluate_images` of a folder/ZIP).
"""
