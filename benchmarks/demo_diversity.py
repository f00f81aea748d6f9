"""Diversity of the demo's generator per training configuration (issue 12, item 1).

Builds the full demo's data once (phantom, 8 patients, 32 px, 2 held out: the same archive as
`mrisynth demo`; a config may change the plan, e.g. 16 patients), then trains one short run per
configuration, sequentially, with 1 torch thread, and records `diversity256` of G_ema against
the training images every `--every` kimg: body-area spread gen/real, MS-SSIM gen/real,
coverage, and ADA's p. A configuration (`CONFIGS`) is the tiny preset with some of its
constants and/or train options replaced. Example (minutes per run on 2 shared cores):

    .venv/bin/python benchmarks/demo_diversity.py --kimg 8 --every 2 base nopl noaug

Measured 2026-11-29 on the project's 2-core VM, 1 thread, shared with other jobs (load 6-11,
40-110 s/kimg). Body-area spread gen as a ratio to real / MS-SSIM between generated images;
real: spread 0.042, MS-SSIM 0.44 (8 patients, 6 trained on); 0.037 / 0.43 with 16 patients:

    config            2 kimg     4 kimg     6 kimg     8 kimg     10 kimg    p at 8 kimg
    base (tiny)       2.29/0.16  2.90/0.38  1.38/0.56  0.47/0.65  -          0.21
    gamma0.05         -          2.89/0.25  -          0.65/0.69  -          0.27
    noaug             2.04/0.22  2.20/0.41  0.96/0.61  0.46/0.77  -          0
    nopl              2.29/0.14  2.65/0.27  1.90/0.32  0.68/0.62  0.27/0.72  0.29
    nopl-mbstd8       2.32/0.14  2.66/0.27  2.00/0.35  0.60/0.63  0.25/0.72  0.28
    nopl-patients16   2.66/0.17  2.93/0.22  1.96/0.28  0.63/0.61  0.31/0.70  0.30

Every variant collapses between 6 and 10 kimg (the spread of 2-4 kimg comes from noise-like
early images, not from varied anatomy); base's raw G (not the EMA) at 8 kimg: 0.40 / 0.64.
Longer (base): on the demo's fixed-key data (real 0.032 / 0.49) 0.30/0.74 at 10 kimg,
0.15/0.75 at 20, 0.12/0.74 at 30 (`--kimg 30 --every 5`, 17 s/kimg at load 1-3); a demo whose
training patients had real spread 0.041 / 0.46, continued from 20 kimg: 0.13/0.75 at 20,
0.27/0.68 at 28, 0.66/0.60 at 30; with the two largest patients held out (0.020 / 0.63):
0.26/0.79 at 20, 0.20/0.76 at 30.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

# name -> (tiny preset fields replaced, TrainOptions fields replaced[, demo plan fields replaced])
CONFIGS: dict[str, tuple[dict, ...]] = {
    "base": ({}, {}),
    "gamma0.05": ({}, {"gamma": 0.05}),
    "gamma0.01": ({}, {"gamma": 0.01}),
    "noaug": ({}, {"aug": "noaug"}),
    "ada100": ({}, {"ada_kimg": 100.0}),
    "nopl": ({"pl_weight": 0.0}, {}),
    "nopl-nomix": ({"pl_weight": 0.0, "style_mixing_prob": 0.0}, {}),
    "mbstd8": ({}, {"mbstd_group": 8}),
    "nopl-mbstd8": ({"pl_weight": 0.0}, {"mbstd_group": 8}),
    "patients16": ({}, {}, {"patients": 16}),
    "nopl-patients16": ({"pl_weight": 0.0}, {}, {"patients": 16}),
    "ema0.5": ({"ema_kimg": 0.5}, {}),
    "batch16": ({}, {"batch": 16}),
    "wide": ({}, {"cbase": 4096, "cmax": 128}),
    "map8": ({}, {"map_depth": 8}),
    "lr0.002": ({}, {"glr": 0.002, "dlr": 0.002}),
    "dlr0.005": ({}, {"dlr": 0.005}),
}


def build_data(folder: Path, **plan_changes) -> Path:
    """The full demo's training archive (phantom -> prepare -> pack with holdout); `folder` is
    a cache per plan."""
    from mrisynth.cli.demo import FULL, _fixed_patient_keys
    from mrisynth.data.pack import pack_archive
    from mrisynth.data.phantom_dicom import write_phantom_tree
    from mrisynth.data.prepare import PrepareOptions, prepare
    from mrisynth.data.slice_pipeline import SliceOptions

    plan = dataclasses.replace(FULL, **plan_changes)
    tag = "-".join(f"{k}{v}" for k, v in sorted(plan_changes.items()))
    folder = folder / tag if tag else folder
    archive = folder / "data.zip"
    if archive.is_file():
        return archive
    write_phantom_tree(
        folder / "phantom", plan.patients, seed=0, matrix_sizes=plan.matrix_sizes,
        num_slices=plan.slices, t2spir=False,
    )  # fmt: skip
    prepare([folder / "phantom"], folder / "prepared",
            PrepareOptions(slice=SliceOptions(size=plan.resolution),
                           secret_file=_fixed_patient_keys(folder)))  # fmt: skip
    pack_archive(folder / "prepared", archive, holdout_patients=str(plan.holdout))
    return archive


def register(name: str, changes: dict) -> str:
    """A preset named `name`: tiny with `changes` (the loop looks presets up by name)."""
    from mrisynth import config

    config.PRESETS[name] = dataclasses.replace(config.PRESETS["tiny"], name=name, **changes)
    return name


def run_config(name: str, work: Path, kimg: float, every: int) -> list[dict]:
    """Train configuration `name`; one row per evaluated snapshot."""
    from mrisynth.training.loop import train
    from mrisynth.training.options import TrainOptions

    preset_changes, option_changes, *plan_changes = CONFIGS[name]
    archive = build_data(work, **(plan_changes[0] if plan_changes else {}))
    outdir = work / "runs"
    opts = TrainOptions(
        data=str(archive), outdir=str(outdir), cfg=register("bench-" + name, preset_changes),
        mirror=True, kimg=kimg, tick=1.0, snap=every, metrics=("diversity256",), workers=0,
        device="cpu", cpu_threads=1, seed=0, desc=name, **option_changes,
    )  # fmt: skip
    t0 = time.time()
    run = train(opts)
    wall = time.time() - t0
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    p_at = {round(t["Progress/kimg"]["mean"], 1): t["Progress/augment"]["mean"] for t in ticks}
    spk = [t["Timing/sec_per_kimg"]["mean"] for t in ticks[1:]]
    rows = []
    for line in (run / "metric-diversity256.jsonl").read_text().splitlines():
        rec = json.loads(line)
        res = rec["results"]
        rows.append({
            "config": name, "kimg": rec["kimg"], "p": p_at.get(round(rec["kimg"], 1), 0.0),
            "area_gen": res["diversity256_body_area_std_gen"],
            "area_real": res["diversity256_body_area_std_real"],
            "ms_gen": res["diversity256_msssim_gen"], "ms_real": res["diversity256_msssim_real"],
            "coverage": res.get("diversity256_coverage", float("nan")),
            "s_per_kimg": sorted(spk)[len(spk) // 2] if spk else float("nan"), "wall": wall,
            "run": str(run),
        })  # fmt: skip
    return rows


def print_row(r: dict) -> None:
    print(
        f"{r['config']:<12} kimg {r['kimg']:>4.1f} p {r['p']:.2f} area {r['area_gen']:.4f}/"
        f"{r['area_real']:.4f} ({r['area_gen'] / r['area_real']:.2f}) ms-ssim {r['ms_gen']:.2f}/"
        f"{r['ms_real']:.2f} cov {r['coverage']:.2f} s/kimg {r['s_per_kimg']:.1f}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", default=["base"], choices=sorted(CONFIGS))
    ap.add_argument("--kimg", type=float, default=6.0)
    ap.add_argument("--every", type=int, default=2, help="ticks (kimg) between evaluations")
    ap.add_argument("--workdir", type=Path, default=None, help="keep data and runs here")
    ap.add_argument("--jsonl", type=Path, default=None, help="append the rows here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="demo-diversity-"))
    for name in args.configs:
        for row in run_config(name, work, args.kimg, args.every):
            print_row(row)
            if args.jsonl:
                with args.jsonl.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"runs in {work / 'runs'}", file=sys.stderr)


if __name__ == "__main__":
    main()
