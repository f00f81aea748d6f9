"""Transfer learning: a new run that starts from another snapshot's weights (`--resume FILE` in
weights mode), e.g. one imported from NVIDIA, possibly trained on RGB images.

- The networks take the snapshot's architecture (z/w dims, mapping depth, channels, clamp, fp16
  blocks): its weights only fit that. Training choices (minibatch-std group, precision) come
  from this run's options.
- `--resume-channels average` adapts the image layers when the snapshot's image channels
  differ from the data's (RGB <-> grayscale), exactly:
  - G, every block's ToRGB (output rows): 3 -> 1 averages the rows (weights and bias), so the
    new generator's image is the channel mean of the old one's (ToRGB and the skip sums are
    linear); 1 -> 3 repeats the row, giving R = G = B = the old image.
  - D, the top block's FromRGB (input columns): 3 -> 1 sums the columns, so the new D judges
    a grey image exactly as the old D judged it repeated into R = G = B; 1 -> 3 spreads the
    column over the three, so the new D judges a colour image as the old D judged its channel
    mean. FromRGB's equalised-lr gain is 1/sqrt(input channels), so the stored weights are
    rescaled by sqrt(old/new channels) to keep the effective weights above.
- A snapshot without D weights (a bare generator) starts D from its fresh initialisation.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re

import torch

from mrisynth.errors import CheckpointError, ConfigError
from mrisynth.networks import NetworkConfig, network_config_from_preset
from mrisynth.training import checkpoint
from mrisynth.training.options import RESUME_CHANNELS, ResolvedOptions

log = logging.getLogger(__name__)

_TORGB = re.compile(r"^(G|G_ema)\.synthesis\.b\d+\.torgb\.(weight|bias)$")
_FROMRGB = re.compile(r"^D\.b\d+\.fromrgb\.weight$")
_ARCHITECTURE = ("z_dim", "w_dim", "map_depth", "channel_base", "channel_max", "num_fp16_res",
                 "conv_clamp", "d_architecture")  # fmt: skip


def adapt_channels(snap: checkpoint.Snapshot, channels: int, mode: str,
                   full: bool) -> checkpoint.Snapshot:
    """The snapshot with its image layers adapted to `channels` (see the module docstring);
    unchanged when the channels agree or `mode` is 'same' (the caller then refuses)."""
    if mode not in RESUME_CHANNELS:
        raise ConfigError(f"--resume-channels must be one of {', '.join(RESUME_CHANNELS)}")
    have = snap.configs.get("G", {}).get("img_channels")
    if mode == "same" or have == channels:
        return snap
    if full:
        raise ConfigError("--resume-channels adapts weights for a new run; a full resume of "
                          "the same run cannot change its image channels (--resume-mode weights)")
    if (have, channels) not in ((3, 1), (1, 3)):
        raise CheckpointError(f"{snap.info.path}: {have}-channel networks; --resume-channels "
                              f"average adapts 3 -> 1 or 1 -> 3 channels, not to {channels}")
    tensors = dict(snap.tensors)
    for key, t in snap.tensors.items():
        if _TORGB.match(key):
            tensors[key] = t.mean(0, keepdim=True) if channels == 1 else t.repeat_interleave(3, 0)
        elif _FROMRGB.match(key):
            tensors[key] = _fromrgb(t, have, channels)
    configs = {k: dict(v, img_channels=channels) for k, v in snap.configs.items()}
    log.info("%s: image layers adapted from %d to %d channels", snap.info.path, have, channels)
    return dataclasses.replace(snap, tensors=tensors, configs=configs)


def _fromrgb(w: torch.Tensor, have: int, channels: int) -> torch.Tensor:
    """[out, have, 1, 1] -> [out, channels, 1, 1], effective (gain-scaled) weights as documented."""
    gain = math.sqrt(channels / have)  # stored * 1/sqrt(have) must equal new * 1/sqrt(channels)
    if channels == 1:
        return w.sum(1, keepdim=True) * gain
    return (w / channels * gain).repeat(1, channels, 1, 1)


def weights_configs(snap: checkpoint.Snapshot, r: ResolvedOptions
                    ) -> tuple[NetworkConfig, NetworkConfig]:
    """G and D configs of a weights-only resume: the snapshot's architecture, this run's
    minibatch-std group and precision."""
    mixed = "off" if r.precision == "fp32" else r.precision
    g = NetworkConfig.from_dict(snap.configs["G"])
    d = NetworkConfig.from_dict(snap.configs.get("D", snap.configs["G"]))
    if g.c_dim != r.c_dim:
        raise CheckpointError(
            f"{snap.info.path}: a generator with {g.c_dim} label dimensions, this run has "
            f"{r.c_dim} ({'drop' if r.c_dim else 'add'} --cond or resume from another snapshot)"
        )
    for flag, asked, field in (("--cbase", r.user.cbase, "channel_base"),
                               ("--cmax", r.user.cmax, "channel_max"),
                               ("--map-depth", r.user.map_depth, "map_depth")):
        if asked is not None and asked != getattr(g, field):
            raise ConfigError(f"{flag} {asked}: the weights of {snap.info.path} need "
                              f"{field} {getattr(g, field)}; drop {flag}")
    preset = network_config_from_preset(r.preset, r.img_channels, r.c_dim)
    differ = [k for k in _ARCHITECTURE if getattr(preset, k) != getattr(g, k)]
    if differ:
        log.info("architecture from %s, not --cfg %s (%s)", snap.info.path, r.user.cfg,
                 ", ".join(f"{k} {getattr(g, k)}" for k in differ))
    over = {"mixed_precision": mixed, "mbstd_group": r.preset.mbstd_group}
    return g.replace(**over), d.replace(**over)


def resolution_mismatch(snap: checkpoint.Snapshot, data: str, resolution: int) -> str:
    """The error for a snapshot and an archive of different resolutions: what to make."""
    size = snap.configs.get("G", {}).get("img_resolution")
    fix = (
        f"prepare the slices at its size (`mrisynth prepare DICOM_DIR -o PREPARED --size "
        f"{size}`, then `mrisynth dataset PREPARED -o ARCHIVE`) or pass a {size}px archive"
        if isinstance(size, int) and not isinstance(size, bool)
        else "resume from a snapshot of this resolution"
    )
    return (
        f"{snap.info.path}: trained at {size}px but {data} holds {resolution}px images; "
        f"resume needs the same resolution: {fix}"
    )


def source_record(snap: checkpoint.Snapshot | None, full: bool) -> dict[str, str | None] | None:
    """What training_options.json records as `resume_source` of a new run started from
    `snap`'s weights: the snapshot's content sha256 (its header digest) and resolved path, so
    that only a run from the same snapshot counts as a repeat. None unless weights-only."""
    if snap is None or full:
        return None
    from mrisynth.training.snapshot_format import header

    try:
        meta = header(snap.info.path)
    except CheckpointError:  # gone since it was loaded: the path still names it
        meta = {}
    sha = meta.get("digest") if meta.get("version") not in (None, "1") else None
    return {"sha256": sha, "path": str(snap.info.path.resolve())}


def load_weights(G: torch.nn.Module, D: torch.nn.Module, snap: checkpoint.Snapshot,
                 full: bool) -> None:
    """G's and D's weights from the snapshot; a new run keeps a fresh D if it holds none."""
    checkpoint.load_module_state(G, snap, "G")
    if full or snap.module_state("D"):
        checkpoint.load_module_state(D, snap, "D")
    else:
        log.warning("%s holds no discriminator: D starts from a fresh initialisation",
                    snap.info.path)
