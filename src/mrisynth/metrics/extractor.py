"""Feeding images to a feature detector exactly as NVIDIA's metric code does (Karras et al. 2020).

Images go in as uint8 NCHW; one channel is repeated to three; generator output is quantised
with `(x * 127.5 + 128).clamp(0, 255)` first. A `FeatureExtractor` knows whether it wraps the
published TorchScript file (`reference_exact=True`) or a random stand-in (never FID/KID/PR),
and whether that file's sha256 is confirmed (`trusted`; see `detectors.trust_of`).

A loaded file is probed before use, so a file with another interface is one error line, not a
traceback at the first batch: `net(uint8 [2, 3, 64, 64], return_features=True)` must give a
finite float [2, D] with D = 2048 (Inception) / 4096 (VGG16), and, where the TorchScript module
exposes its tensors, their shapes must include the architecture's signature (Inception-v3: a
3x3 convolution from 3 to 32 channels and a 2048-wide layer; VGG16: a 3x3 convolution from 3
to 64 channels and a 4096-wide fully connected layer; any axis order).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

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
    trusted: bool = False  # sha256 published or confirmed by the user

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

    def record(self) -> dict:
        """The `"detector"` entry of a metric record."""
        return {"name": self.name, "sha256": self.sha256}


# Shapes (sorted, so any axis order) that the published architectures contain.
_SIGNATURES = {
    "inception": ("a 3x3 convolution from 3 to 32 channels", (3, 3, 3, 32), 2048),
    "vgg16": ("a 3x3 convolution from 3 to 64 channels", (3, 3, 3, 64), 4096),
}
_PROBE_SHAPE = (2, 3, 64, 64)


def _signature_problem(net: torch.nn.Module, kind: str) -> str | None:
    """What the module's exposed tensors lack of the architecture, or None (also when it
    exposes none: then only the call probe can tell)."""
    shapes = [tuple(sorted(t.shape)) for t in [*net.parameters(), *net.buffers()]]
    if not shapes:
        return None
    conv_text, conv, width = _SIGNATURES[kind]
    if conv not in shapes:
        return f"no {conv_text}"
    if not any(len(s) >= 2 and width in s for s in shapes):
        return f"no {width}-wide layer"
    return None


def probe_detector(net: torch.nn.Module, spec: detectors.DetectorSpec, path, device) -> None:
    """InputError (one line, naming the file and what was expected) unless `net` behaves like
    the published detector on a small uint8 batch."""
    expected = (
        f"NVIDIA's {spec.title} detector: net(uint8 [N, 3, H, W], return_features=True) -> "
        f"float [N, {spec.feature_dim}]"
    )
    fix = f"re-fetch it with `mrisynth weights fetch {spec.name}`"
    x = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, _PROBE_SHAPE, dtype=np.uint8)
    ).to(device)
    try:
        with torch.no_grad():
            out = net(x, return_features=True)
    except Exception as e:  # any failure of a foreign module's forward is "wrong interface"
        text = " ".join(str(e).split())[:160]
        problem = f"the call failed ({type(e).__name__}: {text})"
    else:
        problem = _output_problem(out, spec.feature_dim) or _signature_problem(net, spec.name)
    if problem is not None:
        raise InputError(f"{path}: not {expected}: {problem}; {fix}")


def _output_problem(out, dim: int) -> str | None:
    if not isinstance(out, torch.Tensor):
        return f"it returned {type(out).__name__}, not a tensor"
    if not out.is_floating_point() or tuple(out.shape) != (_PROBE_SHAPE[0], dim):
        return f"it returned {out.dtype} {list(out.shape)} for {_PROBE_SHAPE[0]} images"
    if not torch.isfinite(out).all():
        return "it returned NaN or inf"
    return None


def load_detector(
    kind: str,
    device: str | torch.device = "cpu",
    detector_dir: str | os.PathLike | None = None,
    confirmed_sha256: tuple[str, ...] = (),
) -> FeatureExtractor:
    """Find, load and probe NVIDIA's published TorchScript detector ('inception' or 'vgg16').

    Raises MissingDependencyError (naming every place searched and the fix) when absent and
    InputError when the file does not load or does not have the detector's interface.
    `confirmed_sha256`: hashes the user vouches for in this evaluation (`--trust-detector`).
    """
    spec = detectors.get_spec(kind)
    path = detectors.locate_detector(spec, detector_dir)
    return load_detector_file(path, spec, device, confirmed_sha256)


def load_detector_file(
    path: str | os.PathLike,
    kind: str | detectors.DetectorSpec,
    device: str | torch.device = "cpu",
    confirmed_sha256: tuple[str, ...] = (),
) -> FeatureExtractor:
    """Load and probe one detector file (see `load_detector`)."""
    spec = detectors.get_spec(kind)
    path = Path(path)
    sha = detectors.sha256_file(path)
    trust = detectors.trust_of(spec, path, sha, confirmed_sha256)
    device = torch.device(device)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is NVIDIA's format
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise InputError(
            f"{path}: not a loadable TorchScript detector ({first}); re-fetch it"
        ) from e
    probe_detector(net, spec, path, device)
    log.info("detector %s: %s (sha256 %s, %s)", spec.name, path, sha[:12], trust.how)
    return FeatureExtractor(
        net, spec.name, sha, spec.feature_dim, True, device, trusted=trust.confirmed
    )


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
