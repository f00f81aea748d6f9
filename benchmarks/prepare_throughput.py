"""Throughput of `prepare` (slices/s) on phantom studies with 256 and 320 matrices.

    .venv/bin/python benchmarks/prepare_throughput.py                  # 4 patients x 24 slices
    .venv/bin/python benchmarks/prepare_throughput.py --patients 8 --slices 40 --workers 1 2 4

Writes the phantom once per matrix size into a temp folder, then times a full `prepare` run
(header scan, decode, normalise, resize, PNG, manifest) into a fresh output per worker count,
and a re-run (idempotent: nothing rewritten).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mrisynth.data.phantom_dicom import write_phantom_tree
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--matrices", type=int, nargs="+", default=[256, 320])
    parser.add_argument("--size", type=int, default=256, help="prepare --size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for matrix in args.matrices:
            tree = Path(tmp) / f"tree{matrix}"
            start = time.perf_counter()
            write_phantom_tree(
                tree,
                args.patients,
                seed=0,
                matrix_sizes=(matrix,),
                num_slices=(args.slices, args.slices),
                t2spir=False,
            )
            n = args.patients * args.slices
            print(
                f"matrix {matrix}: phantom {n} slices/echo written in "
                f"{time.perf_counter() - start:.1f} s"
            )
            for workers in args.workers:
                out = Path(tmp) / f"out{matrix}-{workers}"
                opts = PrepareOptions(slice=SliceOptions(size=args.size), workers=workers)
                start = time.perf_counter()
                res = prepare([tree], out, opts)
                first = time.perf_counter() - start
                start = time.perf_counter()
                prepare([tree], out, opts)
                again = time.perf_counter() - start
                print(
                    f"  prepare -> {args.size}px, workers {workers}: {res.num_images} slices in "
                    f"{first:.2f} s = {res.num_images / first:.1f} slices/s "
                    f"(re-run {res.num_images / again:.1f} slices/s)"
                )


if __name__ == "__main__":
    main()
