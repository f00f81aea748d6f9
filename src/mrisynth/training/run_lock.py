"""One trainer per run folder: an OS file lock held for the life of the process that writes it.

`flock` on `RUN/.lock` is released by the kernel when the process ends however it ends (a
SIGKILL included), so a killed run never leaves a lock behind; the PID written into the file
only names the holder in the error a second trainer gets. New numbered run folders are claimed
with `mkdir` (atomic, fails if the name exists), so concurrent starts get distinct folders.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from pathlib import Path

from mrisynth.atomic import disk_full_as_error
from mrisynth.errors import ConfigError

LOCK_NAME = ".lock"
_RUN_ID = re.compile(r"^(\d+)-")


class RunLockedError(ConfigError):
    """Another process is training in (or resuming) this run folder."""


def _open_lock_file(path: Path, flags: int) -> int:
    """Open the lock file itself: never through a symlink (a planted `.lock -> /etc/passwd`
    must not be truncated), never a directory or device."""
    try:
        with disk_full_as_error(path):
            fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    except OSError as e:
        raise ConfigError(
            f"{path}: cannot open the run's lock file ({e.strerror or e}); remove it if it is "
            "not a plain file, then run this command again"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{path}: the run's lock file is not a plain file; remove it and retry")
    return fd


def _holder(fd: int) -> str:
    """'PID n' of the lock file's writer (only informative: the flock is what protects)."""
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "PID unknown"


def _locked_message(run_dir: Path, holder: str) -> str:
    return (
        f"{run_dir}: another mrisynth train ({holder}) is using this run folder; "
        "wait for it to finish or stop it, then run this command again"
    )


class RunLock:
    """An exclusive, non-blocking lock on a run folder; `release()` or process exit frees it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = _open_lock_file(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(self._fd)
            os.close(self._fd)
            self._fd = None
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise ConfigError(f"{self.run_dir}: cannot lock the run folder ({e})") from None
            raise RunLockedError(_locked_message(self.run_dir, holder)) from None
        with disk_full_as_error(self.path):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def refuse_if_locked(resume: str | os.PathLike[str]) -> None:
    """Fail at once when the run folder of `resume` (a run folder or a snapshot in one) is
    being trained, before minutes of reading data; the lock itself is taken later. A shared
    lock on a read-only descriptor: needs no write access and changes nothing."""
    path = Path(resume)
    run_dir = path if path.is_dir() else path.parent
    if not (run_dir / LOCK_NAME).is_file():
        return  # never trained here (anything odd in its place: the real lock will tell)
    fd = _open_lock_file(run_dir / LOCK_NAME, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise RunLockedError(
                _locked_message(run_dir, _holder(fd))
                + " (or --resume-mode weights to start a new run from its latest snapshot)"
            ) from None
    finally:
        os.close(fd)


def create_numbered_run(outdir: Path, desc: str, attempts: int = 1000) -> tuple[Path, RunLock]:
    """Claim `outdir/NNNNN-desc` (one past the largest id) race-free and lock it."""
    for _ in range(attempts):
        ids = [int(m.group(1)) for p in outdir.iterdir() if (m := _RUN_ID.match(p.name))]
        run_dir = outdir / f"{max(ids, default=-1) + 1:05d}-{desc}"
        try:
            with disk_full_as_error(run_dir):
                run_dir.mkdir()
        except FileExistsError:
            continue  # another process took this id between our listing and mkdir
        return run_dir, RunLock(run_dir)
    raise ConfigError(f"{outdir}: could not claim a new run folder after {attempts} tries")
