"""The output folder of `prepare`: ownership marker, per-folder secret, and a resumable write.

Order of writes, so that a kill or a full disk at any moment leaves a folder that a re-run of the
same command finishes: the marker `.mrisynth-prepare` first (says "this folder is prepare's",
state "incomplete"), the secret, the PNGs, the manifest and report, and last the marker's state
"complete". When the PNGs are about to change, the old manifest and report are removed first, so
a folder never shows a manifest that looks valid beside PNGs it does not describe. Hidden files
(dot-names) are never packed into a training archive.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
from pathlib import Path

from mrisynth import atomic, untrusted
from mrisynth.data.manifest import read_manifest
from mrisynth.errors import ConfigError, DiskFullError, InputError

MANIFEST_FILE = "manifest.csv"
REPORT_FILE = "report.json"
MASKS_DIR = "masks"  # --masks: one label PNG per image, same name
MASK_LABELS_FILE = f"{MASKS_DIR}/labels.json"  # label names and grey ranges of those masks
MARKER_FILE = ".mrisynth-prepare"  # written first: recognises our own (partial) output
SECRET_FILE = ".mrisynth-secret"  # HMAC key of patient keys; stays in this folder (mode 0600)
SOURCES_FILE = ".mrisynth-sources.csv"  # source ids -> input paths, for this machine only (0600)
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 4096
OUR_PNG = re.compile(r"^p[0-9a-f]{10}_[a-z0-9_]+_[0-9a-f]{8}_\d{3,}\.png$")
BLOCK = 4096  # files occupy whole blocks


def check_paths(inputs: list[Path], output: Path) -> None:
    """Inputs exist; the output is neither an input nor inside one (inputs are never written),
    and is new, empty or prepare's own (marker, or a manifest from before markers existed)."""
    out = output.resolve()
    for inp in inputs:
        if not inp.exists():
            raise InputError(f"{inp}: no such file or folder")
        src = inp.resolve()
        if out == src or (src.is_dir() and out.is_relative_to(src)):
            raise ConfigError(f"{output}: the output must not be inside the input {inp}")
        if src.is_relative_to(out):
            raise ConfigError(f"{output}: the output must not contain the input {inp}")
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not _ours(output):
        raise ConfigError(
            f"{output}: folder is not empty and is not a previous `mrisynth prepare` output; "
            "choose a new folder"
        )


def _ours(folder: Path) -> bool:
    """prepare's marker, or (from before markers) its manifest beside its report.json; never
    a generate output or a training archive folder, which carry a manifest.csv too and whose
    listed PNGs a prepare into them would remove as stale."""
    if (folder / MARKER_FILE).is_file():
        return True
    others = ("generation.json", "generation.partial.json", "dataset.json")
    return (
        (folder / MANIFEST_FILE).is_file()
        and (folder / "report.json").is_file()
        and not any((folder / n).exists() for n in others)
    )


def _marker(complete: bool) -> bytes:
    state = {"tool": "mrisynth prepare", "format": 1, "complete": complete}
    return (json.dumps(state) + "\n").encode()


def unfinished(folder: Path) -> str | None:
    """Why `folder` is a prepare output that did not finish (killed, disk full), else None;
    for readers such as `mrisynth dataset` that should not pack a partial run."""
    marker = folder / MARKER_FILE
    if not marker.is_file():
        return None
    try:
        text = marker.read_text(encoding="utf-8")
        complete = untrusted.loads(text, str(marker), allow_nan=True).get("complete")
    except (OSError, ValueError, AttributeError, untrusted.BadValue):
        complete = False
    if complete is True:
        return None
    return (
        f"{folder}: `mrisynth prepare` did not finish writing this folder (killed, or the disk "
        "was full); run the same prepare command again first"
    )


def write_if_changed(path: Path, data: bytes, mode: int | None = None) -> bool:
    """Atomic write unless the file already holds exactly these bytes (idempotent re-runs)."""
    if _same(path, data):
        return False
    with atomic.atomic_path(path) as tmp:
        if mode is not None:
            os.chmod(tmp, mode)  # before the content is written
        tmp.write_bytes(data)
    return True


def claim(output: Path) -> None:
    """Make `output` ours (or confirm it is) and clear temp files a killed run left in it."""
    with atomic.disk_full_as_error(output / MARKER_FILE):
        output.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale_temps(output)
    if not (output / MARKER_FILE).is_file():
        write_if_changed(output / MARKER_FILE, _marker(complete=False))


