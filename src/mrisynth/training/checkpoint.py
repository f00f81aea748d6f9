"""Training snapshots: safetensors weights + a JSON sidecar, written atomically, verified on load.

A snapshot is two files in the run folder:
- `network-snapshot-NNNNNN.safetensors`: every tensor (G, D, G_ema, optimiser moments, augment
  pipe buffers, RNG states), key-prefixed (`G.`, `D.`, `G_ema.`, ...). Its metadata carries the
  networks' JSON configs so a generator can be rebuilt without pickle.
- `network-snapshot-NNNNNN.json`: the training state (kimg, tick, augment p, pl_mean, optimiser
  hyper-parameters, data position, ...) plus the size and sha256 of the weights file.

The weights are written first and the sidecar last, each atomically (temp + rename), so the
sidecar is the commit marker: a snapshot without a sidecar never existed, and a weights file
whose size or hash disagrees with its sidecar is reported as corrupt and skipped in favour of the
previous snapshot.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mrisynth import atomic
from mrisynth.errors import CheckpointError
from mrisynth.hashing import sha256_file

log = logging.getLogger(__name__)

FORMAT = "mrisynth-snapshot"
FORMAT_VERSION = 1
_SNAPSHOT_RE = re.compile(r"^network-snapshot-(\d+)\.safetensors$")


@dataclass(frozen=True)
class SnapshotInfo:
    """Where a snapshot came from: enough for metrics and reports to label their results."""

    path: Path  # the .safetensors file
    kimg: int
    run_dir: Path
    dataset_hash: str | None


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


def snapshot_name(kimg: int) -> str:
    """File stem of the snapshot taken at `kimg` (NVIDIA's naming, safetensors instead of pkl)."""
    return f"network-snapshot-{int(kimg):06d}"


def _weights_and_sidecar(path: str | Path) -> tuple[Path, Path]:
    """Accept the .safetensors path, the .json path or the bare stem; return both paths."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_suffix(".safetensors"), path.with_suffix(".json")


def list_snapshots(run_dir: str | Path) -> list[Path]:
    """Snapshots in `run_dir` (their .safetensors paths) that have a sidecar, sorted by kimg.

    Cheap: does not hash the weights; `latest_snapshot` and the loaders verify.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: not a run folder (it does not exist)")
    found = []
    for p in run_dir.iterdir():
        m = _SNAPSHOT_RE.match(p.name)
        if m and p.with_suffix(".json").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_snapshot(run_dir: str | Path) -> Path:
    """The newest snapshot in `run_dir` that verifies; corrupt newer ones are logged and skipped."""
    run_dir = Path(run_dir)
    snapshots = list_snapshots(run_dir)
    if not snapshots:
        raise CheckpointError(f"{run_dir}: no network-snapshot-*.safetensors with its .json here")
    for path in reversed(snapshots):
        try:
            verify_snapshot(path)
            return path
        except CheckpointError as e:
            log.warning("skipping corrupt snapshot: %s", e)
    raise CheckpointError(f"{run_dir}: every snapshot is corrupt; retrain or restore a backup")


def resolve_snapshot(path_or_run_dir: str | Path) -> Path:
    """A run folder means its latest good snapshot; a file means that snapshot."""
    p = Path(path_or_run_dir)
    if p.is_dir():
        return latest_snapshot(p)
    weights, sidecar = _weights_and_sidecar(p)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: snapshot not found")
    if not sidecar.is_file():
        raise CheckpointError(f"{weights}: its sidecar {sidecar.name} is missing (incomplete?)")
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
    """Write a snapshot atomically; returns the .safetensors path.

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
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION)}
    metadata.update({f"{k}_config": json.dumps(v) for k, v in configs.items()})

    with atomic.atomic_path(weights) as tmp:
        save_file(flat, str(tmp), metadata=metadata)
        digest, size = sha256_file(tmp), tmp.stat().st_size
    sidecar_obj = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kimg": int(state["kimg"]),
        "weights_file": weights.name,
        "weights_bytes": size,
        "weights_sha256": digest,
        "configs": configs,
        "timestamp": time.time(),
        "state": state,
    }
    atomic.write_json(sidecar, sidecar_obj)
    log.info("saved snapshot %s (%.1f MB)", weights, size / 1e6)
    return weights


# ---------------------------------------------------------------------------------------------
# Reading


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    try:
        obj = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{sidecar}: unreadable snapshot sidecar ({e})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{sidecar}: not an mrisynth snapshot sidecar")
    if int(obj.get("version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{sidecar}: snapshot format v{obj['version']} is newer; upgrade")
    return obj


def verify_snapshot(path: str | Path) -> dict[str, Any]:
    """Check the weights file against its sidecar (size, then sha256); returns the sidecar."""
    weights, sidecar = _weights_and_sidecar(path)
    obj = _read_sidecar(sidecar)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file missing")
    size = weights.stat().st_size
    expected = obj.get("weights_bytes")
    if size != expected:
        raise CheckpointError(f"{weights}: truncated ({size} bytes, sidecar says {expected})")
    if sha256_file(weights) != obj.get("weights_sha256"):
        raise CheckpointError(f"{weights}: checksum mismatch (corrupt file)")
    return obj


def _info(weights: Path, obj: dict[str, Any]) -> SnapshotInfo:
    state = obj.get("state", {})
    return SnapshotInfo(
        path=weights,
        kimg=int(obj.get("kimg", state.get("kimg", 0))),
        run_dir=weights.parent,
        dataset_hash=state.get("dataset_hash"),
    )


def load_snapshot(path_or_run_dir: str | Path, device: str | torch.device = "cpu") -> Snapshot:
    """Verify and read a whole snapshot (a run folder means its latest good one)."""
    weights = resolve_snapshot(path_or_run_dir)
    obj = verify_snapshot(weights)
    try:
        tensors = load_file(str(weights), device=str(device))
    except Exception as e:  # safetensors raises its own error types on a bad header
        raise CheckpointError(f"{weights}: cannot read safetensors ({e})") from None
    return Snapshot(
        info=_info(weights, obj),
        tensors=tensors,
        state=obj.get("state", {}),
        configs=obj.get("configs", {}),
    )


def read_snapshot_info(path_or_run_dir: str | Path) -> SnapshotInfo:
    """SnapshotInfo of a snapshot without loading its tensors (verifies the checksum)."""
    weights = resolve_snapshot(path_or_run_dir)
    return _info(weights, verify_snapshot(weights))


def load_generator(
    path_or_run_dir: str | Path, device: str | torch.device = "cpu", ema: bool = True
) -> tuple[torch.nn.Module, SnapshotInfo]:
    """Rebuild the generator of a snapshot (G_ema by default) in eval mode, without pickle.

    Also accepts a single-network file written by `mrisynth.networks.save_network`.
    """
    from mrisynth.networks import NetworkConfig, build_generator  # lazy: heavy, owned elsewhere

    p = Path(path_or_run_dir)
    if p.is_file() and p.suffix == ".safetensors" and not p.with_suffix(".json").is_file():
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

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") == FORMAT:
        raise CheckpointError(f"{path}: snapshot sidecar {path.with_suffix('.json').name} missing")
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


def optimizer_to_tensors(
    opt: torch.optim.Optimizer, prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser's state_dict into prefixed tensors and a JSON-able remainder."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in sd["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
        for g in sd["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str
) -> None:
    """Inverse of `optimizer_to_tensors`: restore moments, step counts and hyper-parameters."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in strip_prefix(tensors, prefix).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise CheckpointError(
            f"optimiser state {prefix!r} does not fit this network ({e})"
        ) from None
