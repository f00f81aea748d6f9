"""Training (StyleGAN2-ADA, Karras et al. 2020): loop, losses, ADA, distributed, snapshots."""
