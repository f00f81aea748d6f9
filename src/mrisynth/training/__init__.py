"""mrisynth.training."""
