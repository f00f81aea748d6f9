"""Training snapshots: one safetensors file per snapshot, committed by one atomic rename.

`network-snapshot-KKKKKK[.FFF].safetensors` (kimg, plus 3 decimals when the snapshot was taken
at a fraction of a kimg, so ticks under 1 kimg never reuse a name) holds every tensor (G, D,
G_ema, optimiser moments, augment buffers, RNG states; key-prefixed `G.`, `D.`, `G_ema.`, ...)
and, in its header metadata, the training state and the networks' configs as JSON plus a sha256
over all of it. Written to a temp file, fsynced and renamed, so a kill at any instant leaves
either no snapshot or a complete one. A `.json` copy of the state is written after it for
people and tools that read JSON; it is a convenience, never trusted when loading.

Snapshots of format 1 (before the state moved into the weights file) are still read: there the
`.json` sidecar was the commit marker and holds the size and sha256 of the weights file.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mrisynth import atomic
from mrisynth.errors import CheckpointError
from mrisynth.networks.serialization import safetensors_call
from mrisynth.training.kimg import kimg_number
from mrisynth.training.network_path import EXPECTED, check_network_path, check_run_has_snapshots
from mrisynth.training.snapshot_format import (
    FORMAT,
    FORMAT_VERSION,
    digest,
    header,
    parsed,
    read_metadata,
    read_sidecar_v1,
    texts,
)

log = logging.getLogger(__name__)

_SNAPSHOT_RE = re.compile(r"^network-snapshot-(\d{6,})(?:\.(\d{3}))?\.safetensors$")
_T = TypeVar("_T")


@dataclass(frozen=True)
class SnapshotInfo:
    """Where a snapshot came from: enough for metrics and reports to label their results."""

    path: Path  # the .safetensors file
    kimg: int | float  # kimg with the names' 3 decimals when fractional (training.kimg)
    run_dir: Path
    dataset_hash: str | None
    nimg: int | None = None  # images shown, when the snapshot records it


@dataclass
class Snapshot:
    """A loaded snapshot: every tensor by prefixed key, the JSON state, and network configs."""

    info: SnapshotInfo
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    configs: dict[str, dict] = field(default_factory=dict)  # 'G' / 'D' -> NetworkConfig dict

    def module_state(self, prefix: str) -> dict[str, torch.Tensor]:
        """The state_dict stored under `prefix` (e.g. 'G_ema')."""
        return strip_prefix(self.tensors, prefix)


# ---------------------------------------------------------------------------------------------
# Names and paths


def kimg_label(nimg: int) -> str:
    """`KKKKKK[.FFF]`: kimg, and 3 decimals if fractional (snapshot and grid names)."""
    kimg, rest = divmod(int(nimg), 1000)
    return f"{kimg:06d}" + (f".{rest:03d}" if rest else "")


def snapshot_stem(nimg: int) -> str:
    """File stem of the snapshot taken after `nimg` images."""
    return f"network-snapshot-{kimg_label(nimg)}"


def snapshot_nimg(path: str | Path) -> int | None:
    """Inverse of `snapshot_stem` on a .safetensors name (None if it is not a snapshot name)."""
    m = _SNAPSHOT_RE.match(Path(path).name)
    return None if m is None else int(m.group(1)) * 1000 + int(m.group(2) or 0)


def _weights_and_sidecar(path: str | Path) -> tuple[Path, Path]:
    """Accept the .safetensors path, the .json path or the bare stem; return both paths."""
    path = Path(path)
    stem = path.name
    for suffix in (".safetensors", ".json"):
        stem = stem.removesuffix(suffix) if stem.endswith(suffix) else stem
    return path.with_name(stem + ".safetensors"), path.with_name(stem + ".json")


def list_snapshots(run_dir: str | Path) -> list[Path]:
    """Committed snapshots in `run_dir` (their .safetensors paths), sorted by images shown.

    Cheap: reads headers only; `latest_snapshot` and the loaders verify the checksums.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        check_network_path(run_dir, folder_only=True)  # says what it is instead
        raise CheckpointError(f"{run_dir}: not a run folder")
    found = []
    for p in run_dir.iterdir():
        nimg = snapshot_nimg(p)
        if nimg is not None and _looks_committed(p):
            found.append((nimg, p.name, p))
    return [p for *_, p in sorted(found)]


