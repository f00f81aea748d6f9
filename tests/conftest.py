"""Shared test settings: CPU only, one thread per test worker (the suite runs with -n 2)."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MRISYNTH_CACHE_DIR", os.path.join(os.getcwd(), ".pytest_cache", "mrisynth"))

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency
    pass
