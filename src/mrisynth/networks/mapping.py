"""StyleGAN2 mapping network z (+ label) -> w, with tracked w_avg and truncation (arXiv 1912.04958).

Also used, with z_dim=0, as the discriminator's label embedding for projection (ADA).
"""

from __future__ import annotations

import torch
from torch import nn

from mrisynth.errors import ConfigError
from mrisynth.networks.layers import FullyConnectedLayer, normalize_2nd_moment


class MappingNetwork(nn.Module):
    """normalise(z) [+ normalise(embed(c))] -> `num_layers` lrelu FC layers (lr_mul 0.01) -> w."""

    def __init__(
        self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
        lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws, self.num_layers = num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = w_dim if c_dim > 0 else 0
        if z_dim + embed_features == 0:
            raise ConfigError("mapping network needs z_dim > 0 or c_dim > 0")
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        features = [z_dim + embed_features] + [w_dim] * num_layers
        for i in range(num_layers):
            layer = FullyConnectedLayer(features[i], features[i + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: torch.Tensor | None, c: torch.Tensor | None, truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None, update_emas: bool = False,
    ) -> torch.Tensor:
        """z: [N, z_dim], c: [N, c_dim] -> ws [N, num_ws, w_dim] (or [N, w_dim] if num_ws None).

        truncation: w = w_avg + psi * (w - w_avg), for the first `truncation_cutoff` ws only
        when a cutoff is given. update_emas: move w_avg towards this batch's mean (training).
        """
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ConfigError(f"expected z of shape [N, {self.z_dim}], got "
                                  f"{None if z is None else list(z.shape)}")
            parts.append(normalize_2nd_moment(z.float()))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ConfigError(f"expected labels c of shape [N, {self.c_dim}], got "
                                  f"{None if c is None else list(c.shape)}")
            parts.append(normalize_2nd_moment(self.embed(c.float())))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # [N, z_dim + embed]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)  # [N, w_dim]

        if update_emas and hasattr(self, "w_avg"):
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            if not hasattr(self, "w_avg"):
                raise ConfigError("truncation needs a mapping network that tracks w_avg")
            cutoff = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            head = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
            x = torch.cat([head, x[:, cutoff:]], dim=1)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
