"""Randomly initialised stand-ins for NVIDIA's detectors: Inception-v3 (Szegedy et al. 2016,
arXiv 1512.00567) and VGG16 (Simonyan & Zisserman 2015, arXiv 1409.1556), plain PyTorch.

They share the detectors' call interface `net(x_uint8 [N, 3, H, W], return_features=True)` and
input handling (TF-1 bilinear resize, `(x - 128) / 128` for Inception) so the feature pipeline
can be tested without the weights. Their scores are NOT FID/KID/PR: the runner names them
`standin_*` and records `"reference_exact": false`. `width` scales every channel count (tests
use tiny ones); the init is seeded, so a stand-in is the same network in every process.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn


def tf1_bilinear_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow-1 `resize_bilinear` (align_corners=False, no half-pixel offset).

    Source coordinate = dst * in / out; neighbours floor and floor+1 (clamped to the edge).
    [N, C, H, W] float -> [N, C, size, size].
    """

    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, (src - lo).to(x.dtype)

    _, _, h, w = x.shape
    if (h, w) == (size, size):
        return x
    ylo, yhi, fy = axis(h)
    xlo, xhi, fx = axis(w)
    dev = x.device
    rows = torch.lerp(x[:, :, ylo.to(dev)], x[:, :, yhi.to(dev)], fy.to(dev)[:, None])
    return torch.lerp(rows[..., xlo.to(dev)], rows[..., xhi.to(dev)], fx.to(dev))


class _ConvBN(nn.Module):
    """Conv (no bias) + batch norm (eps 1e-3, as TF's graph) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class _BlockA(nn.Module):  # 35x35: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1
    def __init__(self, cin: int, pool: int, s) -> None:
        super().__init__()
        self.b1 = _ConvBN(cin, s(64), 1)
        self.b5 = nn.Sequential(_ConvBN(cin, s(48), 1), _ConvBN(s(48), s(64), 5, padding=2))
        self.b3 = nn.Sequential(
            _ConvBN(cin, s(64), 1),
            _ConvBN(s(64), s(96), 3, padding=1),
            _ConvBN(s(96), s(96), 3, padding=1),
        )
        self.bp = _ConvBN(cin, pool, 1)
        self.out_channels = s(64) + s(64) + s(96) + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(_avg3(x))], 1)


class _BlockB(nn.Module):  # 35 -> 17 reduction
    def __init__(self, cin: int, s) -> None:
        super().__init__()
        self.b3 = _ConvBN(cin, s(384), 3, stride=2)
        self.b3d = nn.Sequential(
            _ConvBN(cin, s(64), 1),
            _ConvBN(s(64), s(96), 3, padding=1),
            _ConvBN(s(96), s(96), 3, stride=2),
        )
        self.out_channels = s(384) + s(96) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b3(x), self.b3d(x), F.max_pool2d(x, 3, 2)], 1)


class _BlockC(nn.Module):  # 17x17 with factorised 7x7 convolutions
    def __init__(self, cin: int, c7: int, s) -> None:
        super().__init__()
        o = s(192)
        self.b1 = _ConvBN(cin, o, 1)
        self.b7 = nn.Sequential(
            _ConvBN(cin, c7, 1),
            _ConvBN(c7, c7, (1, 7), padding=(0, 3)),
            _ConvBN(c7, o, (7, 1), padding=(3, 0)),
        )
        self.b7d = nn.Sequential(
            _ConvBN(cin, c7, 1),
            _ConvBN(c7, c7, (7, 1), padding=(3, 0)),
            _ConvBN(c7, c7, (1, 7), padding=(0, 3)),
            _ConvBN(c7, c7, (7, 1), padding=(3, 0)),
            _ConvBN(c7, o, (1, 7), padding=(0, 3)),
        )
        self.bp = _ConvBN(cin, o, 1)
        self.out_channels = 4 * o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b7(x), self.b7d(x), self.bp(_avg3(x))], 1)


class _BlockD(nn.Module):  # 17 -> 8 reduction
    def __init__(self, cin: int, s) -> None:
        super().__init__()
        self.b3 = nn.Sequential(_ConvBN(cin, s(192), 1), _ConvBN(s(192), s(320), 3, stride=2))
        self.b7 = nn.Sequential(
            _ConvBN(cin, s(192), 1),
            _ConvBN(s(192), s(192), (1, 7), padding=(0, 3)),
            _ConvBN(s(192), s(192), (7, 1), padding=(3, 0)),
            _ConvBN(s(192), s(192), 3, stride=2),
        )
        self.out_channels = s(320) + s(192) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, 2)], 1)


class _BlockE(nn.Module):  # 8x8 with split 1x3 / 3x1 branches; TF's last block max-pools
    def __init__(self, cin: int, s, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.b1 = _ConvBN(cin, s(320), 1)
        self.b3 = _ConvBN(cin, s(384), 1)
        self.b3a = _ConvBN(s(384), s(384), (1, 3), padding=(0, 1))
        self.b3b = _ConvBN(s(384), s(384), (3, 1), padding=(1, 0))
        self.bd = nn.Sequential(_ConvBN(cin, s(448), 1), _ConvBN(s(448), s(384), 3, padding=1))
        self.bda = _ConvBN(s(384), s(384), (1, 3), padding=(0, 1))
        self.bdb = _ConvBN(s(384), s(384), (3, 1), padding=(1, 0))
        self.bp = _ConvBN(cin, s(192), 1)
        self.out_channels = s(320) + 4 * s(384) + s(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3, bd = self.b3(x), self.bd(x)
        pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg3(x)
        parts = [self.b1(x), self.b3a(b3), self.b3b(b3), self.bda(bd), self.bdb(bd)]
        return torch.cat([*parts, self.bp(pooled)], 1)


class InceptionV3(nn.Module):
    """Inception-v3 as in TF's 2015-12-05 graph: 2048-d pool features, 1008 logits."""

    def __init__(self, width: float = 1.0, resize_to: int = 299, num_classes: int = 1008):
        super().__init__()
        s = _scaler(width)
        self.resize_to = resize_to
        self.stem = nn.Sequential(
            _ConvBN(3, s(32), 3, stride=2),
            _ConvBN(s(32), s(32), 3),
            _ConvBN(s(32), s(64), 3, padding=1),
            nn.MaxPool2d(3, 2),
            _ConvBN(s(64), s(80), 1),
            _ConvBN(s(80), s(192), 3),
            nn.MaxPool2d(3, 2),
        )
        blocks: list[nn.Module] = []
        c = s(192)
        for make in (
            lambda c: _BlockA(c, s(32), s),
            lambda c: _BlockA(c, s(64), s),
            lambda c: _BlockA(c, s(64), s),
            lambda c: _BlockB(c, s),
            lambda c: _BlockC(c, s(128), s),
            lambda c: _BlockC(c, s(160), s),
            lambda c: _BlockC(c, s(160), s),
            lambda c: _BlockC(c, s(192), s),
            lambda c: _BlockD(c, s),
            lambda c: _BlockE(c, s, max_pool=False),
            lambda c: _BlockE(c, s, max_pool=True),
        ):
            blocks.append(make(c))
            c = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = c
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = tf1_bilinear_resize(x.to(torch.float32), self.resize_to)  # [N, 3, 299, 299]
        x = (x - 128) / 128
        feats = self.blocks(self.stem(x)).mean(dim=(2, 3))  # [N, 2048]
        return feats if return_features else self.fc(feats)


