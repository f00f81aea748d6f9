"""Wall time and PNG decodes of `mrisynth metrics --images DIR` on a folder of small images.

    python benchmarks/metrics_images_decode.py [--images 500] [--res 64] [--repeats 3]

Writes N random grey PNGs (the generated side) and a 64-image archive (the real side) into a
temp folder, then runs `mrisynth metrics --images DIR --data ARCHIVE` with weight-free metrics
of two image counts (two generated streams) and prints the best wall time of `--repeats`
runs and how many times a generated PNG was decoded. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

import mrisynth.data.archive as archive_mod
from mrisynth.cli import cli


def _write_pngs(folder: Path, count: int, res: int, prefix: str, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        img = rng.integers(0, 256, (res, res), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{prefix}{i:05d}.png"), img)


def _counting_decode(counts: collections.Counter):
    """Wrap the archive's decode_png to count decodes per file name."""
    real = archive_mod.decode_png

    def decode(data, name, *args, **kwargs):
        counts[os.path.basename(str(name))] += 1
        return real(data, name, *args, **kwargs)

    return decode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--metrics", default="intensity_hist250,body_area500,pixfd500")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_pngs(root / "gen", args.images, args.res, "gen", seed=0)
        _write_pngs(root / "real", 64, args.res, "real", seed=1)
        os.environ["MRISYNTH_CACHE_DIR"] = str(root / "cache")
        counts: collections.Counter = collections.Counter()
        archive_mod.decode_png = _counting_decode(counts)
        best = best_cpu = float("inf")
        for r in range(args.repeats):
            counts.clear()
            cmd = ["metrics", "--images", str(root / "gen"), "--data", str(root / "real"),
                   "--metrics", args.metrics, "-o", str(root / f"out{r}"), "--no-cache"]
            start, cpu = time.perf_counter(), time.process_time()
            res = CliRunner().invoke(cli, cmd)
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - cpu)
            if res.exit_code != 0:
                raise SystemExit(res.output)
        gen = sum(n for name, n in counts.items() if name.startswith("gen"))
        one_pass = _decode_pass_seconds(root / "gen", args.repeats)
        print(f"{args.images} images of {args.res} px, metrics {args.metrics}: best of "
              f"{args.repeats} {best:.2f} s wall, {best_cpu:.2f} s CPU; generated PNG decodes "
              f"per run {gen} ({gen / args.images:.2f} per image); one decode pass over the "
              f"folder takes {one_pass:.3f} s CPU")


def _decode_pass_seconds(folder: Path, repeats: int) -> float:
    """CPU seconds to decode every PNG of `folder` once through the archive reader (best of)."""
    arch = archive_mod.ImageArchive(folder)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for i in range(len(arch)):
            arch[i]
        best = min(best, time.process_time() - start)
    return best


if __name__ == "__main__":
    main()
