"""A folder where only a few KiB fit, for full-disk tests.

As root on Linux it is a real tmpfs of that size (remounted larger to "free space"); elsewhere
the same limit is injected: an fsync of a file under the folder fails with ENOSPC once the
files there exceed the size (every mrisynth output is fsynced by mrisynth.atomic before its
rename, so this is where a full disk surfaces for them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from unittest import mock


class SmallDisk:
    def __init__(self, path: Path, size_kib: int) -> None:
        self.path, self.size = path, size_kib * 1024
        self.real = False

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def grow(self, size_kib: int) -> None:
        """Free space: the disk now holds `size_kib` KiB."""
        self.size = size_kib * 1024
        if self.real:
            _mount_cmd(["mount", "-o", f"remount,size={size_kib}k", str(self.path)])

    def _fsync(self, real_fsync, fd: int) -> None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(str(self.path)) and self.used() > self.size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)


def _mount_cmd(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@contextlib.contextmanager
def small_disk(path: Path, size_kib: int, injected: bool = False) -> Iterator[SmallDisk]:
    """`injected=True` skips the tmpfs even where one could be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    disk = SmallDisk(path.resolve(), size_kib)
    if not injected and os.name == "posix" and os.geteuid() == 0 and _mount_cmd(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(disk.path)]
    ):
        disk.real = True
        try:
            yield disk
        finally:
            _mount_cmd(["umount", "-l", str(disk.path)])
        return
    real_fsync = os.fsync
    with mock.patch("os.fsync", lambda fd: disk._fsync(real_fsync, fd)):
        yield disk
