"""Random-number-generator states of one process (torch CPU/CUDA, numpy, python), for snapshots:
a resumed run draws exactly the numbers the uninterrupted one would have."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's RNG states (torch CPU/CUDA as tensors, numpy/python as JSON)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def restore_rng(saved: dict[str, Any], tensors: dict[str, torch.Tensor], rank: int) -> None:
    """Inverse of `capture_rng` for `rank`: JSON part `saved`, tensors `rng.rank{rank}.*`."""
    torch.set_rng_state(tensors[f"rng.rank{rank}.torch"])
    if f"rng.rank{rank}.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[f"rng.rank{rank}.cuda"])
    name, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), cached))
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
