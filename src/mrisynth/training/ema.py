"""G_ema: the exponential moving average of the generator's weights (Karras et al. 2018, 2020)."""

from __future__ import annotations

import torch

from mrisynth.training.options import ResolvedOptions


@torch.no_grad()
def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, r: ResolvedOptions, nimg: int) -> None:
    """G_ema <- lerp towards G with a half-life of ema_kimg (ramped up early in training)."""
    ema_nimg = r.preset.ema_kimg * 1000
    if r.preset.ema_rampup is not None:
        ema_nimg = min(ema_nimg, nimg * r.preset.ema_rampup)
    beta = 0.5 ** (r.batch / max(ema_nimg, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)
