"""mrisynth: abdominal MRI DICOM to StyleGAN2-ADA, synthetic images and their evaluation."""

__version__ = "0.1.0"
