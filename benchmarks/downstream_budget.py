"""How Dice on held-out phantom patients grows with the training budget of one U-Net, and what
a step costs here: the numbers behind the demo's downstream plan (cli/demo_downstream.py).

    .venv/bin/python benchmarks/downstream_budget.py [--size 32] [--steps 50,150,300]

Real-only arm, phantom slices rendered in memory (6 training, 2 held-out patients, 14 slices
each, as the demo's phantom); prints steps, seconds, s/step, per-organ Dice and chance.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from downstream_data import phantom_set
from mrisynth.downstream.fit import train_unit
from mrisynth.downstream.options import DownstreamOptions
from mrisynth.downstream.scoring import (
    chance_dice,
    dice_per_patient,
    organ_means,
    predict,
)
from mrisynth.downstream.units import Unit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", default="50,150,300")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    real = phantom_set(range(1, 7), args.size, 14, "real")
    test = phantom_set(range(7, 9), args.size, 14, "test")
    cpu = torch.device("cpu")
    print(f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; chance Dice "
          + ", ".join(f"{v:.3f}" for v in chance_dice(test, 5)))  # fmt: skip
    for steps in map(int, args.steps.split(",")):
        opts = DownstreamOptions(seeds=(0,), steps=steps, batch_size=args.batch_size)
        t0 = time.time()
        model, _ = train_unit(Unit("real", 1.0, 0), opts, real, real, 5, cpu)
        sec = time.time() - t0
        dice = organ_means(dice_per_patient(predict(model, test, cpu), test, 5), 4)
        shown = ", ".join("n/a" if d is None else f"{d:.3f}" for d in dice)
        print(f"steps {steps:4d}: {sec:6.1f} s ({sec / steps:.3f} s/step); Dice {shown}")


if __name__ == "__main__":
    main()
