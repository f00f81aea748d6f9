"""Save/load networks as safetensors with their NetworkConfig as JSON metadata (no pickle).

A file written by `save_network` holds the module's parameters and persistent buffers (w_avg,
constant noise) and, in the safetensors header, `{"mrisynth_network": JSON}` with the class
name and config, so `load_network` rebuilds the module from the file alone.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from mrisynth import atomic
from mrisynth.errors import CheckpointError, ConfigError, InputError
from mrisynth.networks.config import NetworkConfig
from mrisynth.networks.discriminator import Discriminator
from mrisynth.networks.generator import Generator

logger = logging.getLogger(__name__)

METADATA_KEY = "mrisynth_network"
FORMAT_VERSION = 1
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
        cls = NETWORK_CLASSES[description["class"]]
        cfg = NetworkConfig.from_dict(description["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{source}: invalid network description ({exc})") from None
    if int(description.get("format_version", 1)) > FORMAT_VERSION:
        logger.warning("%s was written by a newer mrisynth (format %s)", source,
                       description.get("format_version"))
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


def read_network_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The class + config description stored in a file written by `save_network`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: network file not found")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if METADATA_KEY not in meta:
        raise CheckpointError(f"{path}: no '{METADATA_KEY}' metadata; not written by "
                              "mrisynth.networks.save_network")
    try:
        return json.loads(meta[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt network metadata ({exc})") from None


def load_network(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a Generator/Discriminator from a `save_network` file (eval mode, on `device`)."""
    path = Path(path)
    module = build_network(read_network_metadata(path), source=str(path))
    try:
        tensors = safetensors.torch.load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read tensors ({exc})") from None
    load_network_tensors(module, tensors, source=str(path))
    return module.eval().to(device)
