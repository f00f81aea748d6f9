"""Per-slice transforms: decode -> rescale -> MONOCHROME1 guard -> normalise -> square -> resize.

The study (per-slice min-max to 0..255, resize to 256x256, lossless PNG) is the default; the
robust options (percentile clipping, per-volume bounds) follow docs/reference data.md. Every
function here is pure (arrays in, arrays out) except `decode_slice`, which reads one file.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from mrisynth.data.dicom_checks import (
    FATAL,
    MAX_FRAME_PIXELS,
    check_codestreams,
    check_deflated,
    check_file_size,
    check_image_header,
    failure_reason,
    float_value,
    int_value,
)
from mrisynth.data.enhanced import frame_rescale

NORM_METHODS = ("minmax", "percentile", "volume-minmax", "volume-percentile")
FIT_METHODS = ("pad", "stretch", "crop")
CODECS_HINT = "pip install 'mrisynth[codecs]'"


class SliceError(Exception):
    """A slice that cannot be used; `str(e)` is the one-line reason for the report."""


@dataclass(frozen=True)
class SliceOptions:
    """How a slice becomes a training image."""

    size: int = 256  # output side in pixels
    norm: str = "minmax"  # one of NORM_METHODS; minmax = the study's per-slice min-max
    percentiles: tuple[float, float] = (0.5, 99.5)  # for the *percentile methods
    fit: str = "pad"  # one of FIT_METHODS: how a non-square field of view becomes square
    bit_depth: int = 8  # 8 (training) or 16
    isotropic: bool = True  # resample non-square pixels (PixelSpacing) to square first


def _codec_reason(ds: pydicom.Dataset) -> str | None:
    """Why a compressed slice cannot be decoded here, naming the syntax and what to install."""
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is None or not ts.is_compressed:
        return None
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return f"no decoder exists for transfer syntax {ts.name} ({ts})"
    if decoder.is_available:
        return None
    if "2000" in ts.name:
        install = f"{CODECS_HINT} (pylibjpeg + pylibjpeg-openjpeg)"
    elif "RLE" in ts.name:
        install = f"{CODECS_HINT} (pylibjpeg-rle)"
    else:  # JPEG-LS and lossless JPEG: only GPL (pylibjpeg-libjpeg) or gdcm decoders exist
        install = "pip install python-gdcm (Apache-2.0) or pylibjpeg pylibjpeg-libjpeg (GPL-3.0)"
    return f"compressed with {ts.name} ({ts}) and no decoder is installed: {install}"


def _stored_range(ds: pydicom.Dataset) -> tuple[float, float]:
    bits = int_value(ds, "BitsStored", 1, 64, int_value(ds, "BitsAllocated", 1, 64, 16))
    if int_value(ds, "PixelRepresentation", 0, 1, 0):
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _with_transfer_syntax(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A file without meta header: the transfer syntax it was read with (native pixels)."""
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        implicit, little = ds.original_encoding
        ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little
            else ExplicitVRBigEndian
        )
    return ds


