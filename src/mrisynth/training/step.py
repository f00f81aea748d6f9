"""One optimisation step of StyleGAN2-ADA: the G/D phases, gradient accumulation over
micro-batches, the non-finite-loss guard and the Adam update, as the reference does them.

Nothing here waits for the device: whether a phase's losses were finite stays a device tensor
that the fused Adam kernel reads (`found_inf`) to skip the update, and the loop reads the guard's
counters once per tick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch

from mrisynth.training import distributed
from mrisynth.training.losses import StyleGAN2Loss
from mrisynth.training.stats import TickStats

if TYPE_CHECKING:
    from mrisynth.training.augment import AdaController

__all__ = ["NonFiniteGuard", "Phase", "compile_main", "phases_at", "run_phase"]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One optimiser update: `name` is a StyleGAN2Loss phase; `interval` is its lazy interval,
    which is also the loss gain (micro-batches are summed, as in the reference)."""

    name: str
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int


def phases_at(
    step: int,
    G: torch.nn.Module,
    D: torch.nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    *,
    pl_weight: float,
    gamma: float,
    g_reg: int,
    d_reg: int,
) -> list[Phase]:
    """The phases of optimisation step `step` (regularisers every g_reg / d_reg steps)."""
    phases = [Phase("Gmain", G, opt_G, 1)]
    if pl_weight > 0 and step % g_reg == 0:
        phases.append(Phase("Greg", G, opt_G, g_reg))
    phases.append(Phase("Dmain", D, opt_D, 1))
    if gamma > 0 and step % d_reg == 0:
        phases.append(Phase("Dreg", D, opt_D, d_reg))
    return phases


def adam_step(opt: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """opt.step() unless `skip` (a 0/1 device tensor) is set; no host sync with fused Adam.

    Fused Adam (`training.build.lazy_adam`) reads the flag in its kernel; optimisers restored
    from snapshots of older versions may be unfused and check on the host instead.
    """
    if all(g.get("fused") for g in opt.param_groups):
        opt.grad_scale, opt.found_inf = None, skip.float()  # read by the fused kernel
        try:
            opt.step()
        finally:
            del opt.grad_scale, opt.found_inf
    elif float(skip) == 0:
        opt.step()


class NonFiniteGuard:
    """Counts, on the device, steps whose losses were not finite (their updates are skipped)."""

    def __init__(self, device: torch.device, bad_steps: int = 0) -> None:
        self.run = torch.full([], float(bad_steps), device=device)  # consecutive bad steps
        self.worst = self.run.clone()  # longest run since the last read
        self.in_tick = torch.zeros([], device=device)

    def record(self, step_bad: torch.Tensor) -> None:
        """step_bad: 0/1 tensor, 1 when any phase of the step was skipped."""
        self.run = (self.run + 1) * step_bad
        self.worst = torch.maximum(self.worst, self.run)
        self.in_tick = self.in_tick + step_bad

    def read(self) -> tuple[int, int, int]:
        """(bad steps since the last read, current run, longest run); one host sync."""
        bad, run, worst = (int(v) for v in torch.stack([self.in_tick, self.run, self.worst]))
        self.in_tick = torch.zeros_like(self.in_tick)
        self.worst = self.run.clone()
        return bad, run, worst


def run_phase(
    phase: Phase,
    loss: StyleGAN2Loss,
    reals: Iterable[tuple[torch.Tensor, torch.Tensor]],
    gen_inputs: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    stats: TickStats,
    stat_names: set[str],
    ada: AdaController | None = None,
) -> torch.Tensor:
    """Accumulate the phase's gradients over the micro-batches and update; returns the 0/1
    device flag "this phase's losses were not finite (on some rank), update skipped"."""
    phase.opt.zero_grad(set_to_none=True)
    phase.module.requires_grad_(True)
    finite = None
    for real_img, real_c in reals:
        gen_z, gen_c = gen_inputs()
        values = loss.accumulate_gradients(
            phase.name, real_img, real_c, gen_z, gen_c, gain=phase.interval
        )
        for v in values.values():
            ok = torch.isfinite(v).all()
            finite = ok if finite is None else finite & ok
        if ada is not None and "Loss/signs/real" in values:
            ada.accumulate(values["Loss/signs/real"])
        stats.add_dict(values)
        stat_names.update(values)
    params = list(phase.module.parameters())
    # The reference reaches every parameter in every phase (`output * 0` terms), so Adam's
    # moments and step count advance for the ones the phase does not use (toRGB biases in the
    # path-length phase, D's last bias in R1): give those an explicit zero gradient.
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    distributed.all_reduce_gradients(params)
    phase.module.requires_grad_(False)
    device = params[0].device
    bad = torch.zeros([], device=device) if finite is None else (~finite).float()
    bad = distributed.all_reduce_sum(bad).clamp(max=1)  # all ranks skip together
    for p in params:
        torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
    adam_step(phase.opt, bad)
    return bad


def compile_main(
    G: torch.nn.Module, D: torch.nn.Module, backend: str = "inductor"
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """torch.compile'd G.synthesis and D for the main phases (`--compile`).

    Random numbers (noise inputs) are drawn as in eager mode so that a compiled run follows the
    same random stream as an eager one and resumes the same way. `backend` other than inductor
    is for tests (aot_eager: the same graph capture and autograd, compiled in seconds).
    """
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    return (
        torch.compile(G.synthesis, backend=backend, dynamic=False),
        torch.compile(D, backend=backend, dynamic=False),
    )
