"""Print the copy test's planted-copy recall and false-positive rate, and the diversity numbers
of real held-out patients vs a collapsed set, over several draws of phantom patients.

Each draw: `--train` training patients, `--holdout` held-out patients (the audit's holdout
archive) and `--unseen` further patients whose slices pose as generated images, 12 slices each
at `--size` px; 12 planted copies of each kind (exact, mirrored, shifted by up to 3 px,
intensity-scaled x0.6-0.9 + 10). `.venv/bin/python benchmarks/copy_calibration.py --draws 5`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mrisynth.metrics import diversity as dv
from mrisynth.metrics import memorisation as mem
from phantom_bodies import cohort, collapsed, shifted

KINDS = ("exact", "mirror", "shift", "gain")


def planted_copies(train: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    src = rng.choice(len(train), 48, replace=False)
    moves = rng.integers(-3, 4, (12, 2))
    gain = rng.uniform(0.6, 0.9, (12, 1, 1, 1))
    parts = [
        train[src[:12]],
        train[src[12:24]][..., ::-1],
        np.stack([shifted(train[src[24 + k]], int(x), int(y)) for k, (x, y) in enumerate(moves)]),
        np.clip(np.rint(train[src[36:48]] * gain + 10), 0, 255).astype(np.uint8),
    ]
    return np.ascontiguousarray(np.concatenate(parts)), src


def one_draw(seed: int, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    n_tr, n_ho = args.train, args.holdout
    train, keys = cohort(0, n_tr, size=args.size, seed=seed)
    holdout, _ = cohort(n_tr, n_ho, size=args.size, seed=seed)
    unseen, _ = cohort(n_tr + n_ho, args.unseen, size=args.size, seed=seed)
    planted, _ = planted_copies(train, np.random.default_rng(seed))
    names = [str(i) for i in range(len(train))]
    gen = np.concatenate([planted, unseen])
    s = mem.audit(mem.AuditInputs(gen, train, names, keys, holdout)).summary
    flags = np.array([r["flagged"] for r in s["images"]])
    recall = {k: f"{flags[12 * i : 12 * i + 12].mean():.2f}" for i, k in enumerate(KINDS)}
    c = s["copy_test"]
    clean = mem.audit(mem.AuditInputs(unseen, train, names, keys, holdout)).summary["copy_test"]
    print(
        f"draw {seed}: recall {recall}, unseen FP {flags[48:].mean():.3f}, holdout FP "
        f"{c['holdout_flagged_fraction']:.3f}, threshold {c['threshold']:.3f}; Z_U planted+unseen "
        f"{c['value']:.2f} (p {c['p_value']:.2g}), unseen only {clean['value']:.2f} "
        f"(p {clean['p_value']:.2g})"
    )
    real = dv.diversity(holdout, train, keys, seed=seed).results
    bad = dv.diversity(collapsed(train[len(train) // 2], 48, 6.0, seed), train, keys).results
    for name, r in (("held-out real", real), ("collapsed", bad)):
        print(
            f"    {name:13s}: MS-SSIM gen {r['msssim_gen']:.3f} real {r['msssim_real']:.3f}; "
            f"body-area std {r['body_area_std_gen']:.4f} vs {r['body_area_std_real']:.4f}; "
            f"grey std {r['mean_intensity_std_gen']:.2f} vs {r['mean_intensity_std_real']:.2f}; "
            f"coverage {r['coverage']:.2f}"
        )
    print(f"    ({time.perf_counter() - t0:.1f} s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--train", type=int, default=10)
    p.add_argument("--holdout", type=int, default=4)
    p.add_argument("--unseen", type=int, default=4)
    p.add_argument("--size", type=int, default=32)
    args = p.parse_args()
    for seed in range(args.draws):
        one_draw(seed, args)


if __name__ == "__main__":
    main()
