"""Stand-in TorchScript detector files for tests (weights cannot be downloaded here).

`write_detector(path, kind)` saves a small scripted network with the published detector's
interface: `net(uint8 [N, 3, H, W], return_features=True) -> float32 [N, D]` (D = 2048 for
inception, 4096 for vgg16) and the layer signature mrisynth probes for (a 3x3 convolution from
3 to 32 / 64 channels and a D-wide layer). `kind` may also name a wrong interface, for the
tests that must see one `Error:` line instead of a traceback.
"""

import torch
import torch.nn.functional as F
from torch import nn


class _Right(nn.Module):
    def __init__(self, first: int, dim: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, first, 3, stride=2, bias=False)
        self.fc = nn.Linear(first, dim)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        h = F.relu(self.conv(x.to(torch.float32) / 128 - 1))
        feats = F.relu(self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1)))
        return feats if return_features else feats[:, :10]


class _Wrapped(nn.Module):
    """Holds a right network (its layers pass the signature check) behind a wrong call."""

    def __init__(self, first: int, dim: int) -> None:
        super().__init__()
        self.inner = _Right(first, dim)


class _NoFeatureArg(_Wrapped):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x, True)


class _Tuple(_Wrapped):
    def forward(self, x: torch.Tensor, return_features: bool = False):
        f = self.inner(x, True)
        return f, f


class _NaN(_Wrapped):
    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.inner(x, True) * float("nan")


class _Pool(nn.Module):
    """No parameters at all (signature unknowable): 4x4 average-pooled pixels, 48-d."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.to(torch.float32), 4).flatten(1)


DIMS = {"inception": (32, 2048), "vgg16": (64, 4096)}


def build(kind: str) -> nn.Module:
    """'inception' | 'vgg16' (right), or '<detector>:<fault>' with fault in no_arg, tuple,
    nan, wrong_dim, wrong_layers, pool."""
    det, _, fault = kind.partition(":")
    first, dim = DIMS[det]
    if fault == "":
        return _Right(first, dim)
    if fault == "wrong_dim":
        return _Right(first, 3)
    if fault == "wrong_layers":  # right output size, but e.g. a ResNet's 7x7 64-channel stem
        net = _Right(first, dim)
        net.conv = nn.Conv2d(3, 64 if det == "inception" else 32, 7, stride=2, bias=False)
        net.fc = nn.Linear(net.conv.out_channels, dim)
        return net
    if fault == "pool":
        return _Pool()
    return {"no_arg": _NoFeatureArg, "tuple": _Tuple, "nan": _NaN}[fault](first, dim)


def write_detector(path, kind: str = "inception"):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(build(kind)).save(str(path))
    return path