class VGG16(nn.Module):
    """VGG16 (configuration D): features are fc2 after its ReLU (4096-d)."""

    _CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, width: float = 1.0, resize_to: int = 224, num_classes: int = 1000):
        super().__init__()
        s = _scaler(width)
        layers: list[nn.Module] = []
        c = 3
        for v in self._CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, s(v), 3, padding=1), nn.ReLU()]
                c = s(v)
        self.features = nn.Sequential(*layers)
        self.resize_to = resize_to
        side = resize_to // 32
        self.fc1 = nn.Linear(c * side * side, s(4096))
        self.fc2 = nn.Linear(s(4096), s(4096))
        self.fc3 = nn.Linear(s(4096), num_classes)
        self.feature_dim = s(4096)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = tf1_bilinear_resize(x.to(torch.float32), self.resize_to)  # [N, 3, 224, 224]
        x = self.features((x - self.mean) / self.std).flatten(1)
        feats = F.relu(self.fc2(F.relu(self.fc1(x))))  # [N, 4096]
        return feats if return_features else self.fc3(feats)


def _scaler(width: float):
    return lambda c: max(1, round(c * width))


def _init(module: nn.Module) -> None:
    """He-normal weights keep random ReLU activations at a stable scale through depth."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_standin(
    kind: str, width: float = 1.0, resize_to: int | None = None, seed: int = 0
) -> nn.Module:
    """A seeded random Inception-v3 ('inception') or VGG16 ('vgg16') in eval mode.

    `resize_to` None = the detector's own input size (299 / 224).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "inception":
            net: nn.Module = InceptionV3(width, resize_to or 299)
        elif kind == "vgg16":
            net = VGG16(width, resize_to or 224)
        else:
            raise ValueError(f"unknown stand-in {kind!r}")
        _init(net)
    return net.eval().requires_grad_(False)


def module_sha256(net: nn.Module) -> str:
    """Identity of a stand-in: sha256 over its parameter names, shapes and values."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
