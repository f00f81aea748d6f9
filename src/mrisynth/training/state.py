"""The training state that snapshots hold: the loop's counters, and how the optimisers, p, ADA
sums, pl_mean and RNG states are written to and restored from a snapshot for an exact resume."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from mrisynth.errors import CheckpointError, MrisynthError
from mrisynth.training import checkpoint
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


def check_finite(G: torch.nn.Module, D: torch.nn.Module, run_dir: Path) -> None:
    """Refuse to snapshot broken weights (the previous snapshot stays the latest good one)."""
    for name, module in (("G", G), ("D", D)):
        if not all(torch.isfinite(p).all() for p in module.parameters()):
            raise TrainingDiverged(f"{run_dir}: {name} weights are not finite; snapshot skipped")


# ---- Exact-resume state -------------------------------------------------------------------------


def save(run_dir, kimg, st, r, G, D, G_ema, opt_G, opt_D, pipe, loss, rng, ada_states) -> Path:
    """Write the snapshot of this tick with everything an exact resume needs."""
    tensors_G, meta_G = checkpoint.optimizer_to_tensors(opt_G, "opt_G")
    tensors_D, meta_D = checkpoint.optimizer_to_tensors(opt_D, "opt_D")
    tensors = {**tensors_G, **tensors_D}
    if pipe is not None:
        tensors.update(checkpoint.add_prefix(pipe.state_dict(), "augment_pipe"))
    rng_json = []
    for rank, state in enumerate(rng):
        tensors[f"rng.rank{rank}.torch"] = state["torch"]
        if "cuda" in state:
            tensors[f"rng.rank{rank}.cuda"] = state["cuda"]
        rng_json.append({"numpy": state["numpy"], "python": state["python"]})
    loop = dataclasses.asdict(st)
    loop["tick"] = st.tick + 1  # the tick a resumed run starts with
    state = {
        "kimg": int(kimg),
        "nimg": st.nimg,
        "tick": st.tick,
        "loop": loop,
        "augment_p": float(pipe.p) if pipe is not None else 0.0,
        "ada": ada_states,
        "pl_mean": float(loss.pl_mean),
        "opt_G": meta_G,
        "opt_D": meta_D,
        "rng": rng_json,
        "world_size": len(rng),
        "dataset_hash": r.dataset_hash,
        "options": r.to_dict()["user"],
        "resolved": r.to_dict(),
    }
    path = run_dir / f"{checkpoint.snapshot_stem(st.nimg)}.safetensors"
    return checkpoint.save_snapshot(path, G=G, D=D, G_ema=G_ema, state=state, tensors=tensors)


def restore(snap, opt_G, opt_D, pipe, ada, loss, rank: int, world: int) -> LoopState:
    """Put the optimisers, p, ADA sums, pl_mean and RNG back as they were at the snapshot."""
    try:
        return _restore(snap, opt_G, opt_D, pipe, ada, loss, rank, world)
    except (CheckpointError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
        why = str(e).removeprefix(f"{snap.info.path}: ")
        raise CheckpointError(f"{snap.info.path}: cannot restore training state ({why})") from None


def _restore(snap, opt_G, opt_D, pipe, ada, loss, rank: int, world: int) -> LoopState:
    s = snap.state
    checkpoint.optimizer_from_tensors(opt_G, snap.tensors, s["opt_G"], "opt_G")
    checkpoint.optimizer_from_tensors(opt_D, snap.tensors, s["opt_D"], "opt_D")
    if pipe is not None:
        saved_p = snap.module_state("augment_pipe").get("p")
        pipe.p.copy_(saved_p if saved_p is not None else torch.tensor(s.get("augment_p", 0.0)))
    loss.pl_mean.fill_(float(s.get("pl_mean", 0.0)))
    same_world = s.get("world_size") == world
    ada_states = s.get("ada") or []
    if ada is not None and ada_states and ada_states[0] is not None:
        if same_world:
            ada.load_state_dict(ada_states[rank])
        elif rank == 0:
            ada.load_state_dict(ada_states[0])
    if same_world:
        restore_rng(s["rng"][rank], snap.tensors, rank)
    else:
        log.warning(
            "resuming with %d processes instead of %s: RNG streams restart (not bitwise "
            "identical to an uninterrupted run)",
            world,
            s.get("world_size"),
        )
    return LoopState(**s["loop"])
