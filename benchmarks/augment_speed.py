"""Time the ADA augmentation pipeline per image at several p (forward, and forward + backward).

Default: 256x256, 1 channel, batch 32, preset bg, p = 0, 0.2, 0.6, 1.0 on the CPU. Other cases:
`.venv/bin/python benchmarks/augment_speed.py --threads 1` or
`--device cuda --preset bgc --channels 3`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mrisynth.training.augment import AugmentPipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pipe(
    pipe: AugmentPipe, images: torch.Tensor, repeats: int, backward: bool
) -> tuple[float, float]:
    """Fastest and median wall seconds per batch over `repeats` runs (after one warm-up).

    On a shared machine the fastest run is the better estimate of the cost itself; the median
    shows how much other jobs slowed it down.
    """
    walls = []
    for i in range(repeats + 1):
        x = images.detach().requires_grad_(backward)
        _sync(images.device)
        start = time.perf_counter()
        out = pipe(x)
        if backward:
            out.square().mean().backward()
        _sync(images.device)
        if i > 0:
            walls.append(time.perf_counter() - start)
    return min(walls), statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--preset", default="bg")
    parser.add_argument("--p", type=float, nargs="+", default=[0.0, 0.2, 0.6, 1.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-backward", action="store_true", help="time the forward only")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    images = torch.rand(args.batch, args.channels, args.resolution, args.resolution) * 2 - 1
    images = images.to(device)
    print(
        f"preset={args.preset} res={args.resolution} channels={args.channels} "
        f"batch={args.batch} device={device} threads={torch.get_num_threads()}"
    )
    print("wall ms per image: fastest of the repeats (median)")
    header = f"{'p':>5} {'forward':>18}"
    print(header if args.no_backward else header + f" {'forward+backward':>18}")
    for p in args.p:
        pipe = AugmentPipe(args.preset, num_channels=args.channels, p=p).to(device)
        runs = [False] if args.no_backward else [False, True]
        row = f"{p:5.2f}"
        for backward in runs:
            fastest, median = time_pipe(pipe, images, args.repeats, backward=backward)
            row += f" {fastest / args.batch * 1e3:8.2f} ({median / args.batch * 1e3:7.2f})"
        print(row)


if __name__ == "__main__":
    main()
