"""The training state: one object owning what trains (G, D, G_ema, optimisers, augmentation and
ADA, the loss with its pl_mean) and the loop's counters, with `save`/`restore` to and from a
snapshot so that a resumed run continues exactly. `training.build.training_state` makes it."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from mrisynth.errors import CheckpointError, MrisynthError
from mrisynth.training import checkpoint
from mrisynth.training.optim_state import optimizer_from_tensors, optimizer_to_tensors
from mrisynth.training.options import ResolvedOptions
from mrisynth.training.rng import restore_rng

log = logging.getLogger(__name__)


class TrainingDiverged(MrisynthError):
    """Too many consecutive steps with non-finite losses; the last good snapshot is kept."""


@dataclasses.dataclass
class LoopState:
    """Counters of the loop; with the snapshot's tensors, all a resumed run needs."""

    nimg: int = 0  # real images shown so far (all processes)
    step: int = 0  # optimisation steps done
    tick: int = 0  # index of the tick in progress
    data_batches: int = 0  # global micro-batches consumed from the sampler
    bad_steps: int = 0  # consecutive steps with non-finite losses


@dataclasses.dataclass
class TrainingState:
    """Everything that changes while training, and what a snapshot holds of it."""

    options: ResolvedOptions
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    augment_pipe: Any  # AugmentPipe | None (None with --aug noaug)
    ada: Any  # AdaController | None (only with --aug ada)
    loss: Any  # StyleGAN2Loss (holds pl_mean)
    counters: LoopState = dataclasses.field(default_factory=LoopState)

    def num_params(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in m.parameters()) for name, m in self._nets()}

    def _nets(self) -> tuple[tuple[str, torch.nn.Module], ...]:
        return (("G", self.G), ("D", self.D))

    def check_finite(self, run_dir: Path) -> None:
        """Refuse to snapshot broken weights (the previous snapshot stays the latest good one)."""
        for name, module in self._nets():
            if not all(torch.isfinite(p).all() for p in module.parameters()):
                raise TrainingDiverged(f"{run_dir}: {name} weights not finite; snapshot skipped")

    def save(self, run_dir: Path, rng: list[dict], ada_states: list) -> Path:
        """Write this tick's snapshot: every process's RNG states (`rng`) and ADA sums
        (`ada_states`) gathered by the caller, the rest from this object."""
        tensors_G, meta_G = optimizer_to_tensors(self.opt_G, "opt_G")
        tensors_D, meta_D = optimizer_to_tensors(self.opt_D, "opt_D")
        tensors = {**tensors_G, **tensors_D}
        if self.augment_pipe is not None:
            tensors.update(checkpoint.add_prefix(self.augment_pipe.state_dict(), "augment_pipe"))
        rng_json = []
        for rank, state in enumerate(rng):
            tensors[f"rng.rank{rank}.torch"] = state["torch"]
            if "cuda" in state:
                tensors[f"rng.rank{rank}.cuda"] = state["cuda"]
            rng_json.append({"numpy": state["numpy"], "python": state["python"]})
        st, r = self.counters, self.options
        loop = dataclasses.asdict(st)
        loop["tick"] = st.tick + 1  # the tick a resumed run starts with
        state = {
            "kimg": st.nimg // 1000,
            "nimg": st.nimg,
            "tick": st.tick,
            "loop": loop,
            "augment_p": float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0,
            "ada": ada_states,
            "pl_mean": float(self.loss.pl_mean),
            "opt_G": meta_G,
            "opt_D": meta_D,
            "rng": rng_json,
            "world_size": len(rng),
            "dataset_hash": r.dataset_hash,
            "options": r.to_dict()["user"],
            "resolved": r.to_dict(),
        }
        path = run_dir / f"{checkpoint.snapshot_stem(st.nimg)}.safetensors"
        return checkpoint.save_snapshot(
            path, G=self.G, D=self.D, G_ema=self.G_ema, state=state, tensors=tensors
        )

    def restore(self, snap: checkpoint.Snapshot, rank: int, world: int) -> None:
        """Put optimisers, p, ADA sums, pl_mean, RNG and counters back as at the snapshot
        (the weights were loaded when the networks were built)."""
        try:
            self._restore(snap, rank, world)
        except (CheckpointError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            why = str(e).removeprefix(f"{snap.info.path}: ")
            raise CheckpointError(
                f"{snap.info.path}: cannot restore training state ({why})"
            ) from None

    def _restore(self, snap: checkpoint.Snapshot, rank: int, world: int) -> None:
        s = snap.state
        optimizer_from_tensors(self.opt_G, snap.tensors, s["opt_G"], "opt_G")
        optimizer_from_tensors(self.opt_D, snap.tensors, s["opt_D"], "opt_D")
        if self.augment_pipe is not None:
            saved_p = snap.module_state("augment_pipe").get("p")
            p = saved_p if saved_p is not None else torch.tensor(s.get("augment_p", 0.0))
            self.augment_pipe.p.copy_(p)
        self.loss.pl_mean.fill_(float(s.get("pl_mean", 0.0)))
        same_world = s.get("world_size") == world
        ada_states = s.get("ada") or []
        if self.ada is not None and ada_states and ada_states[0] is not None:
            if same_world:
                self.ada.load_state_dict(ada_states[rank])
            elif rank == 0:
                self.ada.load_state_dict(ada_states[0])
        if same_world:
            restore_rng(s["rng"][rank], snap.tensors, rank)
        else:
            log.warning(
                "resuming with %d processes instead of %s: RNG streams restart (not bitwise "
                "identical to an uninterrupted run)",
                world,
                s.get("world_size"),
            )
        self.counters = LoopState(**s["loop"])
