"""Hostile-input guards for DICOM files: header values checked before use, the size of the
pixel data bounded before anything is decoded or inflated, and any failure turned into a reason.

Every value `prepare` takes from a header passes through one of the `*_value` readers here,
which either return a checked value or raise `HeaderProblem` with a one-line reason. The limits
below are documented in README.md (`mrisynth prepare`, "Limits").
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

MAX_SIDE = 8192  # Rows, Columns
MAX_FRAMES = 4096  # NumberOfFrames
MAX_FRAME_PIXELS = 4096 * 4096  # one frame decoded as float64 is 128 MiB
MAX_PIXEL_BYTES = 256 * 2**20  # stored pixel data of one object, all frames
MAX_FILE_BYTES = MAX_PIXEL_BYTES + 64 * 2**20  # a file read whole for decoding
MAX_INFLATED_BYTES = MAX_FILE_BYTES  # a Deflated dataset once inflated
MAX_HEADER_BYTES = 8 * 2**20  # elements before the pixel data (~35x that in memory)
MAX_SPACING_RATIO = 8.0  # PixelSpacing row/column (isotropic resampling grows the image by it)
SPACING_RANGE_MM = (1e-3, 1e3)
MAX_COORDINATE_MM = 1e6  # ImagePositionPatient
BITS_ALLOCATED = (8, 16, 32)
# exceptions that must stop the whole run; everything else fails only the file in hand
FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


class HeaderProblem(Exception):
    """A header value that cannot be used; `str(e)` is the one-line reason for the report."""


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _items(value: Any) -> list[Any]:
    """A multi-valued element as a list, a single value as a one-item list."""
    if isinstance(value, (list, tuple, MultiValue)):
        return list(value)
    return [value]


def _number(keyword: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise HeaderProblem(f"{keyword} {_show(value)} is not a number") from None
    if not math.isfinite(x):
        raise HeaderProblem(f"{keyword} {_show(value)} is not a finite number")
    return x


def int_value(ds: pydicom.Dataset, keyword: str, lo: int, hi: int, default: int | None) -> int:
    """A single whole number in lo..hi; `default` when absent (None default = required)."""
    value = ds.get(keyword)
    if value is None or value == "":
        if default is None:
            raise HeaderProblem(f"no {keyword}")
        return default
    items = _items(value)
    if len(items) != 1:
        raise HeaderProblem(f"{keyword} {_show(value)} has {len(items)} values; expected one")
    x = _number(keyword, items[0])
    if x != int(x):
        raise HeaderProblem(f"{keyword} {_show(items[0])} is not a whole number")
    if not lo <= x <= hi:
        raise HeaderProblem(f"{keyword} {int(x)} is outside {lo}..{hi}")
    return int(x)


def float_value(
    ds: pydicom.Dataset, keyword: str, default: float | None, nonzero: bool = False
) -> float | None:
    """A single finite number (non-zero if asked); `default` when absent."""
    return number_value(ds.get(keyword), keyword, default, nonzero)


def number_value(
    value: Any, keyword: str, default: float | None, nonzero: bool = False
) -> float | None:
    """`float_value` for a value taken from anywhere (e.g. a functional group)."""
    if value is None or value == "":
        return default
    items = _items(value)
    if len(items) != 1:
        raise HeaderProblem(f"{keyword} {_show(value)} has {len(items)} values; expected one")
    x = _number(keyword, items[0])
    if nonzero and x == 0:
        raise HeaderProblem(f"{keyword} is 0")
    return x


def optional_float(ds: pydicom.Dataset, keyword: str) -> float | None:
    """Descriptive values (echo time, field strength...): None when absent or unusable."""
    try:
        return float_value(ds, keyword, None)
    except HeaderProblem:
        return None


def floats_value(value: Any, keyword: str, n: int) -> tuple[float, ...] | None:
    """Exactly n finite numbers, or None when absent."""
    if value is None or value == "":
        return None
    items = _items(value)
    if len(items) != n:
        raise HeaderProblem(f"{keyword} {_show(value)} has {len(items)} values; expected {n}")
    return tuple(_number(keyword, v) for v in items)


def spacing_value(value: Any, keyword: str = "PixelSpacing") -> tuple[float, float] | None:
    """(row, column) spacing in mm within SPACING_RANGE_MM and MAX_SPACING_RATIO; None when
    absent or 0 (unknown)."""
    spacing = floats_value(value, keyword, 2)
    if spacing is None or 0 in spacing:  # real files write 0 for "unknown"
        return None
    lo, hi = SPACING_RANGE_MM
    if not all(lo <= s <= hi for s in spacing):
        raise HeaderProblem(f"{keyword} {_show(value)} is outside {lo:g}..{hi:g} mm")
    if max(spacing) / min(spacing) > MAX_SPACING_RATIO:
        raise HeaderProblem(
            f"{keyword} {_show(value)}: pixels more than {MAX_SPACING_RATIO:g}x longer than wide"
        )
    return spacing  # type: ignore[return-value]


def position_value(value: Any) -> tuple[float, float, float] | None:
    pos = floats_value(value, "ImagePositionPatient", 3)
    if pos is not None and max(abs(v) for v in pos) > MAX_COORDINATE_MM:
        raise HeaderProblem(f"ImagePositionPatient {_show(value)} is implausibly far (> 1 km)")
    return pos  # type: ignore[return-value]


def orientation_value(value: Any) -> tuple[float, ...] | None:
    """Two unit direction cosines at right angles (tolerant of rounded header values)."""
    iop = floats_value(value, "ImageOrientationPatient", 6)
    if iop is None:
        return None
    row, col = iop[:3], iop[3:]
    norms = [math.sqrt(sum(v * v for v in d)) for d in (row, col)]
    dot = sum(a * b for a, b in zip(row, col, strict=True))
    if any(abs(n - 1) > 0.05 for n in norms) or abs(dot) > 0.05:
        raise HeaderProblem(
            f"ImageOrientationPatient {_show(value)} is not two perpendicular unit vectors"
        )
    return iop


def transfer_syntax(ds: pydicom.Dataset) -> UID | None:
    """The file's transfer syntax (None when the file has no meta header)."""
    value = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if value is None or value == "":
        return None
    uid = UID(str(value))
    if not uid.is_transfer_syntax:
        raise HeaderProblem(f"TransferSyntaxUID {_show(str(value))} is not a transfer syntax")
    return uid


