"""Feeding images to a feature detector exactly as NVIDIA's metric code does (Karras et al. 2020).

Images go in as uint8 NCHW; one channel is repeated to three; generator output is quantised
with `(x * 127.5 + 128).clamp(0, 255)` first. A `FeatureExtractor` knows whether it wraps the
published TorchScript file (`reference_exact=True`) or a random stand-in (never FID/KID/PR).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from mrisynth.errors import InputError
from mrisynth.metrics import detectors, standin

log = logging.getLogger(__name__)


@dataclass
class FeatureExtractor:
    """A detector plus the bookkeeping a result must carry (name, sha256, exactness)."""

    net: torch.nn.Module
    name: str  # 'inception' / 'vgg16' (stand-ins: 'standin-inception', ...)
    sha256: str
    feature_dim: int
    reference_exact: bool
    device: torch.device

    def __call__(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """uint8 [N, C, H, W] with C in {1, 3} -> float32 features [N, D]."""
        x = torch.as_tensor(images)
        if x.dtype != torch.uint8:
            raise TypeError(f"detector input must be uint8, got {x.dtype}")
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"detector input must be [N, 1|3, H, W], got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)  # [N, 3, H, W]
        with torch.no_grad():
            feats = self.net(x.to(self.device), return_features=True)
        return feats.to(torch.float32).cpu().numpy()

    def features_of(self, batches: Iterable[torch.Tensor | np.ndarray]) -> np.ndarray:
        """Features of an iterable of uint8 batches, concatenated: [N, D]."""
        out = [self(b) for b in batches]
        return np.concatenate(out) if out else np.zeros([0, self.feature_dim], np.float32)

    def record(self) -> dict:
        """The `"detector"` entry of a metric record."""
        return {"name": self.name, "sha256": self.sha256}


def load_detector(
    kind: str,
    device: str | torch.device = "cpu",
    detector_dir: str | os.PathLike | None = None,
) -> FeatureExtractor:
    """Load NVIDIA's published TorchScript detector ('inception' or 'vgg16').

    Raises MissingDependencyError (naming every place searched and the fix) when absent.
    """
    spec = detectors.get_spec(kind)
    path = detectors.locate_detector(spec, detector_dir)
    sha = detectors.sha256_file(path)
    how = detectors.verification(spec, path, sha)
    device = torch.device(device)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is NVIDIA's format
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        raise InputError(f"{path}: not a loadable TorchScript detector ({e}); re-fetch it") from e
    log.info("detector %s: %s (sha256 %s, %s)", kind, path, sha[:12], how)
    return FeatureExtractor(net, spec.name, sha, spec.feature_dim, True, device)


def standin_detector(
    kind: str,
    device: str | torch.device = "cpu",
    width: float = 1.0,
    resize_to: int | None = None,
    seed: int = 0,
) -> FeatureExtractor:
    """A seeded random network of the detector's architecture; its scores are not FID/KID/PR."""
    net = standin.build_standin(kind, width=width, resize_to=resize_to, seed=seed)
    device = torch.device(device)
    net = net.to(device)
    sha = standin.module_sha256(net)
    name = (
        f"standin-{kind}"
        if width == 1.0 and resize_to is None
        else (f"standin-{kind}-w{width:g}-r{net.resize_to}")
    )
    return FeatureExtractor(net, name, sha, net.feature_dim, False, device)
