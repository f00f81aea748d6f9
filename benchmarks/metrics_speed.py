"""Speed of the metric pipeline on this machine: feature extraction (stand-in detectors of the
real architectures, random weights) and the distance/statistics computations at 10k x 10k.

    python benchmarks/metrics_speed.py [--images 32] [--n 10000] [--device cpu] [--skip-fp16]
    python benchmarks/metrics_speed.py --kid-only [--kid-n 5000]   # KID: ours vs reference loop

Prints numbers; asserts nothing. The stand-ins have NVIDIA's detectors' architectures and
input handling, so their speed is the detectors' speed; their values are not FID/KID/PR.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mrisynth.metrics.extractor import standin_detector
from mrisynth.metrics.fid import frechet_distance
from mrisynth.metrics.kid import kernel_inception_distance
from mrisynth.metrics.precision_recall import precision_recall_density_coverage


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_extraction(kind: str, images: int, batch: int, res: int, device: str) -> None:
    ext = standin_detector(kind, device)
    x = np.random.default_rng(0).integers(0, 256, [images, 1, res, res], dtype=np.uint8)
    ext(x[:2])  # warm-up
    _, sec = _timed(lambda: [ext(x[i : i + batch]) for i in range(0, images, batch)])
    print(
        f"{kind:9s} features ({ext.feature_dim}-d, {res}px grey -> 3 ch): "
        f"{images / sec:7.1f} images/s  ({images} images, batch {batch}, {device})"
    )


def bench_distances(n: int, dim: int, fp16: bool, device: str) -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=[n, dim]).astype(np.float32)
    gen = (rng.normal(size=[n, dim]) + 0.1).astype(np.float32)
    res, sec = _timed(precision_recall_density_coverage, real, gen, k=3, fp16=fp16, device=device)
    pairs = 3 * n * n  # real-real, gen-gen, real-gen passes
    print(
        f"PR+density+coverage {n}x{n}, {dim}-d, {'fp16' if fp16 else 'fp32'}: {sec:7.1f} s "
        f"({pairs / sec / 1e6:.1f} M distances/s; P={res.precision:.3f} R={res.recall:.3f})"
    )


def bench_stats(n: int, dim: int) -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=[n, dim]).astype(np.float32)
    b = rng.normal(size=[n, dim]).astype(np.float32)
    mu_a, cov_a = a.mean(0, dtype=np.float64), np.cov(a, rowvar=False, bias=True)
    mu_b, cov_b = b.mean(0, dtype=np.float64), np.cov(b, rowvar=False, bias=True)
    _, sec = _timed(frechet_distance, mu_a, cov_a, mu_b, cov_b)
    print(f"FID from stats ({dim}-d):                  {sec:7.2f} s")
    _, sec = _timed(kernel_inception_distance, a, b, 100, 1000, 0)
    print(f"KID 100 subsets x 1000 ({dim}-d, float64):  {sec:7.2f} s")


def reference_kid_loop(gen: np.ndarray, real: np.ndarray, num_subsets=100, max_size=1000):
    """The straightforward NumPy loop of NVIDIA's metric code (float32 features, one Gram
    triple per subset), written here for timing; subsets come from a seeded generator."""
    rng = np.random.default_rng(0)
    n = gen.shape[1]
    m = min(gen.shape[0], real.shape[0], max_size)
    t = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


def bench_kid(n: int, dim: int = 2048) -> None:
    rng = np.random.default_rng(3)
    gen = rng.normal(size=[n, dim]).astype(np.float32)
    real = (rng.normal(size=[n, dim]) + 0.01).astype(np.float32)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"KID {n} x {n} x {dim}, 100 subsets of 1000 (load average {' '.join(load)}):")
    ours, sec = _timed(kernel_inception_distance, gen, real, 100, 1000, 0)
    print(f"  mrisynth (float64, Gram over drawn points): {sec:7.1f} s  KID {ours.mean:.6g}")
    old, sec = _timed(kernel_inception_distance, gen, real, 100, 1000, 0, method="subsets")
    print(f"  mrisynth per-subset float64 (before):       {sec:7.1f} s  KID {old.mean:.6g}")
    ref, sec = _timed(reference_kid_loop, gen, real)
    print(f"  reference-style NumPy loop (float32):       {sec:7.1f} s  KID {ref:.6g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=32, help="images per extraction benchmark")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--res", type=int, default=256, help="input image side (study: 256)")
    p.add_argument("--n", type=int, default=10000, help="points per set for the distances")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-fp16", action="store_true", help="fp16 distances are slow on CPU")
    p.add_argument("--kid-n", type=int, default=5000, help="features per set for the KID timing")
    p.add_argument("--kid-only", action="store_true", help="only the KID timing")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    if args.kid_only:
        bench_kid(args.kid_n)
        return
    bench_extraction("inception", args.images, args.batch, args.res, args.device)
    bench_extraction("vgg16", args.images, args.batch, args.res, args.device)
    bench_stats(args.n, 2048)
    bench_distances(args.n, 4096, fp16=False, device=args.device)
    if not args.skip_fp16:
        bench_distances(args.n, 4096, fp16=True, device=args.device)
    bench_kid(args.kid_n)


if __name__ == "__main__":
    main()
