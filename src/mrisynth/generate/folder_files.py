"""A `mrisynth generate` folder read back by the stages that consume it: its manifest.csv (which
image has which mask, `mask_file`), the files that manifest names, and the run folder its
generator came from (`generation.json`).

One reader for every consumer (downstream's image + mask pairs; metrics --images' and the reader
study's images, `listed_images`), so all take the same images within the same bounds. A generate
folder may come from anyone, so:
- a name from the manifest is used only if it is a plain PNG name directly in the folder (no
  path parts, not hidden): `../x.png`, `/etc/x.png` or `masks/../../x` never leave the folder;
- files are opened without following links (`O_NOFOLLOW`) and without blocking (`O_NONBLOCK`),
  then checked to be regular: a symbolic link (it could point anywhere), a FIFO or a device is
  refused, with no window between the check and the read;
- reads are bounded (`MAX_FILE_BYTES`) and the manifest's rows are counted (`MAX_ROWS`), so a
  huge file or a manifest of millions of tiny rows costs bounded memory.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from mrisynth.errors import InputError
from mrisynth.generate.output_folder import INFO_NAME, MANIFEST_NAME

MAX_FILE_BYTES = 64 * 2**20  # one PNG, SEG or the manifest (generate's limit is 1M images)
MAX_ROWS = 2_000_000  # generate's 1M seeds x (png + dicom)


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """The columns a consumer needs of one row (the rest is not kept: memory stays small)."""

    file: str
    format: str  # "png" or "dicom"; "png" when the column is absent
    mask_file: str  # "" when the seed has no mask


@dataclass(frozen=True)
class GeneratedManifest:
    rows: tuple[ManifestRow, ...]
    has_masks: bool  # a mask_file column (generate always writes it; empty cells: unpaired)

    def pairs(self) -> list[tuple[str, str | None]]:
        """(image, mask or None) of each PNG row; DICOM rows repeat the seed as SEG."""
        return [(r.file, r.mask_file or None) for r in self.rows if r.format == "png"]

    def mask_names(self) -> set[str]:
        """Every name the mask_file column gives (PNG label maps and DICOM SEGs)."""
        return {r.mask_file.replace("\\", "/") for r in self.rows if r.mask_file}


def plain_name(name: str) -> bool:
    """A PNG file name directly in the folder: no path parts, not hidden, no control chars."""
    return (
        0 < len(name) <= 255
        and Path(name).name == name
        and name not in (".", "..")
        and not name.startswith(".")
        and "\\" not in name
        and name.isprintable()
        and name.lower().endswith(".png")
    )


def read_file(folder: Path, name: str, limit: int | None = None) -> bytes | None:
    """Bytes of `folder/name` (None when absent); InputError (the reason) for a link, a special
    file, a file over `limit` bytes or a read error. Links are never followed."""
    limit = MAX_FILE_BYTES if limit is None else limit
    path = Path(folder) / name
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise InputError(f"{path}: a symbolic link (copy the file into the folder)") from None
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # a folder, FIFO or device
        os.close(fd)
        raise InputError(f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > limit:
            raise InputError(f"{path}: {st.st_size} bytes; at most {_size(limit)}")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(data) > limit:  # grew while we read
        raise InputError(f"{path}: more than {_size(limit)}")
    return data


def _size(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit} bytes"


def read_manifest(folder: str | Path, option: str) -> GeneratedManifest | None:
    """The folder's manifest.csv; None when it has none, or one without a `file` column (not
    generate's: then it names no pairs and no masks). InputError, naming `option` and the file,
    when it cannot be read: a link, a special file, too large, not UTF-8, malformed CSV, too
    many rows."""
    path = Path(folder) / MANIFEST_NAME
    try:
        raw = read_file(Path(folder), MANIFEST_NAME)
        return None if raw is None else _parse(raw.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        reason: str = f"{path}: not UTF-8 text"
    except InputError as e:
        reason = str(e)
    raise InputError(
        f"{option} {reason}; re-run `mrisynth generate` into a new folder, or remove that file"
    )


def generated_manifest(folder: str | Path, option: str) -> GeneratedManifest | None:
    """The manifest of a finished `mrisynth generate` folder (generation.json and a manifest
    with a `file` column), or None for any other folder. Every consumer asks this one question,
    so all agree on which folders are generate outputs; InputError as `read_manifest`."""
    folder = Path(folder)
    if not folder.is_dir() or not (folder / INFO_NAME).is_file():
        return None
    return read_manifest(folder, option)


def listed_images(folder: str | Path, option: str) -> list[str] | None:
    """The PNG images a finished generate folder's manifest lists (never grid.png or a mask),
    or None when `folder` is no generate output (no generation.json, or no manifest with a
    `file` column): then every PNG is an image, as for any folder. InputError, naming
    `option`, for a listed name that is not a plain PNG in the folder or is missing."""
    folder = Path(folder)
    manifest = generated_manifest(folder, option)
    if manifest is None:
        return None
    names = list(dict.fromkeys(image for image, _ in manifest.pairs()))
    for name in names:
        if not plain_name(name):
            raise InputError(
                f"{option} {folder / MANIFEST_NAME} lists {name[:80]!r}, not a PNG name in the "
                "folder; re-run `mrisynth generate` into a new folder"
            )
        if not (folder / name).is_file():
            raise InputError(
                f"{option} {folder / MANIFEST_NAME} lists {name}, which is not in the folder; "
                "put it back, or re-run `mrisynth generate` into a new folder"
            )
    return names


def _parse(text: str, source: str) -> GeneratedManifest | None:
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns = reader.fieldnames or []
        if "file" not in columns:
            return None
        rows = []
        for row in reader:
            if len(rows) >= MAX_ROWS:
                raise InputError(f"{source}: more than {MAX_ROWS} rows")
            rows.append(ManifestRow(
                str(row.get("file") or ""), str(row.get("format") or "png"),
                str(row.get("mask_file") or ""),
            ))  # fmt: skip
    except csv.Error as e:
        raise InputError(f"{source}: malformed CSV ({str(e)[:80]})") from None
    return GeneratedManifest(tuple(rows), "mask_file" in columns)


# -- the generator behind the folder ----------------------------------------------------------
RUN_LINK = "network_from_outdir"  # generation.json: the network's path relative to --outdir
MAX_INFO_BYTES = 4 * 2**20


def run_link(network: str | Path, outdir: str | Path) -> dict[str, str]:
    """generation.json's pointer from the output folder to the network, so the run is found
    again from any current folder and after moving both together (relative: no user's home
    folder in a file that travels with the images). {} when there is no relative path."""
    try:
        return {RUN_LINK: os.path.relpath(Path(network).resolve(), Path(outdir).resolve())}
    except (OSError, ValueError, RuntimeError):  # another drive, a symlink loop
        return {}


@dataclass(frozen=True)
class GeneratorRun:
    """The run folder of the snapshot that generated the folder (checked by its sha256), or
    None with the reason it cannot be found."""

    run_dir: Path | None
    reason: str = ""


def generator_run(folder: str | Path) -> GeneratorRun:
    """Where the folder's generator trained: generation.json's network as typed (from the
    current folder), from the output folder (`network_from_outdir`) and from the output
    folder's parent; the first run folder holding the snapshot with the recorded sha256."""
    from mrisynth import untrusted as u
    from mrisynth.hashing import sha256_file

    folder = Path(folder)
    try:
        raw = read_file(folder, INFO_NAME, MAX_INFO_BYTES)
        if raw is None:
            return GeneratorRun(None, f"{folder} has no {INFO_NAME}")
        info = u.mapping(u.loads(raw, INFO_NAME, MAX_INFO_BYTES), INFO_NAME)
        snapshot = u.text(info.get("snapshot"), "snapshot", 255)
        sha = u.text(info.get("model_sha256"), "model_sha256", 64)
        network = u.optional(u.text, info.get("network"), "network")
        link = u.optional(u.text, info.get(RUN_LINK), RUN_LINK)
    except (InputError, u.BadValue) as e:
        return GeneratorRun(None, f"{folder / INFO_NAME} cannot be used ({str(e)[:120]})")
    if not snapshot or Path(snapshot).name != snapshot:
        return GeneratorRun(None, f"{folder / INFO_NAME} names no snapshot file")
    candidates = _run_candidates(network, link, folder)
    for run in candidates:
        path = run / snapshot
        try:
            if path.is_file() and not path.is_symlink() and sha256_file(path) == sha:
                return GeneratorRun(run)
        except (OSError, ValueError):
            continue
    shown = ", ".join(u.printable(str(c)) for c in candidates[:4]) or "none"
    where = f"its snapshot {u.printable(snapshot)} (sha256 {sha[:12]}...)"
    return GeneratorRun(None, f"{where} is not in the run folders tried: {shown}")


def _run_candidates(network: str | None, link: str | None, folder: Path) -> list[Path]:
    """Run folders the recorded paths may name (a snapshot's path names its folder)."""
    paths = [Path(t) for t in (network,) if t] + [folder / t for t in (link,) if t]
    if network and not Path(network).is_absolute():
        paths.append(folder.parent / network)
    runs = []
    for p in paths:
        try:
            runs.append(p if p.is_dir() else p.parent)
        except (OSError, ValueError):  # NUL in a hostile record, a name too long
            continue
    return list(dict.fromkeys(runs))