def frame_count(ds: pydicom.Dataset) -> int:
    return int_value(ds, "NumberOfFrames", 1, MAX_FRAMES, 1)


def declared_pixel_bytes(ds: pydicom.Dataset) -> int:
    """Rows x Columns x frames x samples x bytes per sample, after checking each factor."""
    rows = int_value(ds, "Rows", 1, MAX_SIDE, None)
    cols = int_value(ds, "Columns", 1, MAX_SIDE, None)
    frames = frame_count(ds)
    samples = int_value(ds, "SamplesPerPixel", 1, 4, 1)
    bits = int_value(ds, "BitsAllocated", 1, 64, 16)
    if bits not in BITS_ALLOCATED:
        raise HeaderProblem(f"BitsAllocated {bits} is not one of {BITS_ALLOCATED}")
    int_value(ds, "BitsStored", 1, bits, bits)
    int_value(ds, "PixelRepresentation", 0, 1, 0)
    if rows * cols > MAX_FRAME_PIXELS:
        raise HeaderProblem(
            f"{rows}x{cols} pixels per frame is over the limit of {MAX_FRAME_PIXELS:,}"
        )
    size = rows * cols * frames * samples * (bits // 8)
    if size > MAX_PIXEL_BYTES:
        raise HeaderProblem(
            f"declares {size / 2**20:,.0f} MiB of pixel data ({rows}x{cols}x{frames} frames); "
            f"the limit is {MAX_PIXEL_BYTES / 2**20:.0f} MiB"
        )
    return size


def check_image_header(ds: pydicom.Dataset) -> None:
    """Everything decoding relies on, checked before any pixel is touched (raises HeaderProblem)."""
    transfer_syntax(ds)
    declared_pixel_bytes(ds)
    float_value(ds, "RescaleSlope", 1.0, nonzero=True)
    float_value(ds, "RescaleIntercept", 0.0)
    spacing_value(ds.get("PixelSpacing"))
    position_value(ds.get("ImagePositionPatient"))
    # a malformed ImageOrientationPatient is not checked here: it makes the geometry unknown
    # (orientation.checked_orientation), the slice is still used


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) that a JPEG / JPEG-LS / JPEG 2000 frame's own header claims, if found."""
    siz = frame.find(b"\xff\x4f\xff\x51", 0, 4096)  # J2K: SOC then SIZ
    if siz >= 0 and len(frame) >= siz + 24:
        x, y, x0, y0 = struct.unpack_from(">IIII", frame, siz + 8)
        return y - y0, x - x0
    if not frame.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 9 <= len(frame) and frame[pos] == 0xFF:
        marker, length = frame[pos + 1], struct.unpack_from(">H", frame, pos + 2)[0]
        if marker in (0xF7, *range(0xC0, 0xD0)) and marker not in (0xC4, 0xC8, 0xCC):
            rows, cols = struct.unpack_from(">HH", frame, pos + 5)  # SOFn / SOF55: P, Y, X
            return (rows, cols) if rows else None  # Y = 0: height given later (DNL)
        pos += 2 + length
    return None


def check_codestreams(ds: pydicom.Dataset) -> None:
    """Compressed frames carry their own size, which decoders allocate by: it must match the
    (already bounded) Rows x Columns, or a small file could ask for gigabytes."""
    ts = transfer_syntax(ds)
    if ts is None or not ts.is_encapsulated or "RLE" in ts.name:  # RLE sizes come from Rows/Cols
        return
    want = (int(ds.Rows), int(ds.Columns))
    frames = generate_frames(ds.PixelData, number_of_frames=frame_count(ds))
    for k, frame in enumerate(frames):
        got = _codestream_size(frame[:65536])
        if got is not None and got != want:
            raise HeaderProblem(
                f"compressed frame {k + 1} claims {got[0]}x{got[1]} pixels but Rows x Columns "
                f"is {want[0]}x{want[1]}"
            )


