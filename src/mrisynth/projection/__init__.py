"""Projection of real images into a generator's latent space (Karras et al. 2020, StyleGAN2,
arXiv 1912.04958, section 5): finding the w (or w+) and noise maps that reproduce a target.

`losses` holds the image distances (pixel MSE, a differentiable MS-SSIM, NVIDIA's VGG16 LPIPS
features when the detector file is present) and the noise regulariser; `projector` the
optimisation; `targets` reads the images to project; `outputs` writes one target's files;
`batch` runs many targets resumably; `compare` tests training vs held-out projection errors.
"""