@functools.lru_cache(maxsize=1)  # frames of one Enhanced file are decoded once
def _read_stored(path: str, mtime_ns: int, size: int) -> tuple[pydicom.Dataset, np.ndarray]:
    """Dataset and stored pixel values ([H, W], or [F, H, W] for multi-frame).

    (mtime_ns, size) are part of the cache key, so a file changed on disk is read again. The
    header is checked again here (the file may have changed since the scan) and the declared
    pixel data is bounded before pydicom allocates anything for it. Any failure, including a
    decoder panic or MemoryError, becomes a SliceError with a one-line reason.
    """
    try:
        check_file_size(path)
        check_deflated(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:  # no preamble: the scan accepted it with force
                ds = pydicom.dcmread(path, force=True)
            ds = _with_transfer_syntax(ds)
    except FATAL:
        raise
    except BaseException as e:
        raise SliceError(failure_reason(e, [path], what="unreadable DICOM")) from None
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity; reasons suffice
            warnings.simplefilter("ignore")
            return ds, _decode(ds)
    except SliceError:
        raise
    except FATAL:
        raise
    except BaseException as e:
        raise SliceError(failure_reason(e, [path], what="cannot decode pixel data")) from None


def _decode(ds: pydicom.Dataset) -> np.ndarray:
    if "PixelData" not in ds:
        raise SliceError("no pixel data in this object")
    check_image_header(ds)
    reason = _codec_reason(ds)
    if reason:
        raise SliceError(reason)
    check_codestreams(ds)
    ts = ds.file_meta.get("TransferSyntaxUID")
    what = f"{ts.name} pixel data" if ts is not None and ts.is_compressed else "pixel data"
    try:
        return ds.pixel_array
    except ValueError as e:
        msg = str(e)
        if "less than expected" in msg or "truncat" in msg.lower():
            raise SliceError(f"truncated pixel data ({msg.split(' - ')[0]})") from None
        raise SliceError(f"cannot decode {what} ({msg[:100]})") from None
    except FATAL:
        raise
    except BaseException as e:
        raise SliceError(failure_reason(e, what=f"cannot decode {what}")) from None


def decode_slice(path: str, frame: int | None = None) -> tuple[np.ndarray, dict]:
    """Modality values float64 [H, W] (rescaled, MONOCHROME1 inverted) and a little metadata.

    `frame` picks one frame of an Enhanced (multi-frame) object, rescaled with its own
    functional-group slope/intercept.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise SliceError(f"cannot read file ({e.strerror})") from None
    ds, stored = _read_stored(path, st.st_mtime_ns, st.st_size)
    if frame is not None:
        if stored.ndim != 3 or not 0 <= frame < stored.shape[0]:
            raise SliceError(f"frame {frame + 1} not in pixel array of shape {stored.shape}")
        slope, intercept = frame_rescale(ds, frame)
        values = stored[frame].astype(np.float64) * slope + intercept  # [H, W]
    elif stored.ndim != 2:
        raise SliceError(f"pixel array has shape {stored.shape}; expected one 2-D frame")
    else:
        slope, intercept = None, None
        values = rescale(stored, ds)  # [H, W] float64, native byte order
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        values = invert_monochrome1(values, ds, slope, intercept)
    return values, {"photometric": str(ds.get("PhotometricInterpretation", ""))}


def rescale(stored: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Stored values -> modality values (slope/intercept); also fixes big-endian arrays."""
    values = stored.astype(np.float64)  # native float: OpenCV mis-reads '>u2'
    if "ModalityLUTSequence" in ds and "RescaleSlope" not in ds:
        return np.asarray(pydicom.pixels.apply_modality_lut(stored, ds), dtype=np.float64)
    slope = float_value(ds, "RescaleSlope", 1.0, nonzero=True)
    intercept = float_value(ds, "RescaleIntercept", 0.0)
    values *= slope  # in place: a 4096x4096 slice is 128 MiB per float64 copy
    values += intercept
    return values


def invert_monochrome1(
    values: np.ndarray,
    ds: pydicom.Dataset,
    slope: float | None = None,
    intercept: float | None = None,
) -> np.ndarray:
    """MONOCHROME1 shows low values white; mirror within the stored range so high = bright."""
    lo, hi = _stored_range(ds)
    if slope is None:
        slope = float_value(ds, "RescaleSlope", 1.0, nonzero=True)
    if intercept is None:
        intercept = float_value(ds, "RescaleIntercept", 0.0)
    a, b = lo * slope + intercept, hi * slope + intercept
    return (a + b) - values


def norm_bounds(
    values: np.ndarray, method: str, percentiles: tuple[float, float]
) -> tuple[float, float]:
    """(lo, hi) mapped to 0 and the maximum: min/max or percentiles of `values` (any shape)."""
    if method.endswith("percentile"):
        lo, hi = np.percentile(values, percentiles)
    else:
        lo, hi = values.min(), values.max()
    return float(lo), float(hi)


def normalise(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """[H, W] -> float32 in [0, 1]; a constant slice (hi <= lo) becomes all zeros."""
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float32)
    out = values - lo  # one temporary, then in place (large slices)
    out /= hi - lo
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32)


