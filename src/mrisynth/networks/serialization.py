"""Save/load networks as safetensors with their NetworkConfig as JSON metadata (no pickle).

A file written by `save_network` holds the module's parameters and persistent buffers (w_avg,
constant noise) and, in the safetensors header, `{"mrisynth_network": JSON}` with the class
name and config, so `load_network` rebuilds the module from the file alone.

Files are untrusted: `check_safetensors_file` checks the layout (8-byte header length, a
bounded JSON header, tensor offsets inside the file) before the library sees it, and any error
of the library (including a Rust panic, which is not an Exception) becomes a CheckpointError.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import safetensors
import safetensors.torch
import torch
from torch import nn

from mrisynth import atomic
from mrisynth import untrusted as u
from mrisynth.errors import CheckpointError, ConfigError, InputError
from mrisynth.networks.config import NetworkConfig
from mrisynth.networks.discriminator import Discriminator
from mrisynth.networks.generator import Generator

logger = logging.getLogger(__name__)

METADATA_KEY = "mrisynth_network"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 2**20  # safetensors' own limit is 100 MB; ours are a few hundred KB
_T = TypeVar("_T")
NETWORK_CLASSES: dict[str, type[nn.Module]] = {"Generator": Generator,
                                               "Discriminator": Discriminator}


def network_kind(module: nn.Module) -> str:
    """'Generator' or 'Discriminator' (the class name stored in files)."""
    for name, cls in NETWORK_CLASSES.items():
        if isinstance(module, cls):
            return name
    raise ConfigError(f"cannot serialise a {type(module).__name__}; expected Generator or "
                      "Discriminator")


def network_description(module: nn.Module) -> dict[str, Any]:
    """JSON-able description (class + config) that `build_network` turns back into a module."""
    return {"format_version": FORMAT_VERSION, "class": network_kind(module),
            "config": module.config.to_dict()}


def build_network(description: dict[str, Any], source: str = "network") -> nn.Module:
    """A freshly initialised module from `network_description` output."""
    try:
        u.mapping(description, "network description")
        version = u.integer(description.get("format_version", 1), "format_version", 0, 10**6)
        cls = NETWORK_CLASSES[u.choice(description.get("class"), "class", list(NETWORK_CLASSES))]
        cfg = NetworkConfig.from_dict(u.mapping(description.get("config"), "config"))
    except (KeyError, TypeError, ValueError, ConfigError, u.BadValue) as exc:
        raise CheckpointError(f"{source}: invalid network description ({exc})") from None
    if version > FORMAT_VERSION:
        logger.warning("%s was written by a newer mrisynth (format %s)", source, version)
    return cls(cfg)


def network_tensors(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers as contiguous CPU float tensors, keys prefixed."""
    return {f"{prefix}{k}": v.detach().to("cpu").contiguous().clone()
            for k, v in module.state_dict().items()}


def load_network_tensors(
    module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str = "", source: str = "file",
) -> None:
    """Copy `prefix`-ed tensors into `module`; any missing/extra/misshaped key is an error."""
    own = module.state_dict()
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or bad:
        what = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", bad))
            if keys
        )
        raise CheckpointError(f"{source}: weights do not match the network ({what})")
    module.load_state_dict(state, strict=True)


def save_network(path: str | os.PathLike[str], module: nn.Module,
                 extra_metadata: dict[str, str] | None = None) -> Path:
    """Write `module` to `path` (.safetensors) atomically; returns the path."""
    path = Path(path)
    metadata = {METADATA_KEY: json.dumps(network_description(module))}
    if extra_metadata:
        metadata.update({str(k): str(v) for k, v in extra_metadata.items()})
    data = safetensors.torch.save(network_tensors(module), metadata=metadata)
    atomic.write_bytes(path, data)
    logger.info("saved %s to %s", network_kind(module), path)
    return path


def _not_safetensors(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable safetensors file ({why}); give a "
                           "network-snapshot-*.safetensors written by mrisynth, or its run folder")


def check_safetensors_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a safetensors file's layout without the library; returns its parsed header.

    The header length must fit the file and MAX_HEADER_BYTES, the header must be a JSON object,
    and every tensor's byte range must lie inside the data section.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: network file not found")
    size = path.stat().st_size
    if size < 8:
        raise _not_safetensors(path, f"{size} bytes, too short")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise _not_safetensors(path, f"its header claims {n} bytes, the file has {size}")
        raw = f.read(n)
    try:
        header = u.mapping(u.loads(raw, "header", max_bytes=MAX_HEADER_BYTES), "header")
    except u.BadValue as exc:
        raise _not_safetensors(path, str(exc)) from None
    data_bytes = size - 8 - n
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        ok = (isinstance(offsets, list) and len(offsets) == 2
              and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
              and 0 <= offsets[0] <= offsets[1] <= data_bytes)
        if not ok:
            raise _not_safetensors(path, f"tensor {str(key)[:40]!r} lies outside the file")
    return dict(header)


def safetensors_call(path: Path, what: str, fn: Callable[[], _T]) -> _T:
    """Run a safetensors call; any of its errors (even a Rust panic) is a CheckpointError.

    MemoryError passes through: a file too large for this machine is not a corrupt file (a
    resume must not take it for one and fall back to an older snapshot)."""
    try:
        return fn()
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as exc:  # SafetensorError, OSError, pyo3_runtime.PanicException
        raise CheckpointError(f"{path}: cannot read {what} ({str(exc)[:200]})") from None


def read_network_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The class + config description stored in a file written by `save_network`."""
    path = Path(path)
    header = check_safetensors_file(path)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        raise CheckpointError(f"{path}: no '{METADATA_KEY}' metadata; not written by "
                              "mrisynth.networks.save_network")
    try:
        return u.mapping(u.loads(str(meta[METADATA_KEY]), METADATA_KEY), METADATA_KEY)
    except u.BadValue as exc:
        raise CheckpointError(f"{path}: corrupt network metadata ({exc})") from None


def load_network(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a Generator/Discriminator from a `save_network` file (eval mode, on `device`)."""
    path = Path(path)
    module = build_network(read_network_metadata(path), source=str(path))
    tensors = safetensors_call(path, "tensors",
                       lambda: safetensors.torch.load_file(str(path), device="cpu"))
    load_network_tensors(module, tensors, source=str(path))
    return module.eval().to(device)
