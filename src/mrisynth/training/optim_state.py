"""Optimiser state in a snapshot: moments and step counts as prefixed tensors, the rest
(hyper-parameters, parameter indices) as JSON."""

from __future__ import annotations

from typing import Any

import torch

from mrisynth.errors import CheckpointError
from mrisynth.training.checkpoint import strip_prefix


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