def load_secret(output: Path, user_file: Path | None) -> bytes:
    """The HMAC key for patient keys: the user's file, else this folder's (created once).

    Both are used the same way (the stripped file content), so giving another prepare
    `--patient-key-secret OUT/.mrisynth-secret` reproduces this folder's patient keys."""
    if user_file is not None:
        try:
            with user_file.open("rb") as f:  # bounded: a mistyped path may name a huge file
                key = f.read(MAX_SECRET_BYTES + 1).strip()
        except OSError as e:
            raise InputError(f"{user_file}: cannot read the secret ({e.strerror})") from None
        if len(key) > MAX_SECRET_BYTES:
            raise InputError(
                f"{user_file}: over {MAX_SECRET_BYTES} bytes, not a patient-key secret (a key "
                "file holds one line, e.g. from: python -c \"import secrets; "
                'print(secrets.token_hex(32))")'
            )
        if len(key) < MIN_SECRET_BYTES:
            raise InputError(
                f"{user_file}: a patient-key secret needs at least {MIN_SECRET_BYTES} bytes "
                '(make one with: python -c "import secrets; print(secrets.token_hex(32))")'
            )
        return key
    path = output / SECRET_FILE
    if not path.is_file():
        write_if_changed(path, (secrets.token_hex(32) + "\n").encode(), mode=0o600)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise InputError(
            f"{path}: not a secret written by mrisynth; delete it to start new patient keys "
            "(every PNG name will change) or restore the original"
        )
    return text.encode()  # the key is the file's text, as for --patient-key-secret FILE


def source_id(secret: bytes, rel: str) -> str:
    """How reports name an input file when paths are hidden: a keyed hash of its path."""
    return "src-" + hmac.new(secret, rel.encode(), hashlib.sha256).hexdigest()[:12]


def _blocks(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def _check_free_space(output: Path, files: dict[str, bytes]) -> None:
    """Refuse before writing anything when the disk cannot hold what this run adds."""
    need = 0
    for name, data in files.items():
        old = output / name
        need += max(0, _blocks(len(data)) - (_blocks(old.stat().st_size) if old.is_file() else 0))
    need += max((_blocks(len(d)) for d in files.values()), default=0)  # one temp file at a time
    free = shutil.disk_usage(output).free
    if free < need:
        raise DiskFullError(
            f"{output}: not enough free space: prepare needs {need / 2**20:.1f} MB for "
            f"{len(files)} files, {free / 2**20:.1f} MB are free; free some space or choose "
            "another output folder, then run the same command again"
        )


def _stale(output: Path, keep: set[str]) -> list[Path]:
    """PNGs of earlier runs into this folder that this run does not produce."""
    names = {p.name for p in output.iterdir() if OUR_PNG.match(p.name)}
    masks = output / MASKS_DIR
    if masks.is_dir() and not masks.is_symlink():  # masks of a --masks run
        names |= {f"{MASKS_DIR}/{p.name}" for p in masks.iterdir() if OUR_PNG.match(p.name)}
    old = output / MANIFEST_FILE
    if old.is_file():  # folders from before the marker: what their manifest lists
        rows = read_manifest(old.read_text(encoding="utf-8"), str(old))
        names |= {r["file"] for r in rows if "/" not in r["file"] and r["file"].endswith(".png")}
    return [output / n for n in sorted(names - keep) if (output / n).is_file()]


def write_outputs(
    output: Path, images: dict[str, bytes], tables: dict[str, bytes]
) -> tuple[set[str], int]:
    """Write the PNGs, then `tables` (manifest, report, ...) in the given order; returns
    (names of the PNGs written, stale PNGs removed). Unchanged files are not touched."""
    changed = {n: d for n, d in images.items() if not _same(output / n, d)}
    stale = _stale(output, set(images))
    _check_free_space(output, {**changed, **tables})
    if changed or stale:
        write_if_changed(output / MARKER_FILE, _marker(complete=False))
        for name in (MANIFEST_FILE, REPORT_FILE):
            (output / name).unlink(missing_ok=True)
    left = sum(len(d) for d in changed.values())
    try:
        for name, data in changed.items():
            atomic.write_bytes(output / name, data)
            left -= len(data)
    except DiskFullError as e:
        raise DiskFullError(
            f"{e} (prepare needs about {left / 2**20:.1f} MB more for its images)"
        ) from None
    for p in stale:
        p.unlink(missing_ok=True)
    for name, data in tables.items():
        write_if_changed(output / name, data, mode=0o600 if name == SOURCES_FILE else None)
    write_if_changed(output / MARKER_FILE, _marker(complete=True))
    return set(changed), len(stale)


def drop_masks_folder(output: Path) -> None:
    """Remove masks/labels.json and the then empty masks/ left by an earlier --masks run."""
    (output / MASK_LABELS_FILE).unlink(missing_ok=True)
    masks = output / MASKS_DIR
    if masks.is_dir() and not masks.is_symlink() and not any(masks.iterdir()):
        masks.rmdir()


def _same(path: Path, data: bytes) -> bool:
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
