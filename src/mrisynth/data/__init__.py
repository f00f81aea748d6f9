"""mrisynth.data."""
