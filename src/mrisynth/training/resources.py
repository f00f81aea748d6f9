"""What one training process uses: its CPU threads, and peak CPU/GPU memory for the tick log."""

from __future__ import annotations

import os
import resource

import torch


def set_cpu_threads(requested: int | None) -> int:
    """Threads for CPU training. OpenMP threads spin-wait, so more threads than free cores
    (other processes, data workers) slow training down many times; default to half the cores
    unless OMP_NUM_THREADS says otherwise."""
    if requested is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        requested = int(env) if env.isdigit() else max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(max(1, requested))
    return torch.get_num_threads()


def peak_cpu_mem_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def peak_gpu_mem_gb(device: torch.device) -> float:
    if device.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 2**30
