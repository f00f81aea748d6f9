"""StyleGAN2 projection (Karras et al. 2020, arXiv 1912.04958, section 5): find the w (or one w
per layer, "w+") and the per-layer noise maps for which the generator reproduces a target.

As in the paper's projector: start from the mean w of many mapped random z, optimise with Adam
(betas 0.9, 0.999) under a learning rate that ramps up over the first 5 % of the steps and down
(cosine) over the last 25 %, add Gaussian noise to w whose scale (5 % of the w spread) falls
quadratically to 0 over the first 75 %, and optimise the noise maps too, normalised to zero mean
and unit variance after every step and kept from carrying image content by a regulariser of
their autocorrelation (weight 1e5). Constants are the paper's; see `ProjectionOptions`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mrisynth.errors import ConfigError
from mrisynth.generate.sampling import class_labels
from mrisynth.projection.losses import ImageDistance, LossWeights, noise_regularization

MAX_STEPS = 100_000
MAX_W_SAMPLES = 1_000_000
W_SAMPLES_SEED = 123  # the mean w is the same for every target and every run


@dataclass(frozen=True)
class ProjectionOptions:
    """How to project; defaults are the StyleGAN2 paper's projector."""

    num_steps: int = 1000
    w_plus: bool = False  # one w per synthesis layer instead of one shared w
    initial_lr: float = 0.1
    initial_noise_factor: float = 0.05  # w noise, as a fraction of the spread of w
    lr_rampup: float = 0.05  # fractions of num_steps
    lr_rampdown: float = 0.25
    noise_ramp: float = 0.75
    noise_reg_weight: float = 1e5
    w_avg_samples: int = 10_000
    seed: int = 0  # initial noise maps and w noise
    weights: LossWeights = field(default_factory=LossWeights)

    def check(self) -> None:
        """ConfigError for values no projection can use (NaN, 0 steps, negative weights)."""
        _check_int("--steps", self.num_steps, 1, MAX_STEPS)
        _check_int("w_avg_samples", self.w_avg_samples, 2, MAX_W_SAMPLES)
        _check_int("--seed", self.seed, 0, 2**32 - 1)
        for name, value, lo, hi in (
            ("initial_lr", self.initial_lr, 0.0, 10.0),
            ("initial_noise_factor", self.initial_noise_factor, 0.0, 10.0),
            ("lr_rampup", self.lr_rampup, 0.0, 1.0),
            ("lr_rampdown", self.lr_rampdown, 0.0, 1.0),
            ("noise_ramp", self.noise_ramp, 0.0, 1.0),
            ("noise_reg_weight", self.noise_reg_weight, 0.0, 1e12),
            ("pixel weight", self.weights.pixel, 0.0, 1e6),
            ("msssim weight", self.weights.msssim, 0.0, 1e6),
            ("vgg weight", self.weights.vgg, 0.0, 1e6),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ConfigError(f"{name} must be a finite number in [{lo:g}, {hi:g}], "
                                  f"got {value}")
        w = self.weights
        if w.pixel + w.msssim + w.vgg <= 0:
            raise ConfigError("every loss weight is 0: nothing to minimise")


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a whole number in {lo}..{hi}, got {value!r}")


@dataclass(frozen=True)
class LatentStats:
    """Mean and spread of w over random z: the start point and the w-noise scale."""

    w_avg: torch.Tensor  # [1, w_dim]
    w_std: float  # sqrt(mean squared distance of w from w_avg)


@torch.no_grad()
def latent_stats(
    G: torch.nn.Module, num_samples: int, class_idx: int | None, device: torch.device
) -> LatentStats:
    """Map `num_samples` seeded z (and the class, for conditional G) to w; mean and spread."""
    z = np.random.RandomState(W_SAMPLES_SEED).randn(num_samples, int(G.z_dim))
    c = class_labels(int(G.c_dim), class_idx, num_samples).to(device)
    ws = [
        G.mapping(torch.from_numpy(zb).float().to(device), c[i : i + len(zb)])[:, 0]
        for i, zb in ((i, z[i : i + 1000]) for i in range(0, num_samples, 1000))
    ]
    w = torch.cat(ws)  # [num_samples, w_dim]
    w_avg = w.mean(dim=0, keepdim=True)
    w_std = float(((w - w_avg).square().sum() / num_samples).sqrt())
    if not math.isfinite(w_std):
        raise ConfigError("the generator maps random z to NaN or infinite w; cannot project")
    return LatentStats(w_avg, w_std)


@dataclass
class ProjectionResult:
    """The optimised latent (ws [num_ws, w_dim]; w_plus says whether the rows may differ),
    the noise maps by layer name, the final image [1, C, H, W] and one curve row per step."""

    ws: torch.Tensor
    w_plus: bool
    noise: dict[str, torch.Tensor]
    image: torch.Tensor
    curve: list[dict[str, float]]


def learning_rate(t: float, opts: ProjectionOptions) -> float:
    """Cosine ramp-down over the last `lr_rampdown`, linear ramp-up over the first `lr_rampup`
    of the run; t = step / num_steps."""
    ramp = min(1.0, (1.0 - t) / opts.lr_rampdown) if opts.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if opts.lr_rampup > 0:
        ramp *= min(1.0, t / opts.lr_rampup)
    return opts.initial_lr * ramp


def w_noise_scale(t: float, w_std: float, opts: ProjectionOptions) -> float:
    if opts.noise_ramp <= 0:
        return 0.0
    return w_std * opts.initial_noise_factor * max(0.0, 1.0 - t / opts.noise_ramp) ** 2


def noise_layers(G: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Synthesis layers with a constant noise input, by name (the noise maps to optimise)."""
    return {
        name: m
        for name, m in G.synthesis.named_modules()
        if getattr(m, "use_noise", False) and hasattr(m, "noise_const")
    }


def project(
    G: torch.nn.Module,
    target: torch.Tensor,
    stats: LatentStats,
    opts: ProjectionOptions,
    vgg: torch.nn.Module | None = None,
    on_step: Callable[[int], None] | None = None,
) -> ProjectionResult:
    """Project one target image, uint8 [C, H, W] matching G's output, into G's latent space.

    G itself is left untouched (a copy's noise buffers are optimised). Deterministic for a
    given seed on one device.
    """
    opts.check()
    device = stats.w_avg.device
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    gen = torch.Generator(device=device).manual_seed(opts.seed)
    goal = target.to(device=device, dtype=torch.float32)[None] / 127.5 - 1  # [1, C, H, W]
    distance = ImageDistance(goal, opts.weights, vgg)

    layers = noise_layers(G)
    noise = {}
    for name, layer in layers.items():
        buf = torch.randn(layer.noise_const.shape, generator=gen, device=device)
        layer.noise_const = noise[name] = buf.requires_grad_(True)  # a leaf the layer reads
    rows = G.num_ws if opts.w_plus else 1
    w_opt = stats.w_avg.repeat(rows, 1).clone().requires_grad_(True)  # [rows, w_dim]
    optimizer = torch.optim.Adam([w_opt, *noise.values()], betas=(0.9, 0.999), lr=opts.initial_lr)

    curve = []
    for step in range(opts.num_steps):
        t = step / opts.num_steps
        lr = learning_rate(t, opts)
        for group in optimizer.param_groups:
            group["lr"] = lr
        w_noise = torch.randn(w_opt.shape, generator=gen, device=device)
        w = w_opt + w_noise * w_noise_scale(t, stats.w_std, opts)
        img = G.synthesis(_broadcast(w, G.num_ws), noise_mode="const")  # [1, C, H, W]
        loss, terms = distance(img)
        reg = noise_regularization(list(noise.values())) if noise else torch.zeros(())
        total = loss + opts.noise_reg_weight * reg
        if not torch.isfinite(total):
            raise ConfigError(f"projection loss became {float(total)} at step {step}; "
                              "lower the learning rate or check the network")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        with torch.no_grad():  # unit-variance noise maps, as the paper's projector keeps them
            for buf in noise.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
        curve.append({"step": step, "loss": float(total.detach()), "lr": lr, **terms,
                      "noise_reg": float(reg.detach())})  # fmt: skip
        if on_step is not None:
            on_step(step)

    with torch.no_grad():
        ws = _broadcast(w_opt.detach(), G.num_ws)
        image = G.synthesis(ws, noise_mode="const")
    noise_out = {k: v.detach().clone() for k, v in noise.items()}
    return ProjectionResult(ws[0].clone(), opts.w_plus, noise_out, image, curve)


def _broadcast(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """[1, w_dim] -> [1, num_ws, w_dim]; [num_ws, w_dim] (w+) -> [1, num_ws, w_dim]."""
    return w.expand(num_ws, -1)[None] if w.shape[0] == 1 else w[None]


@torch.no_grad()
def synthesize(
    G: torch.nn.Module, ws: torch.Tensor, noise: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Re-render a projection: ws [num_ws, w_dim] with its noise maps -> image [1, C, H, W]."""
    G = copy.deepcopy(G).eval()
    layers = noise_layers(G)
    if set(layers) != set(noise):
        raise ConfigError("the latent's noise maps do not match this generator's layers")
    for name, layer in layers.items():
        if tuple(noise[name].shape) != tuple(layer.noise_const.shape):
            raise ConfigError(f"noise map {name} has shape {list(noise[name].shape)}, the "
                              f"generator's is {list(layer.noise_const.shape)}")
        layer.noise_const = noise[name].to(layer.noise_const)
    return G.synthesis(ws.to(layer_device(G))[None], noise_mode="const")


def layer_device(G: torch.nn.Module) -> torch.device:
    return next(G.parameters()).device
