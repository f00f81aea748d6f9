"""The images to project: PNG files, folders or training archives (ZIP), read lazily.

Every image goes through mrisynth's checked PNG path (size claims bounded before decoding,
truncation refused). A source that cannot be opened at all is an InputError before any work; a
single bad image (corrupt, wrong size or channels) becomes a `Target` with a `problem`, which the
batch skips and reports.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrisynth.data.archive import ImageArchive
from mrisynth.data.png import as_uint8_chw, decode_checked
from mrisynth.errors import ConfigError, InputError
from mrisynth.generate.images import read_png

MAX_NAME = 40  # characters of a source name kept in an output folder's name
MAX_TARGETS = 1_000_000


@dataclass(frozen=True)
class Target:
    """One image to project; `key` names its output folder (unique within a group)."""

    name: str  # what the user sees: 'scan.png' or 'data.zip:img00012.png'
    key: str  # '0003-img00012'
    image: np.ndarray | None  # uint8 [C, H, W]; None when `problem` says why not
    problem: str | None = None

    @property
    def sha256(self) -> str:
        """Content hash of the pixels (a resumed run checks it has the same target)."""
        assert self.image is not None
        h = hashlib.sha256(str(self.image.shape).encode())
        h.update(np.ascontiguousarray(self.image).tobytes())
        return h.hexdigest()


class _Source:
    """A PNG file, or an archive (folder / ZIP of PNGs) opened once and read per image."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.archive: ImageArchive | None = None
        if path.is_dir() or (path.is_file() and zipfile.is_zipfile(path)):
            self.archive = ImageArchive(path)  # InputError if it holds no readable PNG
        elif not path.is_file():
            what = "not a PNG file, folder or ZIP archive (a pipe, device or socket)" if (
                path.exists()) else "no such PNG file, folder or ZIP archive"
            raise InputError(f"{path}: {what}")

    def __len__(self) -> int:
        return len(self.archive) if self.archive is not None else 1

    def name(self, i: int) -> str:
        return f"{self.path}:{self.archive.names[i]}" if self.archive else str(self.path)

    def read(self, i: int) -> np.ndarray:
        """uint8 [C, H, W], decoded leniently (16-bit scaled, alpha dropped); its shape is
        checked against the generator's by the caller, not against the archive's first image."""
        if self.archive is None:
            return read_png(self.path)
        name = self.archive.names[i]
        data = self.archive.read_member(name)
        if data is None:
            raise InputError(f"{self.path}: member {name} vanished while reading")
        return as_uint8_chw(decode_checked(data, f"{self.path}/{name}")[1])


def open_sources(paths: Sequence[str | Path]) -> list[_Source]:
    """Open every source up front, so a mistyped path fails before hours of projection."""
    if not paths:
        raise ConfigError("no target images given; pass --target IMAGE|FOLDER|ZIP")
    return [_Source(Path(p)) for p in paths]


def chosen_indices(count: int, num: int | None) -> list[int]:
    """All indices, or `num` spread evenly over the source (first and last included)."""
    if num is None or num >= count:
        return list(range(count))
    return sorted({round(float(x)) for x in np.linspace(0, count - 1, num)})


def iter_targets(
    sources: Sequence[_Source], shape: tuple[int, int, int], num: int | None = None
) -> Iterator[Target]:
    """Targets in order; `num`: at most that many per source. `shape`: the generator's
    [C, H, W]; other shapes become targets with a problem."""
    if num is not None and not 1 <= num <= MAX_TARGETS:
        raise ConfigError(f"--num must be in 1..{MAX_TARGETS}, got {num}")
    index = 0
    for source in sources:
        for i in chosen_indices(len(source), num):
            name = source.name(i)
            key = f"{index:04d}-{_safe(Path(name.rsplit(':', 1)[-1]).stem)}"
            index += 1
            try:
                image = source.read(i)
            except InputError as e:
                yield Target(name, key, None, str(e))
                continue
            image = grey_if_equal(image, shape[0])
            problem = shape_problem(image.shape, shape)
            yield Target(name, key, None if problem else image, problem)


def grey_if_equal(image: np.ndarray, channels: int) -> np.ndarray:
    """A grey image stored as colour (R = G = B: grey + alpha and grey palette PNGs decode
    so too) as one channel, when the generator makes grayscale."""
    if channels == 1 and image.shape[0] == 3 and (image[1:] == image[:1]).all():
        return image[:1]
    return image


def shape_problem(got: tuple[int, ...], want: tuple[int, int, int]) -> str | None:
    """Why an image of shape `got` cannot be a target for a generator of `want`, or None."""
    if tuple(got) == tuple(want):
        return None
    c, h, w = got
    wc, wh, ww = want
    if c != wc:
        return (f"has {c} channel(s) (alpha, if any, left out), the generator makes {wc}; "
                f"convert the image to {'grayscale' if wc == 1 else 'RGB'} first")
    return (f"is {w}x{h}, the generator makes {ww}x{wh} images; resize it first "
            f"(e.g. `mrisynth prepare --size {wh}`)")  # fmt: skip


def _safe(stem: str) -> str:
    """A file-name-safe piece of a name from anywhere (archive member, user file)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:MAX_NAME] or "image"
