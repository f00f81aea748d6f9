"""mrisynth.report."""
