"""The schema of a snapshot's training state, checked before a resume touches anything.

A snapshot's state comes from a file the user hands us (and may have edited): every value the
loop sizes, indexes or counts with is checked here for type and range, so a tampered file gives
one error naming it, never a traceback, a huge allocation or a wiped `stats.jsonl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mrisynth import untrusted as u
from mrisynth.errors import CheckpointError
from mrisynth.training.options import check_saved_options

if TYPE_CHECKING:
    from mrisynth.training.checkpoint import Snapshot

MAX_NIMG = 10**11  # 100 million kimg: far beyond any run
MAX_WORLD = 4096
LOOP_KEYS = ("nimg", "step", "tick", "data_batches", "bad_steps")
# What a full resume reads besides the counters.
RESUME_KEYS = ("nimg", "loop", "options", "opt_G", "opt_D", "rng", "world_size")


def check_state(state: Any) -> dict[str, Any]:
    """Check the state of any snapshot (also those of tests and other tools: only kimg needed)."""
    s = u.mapping(state, "state")
    kimg = u.integer(s.get("kimg"), "state.kimg", 0, MAX_NIMG // 1000)
    if "nimg" in s:
        nimg = u.integer(s["nimg"], "state.nimg", 0, MAX_NIMG)
        if nimg // 1000 != kimg:
            raise u.BadValue(f"state.kimg {kimg} disagrees with state.nimg {nimg}")
    u.optional(u.integer, s.get("tick"), "state.tick", 0, MAX_NIMG)
    u.optional(u.number, s.get("augment_p"), "state.augment_p", 0.0, 1.0)
    u.optional(u.number, s.get("pl_mean"), "state.pl_mean", 0.0, 1e9)
    u.optional(u.text, s.get("dataset_hash"), "state.dataset_hash", 128)
    if "world_size" in s:
        u.integer(s["world_size"], "state.world_size", 1, MAX_WORLD)
    if "loop" in s:
        _check_loop(s["loop"], s.get("nimg"))
    if s.get("ada") is not None:
        for i, ada in enumerate(u.sequence(s["ada"], "state.ada", 1, MAX_WORLD)):
            if ada is not None:
                a = u.mapping(ada, f"state.ada[{i}]")
                u.number(a.get("sum_signs"), f"state.ada[{i}].sum_signs", -1e15, 1e15)
                u.number(a.get("count"), f"state.ada[{i}].count", 0, 1e15)
    for name in ("opt_G", "opt_D"):
        if name in s:
            _check_optimizer(s[name], f"state.{name}")
    if "rng" in s:
        for i, rng in enumerate(u.sequence(s["rng"], "state.rng", 1, MAX_WORLD)):
            _check_rng(rng, f"state.rng[{i}]")
    if "options" in s:
        check_saved_options(u.mapping(s["options"], "state.options"), "state.options")
    return s


def check_resume_state(state: dict[str, Any]) -> None:
    """A full resume also needs every counter, the optimisers, the RNG and the options."""
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise u.BadValue(f"state lacks {', '.join(missing)} (needed to continue the run)")
    if len(state["rng"]) != state["world_size"]:
        raise u.BadValue("state.rng must hold one entry per process (state.world_size)")


def check_resumable(snap: Snapshot) -> None:
    """`check_resume_state` of a loaded `checkpoint.Snapshot`, as one error naming its file."""
    try:
        check_resume_state(snap.state)
    except u.BadValue as e:
        raise CheckpointError(f"{snap.info.path}: cannot continue this run ({e})") from None


def _check_loop(loop: Any, nimg: Any) -> None:
    lp = u.mapping(loop, "state.loop")
    if set(lp) != set(LOOP_KEYS):
        raise u.BadValue(f"state.loop must have exactly the keys {', '.join(LOOP_KEYS)}")
    for key in LOOP_KEYS:
        u.integer(lp[key], f"state.loop.{key}", 0, MAX_NIMG)
    if nimg is not None and lp["nimg"] != nimg:
        raise u.BadValue(f"state.loop.nimg {lp['nimg']} disagrees with state.nimg {nimg}")


def _check_optimizer(meta: Any, where: str) -> None:
    m = u.mapping(meta, where)
    for i, group in enumerate(u.sequence(m.get("param_groups"), f"{where}.param_groups", 1, 64)):
        g = u.mapping(group, f"{where}.param_groups[{i}]")
        at = f"{where}.param_groups[{i}]"
        u.number(g.get("lr"), f"{at}.lr", 0.0, 10.0)
        u.number(g.get("eps"), f"{at}.eps", 0.0, 1.0)
        betas = u.sequence(g.get("betas"), f"{at}.betas", 2, 2)
        for j, beta in enumerate(betas):
            u.number(beta, f"{at}.betas[{j}]", 0.0, 1.0)
        for j, p in enumerate(u.sequence(g.get("params"), f"{at}.params", 0, 100_000)):
            u.integer(p, f"{at}.params[{j}]", 0, 10**6)
        for key, value in g.items():
            if key not in ("lr", "eps", "betas", "params"):
                u.scalar(value, f"{at}.{key}")
    scalars = u.mapping(m.get("scalars", {}), f"{where}.scalars")
    for idx, extra in scalars.items():
        if not (idx.isdigit() and len(idx) <= 6):
            raise u.BadValue(f"{where}.scalars keys must be parameter indices, got {idx[:20]!r}")
        for key, value in u.mapping(extra, f"{where}.scalars.{idx}").items():
            u.scalar(value, f"{where}.scalars.{idx}.{key}")


def _check_rng(rng: Any, where: str) -> None:
    r = u.mapping(rng, where)
    np_state = u.sequence(r.get("numpy"), f"{where}.numpy", 5, 5)
    u.choice(np_state[0], f"{where}.numpy[0]", ("MT19937",))
    for j, key in enumerate(u.sequence(np_state[1], f"{where}.numpy[1]", 624, 624)):
        u.integer(key, f"{where}.numpy[1][{j}]", 0, 2**32 - 1)
    # Older snapshots stored the position and the gauss flag as JSON floats.
    for j, hi in ((2, 624), (3, 1)):
        if u.number(np_state[j], f"{where}.numpy[{j}]", 0, hi) % 1:
            raise u.BadValue(f"{where}.numpy[{j}] must be a whole number, got {np_state[j]}")
    u.number(np_state[4], f"{where}.numpy[4]")
    py_state = u.sequence(r.get("python"), f"{where}.python", 3, 3)
    u.integer(py_state[0], f"{where}.python[0]", 0, 16)
    for j, key in enumerate(u.sequence(py_state[1], f"{where}.python[1]", 625, 625)):
        u.integer(key, f"{where}.python[1][{j}]", 0, 2**32 - 1)
    u.optional(u.number, py_state[2], f"{where}.python[2]")
