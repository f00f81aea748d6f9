"""Building blocks of StyleGAN2 (Karras et al. 2020, arXiv 1912.04958) with standard torch ops.

Equalised learning rate (weights stored N(0, 1), scaled by 1/sqrt(fan_in) at run time), bias +
activation with gain and clamp, [1, 3, 3, 1] FIR resampling written as depthwise (transposed)
convolutions, modulated convolution (fused grouped-conv and non-fused formulations), per-pixel
noise and minibatch standard deviation. Every op here supports double backward (R1 needs it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mrisynth.errors import ConfigError

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
NOISE_MODES = ("random", "const", "none")


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply the activation, scale by gain, then clamp.

    `gain` multiplies the activation's own gain (sqrt(2) for leaky ReLU) so that signal
    magnitudes stay ~1; `clamp` bounds activations (used to keep fp16 from overflowing).
    """
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.to(x.dtype).reshape(shape)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        gain = gain * LRELU_GAIN
    elif activation != "linear":
        raise ConfigError(f"unknown activation {activation!r}; use 'linear' or 'lrelu'")
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit mean square (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def make_fir_filter(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """Separable 2-D FIR filter from 1-D taps, normalised to sum 1. # [K, K]"""
    t = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(t, t)
    return f / f.sum()


def _depthwise(f: torch.Tensor, channels: int, x: torch.Tensor) -> torch.Tensor:
    """Repeat a [K, K] filter per channel for a grouped conv. # [C, 1, K, K]"""
    return f.to(dtype=x.dtype, device=x.device)[None, None].expand(channels, 1, *f.shape)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero insertion then the FIR filter (gain 4), as one transposed conv.

    Equivalent to inserting a zero after every sample, padding (2, 1) and filtering with the
    4-tap filter; padding=1 of the transposed conv crops exactly that window. # [N,C,2H,2W]
    """
    c = x.shape[1]
    return F.conv_transpose2d(x, _depthwise(f * 4.0, c, x), stride=2, padding=1, groups=c)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x downsampling: FIR filter with padding 1, keep every second sample. # [N,C,H/2,W/2]"""
    c = x.shape[1]
    return F.conv2d(x, _depthwise(f, c, x), stride=2, padding=1, groups=c)


def filter2d(x: torch.Tensor, f: torch.Tensor, pad: int) -> torch.Tensor:
    """Plain FIR filtering of every channel with symmetric zero padding `pad`."""
    c = x.shape[1]
    return F.conv2d(x, _depthwise(f, c, x), padding=pad, groups=c)


def conv2d_resample(
    x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
    groups: int = 1, bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Convolution with optional 2x up- or downsampling around it (kernel 1 or 3).

    up=2: transposed conv (stride 2) with the spatially flipped kernel, then the FIR filter
    (gain 4) with padding 1, so the result equals zero-insertion + FIR + 'same' conv.
    down=2: FIR filter (padding 2 for 3x3, 1 for 1x1), then a stride-2 conv without padding.
    w: [out, in/groups, k, k]; bias [out], added by the last convolution (one pass fewer).
    """
    k = w.shape[-1]
    if up == 2:
        if k == 1:
            y = upsample2d(F.conv2d(x, w, groups=groups), f)
            return y if bias is None else y + bias.reshape(1, -1, 1, 1)
        n_out, n_in_g = w.shape[0], w.shape[1]
        # conv_transpose2d expects [in, out/groups, k, k].
        wt = w.reshape(groups, n_out // groups, n_in_g, k, k).transpose(1, 2)
        wt = wt.reshape(groups * n_in_g, n_out // groups, k, k).flip([2, 3])
        x = F.conv_transpose2d(x, wt, stride=2, groups=groups)  # [N, out, 2H+1, 2W+1]
        c = x.shape[1]
        return F.conv2d(x, _depthwise(f * 4.0, c, x), bias, padding=1, groups=c)
    if down == 2:
        pad = 2 if k == 3 else 1
        x = filter2d(x, f, pad)
        return F.conv2d(x, w, bias, stride=2, groups=groups)
    return F.conv2d(x, w, bias, padding=k // 2, groups=groups)


class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer: weight N(0,1)/lr_mul, scaled by lr_mul/sqrt(in) when used."""

    def __init__(
        self, in_features: int, out_features: int, activation: str = "linear",
        lr_multiplier: float = 1.0, bias_init: float = 0.0, bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = (
            nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier))
            if bias else None
        )
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out]
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype) * self.bias_gain if self.bias_gain != 1 else b.to(x.dtype)
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalised-lr conv (kernel 1 or 3) with optional FIR 2x up/down sampling."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
        activation: str = "linear", up: int = 1, down: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation, self.up, self.down = activation, up, down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", make_fir_filter(), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:  # [N, C, H, W]
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, bias=b)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, None, self.activation, gain=gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, act={self.activation}, "
                f"up={self.up}, down={self.down}")


