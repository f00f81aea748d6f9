"""mrisynth.networks."""
