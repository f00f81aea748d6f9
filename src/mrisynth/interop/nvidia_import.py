"""An NVIDIA stylegan2-ada-pytorch pickle -> a mrisynth snapshot (`mrisynth import-nvidia`).

Accepts NVIDIA's training snapshot (a dict with G, D, G_ema, augment_pipe and
training_set_kwargs) and a bare generator pickle. The written file is an ordinary snapshot
(`training.checkpoint.save_snapshot`, kimg from NVIDIA's file name) that generate, metrics and
`train --resume` read; its state records where it came from under `imported`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mrisynth.errors import InputError
from mrisynth.interop import nvidia_networks as nn_
from mrisynth.interop.nvidia_pickle import PersistentRecord, PickleRefused, loads
from mrisynth.networks import build_discriminator, build_generator

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 4 * 2**30  # NVIDIA's 1024px snapshots are ~360 MB
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")
_KIMG = re.compile(r"network-snapshot-(\d{1,9})\.pkl$")


@dataclass
class Imported:
    """Networks rebuilt from an NVIDIA pickle, ready to be saved as a snapshot."""

    G: torch.nn.Module
    G_ema: torch.nn.Module
    D: torch.nn.Module | None
    augment_p: float | None
    kimg: int
    source: dict[str, Any] = field(default_factory=dict)


def read_bytes(path: Path) -> bytes:
    """The whole file, checked on the descriptor it is read from: a regular file (opened
    non-blocking, so that a FIFO swapped in cannot hang the open) of at most MAX_FILE_BYTES,
    however much it grows while being read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
        os.close(fd)
        raise InputError(f"{path}: not a regular file (a folder, pipe, device or socket)")
    if info.st_size > MAX_FILE_BYTES:  # before reading 4 GiB of it (a sparse file costs nothing)
        os.close(fd)
        raise _too_large(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(path)
    return data


def _too_large(path: Path) -> InputError:
    return InputError(f"{path}: over {MAX_FILE_BYTES // 2**30} GiB, larger than any StyleGAN2 "
                      "snapshot")


def read_pickle(path: Path, data: bytes | None = None) -> Any:
    """The file's content (or `data` read from it) as plain data (see `nvidia_pickle`); one
    InputError when refused."""
    try:
        return loads(read_bytes(path) if data is None else data)
    except PickleRefused as e:
        raise InputError(f"{path}: refused: the file {e}; only NVIDIA stylegan2-ada-pytorch "
                         "network pickles can be imported") from None


def _networks(data: Any, path: Path) -> dict[str, PersistentRecord]:
    """{'G'/'D'/'G_ema'/'augment_pipe': record} of a snapshot dict or a bare generator."""
    if isinstance(data, PersistentRecord):
        data = {"G_ema": data}
    if not isinstance(data, dict):
        raise InputError(f"{path}: holds a {type(data).__name__}, not NVIDIA's snapshot dict "
                         "(G, D, G_ema, ...) or a generator")
    found = {}
    for key in NETWORK_KEYS:
        rec = data.get(key)
        if rec is None:
            continue
        if not isinstance(rec, PersistentRecord):
            raise InputError(f"{path}: {key} is a {type(rec).__name__}, not an NVIDIA network")
        found[key] = rec
    ignored = sorted(str(k)[:40] for k in data if k not in (*NETWORK_KEYS, "training_set_kwargs"))
    if ignored:
        more = f" and {len(ignored) - 10} more" if len(ignored) > 10 else ""
        log.info("%s: not imported: %s%s", path, ", ".join(ignored[:10]), more)
    if "G" not in found and "G_ema" not in found:
        raise InputError(f"{path}: holds no generator (G or G_ema)")
    for key, want in (("G", "Generator"), ("G_ema", "Generator"), ("D", "Discriminator"),
                      ("augment_pipe", "AugmentPipe")):
        if key in found and found[key].class_name != want:
            raise InputError(f"{path}: {key} is a {found[key].class_name!r}, expected {want!r}; "
                             "only stylegan2-ada-pytorch networks can be imported")
    return found


def _generator(rec: PersistentRecord, path: Path, what: str) -> torch.nn.Module:
    cfg = nn_.checked(nn_.generator_config, path, rec)
    G = build_generator(cfg)
    sd = nn_.checked(nn_.our_state, path, rec, G, what)
    G.load_state_dict(sd, strict=True)
    return G.eval().requires_grad_(False)


def _discriminator(rec: PersistentRecord, path: Path) -> torch.nn.Module:
    cfg = nn_.checked(nn_.discriminator_config, path, rec)
    if cfg.img_resolution < 8:
        raise InputError(f"{path}: unsupported NVIDIA network: a {cfg.img_resolution}px "
                         "discriminator (mrisynth's start at 8px)")
    D = build_discriminator(cfg)
    sd = nn_.checked(nn_.our_state, path, rec, D, "D")
    D.load_state_dict(sd, strict=True)
    return D.eval().requires_grad_(False)


def _augment_p(rec: PersistentRecord | None) -> float | None:
    if rec is None:
        return None
    p = (rec.state.get("_buffers") or {}).get("p")
    if not isinstance(p, torch.Tensor) or p.numel() != 1 or not torch.isfinite(p).all():
        return None
    return max(float(p), 0.0)


def _training_set(data: Any) -> dict[str, Any]:
    """The few training-set facts worth keeping (never the dataset's path: it can name people)."""
    kw = data.get("training_set_kwargs") if isinstance(data, dict) else None
    if not isinstance(kw, dict):
        return {}
    keep = {"resolution": int, "use_labels": bool, "xflip": bool, "max_size": int}
    return {k: kw[k] for k, t in keep.items() if type(kw.get(k)) is t}


def import_pickle(path: str | Path) -> Imported:
    """Read and convert an NVIDIA pickle without executing anything from it."""
    path = Path(path)
    raw = read_bytes(path)
    data = read_pickle(path, raw)
    nets = _networks(data, path)
    G_ema = _generator(nets.get("G_ema", nets.get("G")), path, "G_ema")
    G = _generator(nets["G"], path, "G") if "G" in nets else G_ema
    if G.config != G_ema.config:
        raise InputError(f"{path}: G and G_ema have different architectures")
    D = _discriminator(nets["D"], path) if "D" in nets else None
    if D is not None and (D.img_channels, D.img_resolution, D.c_dim) != (
        G.img_channels, G.img_resolution, G.c_dim
    ):
        raise InputError(f"{path}: D and G disagree on image size, channels or labels")
    m = _KIMG.search(path.name)
    source = {"format": "nvidia-stylegan2-ada-pytorch", "file": path.name[:200],
              "sha256": hashlib.sha256(raw).hexdigest(), "networks": sorted(nets),
              "training_set": _training_set(data)}
    return Imported(G, G_ema, D, _augment_p(nets.get("augment_pipe")),
                    int(m.group(1)) if m else 0, source)


def save_imported(imp: Imported, output: str | Path) -> Path:
    """Write `imp` as a mrisynth snapshot (safetensors + JSON copy); returns its path."""
    from mrisynth.training.checkpoint import save_snapshot

    state: dict[str, Any] = {"kimg": imp.kimg, "imported": dict(imp.source)}
    if imp.augment_p is not None:
        state["imported"]["augment_p"] = imp.augment_p
        state["augment_p"] = min(imp.augment_p, 1.0)  # the schema's range; the raw p is kept
    return save_snapshot(output, G=imp.G, D=imp.D, G_ema=imp.G_ema, state=state)
