"""Print the projection errors of training vs held-out phantom images (a memorisation signal).

Builds the phantom demo's data (phantom -> prepare -> dataset with held-out patients), trains
the `tiny` generator for `--kimg`, then projects `--num` training and `--num` held-out images
(`mrisynth project --holdout`) and prints both error distributions and the Mann-Whitney test.
`--control` adds a positive control: `--num` images the generator made itself (in its range by
construction) against the same held-out images.
`.venv/bin/python benchmarks/projection_memorisation.py --workdir /tmp/projbench --kimg 4`.
Re-running with the same --workdir reuses the data, the run and finished projections.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch


def mrisynth(*args: str) -> None:
    cmd = [sys.executable, "-m", "mrisynth", *args]
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)


def build_run(work: Path, args: argparse.Namespace) -> Path:
    data = work / "data.zip"
    if not data.exists():
        mrisynth("phantom", str(work / "phantom"), "--patients", str(args.patients), "--small",
                 "--no-t2spir")  # fmt: skip
        mrisynth("prepare", str(work / "phantom"), "-o", str(work / "prepared"),
                 "--size", str(args.size))  # fmt: skip
        mrisynth("dataset", str(work / "prepared"), "-o", str(data),
                 "--holdout-patients", str(args.holdout))  # fmt: skip
    runs = work / "runs"
    if not list(runs.glob("*/network-snapshot-*.safetensors")):
        start = time.monotonic()
        mrisynth("train", "--data", str(data), "--outdir", str(runs), "--cfg", "tiny",
                 "--mirror", "--kimg", str(args.kimg), "--tick", str(args.kimg / 4), "--snap",
                 "4", "--device", "cpu")  # fmt: skip
        print(f"training: {time.monotonic() - start:.0f} s", flush=True)
    return next(runs.iterdir())


def write_generated(run: Path, folder: Path, num: int) -> Path:
    """Positive control: `num` images the generator itself made (seeds 0..num-1), which lie in
    its range by construction, as the 'training' group."""
    from mrisynth.generate.sampling import SamplingOptions, sample_images
    from mrisynth.imaging import encode_png
    from mrisynth.training.checkpoint import load_generator

    if not folder.exists():
        folder.mkdir(parents=True)
        G, _ = load_generator(run)
        for seed, img in sample_images(G, list(range(num)), SamplingOptions(batch_size=8)):
            (folder / f"seed{seed:04d}.png").write_bytes(encode_png(img))
    return folder


def report(record: dict, seconds: float, steps: int) -> None:
    cmp = record["comparison"]
    n = max(1, len(record["targets"]))
    print(f"projection: {n} images, {steps} steps, {seconds:.0f} s "
          f"({seconds / n / steps * 1000:.0f} ms/step)")
    for group in ("train", "holdout"):
        d = cmp[group]
        print(f"{group:8s} n={d['n']:3d} RMSE median {d['median']:.2f} mean {d['mean']:.2f} "
              f"q10-q90 {d['q10']:.2f}-{d['q90']:.2f} grey levels")
    print(json.dumps(cmp["mann_whitney"]))
    print(cmp["verdict"], flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path("projbench"))
    p.add_argument("--patients", type=int, default=8)
    p.add_argument("--holdout", type=int, default=2)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--kimg", type=float, default=4.0)
    p.add_argument("--num", type=int, default=16, help="images projected per group")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--control", action="store_true",
                   help="also project generated images vs the held-out ones (positive control)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = build_run(args.workdir, args)

    from mrisynth.projection.batch import ProjectJob, run_projection
    from mrisynth.projection.projector import ProjectionOptions

    holdout = args.workdir / "data-holdout.zip"
    cases = [("training vs held-out patients", args.workdir / "data.zip", "")]
    if args.control:
        gen = write_generated(run, args.workdir / "generated", args.num)
        cases.append(("control: generated vs held-out", gen, "-control"))
    for title, train, suffix in cases:
        print(f"== {title}", flush=True)
        start = time.monotonic()
        job = ProjectJob(network=run, outdir=args.workdir / f"projection-{args.steps}{suffix}",
                         targets=(train,), holdout=(holdout,), num=args.num,
                         options=ProjectionOptions(num_steps=args.steps), loss="pixel",
                         device="cpu")  # fmt: skip
        record = run_projection(job, progress=False)
        report(record, time.monotonic() - start, args.steps)


if __name__ == "__main__":
    main()