# Modulated-conv form used in training, per device (`--modconv auto`). CPU: measured with
# benchmarks/train_speed.py, the non-fused form is faster (the grouped conv's per-sample kernels
# cost more than scaling activations). CUDA: the reference trains non-fused as well (grouped
# convolutions' weight gradients are slow there); fused stays the inference default.
TRAINING_FUSED_MODCONV = {"cpu": False, "cuda": False}
# Memory format in training (None: the config's, channels-last in reduced-precision blocks only).
# CPU: channels-last in every block, ~12% less time for G + D at 32x32 (oneDNN convolutions).
TRAINING_CHANNELS_LAST = {"cpu": True}


def training_fused_modconv(device_type: str, choice: str = "auto") -> bool:
    """True for the fused (grouped-conv) form: `choice` fused | nonfused | auto (per device)."""
    if choice == "auto":
        return TRAINING_FUSED_MODCONV.get(device_type, False)
    if choice not in ("fused", "nonfused"):
        raise ConfigError(f"modconv must be auto, fused or nonfused, got {choice!r}")
    return choice == "fused"


def training_channels_last(device_type: str) -> bool | None:
    """Memory format for training on `device_type` (the networks' `channels_last` argument)."""
    return TRAINING_CHANNELS_LAST.get(device_type)


def modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
    up: int = 1, demodulate: bool = True, resample_filter: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution: scale input channels by per-sample styles, convolve,
    optionally demodulate each output channel to unit expected variance, add noise.

    fused=True folds the styles into a per-sample kernel and runs one grouped conv;
    fused=False scales activations before and after a plain conv (same numbers).
    x: [N, I, H, W], weight: [O, I, k, k] (already gain-scaled), styles: [N, I].
    """
    n, o = x.shape[0], weight.shape[0]
    w_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16) and demodulate:
        # Pre-normalise by max norms (cancelled by demodulation) so fp16 cannot overflow.
        k = weight.shape[1] * weight.shape[2] * weight.shape[3]
        weight = weight / (math.sqrt(k) * weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    dcoefs = None
    if fused:
        wm = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
        if demodulate:
            dcoefs = (wm.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
            wm = wm * dcoefs[:, :, None, None, None]
        wm = wm.reshape(n * o, *weight.shape[1:]).to(w_dtype)
        y = x.reshape(1, -1, *x.shape[2:])  # [1, N*I, H, W]
        y = conv2d_resample(y, wm, resample_filter, up=up, groups=n)
        y = y.reshape(n, o, *y.shape[2:])
    else:
        if demodulate:  # sum_{i,k} (w s_i)^2 without materialising per-sample kernels
            wsq = weight.square().sum(dim=[2, 3])  # [O, I]
            dcoefs = (styles.square() @ wsq.t() + 1e-8).rsqrt()  # [N, O]
        y = x * styles.to(w_dtype)[:, :, None, None]
        y = conv2d_resample(y, weight.to(w_dtype), resample_filter, up=up)
        if dcoefs is not None:
            y = y * dcoefs.to(w_dtype)[:, :, None, None]
    if noise is not None:
        y = y + noise.to(y.dtype)
    return y


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling), per-pixel noise, bias, leaky ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
        conv_clamp: float | None = None, use_noise: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.use_noise = use_noise
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.register_buffer("resample_filter", make_fir_filter(), persistent=False)
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused: bool = True,
        gain: float = 1.0,
    ) -> torch.Tensor:  # [N, I, H, W], w: [N, w_dim] -> [N, O, res, res]
        styles = self.affine(w.float())  # [N, I]
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution,
                                device=x.device, dtype=torch.float32) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength  # [res, res], broadcast
        elif noise_mode not in NOISE_MODES:
            raise ConfigError(f"unknown noise_mode {noise_mode!r}; use one of {NOISE_MODES}")
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, noise=noise, up=self.up,
                             resample_filter=self.resample_filter, fused=fused)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, "lrelu", gain=gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, res={self.resolution}, "
                f"up={self.up}")


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation; styles scaled by 1/sqrt(in_channels)."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w.float()) * self.weight_gain  # [N, I]
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)  # [N, img_channels, H, W]


class MinibatchStdLayer(nn.Module):
    """Appends the mean over features of the std over a group of samples as extra channels.

    Groups are samples i, i + N/G, i + 2N/G, ... (G = min(group_size, N)); N must be a
    multiple of G.
    """

    def __init__(self, group_size: int, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, C+F, H, W]
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        f = self.num_channels
        if n % g != 0:
            raise ConfigError(
                f"minibatch-std group {g} does not divide the batch of {n} images; use a batch "
                f"that is a multiple of the mbstd group ({self.group_size}) or smaller than it"
            )
        y = x.reshape(g, n // g, f, c // f, h, w).float()  # [G, M, F, c, H, W]
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, F, c, H, W]
        y = y.mean(dim=[2, 3, 4])  # [M, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