def check_file_size(path: str | os.PathLike[str]) -> None:
    """A regular file (a FIFO would block, /dev/zero never ends) of at most MAX_FILE_BYTES."""
    st = os.stat(path)  # follows symlinks: what would be read
    if not stat.S_ISREG(st.st_mode):
        raise HeaderProblem("not a regular file (a device, pipe or socket)")
    size = st.st_size
    if size > MAX_FILE_BYTES:
        raise HeaderProblem(
            f"file is {size / 2**20:,.0f} MiB; the limit is {MAX_FILE_BYTES / 2**20:.0f} MiB"
        )


def _inflate(path: str | os.PathLike[str], keep: bool) -> bytes | None:
    """None for a file that is not Deflated; else its dataset inflated in bounded chunks: with
    `keep`, the first MAX_HEADER_BYTES of it or more (enough to read the header), else b"".
    Raises HeaderProblem when the whole inflates beyond MAX_INFLATED_BYTES (a zip bomb)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if DeflatedExplicitVRLittleEndian.encode() not in head:
        return None
    meta = pydicom.filereader.read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return None
    group_length = int_value(meta, "FileMetaInformationGroupLength", 0, 2**20, None)
    start = 128 + 4 + 12 + group_length  # preamble, 'DICM', the group length element, the rest
    inflater, total, kept, parts = zlib.decompressobj(-zlib.MAX_WBITS), 0, 0, []
    with open(path, "rb") as f:
        f.seek(start)
        while (chunk := f.read(1 << 20)) and not inflater.eof:
            while chunk:
                try:
                    out = inflater.decompress(chunk, 1 << 22)
                except zlib.error as e:
                    raise HeaderProblem(f"corrupt Deflated data ({e})") from None
                total += len(out)
                if total > MAX_INFLATED_BYTES:
                    raise HeaderProblem(
                        f"Deflated data inflates to over {MAX_INFLATED_BYTES / 2**20:.0f} MiB "
                        "(the limit)"
                    )
                if keep and kept <= MAX_HEADER_BYTES:  # enough for the header; count the rest
                    parts.append(out)
                    kept += len(out)
                chunk = inflater.unconsumed_tail
    return b"".join(parts)


def check_deflated(path: str | os.PathLike[str]) -> None:
    """pydicom inflates a Deflated file whole in memory: make sure that stays bounded."""
    _inflate(path, keep=False)


class _BoundedReader:
    """A file object that refuses to read more than `limit` bytes in all (seeks are free, so
    values left on disk by `defer_size` do not count)."""

    def __init__(self, fp: Any, limit: int) -> None:
        self._fp, self._left = fp, limit

    def read(self, size: int = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        data = self._fp.read(want)  # never a huge read on a lying length
        self._left -= len(data)
        if self._left < 0:
            raise HeaderProblem(
                f"DICOM header is over {MAX_HEADER_BYTES / 2**20:.0f} MiB (the limit)"
            )
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


def _before_pixels(tag: Any, vr: Any, length: int) -> bool:
    return int(tag) >= 0x7FE00010


def read_bounded_header(
    path: str | os.PathLike[str], defer_size: int, force: bool = False
) -> pydicom.FileDataset:
    """The header (up to the pixel data) of a DICOM file, reading at most MAX_HEADER_BYTES of
    elements: millions of tiny elements cost pydicom ~15x their size in memory and minutes of
    parsing. A Deflated dataset is inflated here (bounded) instead of by pydicom."""
    check_file_size(path)
    inflated = _inflate(path, keep=True)
    if inflated is None:
        with open(path, "rb") as f:
            reader = _BoundedReader(f, MAX_HEADER_BYTES)
            return pydicom.dcmread(
                reader, stop_before_pixels=True, defer_size=defer_size, force=force
            )
    meta = pydicom.filereader.read_file_meta_info(path)
    reader = _BoundedReader(io.BytesIO(inflated), MAX_HEADER_BYTES)
    ds = pydicom.filereader.read_dataset(
        reader, False, True, stop_when=_before_pixels, defer_size=defer_size
    )
    ds.file_meta = meta
    return ds


def failure_reason(
    exc: BaseException, scrub: Sequence[str | Path] = (), what: str = "unreadable"
) -> str:
    """One line for the report from any failure while handling one file.

    Paths in `scrub` are cut out of library messages (they may carry identities). Decoder
    panics from Rust extensions (pyo3's PanicException derives from BaseException) and
    MemoryError land here too.
    """
    if isinstance(exc, HeaderProblem):
        text = str(exc)
    elif isinstance(exc, MemoryError):
        text = "ran out of memory while reading it"
    else:
        what = "decoder crashed" if "Panic" in type(exc).__name__ else what
        text = f"{what} ({type(exc).__name__}: {exc!s})"
    for p in sorted({str(p) for p in scrub if str(p)}, key=len, reverse=True):
        text = text.replace(p, "<file>")
    text = " ".join(text.split())  # one line
    return text if len(text) <= 160 else text[:157] + "..."
