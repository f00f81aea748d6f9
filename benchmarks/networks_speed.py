"""Forward+backward time and FLOPs per image of the StyleGAN2 networks on this machine.

Prints, for `paper256` at 256x256 and for `tiny` at 32x32 (1 channel by default): G and D
forward+backward seconds per image (G with both modulated-conv formulations) and FLOPs per
image counted by torch.utils.flop_counter.FlopCounterMode. Numbers only; nothing is asserted.
FLOPs of G's backward are counted on the non-fused formulation (the same arithmetic):
FlopCounterMode overcounts the backward of grouped convolutions (it ignores the groups).

    .venv/bin/python benchmarks/networks_speed.py [--channels 1] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mrisynth.config import resolve_preset
from mrisynth.networks import build_discriminator, build_generator, network_config_from_preset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_per_image(step, batch: int, repeats: int, device: torch.device) -> float:
    """Median seconds per image of `step()` over `repeats` runs after one warm-up."""
    step()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] / batch


def flops_per_image(step, batch: int) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() // batch


def bench(preset: str, res: int, channels: int, batch: int, repeats: int,
          device: torch.device) -> None:
    cfg = network_config_from_preset(resolve_preset(preset, res), channels)
    G = build_generator(cfg).to(device)
    D = build_discriminator(cfg).to(device)
    z = torch.randn(batch, G.z_dim, device=device)
    imgs = torch.randn(batch, channels, res, res, device=device)

    def g_step(fused: bool):
        def run() -> None:
            G.zero_grad(set_to_none=True)
            G(z, None, fused_modconv=fused).square().mean().backward()
        return run

    def g_forward() -> None:
        with torch.no_grad():
            G(z, None)

    def d_step() -> None:
        D.zero_grad(set_to_none=True)
        D(imgs, None).sum().backward()

    def d_forward() -> None:
        with torch.no_grad():
            D(imgs, None)

    n_g = sum(p.numel() for p in G.parameters())
    n_d = sum(p.numel() for p in D.parameters())
    print(f"\n{preset} {res}x{res}x{channels}  batch {batch}  G {n_g:,} params  D {n_d:,} params")
    rows = [
        ("G fwd+bwd (fused modconv)", g_step(True), g_step(False)),
        ("G fwd+bwd (non-fused)", g_step(False), g_step(False)),
        ("G forward only", g_forward, g_forward),
        ("D fwd+bwd", d_step, d_step),
        ("D forward only", d_forward, d_forward),
    ]
    for name, step, count_step in rows:
        flops = flops_per_image(count_step, batch)
        sec = time_per_image(step, batch, repeats, device)
        print(f"  {name:28s} {sec * 1e3:10.1f} ms/image   {flops / 1e9:9.3f} GFLOP/image")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big-batch", type=int, default=2, help="batch for paper256 at 256 px")
    ap.add_argument("--small-batch", type=int, default=16, help="batch for tiny at 32 px")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"load average {load} on {os.cpu_count()} CPUs (other jobs slow the timings)")
    bench("tiny", 32, args.channels, args.small_batch, args.repeats, device)
    bench("paper256", 256, args.channels, args.big_batch, args.repeats, device)


if __name__ == "__main__":
    main()
