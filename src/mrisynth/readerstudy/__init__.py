"""A visual Turing test in the browser: `mrisynth reader-study create | serve | analyze`.

- `sources`: sample real (patient-balanced) and synthetic images, re-encode them identically.
- `tells`: pixel statistics that still separate the classes (warned about, never hidden).
- `store`: the study's SQLite database (images with their truth, readers with hashed tokens,
  per-reader shuffled items with opaque ids, answers committed one by one).
- `create`: build a study folder atomically and hand out one secret link per reader.
- `app`: the Flask web app readers answer in (no truth in any response).
- `serving`: the listening socket (bad --host/--port as one error) and tokens kept out of logs.
- `stats`: the statistics (Wilson CIs, binomial test, AUC, Fleiss' kappa, rank tests).
- `analysis`: answers -> per-reader and per-image tables, CSV/JSON and figures.
"""