def _looks_committed(weights: Path) -> bool:
    if weights.with_suffix(".json").is_file():
        return True  # format 1's commit marker (or format 2's copy)
    try:
        return read_metadata(weights).get("version") == str(FORMAT_VERSION)
    except CheckpointError:
        return False


def latest_snapshot(run_dir: str | Path) -> Path:
    """The newest snapshot in `run_dir` that verifies; corrupt newer ones are logged and skipped."""
    return _newest_good(run_dir, lambda p: (verify_snapshot(p), p)[1])


def _newest_good(run_dir: str | Path, load: Callable[[Path], _T]) -> _T:
    run_dir = Path(run_dir)
    snapshots = list_snapshots(run_dir)
    if not snapshots:
        check_run_has_snapshots(run_dir)
    for path in reversed(snapshots):
        try:
            return load(path)
        except CheckpointError as e:
            log.warning("skipping corrupt snapshot: %s", e)
    raise CheckpointError(f"{run_dir}: every snapshot is corrupt; retrain or restore a backup")


def resolve_snapshot(path_or_run_dir: str | Path) -> Path:
    """A run folder means its latest good snapshot; a file means that snapshot."""
    p = Path(path_or_run_dir)
    if p.is_dir():
        return latest_snapshot(p)
    weights, _ = _weights_and_sidecar(p)
    if not weights.is_file():  # name what the user typed, not the derived .safetensors path
        check_network_path(p)
        raise CheckpointError(f"{p}: not a snapshot; {EXPECTED}")
    return weights


# ---------------------------------------------------------------------------------------------
# Writing


