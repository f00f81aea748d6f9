"""Training speed (StyleGAN2-ADA loop, mrisynth.training) for the chosen and alternative paths.

Writes a synthetic archive of random discs and trains a few ticks once per path (each in its
own process, so peak memory is its own): `auto` = what `mrisynth train` does by default
(modulated-conv form and memory format chosen per device, eager), `fused` / `nonfused` = that
form forced, `contiguous` = auto without channels-last, `compile` = auto + `--compile`. Prints
per path the median wall s/kimg of the ticks after the first (start-up and the tick-0 snapshot
excluded), the process CPU s/kimg over the same ticks, and peak memory (resident for CPU,
allocated for CUDA). Examples:

    .venv/bin/python benchmarks/train_speed.py --threads 1                  # tiny, 32x32, CPU
    .venv/bin/python benchmarks/train_speed.py --device cuda --cfg paper256 --res 256 \\
        --batch 64 --kimg 1.28 --tick 0.256                                  # the study, 1 GPU
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PATHS = {  # name -> TrainOptions overrides
    "auto": {},
    "fused": {"modconv": "fused"},
    "nonfused": {"modconv": "nonfused"},
    "contiguous": {},  # auto, but no channels-last on CPU (the networks' config default)
    "compile": {"compile": True},
}


def write_discs(folder: Path, n: int, res: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:res, 0:res]
    for i in range(n):
        cx, cy = res / 2 + rng.normal(0, res / 16, 2)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (res * 0.3) ** 2
        img = (disc * 170 + rng.integers(0, 40, (res, res))).astype(np.uint8)
        Image.fromarray(img, "L").save(folder / f"{i:05d}.png")
    return folder


class TickClock(logging.Handler):
    """Process CPU time and wall time at each per-tick log line of the training loop."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[float, float, float]] = []  # (kimg, cpu s, wall s)

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("tick ") and record.args:
            self.marks.append((float(record.args[1]), time.process_time(), time.perf_counter()))


def run_one(args: argparse.Namespace) -> dict:
    """Train once with path `args.path`; returns its measurements (runs in a child process)."""
    import torch

    from mrisynth.networks import layers
    from mrisynth.training.loop import train
    from mrisynth.training.options import TrainOptions

    if args.path == "contiguous":
        layers.TRAINING_CHANNELS_LAST.clear()

    clock = TickClock()
    logging.getLogger("mrisynth.training.loop").addHandler(clock)
    logging.getLogger("mrisynth.training.loop").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_discs(Path(tmp) / "discs", 64, args.res)
        opts = TrainOptions(
            data=str(data), outdir=str(Path(tmp) / "runs"), cfg=args.cfg, batch=args.batch,
            kimg=args.kimg, tick=args.tick, snap=0, workers=0 if args.device == "cpu" else 2,
            device=args.device, aug=args.aug, p=args.p if args.aug == "ada" else None,
            mirror=True, cpu_threads=args.threads, **PATHS[args.path],
        )  # fmt: skip
        run_dir = train(opts)
        ticks = [json.loads(x) for x in (run_dir / "stats.jsonl").read_text().splitlines()]
        resolved = json.loads((run_dir / "training_options.json").read_text())
    marks = clock.marks[1:]  # from the end of tick 1 on: no start-up, no tick-0 snapshot
    pairs = list(itertools.pairwise(marks))
    cpu = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in pairs]
    wall = [t["Timing/sec_per_kimg"]["mean"] for t in ticks[2:]]
    peak_gpu = ticks[-1]["Resources/peak_gpu_mem_gb"]["mean"]
    return {
        "path": args.path,
        "sec_per_kimg": statistics.median(wall) if wall else float("nan"),
        "cpu_sec_per_kimg": statistics.median(cpu) if cpu else float("nan"),
        "ticks": len(wall),
        "peak_mem_gb": peak_gpu if args.device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "CPU",
        "threads": torch.get_num_threads(),
        "split": f"{resolved['batch_gpu']} x {resolved['num_accum']}",
        "batch": resolved["batch"],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfg", default="tiny")
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8, help="total batch")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--kimg", type=float, default=0.32)
    ap.add_argument("--tick", type=float, default=0.032)
    ap.add_argument("--aug", default="ada", choices=["ada", "noaug"])
    ap.add_argument("--p", type=float, default=0.2, help="initial augment p (ADA work counted)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads [half the cores]")
    ap.add_argument("--paths", default="auto,fused,contiguous", help=f"of {', '.join(PATHS)}")
    ap.add_argument("--repeats", type=int, default=1, help="runs per path (median reported)")
    ap.add_argument("--path", default=None, help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()
    if args.path is not None:
        print(json.dumps(run_one(args)))
        return
    rows = []
    for name in args.paths.split(","):
        if name not in PATHS:
            raise SystemExit(f"--paths: unknown path {name!r}; use {', '.join(PATHS)}")
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--path", name],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {k: statistics.median(r[k] for r in runs) for k in
               ("sec_per_kimg", "cpu_sec_per_kimg", "peak_mem_gb")}  # fmt: skip
        rows.append({**runs[0], **med, "repeats": len(runs)})
    first = rows[0]
    print(f"device      {first['device']} (torch threads {first['threads']}); "
          f"load average {Path('/proc/loadavg').read_text().split()[:3]}")  # fmt: skip
    print(f"config      {args.cfg} {args.res}x{args.res} batch {first['batch']} "
          f"(per step {first['split']}), aug {args.aug}, {first['ticks']} ticks measured")
    print(f"{'path':<10} {'s/kimg':>8} {'CPU s/kimg':>11} {'peak mem GB':>12}  runs")
    for r in rows:
        print(f"{r['path']:<10} {r['sec_per_kimg']:>8.2f} {r['cpu_sec_per_kimg']:>11.2f} "
              f"{r['peak_mem_gb']:>12.2f}  {r['repeats']}")  # fmt: skip


if __name__ == "__main__":
    main()
