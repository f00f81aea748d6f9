"""mrisynth.metrics: the study's FID/KID/precision-recall, NVIDIA-exact (Karras et al. 2020),
plus weight-free metrics and a memorisation audit.

Modules: `detectors` (finding/fetching NVIDIA's detector files), `extractor` (feeding them),
`standin` (random networks of the same architectures, for tests), `feature_stats`, `fid`, `kid`,
`precision_recall` (the maths), `weightfree`, `frd`, `memorisation`, `registry` (metric names),
`sources` (generated/real images, feature cache), `records` (jsonl, best snapshot), `runner`
(`check_metric_names`, `evaluate_and_record`, `evaluate_snapshots`).
"""
