"""mrisynth.generate."""
