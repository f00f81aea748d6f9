"""Atomic file output: write to a temp file in the same folder, fsync, then rename.

A reader (or a crash) never sees a half-written file: either the old content or the new one.
Nothing is ever written through or over a symbolic link: a link where we would write (a
`log.txt -> ~/.bashrc` planted in a run folder, a linked `metric-fid50k_full.jsonl`) is
refused with one line naming it, for replaced files and appended logs alike; appends open
the file with O_NOFOLLOW, so a link planted after the check is refused too. The folder a user
names may be a link (an output on another disk); the files we write in it may not.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mrisynth.errors import ConfigError, DiskFullError

# errno values that mean "the disk (or the user's quota) is full": turned into DiskFullError.
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
TEMP_SUFFIX = ".tmp"

# Read once at import: os.umask() can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it is renamed onto `path`.

    On an exception the temp file is removed and `path` is left untouched.
    """
    path = Path(path)
    _refuse_special(path)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
    try:
        with disk_full_as_error(path, tmp_path):
            yield tmp_path
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _refuse_special(path: Path) -> None:
    """A folder, pipe, device or link at `path` is never written: the rename would swap a
    device node such as /dev/null for a regular file when run as root, and a link may point
    outside the folder we were asked to write in."""
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as e:  # a name too long, a folder we may not enter: one line, as a write
        raise ConfigError(f"{path}: cannot be written ({e.strerror or e}); choose another "
                          "output") from None
    if stat.S_ISLNK(mode):
        raise _link_error(path)
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a pipe, device or socket"
        raise ConfigError(f"{path}: exists and is {kind}, not a file; choose another output")


def _link_error(path: Path) -> ConfigError:
    try:
        target = f" to {os.readlink(path)}"
    except OSError:
        target = ""
    return ConfigError(
        f"{path}: not a plain file but a symbolic link{target}; mrisynth never writes through "
        "a link: remove the link (or move the real file there) and run again"
    )


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that means no space or quota left (ENOSPC, EDQUOT, EFBIG)."""
    return isinstance(exc, OSError) and exc.errno in _FULL


@contextlib.contextmanager
def disk_full_as_error(path: str | os.PathLike[str], partial: Path | None = None) -> Iterator[None]:
    """Turn a full-disk OSError raised inside into one DiskFullError naming `path`.

    Other libraries (safetensors, zipfile, OpenCV) report a full disk in their own exception
    types; callers that write through them wrap the write in this context too.
    """
    try:
        yield
    except DiskFullError:
        raise
    except BaseException as exc:  # safetensors raises its own error type with the OS message
        if not (is_disk_full(exc) or "No space left on device" in str(exc)):
            raise
        written = partial.stat().st_size if partial is not None and partial.exists() else 0
        raise DiskFullError(disk_full_message(Path(path), written)) from exc


@contextlib.contextmanager
def output_errors(path: str | os.PathLike[str], option: str = "output") -> Iterator[None]:
    """Writing an output: a full disk is a DiskFullError, and any other OSError means `path`
    cannot be used (read-only, not a folder, no permission): one ConfigError naming it."""
    try:
        with disk_full_as_error(path):
            yield
    except OSError as e:
        blocker = _file_in_the_way(Path(path))
        why = f"{blocker} is a file, not a folder" if blocker else (e.strerror or e)
        raise ConfigError(f"{path}: cannot be written ({why}); choose another {option}") from None


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is not a folder (creating the folders
    then fails with the confusing 'File exists' or 'Not a directory')."""
    parent = path.parent
    try:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        return None if parent.is_dir() else parent
    except OSError:  # exists() raises for a name too long or no permission: the write's reason
        return None


def disk_full_message(path: Path, written_bytes: int = 0) -> str:
    """'no space left on the disk while writing X (free: a MB; ...)': what to do included."""
    folder = path.parent if path.parent.exists() else Path.cwd()
    free = shutil.disk_usage(folder).free
    got = f"; {_size(written_bytes)} of it had been written" if written_bytes else ""
    return (
        f"no space left on the disk while writing {path} (free now: {_size(free)}{got}); "
        "free some space or choose another output folder, then run the same command again"
    )


def _size(num_bytes: int) -> str:
    """Bytes in a unit that shows something for small files too (KB below 1 MB)."""
    return f"{num_bytes / 2**20:.1f} MB" if num_bytes >= 2**20 else f"{num_bytes / 2**10:.1f} KB"


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files that a killed atomic write left in `folder` (not recursive).

    Call only where this process owns the folder (e.g. holds the run lock): a concurrent
    writer's live temp file has the same shape.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line (for .jsonl logs); a single write() of a short line is not torn."""
    path = Path(path)
    with output_errors(path):  # a full disk, or one line naming a path that cannot be written
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_append(path) as f:
            f.write(line.rstrip("\n") + "\n")
            f.flush()
            os.fsync(f.fileno())


def open_append(path: str | os.PathLike[str]) -> IO[str]:
    """`path` opened for appending UTF-8 text, created if missing; a link, folder, pipe or
    device there is refused (ConfigError), checked on the opened file itself (no race)."""
    path = Path(path)
    _refuse_special(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():  # planted after the check above
            raise _link_error(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        _refuse_special(path)  # replaced between the check and the open: say what it is now
        raise ConfigError(f"{path}: not a plain file; choose another output")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8")
