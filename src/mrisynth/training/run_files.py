"""The run folder: its name, pre-flight checks (writable, disk space), log file, image grids."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from mrisynth import atomic, untrusted
from mrisynth.errors import ConfigError, InputError
from mrisynth.imaging import encode_png, make_grid, quantize_images
from mrisynth.training.checkpoint import kimg_label
from mrisynth.training.options import run_description
from mrisynth.training.run_lock import RunLock, create_numbered_run

log = logging.getLogger(__name__)

GRID_W, GRID_H = 8, 4  # 32 fixed latents per grid


def open_run_dir(setup, num_params: dict[str, int], cleanup: contextlib.ExitStack) -> Path:
    """Rank 0: the folder to write to (the resumed run's on a full resume), locked for this
    process (released by `cleanup`), checked writable and with room for snapshots."""
    r = setup.options
    if r.user.min_free_gb is not None:
        need = int(r.user.min_free_gb * 1e9)
    else:
        need = 2 * snapshot_bytes(num_params["G"], num_params["D"]) + 50_000_000
    if setup.full_resume:
        run_dir = setup.resume.info.run_dir
        check_writable(run_dir)
        cleanup.enter_context(RunLock(run_dir))
        check_appendable(run_dir)
        check_free_space(run_dir, need)
        for tmp in atomic.remove_stale_temps(run_dir):
            log.info("removed %s, left by a killed write", tmp.name)
        return run_dir
    if not r.user.outdir:
        raise ConfigError("--outdir is required (except when fully resuming a run)")
    outdir = Path(r.user.outdir)
    check_writable(outdir)
    check_free_space(outdir, need)
    run_dir, lock = create_numbered_run(outdir, run_description(r, setup.archive.path.stem))
    cleanup.enter_context(lock)
    check_writable(run_dir)
    return run_dir


def check_appendable(run_dir: Path) -> None:
    """The files a resumed run appends to must be plain files in the run folder: a planted
    symlink (`log.txt -> ~/.bashrc`) would otherwise be written through."""
    for p in [run_dir / "log.txt", run_dir / "stats.jsonl", *run_dir.glob("metric-*.jsonl")]:
        if p.is_symlink() or (p.exists() and not p.is_file()):
            raise InputError(f"{p}: not a plain file; a run folder's logs must be files, not links")


def fakes_name(nimg: int) -> str:
    """`fakes-KKKKKK[.FFF].png`: named like the snapshot taken at the same tick."""
    return f"fakes-{kimg_label(nimg)}.png"


def check_outdir_kind(folder: Path) -> None:
    """A file where a folder is wanted: one line (mkdir's 'File exists' says nothing)."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: not a folder; give a folder to write runs into")


def check_writable(folder: Path) -> None:
    """Create `folder` and prove a file can be written there, or fail with one line."""
    check_outdir_kind(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise InputError(f"{folder}: output folder is not writable ({e.strerror or e})") from None


def check_free_space(folder: Path, need_bytes: int) -> None:
    """Fail before training when the disk cannot hold a couple of snapshots."""
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise ConfigError(
            f"{folder}: only {free / 1e9:.2f} GB free, training needs about "
            f"{need_bytes / 1e9:.2f} GB for snapshots; free space or set --min-free-gb"
        )


def snapshot_bytes(num_params_G: int, num_params_D: int) -> int:
    """Size of one snapshot: G, G_ema, D and two Adam moments each for G and D, in float32."""
    return 4 * (2 * num_params_G + num_params_D + 2 * (num_params_G + num_params_D))


class _LogFile(logging.FileHandler):
    """A log file that goes quiet when it cannot be written (a full disk): the console still
    gets every record, and the one error the user sees is the write that failed training."""

    def handleError(self, record: logging.LogRecord) -> None:
        self.setLevel(logging.CRITICAL + 1)

    def _open(self):  # never through a link planted as log.txt (atomic.open_append)
        return atomic.open_append(self.baseFilename)


def attach_log_file(path: Path) -> logging.Handler:
    """Mirror mrisynth's log records (INFO and up) into the run's `log.txt`."""
    with atomic.disk_full_as_error(path):
        handler = _LogFile(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    pkg = logging.getLogger("mrisynth")
    pkg.addHandler(handler)
    if pkg.getEffectiveLevel() > logging.INFO:
        pkg.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger("mrisynth").removeHandler(handler)
    handler.close()


def drop_stats_after(path: Path, nimg: int) -> int:
    """Remove `stats.jsonl` lines logged after the snapshot a run resumes from (they will be
    logged again); returns how many were dropped."""
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    # surrogateescape: foreign bytes in the file are kept as they are, never a decode error
    for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        try:
            kimg = untrusted.number(
                untrusted.loads(line, str(path), allow_nan=True)["Progress/kimg"]["mean"], "kimg"
            )
        except (untrusted.BadValue, KeyError, TypeError):
            keep.append(line)  # not a tick line of ours: left as it is
            continue
        if kimg * 1000 > nimg + 0.5:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        text = "".join(x + "\n" for x in keep)
        atomic.write_bytes(path, text.encode("utf-8", errors="surrogateescape"))
    return dropped


def grid_indices(num_items: int, count: int = GRID_W * GRID_H) -> list[int]:
    """Evenly spread dataset indices for `reals.png` (their labels condition the fakes grid)."""
    return [int(i) for i in np.linspace(0, num_items - 1, count).round()]


def save_image_grid(path: Path, images: torch.Tensor, grid_w: int = GRID_W) -> None:
    """images [N, C, H, W] (float in [-1, 1] or uint8) -> one PNG; 1 channel saved as grayscale."""
    if images.dtype != torch.uint8:
        images = quantize_images(images)
    grid = make_grid(images.cpu().numpy(), cols=grid_w)  # [C, gh*H, gw*W]; grey stays 1 channel
    atomic.write_bytes(path, encode_png(grid))


@torch.no_grad()
def generate_grid(
    G_ema: torch.nn.Module, z: torch.Tensor, c: torch.Tensor, batch: int
) -> torch.Tensor:
    """Images [N, C, H, W] of the fixed grid latents, constant noise (comparable across ticks)."""
    out = [
        G_ema(zb, cb, noise_mode="const").cpu()
        for zb, cb in zip(z.split(batch), c.split(batch), strict=True)
    ]
    return torch.cat(out)
