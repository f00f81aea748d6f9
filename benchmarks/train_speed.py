"""Training speed in sec/kimg (StyleGAN2-ADA loop, mrisynth.training) on CPU or CUDA.

Writes a synthetic archive of random discs, trains a few ticks, and prints the median sec/kimg
of the ticks after the first (which includes start-up). Snapshot time is not counted (the loop
times ticks without it). Examples:

    .venv/bin/python benchmarks/train_speed.py                       # tiny preset, 32x32, CPU
    .venv/bin/python benchmarks/train_speed.py --cfg paper256 --res 256 --batch 64 \\
        --device cuda --kimg 1.28 --tick 0.256                        # the study's config, 1 GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mrisynth.training.loop import train
from mrisynth.training.options import TrainOptions


def write_discs(folder: Path, n: int, res: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:res, 0:res]
    for i in range(n):
        cx, cy = res / 2 + rng.normal(0, res / 16, 2)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (res * 0.3) ** 2
        img = (disc * 170 + rng.integers(0, 40, (res, res))).astype(np.uint8)
        Image.fromarray(img, "L").save(folder / f"{i:05d}.png")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfg", default="tiny")
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--batch", type=int, default=None, help="total batch [preset]")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--kimg", type=float, default=0.16)
    ap.add_argument("--tick", type=float, default=0.032)
    ap.add_argument("--aug", default="ada", choices=["ada", "noaug"])
    ap.add_argument("--p", type=float, default=0.2, help="initial augment p (ADA work counted)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads [half the cores]")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_discs(Path(tmp) / "discs", 64, args.res)
        opts = TrainOptions(
            data=str(data), outdir=str(Path(tmp) / "runs"), cfg=args.cfg, batch=args.batch,
            kimg=args.kimg, tick=args.tick, snap=0, workers=0 if args.device == "cpu" else 2,
            device=args.device, aug=args.aug, p=args.p if args.aug == "ada" else None, mirror=True,
            cpu_threads=args.threads,
        )  # fmt: skip
        t0 = time.time()
        run_dir = train(opts)
        wall = time.time() - t0
        ticks = [json.loads(x) for x in (run_dir / "stats.jsonl").read_text().splitlines()]
        resolved = json.loads((run_dir / "training_options.json").read_text())
    per_kimg = [t["Timing/sec_per_kimg"]["mean"] for t in ticks[1:]] or [
        ticks[0]["Timing/sec_per_kimg"]["mean"]
    ]
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"device           {name} (torch threads {torch.get_num_threads()})")
    split = f"{resolved['batch_gpu']} x {resolved['num_accum']}"
    print(f"config           {args.cfg} {args.res}x{args.res} batch {resolved['batch']} "
          f"(per step {split}), aug {args.aug}")  # fmt: skip
    print(f"ticks measured   {len(per_kimg)} of {len(ticks)}")
    print(f"sec/kimg         {statistics.median(per_kimg):.2f} (median; min {min(per_kimg):.2f})")
    peak = ticks[-1]["Resources/peak_gpu_mem_gb"]["mean"]
    if args.device == "cuda":
        print(f"peak GPU memory  {peak:.2f} GB")
    print(f"wall time        {wall:.1f} s for {args.kimg} kimg (incl. start-up, 2 snapshots)")


if __name__ == "__main__":
    main()
