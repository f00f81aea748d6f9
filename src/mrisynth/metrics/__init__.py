"""mrisynth.metrics."""
