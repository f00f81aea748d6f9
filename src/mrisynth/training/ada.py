"""The ADA controller (Karras et al. 2020, arXiv 2006.06676, sec. 3): the augmentation
probability p follows the sign of the discriminator's outputs on augmented reals.

It only reads D's outputs and sets `AugmentPipe.p`; the transforms are in `training.augment`
(which re-exports this class, so `from mrisynth.training.augment import AdaController` works).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch

from mrisynth.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from mrisynth.training.augment import AugmentPipe


class AdaController:
    """Adjusts the augmentation probability p from the sign of D's outputs on augmented reals.

    Every `interval` D steps: `r_t = mean(sign(D(real_aug)))` over the accumulated outputs and
    `p += sign(r_t - target) * batch_size * interval / (speed_kimg * 1000)`, clamped to
    `[0, p_max]` (`p_max=None`: no upper bound, as the original; values past 1 then leak
    augmentations into the generator's output, so a bound such as 0.8-1.0 is advisable).

    State for exact resume: `state_dict()` gives the pending sums as JSON numbers (p itself lives
    in `AugmentPipe.p`). With several processes, all-reduce `sums` (a float64 tensor [2]:
    sum of signs, number of outputs) before the update, e.g. via `maybe_update(all_reduce=...)`.
    """

    def __init__(
        self,
        target: float = 0.6,
        interval: int = 4,
        speed_kimg: float = 500.0,
        p_max: float | None = None,
    ) -> None:
        if not -1.0 <= target <= 1.0:
            raise ConfigError(f"ADA target must lie in [-1, 1], got {target}")
        if interval < 1:
            raise ConfigError(f"ADA interval must be >= 1 D steps, got {interval}")
        if not speed_kimg > 0:
            raise ConfigError(f"ADA speed must be > 0 kimg, got {speed_kimg}")
        if p_max is not None and not p_max >= 0:
            raise ConfigError(f"ADA p_max must be >= 0 (or None for no bound), got {p_max}")
        self.target = float(target)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)
        self.p_max = None if p_max is None else float(p_max)
        self._sums: torch.Tensor | None = None  # [2] float64: sum of signs, count
        self._device = torch.device("cpu")  # where the last outputs were (for NCCL all-reduce)
        self.last_r_t: float | None = None

    @property
    def sums(self) -> torch.Tensor:
        """Pending (sum of signs, number of outputs) as float64 [2]; all-reduce it across ranks."""
        if self._sums is None:
            return torch.zeros(2, dtype=torch.float64, device=self._device)
        return self._sums

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add one D step's outputs on augmented reals (no host sync; gradients are ignored)."""
        x = real_logits.detach().flatten().to(torch.float64)
        self._device = x.device
        step = torch.stack([torch.sign(x).sum(), torch.tensor(float(x.numel()), device=x.device)])
        self._sums = step if self._sums is None else self._sums.to(x.device) + step

    def maybe_update(
        self,
        pipe: AugmentPipe,
        batch_size: int,
        step: int,
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> float | None:
        """Update `pipe.p` when `step` (D steps done, counting from 1) is a multiple of interval.

        `batch_size` is the total batch over all processes. `all_reduce`, when given, must
        return the sum of its argument over all ranks (every rank must call this at the same
        steps). Returns r_t when p was updated, else None; the sums are reset after an update.
        """
        if step % self.interval != 0:
            return None
        sums = self.sums
        if all_reduce is not None:
            sums = all_reduce(sums)
        self._sums = None
        total, count = (float(v) for v in sums.detach().cpu().tolist())
        if count <= 0:
            return None
        r_t = total / count
        adjust = math.copysign(1.0, r_t - self.target) if r_t != self.target else 0.0
        adjust *= batch_size * self.interval / (self.speed_kimg * 1000)
        new_p = max(float(pipe.p) + adjust, 0.0)
        if self.p_max is not None:
            new_p = min(new_p, self.p_max)
        pipe.p.fill_(new_p)
        self.last_r_t = r_t
        return r_t

    def state_dict(self) -> dict[str, float]:
        """Pending sums as plain JSON numbers (exact: they are integer-valued)."""
        total, count = (float(v) for v in self.sums.detach().cpu().tolist())
        return {"sum_signs": total, "count": count}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        """Restore the pending sums saved by `state_dict`."""
        try:
            values = [float(state["sum_signs"]), float(state["count"])]
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"ADA controller state needs numbers 'sum_signs' and 'count', got {state!r}"
            ) from err
        self._sums = None if values[1] == 0 else torch.tensor(values, dtype=torch.float64)
