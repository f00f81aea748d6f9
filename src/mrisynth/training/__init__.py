"""Training (StyleGAN2-ADA, Karras et al. 2020), one module per concern:

- `loop`: `train()`, one top-down function in phases (setup, state, run folder, steps, ticks,
  snapshots); `run_setup`: what a run resolves before training (`prepare`, `check`,
  `describe` for --dry-run); `step`: the G/D phases of one step; `losses`; `augment*`: ADA's
  transforms; `ada`: the controller of p.
- `options`: command-line options, their resolution from presets, resume merging.
- `build`: the `TrainingState` from resolved options (networks, augmentation, loss, optimisers);
  `state`: `TrainingState` itself with `save`/`restore`; `ema`; `rng`: RNG states.
- `checkpoint`: snapshot names, listing, saving, loading; `snapshot_format`: the file format and
  its digest; `snapshot_schema`: checks of a snapshot's state; `optim_state`: optimisers in it.
- `run_files`: the run folder (creation, log, grids); `run_lock`: one trainer per run folder.
- `stats`: per-tick statistics, TensorBoard, metrics hook; `resources`: threads and memory.
- `duration`: a run's expected wall time, from a timed warm-up run (the demo's estimate).
- `data_loader`, `distributed`: data streams and multi-process plumbing.
"""
