"""Listing and reading the members of an untrusted archive (a folder or a ZIP).

Every member name is checked before use (a name is later joined to an output folder by
`mrisynth dataset`, so an absolute path or `..` would write outside it: zip-slip), links are
refused (they would read files outside the archive), and reads are bounded: the ZIP's size claim
is checked before decompressing and the actual read stops at `MAX_MEMBER_BYTES` whatever the
claim said.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from mrisynth.errors import InputError

MAX_MEMBER_BYTES = 64 * 2**20  # one image, dataset.json or manifest.csv
MAX_NAME_CHARS = 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_member_name(name: str, source: str) -> None:
    """InputError unless `name` is a plain relative POSIX path inside the archive."""
    shown = repr(name)[1:-1][:200]
    reason = None
    if not name or len(name) > MAX_NAME_CHARS:
        reason = "empty or over-long name"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        reason = "control character (NUL, newline, ...) in the name"
    elif "\\" in name:  # also what PowerShell 5's Compress-Archive writes for folders
        raise InputError(
            f"{source}: refused member '{shown}': a backslash in the name (a Windows path "
            "separator, as PowerShell 5's Compress-Archive writes); unzip it and pass the "
            "folder, or zip it with a tool that writes '/' (7-Zip, PowerShell 7)"
        )
    elif name.startswith("/") or _DRIVE.match(name):
        reason = "absolute path"
    elif any(part in ("", ".", "..") for part in name.rstrip("/").split("/")):
        reason = "'..', '.' or empty path component"
    if reason:
        raise InputError(f"{source}: refused member '{shown}': {reason}; the archive is unsafe")


def _is_zip_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)  # 3 = Unix


def list_zip_members(zf: zipfile.ZipFile, source: str) -> list[str]:
    """Checked names of the files in a ZIP (directories left out)."""
    seen: set[str] = set()
    names = []
    for info in zf.infolist():
        name = info.filename
        check_member_name(info.orig_filename, source)  # zipfile cuts names at a NUL
        folded = name.rstrip("/").casefold()
        if folded in seen:
            raise InputError(f"{source}: refused member '{name}': the name occurs twice")
        seen.add(folded)
        if _is_zip_symlink(info):
            raise InputError(f"{source}: refused member '{name}': a symbolic link")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise InputError(f"{source}: refused member '{name}': encrypted")
        names.append(name)
    return names


def list_folder_members(root: Path) -> list[str]:
    """Relative POSIX names of the files under `root`; links (to files or folders) refused."""
    names = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for entry in [*dirnames, *filenames]:
            full = base / entry
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                raise InputError(
                    f"{root}: refused '{rel}': a symbolic link (copy the real file in instead)"
                )
            check_member_name(rel, str(root))
            if entry in filenames and stat.S_ISREG(full.lstat().st_mode):
                names.append(rel)
    return names


def _too_big(source: str, name: str, size: int) -> InputError:
    return InputError(
        f"{source}: member {name} is {size} bytes; members over {MAX_MEMBER_BYTES // 2**20} MiB "
        "are refused (a decompression bomb?)"
    )


def _read_bounded(f: BinaryIO, chunk: int = 2**20) -> bytes:
    """Up to MAX_MEMBER_BYTES + 1 bytes, in chunks: a decompressor never inflates more than
    one chunk at a time, whatever the member claims."""
    parts, total = [], 0
    while total <= MAX_MEMBER_BYTES:
        block = f.read(chunk)
        if not block:
            break
        parts.append(block)
        total += len(block)
    return b"".join(parts)


def read_zip_member(zf: zipfile.ZipFile, name: str, source: str) -> bytes | None:
    """Bytes of one member, None if absent; bounded before and while decompressing."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    if info.file_size > MAX_MEMBER_BYTES:
        raise _too_big(source, name, info.file_size)
    try:
        with zf.open(info) as f:
            data = _read_bounded(f)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError,
            OSError) as exc:
        raise InputError(f"{source}: member {name} cannot be read ({exc})") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise _too_big(source, name, len(data))
    return data


def read_folder_member(root: Path, name: str) -> bytes | None:
    """Bytes of one file under `root`, None if absent; links and oversize files refused."""
    path = root / name
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise InputError(f"{root}: refused '{name}': a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        return None
    if st.st_size > MAX_MEMBER_BYTES:
        raise _too_big(str(root), name, st.st_size)
    try:
        with open(path, "rb") as f:
            data = _read_bounded(f)
    except OSError as exc:
        raise InputError(f"{root}: '{name}' cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise _too_big(str(root), name, len(data))
    return data
