"""Diversity of the demo's generator per training configuration (issue 12, item 1).

Builds the full demo's data once (phantom, 8 patients, 32 px, 2 held out: the same archive as
`mrisynth demo`), then trains one short run per configuration, sequentially, with 1 torch
thread, and records `diversity256` (generated vs training images) every `--every` kimg:
body-area spread gen/real, MS-SSIM gen/real, coverage, plus ADA's p. A configuration is the
tiny preset with some of its constants replaced (`PRESET_CHANGES`) and/or train options
(`OPTION_CHANGES`). Example (runs are minutes each on 2 shared cores):

    .venv/bin/python benchmarks/demo_diversity.py --kimg 6 --every 2 base gamma0.05 noaug

Measured on the project's 2-core machine, 1 thread, shared by several engineers (load 2-4);
phantom reals: body-area spread 0.034, MS-SSIM between patients 0.54 (see the final table in
README's demo section and the issue's closing note for all configurations).
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

# name -> (tiny preset fields replaced, TrainOptions fields replaced)
CONFIGS: dict[str, tuple[dict, dict]] = {
    "base": ({}, {}),
    "gamma0.05": ({}, {"gamma": 0.05}),
    "gamma0.01": ({}, {"gamma": 0.01}),
    "noaug": ({}, {"aug": "noaug"}),
    "ada100": ({}, {"ada_kimg": 100.0}),
    "nopl-nomix": ({"pl_weight": 0.0, "style_mixing_prob": 0.0}, {}),
    "ema0.5": ({"ema_kimg": 0.5}, {}),
    "batch16": ({}, {"batch": 16}),
    "wide": ({}, {"cbase": 4096, "cmax": 128}),
    "map8": ({}, {"map_depth": 8}),
    "lr0.002": ({}, {"glr": 0.002, "dlr": 0.002}),
}


def build_data(folder: Path) -> Path:
    """The full demo's training archive (phantom -> prepare -> pack with holdout)."""
    from mrisynth.cli.demo import FULL
    from mrisynth.data.pack import pack_archive
    from mrisynth.data.phantom_dicom import write_phantom_tree
    from mrisynth.data.prepare import PrepareOptions, prepare
    from mrisynth.data.slice_pipeline import SliceOptions

    archive = folder / "data.zip"
    if archive.is_file():
        return archive
    write_phantom_tree(
        folder / "phantom", FULL.patients, seed=0, matrix_sizes=FULL.matrix_sizes,
        num_slices=FULL.slices, t2spir=False,
    )  # fmt: skip
    prepare([folder / "phantom"], folder / "prepared",
            PrepareOptions(slice=SliceOptions(size=FULL.resolution)))  # fmt: skip
    pack_archive(folder / "prepared", archive, holdout_patients=str(FULL.holdout))
    return archive


def register(name: str, changes: dict) -> str:
    """A preset named `name`: tiny with `changes` (the loop looks presets up by name)."""
    from mrisynth import config

    config.PRESETS[name] = dataclasses.replace(config.PRESETS["tiny"], name=name, **changes)
    return name


def run_config(name: str, archive: Path, outdir: Path, kimg: float, every: int) -> list[dict]:
    """Train configuration `name`; one row per evaluated snapshot."""
    from mrisynth.training.loop import train
    from mrisynth.training.options import TrainOptions

    preset_changes, option_changes = CONFIGS[name]
    opts = TrainOptions(
        data=str(archive), outdir=str(outdir), cfg=register("bench-" + name, preset_changes),
        mirror=True, kimg=kimg, tick=1.0, snap=every, metrics=("diversity256",), workers=0,
        device="cpu", cpu_threads=1, seed=0, desc=name, **option_changes,
    )  # fmt: skip
    t0 = time.time()
    run = train(opts)
    wall = time.time() - t0
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    p_at = {round(t["Progress/kimg"]["mean"]): t["Progress/augment"]["mean"] for t in ticks}
    spk = [t["Timing/sec_per_kimg"]["mean"] for t in ticks[1:]]
    rows = []
    for line in (run / "metric-diversity256.jsonl").read_text().splitlines():
        rec = json.loads(line)
        res = rec["results"]
        rows.append({
            "config": name, "kimg": rec["kimg"], "p": p_at.get(rec["kimg"], 0.0),
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
        f"{r['config']:<12} kimg {r['kimg']:>3} p {r['p']:.2f} area {r['area_gen']:.4f}/"
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
    archive = build_data(work)
    for name in args.configs:
        for row in run_config(name, archive, work / "runs", args.kimg, args.every):
            print_row(row)
            if args.jsonl:
                with args.jsonl.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"runs in {work / 'runs'}", file=sys.stderr)


if __name__ == "__main__":
    main()
