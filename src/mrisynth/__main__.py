"""Allow `python -m mrisynth ...` (and `torchrun -m mrisynth train ...`)."""

from mrisynth.cli import main

if __name__ == "__main__":
    main()