def make_isotropic(
    img: np.ndarray, spacing_mm: tuple[float, float] | None, nearest: bool = False
) -> np.ndarray:
    """Resample so one pixel covers the same distance along rows and columns (`nearest`: for
    label masks, which must not blend labels)."""
    if spacing_mm is None or spacing_mm[0] <= 0 or spacing_mm[1] <= 0:
        return img
    row_mm, col_mm = spacing_mm
    if abs(row_mm / col_mm - 1) < 0.01:
        return img
    step = min(row_mm, col_mm)
    h, w = img.shape
    new_w, new_h = w * col_mm / step, h * row_mm / step
    shrink = min(1.0, (MAX_FRAME_PIXELS / (new_w * new_h)) ** 0.5)  # bounded memory
    new_w, new_h = max(1, round(new_w * shrink)), max(1, round(new_h * shrink))
    interp = cv2.INTER_NEAREST_EXACT if nearest else cv2.INTER_LINEAR
    return cv2.resize(img, (new_w, new_h), interpolation=interp)


def fit_square(img: np.ndarray, fit: str) -> np.ndarray:
    """pad: centre on a zero square (keeps the whole field of view); crop: centre square;
    stretch: unchanged here (the resize stretches)."""
    h, w = img.shape
    if h == w or fit == "stretch":
        return img
    side = max(h, w) if fit == "pad" else min(h, w)
    if fit == "pad":
        out = np.zeros((side, side), dtype=img.dtype)  # [S, S]
        top, left = (side - h) // 2, (side - w) // 2
        out[top : top + h, left : left + w] = img
        return out
    top, left = (h - side) // 2, (w - side) // 2
    return img[top : top + side, left : left + side]


def resize(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """INTER_AREA when shrinking (least aliasing), linear when enlarging; `nearest` (pixel
    centres aligned as the others: INTER_NEAREST_EXACT) for label masks."""
    h, w = img.shape
    if (h, w) == (size, size):
        return img
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
    if nearest:
        interp = cv2.INTER_NEAREST_EXACT
    return cv2.resize(img, (size, size), interpolation=interp)


def quantise(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """[0, 1] float -> uint8 or uint16 (rounded)."""
    top, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    return np.rint(np.clip(img, 0, 1) * top).astype(dtype)


def encode_png(img: np.ndarray) -> bytes:
    """Lossless PNG bytes (deterministic for the same pixels)."""
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])  # 2x faster than 3, +3 %
    if not ok:  # pragma: no cover - uint8/uint16 grey always encodes
        raise SliceError("PNG encoding failed")
    return buf.tobytes()


def to_training_image(
    values: np.ndarray,
    lo: float,
    hi: float,
    spacing_mm: tuple[float, float] | None,
    opts: SliceOptions,
) -> np.ndarray:
    """Modality values [H, W] -> square uint8/uint16 [size, size]."""
    img = square_geometry(normalise(values, lo, hi), spacing_mm, opts)  # [size, size]
    return quantise(img, opts.bit_depth)


def square_geometry(
    img: np.ndarray, spacing_mm: tuple[float, float] | None, opts: SliceOptions,
    nearest: bool = False,
) -> np.ndarray:
    """[H, W] -> [size, size]: isotropic pixels, fit to square, resize. The one geometry of a
    slice, shared by its image and (`nearest`) its mask, so both land on the same pixels."""
    if opts.isotropic:
        img = make_isotropic(img, spacing_mm, nearest)
    return resize(fit_square(img, opts.fit), opts.size, nearest)
