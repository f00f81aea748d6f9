"""The snapshot file format: the sha256 digest over header texts and tensors, and reading a
header whose every value is checked (type, range, size) before anything is built from it.

Format 2 keeps the state and network configs in the safetensors header; format 1 (still read)
kept them in a `.json` sidecar with the weights' size and sha256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from mrisynth import untrusted as u
from mrisynth.errors import CheckpointError, ConfigError
from mrisynth.hashing import sha256_file
from mrisynth.networks.serialization import safetensors_call
from mrisynth.training.snapshot_schema import check_state

FORMAT = "mrisynth-snapshot"
FORMAT_VERSION = 2


def digest(
    texts: dict[str, str], keys: Iterable[str], tensor: Callable[[str], torch.Tensor]
) -> str:
    """sha256 over the metadata texts and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for key in sorted(texts):
        h.update(f"{key}={len(texts[key])}:".encode())
        h.update(texts[key].encode())
    for key in keys:
        t = tensor(key)
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}:".encode())
        h.update(memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def read_metadata(weights: Path) -> dict[str, str]:
    def read() -> dict[str, str]:
        with safe_open(str(weights), framework="pt") as f:
            return dict(f.metadata() or {})

    return safetensors_call(weights, "the safetensors header", read)


def _json_field(path: Path, raw: str, where: str) -> Any:
    try:
        return u.loads(raw, where)
    except u.BadValue as e:
        raise CheckpointError(f"{path}: {e}") from None


def parsed(path: Path, meta: dict[str, str]) -> tuple[dict[str, Any], dict[str, dict]]:
    """(state, configs) of a format-2 header, schema-checked."""
    if "state" not in meta or "digest" not in meta:
        raise CheckpointError(f"{path}: snapshot header lacks its state (incomplete?)")
    state = _json_field(path, meta["state"], "state")
    configs = {}
    for name in ("G", "D"):
        if f"{name}_config" in meta:
            configs[name] = _json_field(path, meta[f"{name}_config"], f"{name}_config")
    return _checked(path, state, configs), configs


def _checked(path: Path, state: Any, configs: dict[str, Any]) -> dict[str, Any]:
    from mrisynth.networks import NetworkConfig  # lazy: heavy, owned elsewhere

    try:
        check_state(state)
        for name, cfg in configs.items():
            NetworkConfig.from_dict(u.mapping(cfg, f"{name}_config"))
    except (u.BadValue, ConfigError) as e:
        raise CheckpointError(f"{path}: invalid snapshot ({e})") from None
    return state


def texts(meta: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in meta.items() if k == "state" or k.endswith("_config")}


def header(weights: Path) -> dict[str, str]:
    """The header metadata of a snapshot file, with its format checked."""
    if not weights.is_file():
        raise CheckpointError(f"{weights}: snapshot not found")
    meta = read_metadata(weights)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: not an mrisynth training snapshot")
    if meta.get("version") not in ("1", str(FORMAT_VERSION)):
        version = meta.get("version")
        raise CheckpointError(f"{weights}: snapshot format {version!r} unknown; upgrade mrisynth")
    return meta


def read_sidecar_v1(weights: Path, sidecar: Path) -> dict[str, Any]:
    """Format 1: the sidecar is the commit marker; check it and the weights' size and hash."""
    if not sidecar.is_file():
        raise CheckpointError(f"{weights}: its sidecar {sidecar.name} is missing (incomplete?)")
    if sidecar.stat().st_size > u.MAX_JSON_BYTES:
        raise CheckpointError(f"{sidecar}: sidecar too large to be a snapshot's")
    obj = _json_field(sidecar, sidecar.read_bytes(), "sidecar")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{sidecar}: not an mrisynth snapshot sidecar")
    size, expected = weights.stat().st_size, obj.get("weights_bytes")
    if size != expected:
        raise CheckpointError(f"{weights}: truncated ({size} bytes, sidecar says {expected})")
    if sha256_file(weights) != obj.get("weights_sha256"):
        raise CheckpointError(f"{weights}: checksum mismatch (corrupt file)")
    configs = obj.get("configs", {})
    if not isinstance(configs, dict):
        raise CheckpointError(f"{sidecar}: invalid snapshot (configs must be an object)")
    state = obj.get("state", {})
    if isinstance(state, dict) and "kimg" not in state:
        state = {**state, "kimg": obj.get("kimg")}
    return {"state": _checked(sidecar, state, configs), "configs": configs}