def save_snapshot(
    path: str | Path,
    *,
    G: torch.nn.Module,
    D: torch.nn.Module | None,
    G_ema: torch.nn.Module | None,
    state: dict[str, Any],
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a snapshot as one atomic file (plus a JSON copy of its state); returns its path.

    `state` must be JSON-able and hold `kimg`; `dataset_hash` is recorded when present.
    `tensors` are extra prefixed tensors (optimiser moments, RNG states, augment buffers).
    """
    if "kimg" not in state:
        raise ValueError("save_snapshot: state must contain 'kimg'")
    weights, sidecar = _weights_and_sidecar(path)
    flat: dict[str, torch.Tensor] = {}
    configs: dict[str, dict] = {}
    for prefix, module in (("G", G), ("D", D), ("G_ema", G_ema)):
        if module is None:
            continue
        flat.update(add_prefix(module.state_dict(), prefix))
        cfg = getattr(module, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            configs["D" if prefix == "D" else "G"] = cfg.to_dict()
    for key, value in (tensors or {}).items():
        if key in flat:
            raise ValueError(f"save_snapshot: extra tensor {key!r} clashes with a module key")
        flat[key] = value
    # safetensors wants contiguous CPU tensors that do not share storage.
    flat = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in flat.items()}
    texts = {f"{k}_config": json.dumps(v) for k, v in configs.items()}
    texts["state"] = json.dumps(state, allow_nan=False)
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), **texts}
    metadata["digest"] = digest(texts, sorted(flat), flat.__getitem__)
    with atomic.atomic_path(weights) as tmp:
        mode = tmp.stat().st_mode  # safetensors recreates the file with mode 0600
        save_file(flat, str(tmp), metadata=metadata)
        tmp.chmod(mode)
        size = tmp.stat().st_size
    copy = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "note": f"a copy of the state in {weights.name}, which is what mrisynth reads",
        "kimg": int(state["kimg"]),
        "weights_file": weights.name,
        "weights_bytes": size,
        "configs": configs,
        "timestamp": time.time(),
        "state": state,
    }
    atomic.write_json(sidecar, copy)
    log.info("saved snapshot %s (%.1f MB)", weights, size / 1e6)
    return weights


def verify_snapshot(path: str | Path) -> dict[str, Any]:
    """Check a snapshot's checksum and schema without keeping its tensors.

    Returns `{"state": ..., "configs": ...}`.
    """
    weights, _ = _weights_and_sidecar(path)
    meta = header(weights)
    if meta["version"] == "1":
        return read_sidecar_v1(weights, _weights_and_sidecar(weights)[1])
    state, configs = parsed(weights, meta)

    def of_file() -> str:  # one tensor in memory at a time
        with safe_open(str(weights), framework="pt") as f:
            return digest(texts(meta), sorted(f.keys()), f.get_tensor)

    if safetensors_call(weights, "tensors", of_file) != meta["digest"]:
        raise CheckpointError(f"{weights}: checksum mismatch (corrupt or edited file)")
    return {"state": state, "configs": configs}


def _load_verified(weights: Path, device: str | torch.device) -> Snapshot:
    meta = header(weights)
    read = lambda: load_file(str(weights), device="cpu")  # noqa: E731
    if meta["version"] == "1":
        checked = read_sidecar_v1(weights, _weights_and_sidecar(weights)[1])
        tensors = safetensors_call(weights, "tensors", read)
    else:
        state, configs = parsed(weights, meta)
        checked = {"state": state, "configs": configs}
        tensors = safetensors_call(weights, "tensors", read)
        if digest(texts(meta), sorted(tensors), tensors.__getitem__) != meta["digest"]:
            raise CheckpointError(f"{weights}: checksum mismatch (corrupt or edited file)")
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    state = checked["state"]
    return Snapshot(_info(weights, state), tensors, state, checked["configs"])


def _info(weights: Path, state: dict[str, Any]) -> SnapshotInfo:
    nimg = state.get("nimg")  # schema-checked; older snapshots record whole kimg only
    return SnapshotInfo(
        path=weights,
        kimg=kimg_number(nimg) if isinstance(nimg, int) else int(state["kimg"]),
        run_dir=weights.parent,
        dataset_hash=state.get("dataset_hash"),
        nimg=nimg,
    )


def load_snapshot(path_or_run_dir: str | Path, device: str | torch.device = "cpu") -> Snapshot:
    """Verify and read a whole snapshot (a run folder means its latest good one)."""
    p = Path(path_or_run_dir)
    if p.is_dir():
        return _newest_good(p, lambda w: _load_verified(w, device))
    return _load_verified(resolve_snapshot(p), device)


def read_snapshot_info(path_or_run_dir: str | Path) -> SnapshotInfo:
    """SnapshotInfo of a snapshot without keeping its tensors (verifies the checksum)."""
    weights = resolve_snapshot(path_or_run_dir)
    return _info(weights, verify_snapshot(weights)["state"])


def load_generator(
    path_or_run_dir: str | Path, device: str | torch.device = "cpu", ema: bool = True
) -> tuple[torch.nn.Module, SnapshotInfo]:
    """Rebuild the generator of a snapshot (G_ema by default) in eval mode, without pickle.

    Also accepts a single-network file written by `mrisynth.networks.save_network`.
    """
    from mrisynth.networks import NetworkConfig, build_generator  # lazy: heavy, owned elsewhere

    p = Path(path_or_run_dir)
    if p.is_file() and p.suffix == ".safetensors" and read_metadata(p).get("format") != FORMAT:
        return _load_plain_network(p, device)
    snap = load_snapshot(p, device="cpu")
    if "G" not in snap.configs:
        raise CheckpointError(f"{snap.info.path}: snapshot has no generator config")
    prefix = "G_ema" if ema else "G"
    sd = snap.module_state(prefix)
    if not sd:
        if ema:
            log.warning("%s: no G_ema stored; using G", snap.info.path)
            sd = snap.module_state("G")
        if not sd:
            raise CheckpointError(f"{snap.info.path}: snapshot holds no {prefix} weights")
    G = build_generator(NetworkConfig.from_dict(snap.configs["G"]))
    _load_state(G, sd, snap.info.path, prefix)
    return G.eval().requires_grad_(False).to(device), snap.info


def _load_plain_network(
    path: Path, device: str | torch.device
) -> tuple[torch.nn.Module, SnapshotInfo]:
    from mrisynth.networks import load_network

    G = load_network(path)
    info = SnapshotInfo(path=path, kimg=0, run_dir=path.parent, dataset_hash=None)
    return G.eval().requires_grad_(False).to(device), info


def _load_state(
    module: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path, what: str
) -> None:
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: {what} weights do not fit the network ({first})") from None


def load_module_state(module: torch.nn.Module, snap: Snapshot, prefix: str) -> None:
    """Load the `prefix` weights of a snapshot into an existing module (strict)."""
    sd = snap.module_state(prefix)
    if not sd:
        raise CheckpointError(f"{snap.info.path}: snapshot holds no {prefix} weights")
    _load_state(module, sd, snap.info.path, prefix)


# ---------------------------------------------------------------------------------------------
# Prefixed dicts and optimiser state (tensors to safetensors, the rest to JSON)


def add_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in sd.items()}


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    head = prefix + "."
    return {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}
