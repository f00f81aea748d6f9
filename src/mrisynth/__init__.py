"""mrisynth: abdominal MRI DICOM -> StyleGAN2-ADA generator, synthetic images and their evaluation."""

__version__ = "0.1.0"
