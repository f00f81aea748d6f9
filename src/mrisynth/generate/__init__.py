"""mrisynth.generate: sampling a trained generator and exporting PNG / synthetic-marked DICOM.

Modules: `seeds` (seed lists -> latents), `sampling` (G -> uint8 images), `dicom` (Secondary
Capture datasets marked synthetic), `images` (PNG, grids), `export` (files + manifest).
"""
