"""Train-on-synthetic / test-on-real segmentation (Skandarani et al. 2021, arXiv 2106.14544).

Does synthetic data help? The same MONAI U-Net is trained in three arms (real slices only,
synthetic slices only, real + synthetic) with identical budgets and evaluated on held-out real
patients. Modules: `options` (what a study runs), `pairs` (loading image + mask sets),
`units` (one arm x real fraction x seed: batches, training, evaluation), `summary` (means,
spread, the paired test), `figure`, and `study` (resumable runner writing `downstream.json`).
"""
