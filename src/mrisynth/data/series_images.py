"""One series -> its training images, masks and manifest rows; all series in worker processes.

`process_series` runs in a worker process (forked, one per series at a time): any failure of one
slice makes it a skipped slice with a reason, and a worker that dies outright (a decoder abort,
the OOM killer) fails only its series, which is retried alone and else skipped whole.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mrisynth.data.dicom_checks import FATAL, failure_reason
from mrisynth.data.dicom_scan import Skipped, SliceHeader
from mrisynth.data.mask_sources import match_series, training_mask
from mrisynth.data.orientation import head_foot_mm, slice_plane
from mrisynth.data.series import Series
from mrisynth.data.slice_pipeline import (
    SliceError,
    decode_slice,
    encode_png,
    norm_bounds,
    to_training_image,
)
from mrisynth.hashing import sha256_file

if TYPE_CHECKING:  # prepare imports this module; the options class lives there
    from mrisynth.data.prepare import PrepareOptions


@dataclass
class SeriesOut:
    """What one series gave: images with their manifest rows, skips, warnings, masks."""

    images: list[tuple[str, bytes, dict]]  # (file name, PNG bytes, manifest row)
    skipped: list[Skipped]
    warnings: list[str]
    masks: list[tuple[str, bytes]] = field(default_factory=list)  # (masks/NAME, PNG bytes)
    mask_skipped: list[Skipped] = field(default_factory=list)  # masks that could not be used
    no_mask: list[str] = field(default_factory=list)  # images whose slice has no mask


def _sha256(path: str) -> str:
    st = os.stat(path)
    return _sha256_cached(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)  # the frames of one Enhanced file share it
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def _guarded(sl: SliceHeader, fn, *args):
    """fn(*args), or the Skipped entry for `sl` when anything fails (one slice, not the run)."""
    try:
        return fn(*args)
    except FATAL:
        raise
    except SliceError as e:
        return Skipped(sl.source, str(e))
    except BaseException as e:  # hostile values, library bugs, decoder panics, MemoryError
        return Skipped(sl.source, failure_reason(e, [sl.path, sl.rel]))


def _decode_checked(sl: SliceHeader) -> np.ndarray:
    values, _ = decode_slice(sl.path, sl.frame)  # [H, W] float64
    if min(values.shape) < 2 or not np.isfinite(values).all():
        raise SliceError(f"unusable pixel values (shape {values.shape} or NaN/inf)")
    return values


def _image(series: Series, idx: int, sl: SliceHeader, pos, values, bounds, count, opts):
    """(name, PNG bytes, manifest row, warning or None) of one decoded slice."""
    s_opts = opts.slice
    lo, hi = bounds or norm_bounds(values, s_opts.norm, s_opts.percentiles)
    png = encode_png(to_training_image(values, lo, hi, sl.spacing_mm, s_opts))
    name = f"{series.patient_key}_{series.sequence}_{series.series_key}_{idx:03d}.png"
    digest = _sha256(sl.path)
    row = {
        "file": name,
        "patient_key": series.patient_key,
        "series_key": series.series_key,
        "sequence": series.sequence,
        "slice_index": idx,
        "slice_count": count,
        "position_mm": pos,
        "z_mm": head_foot_mm(sl.position, sl.orientation, sl.spacing_mm, sl.rows, sl.columns),
        "orientation": slice_plane(sl.orientation),
        "echo_time_ms": sl.echo_time_ms,
        "rows": sl.rows,
        "columns": sl.columns,
        "spacing_row_mm": sl.spacing_mm[0] if sl.spacing_mm else None,
        "spacing_col_mm": sl.spacing_mm[1] if sl.spacing_mm else None,
        "slice_thickness_mm": sl.slice_thickness_mm,
        "norm": s_opts.norm,
        "norm_lo": lo,
        "norm_hi": hi,
        "source": sl.source if opts.source_paths else f"sha256:{digest[:16]}",
        "source_sha256": digest,
        "source_frame": None if sl.frame is None else sl.frame + 1,
    }
    warning = f"{name}: constant image, written as black" if hi <= lo else None
    return name, png, row, warning


def process_series(series: Series, opts: PrepareOptions) -> SeriesOut:
    """Decode, normalise and encode one series (runs in a worker process)."""
    s_opts = opts.slice
    skipped, decoded = [], []
    for sl, pos in zip(series.slices, series.positions_mm, strict=True):
        got = _guarded(sl, _decode_checked, sl)
        if isinstance(got, Skipped):
            skipped.append(got)
        else:
            decoded.append((sl, pos, got))
    warnings = list(series.warnings)
    bounds = None
    if decoded and s_opts.norm.startswith("volume"):
        vol = np.stack([v for _, _, v in decoded])  # [S, H, W]
        bounds = norm_bounds(vol, s_opts.norm, s_opts.percentiles)
    images, kept = [], []  # kept: the slice of each image
    for sl, pos, values in decoded:
        idx = len(images)  # slices that fail here leave no gap in the numbering
        got = _guarded(sl, _image, series, idx, sl, pos, values, bounds, len(decoded), opts)
        if isinstance(got, Skipped):
            skipped.append(got)
            continue
        *image, warning = got
        images.append(tuple(image))
        kept.append(sl)
        if warning:
            warnings.append(warning)
    if len(images) < len(decoded):  # keep slice_count honest when an encode failed late
        images = [(n, p, {**r, "slice_count": len(images)}) for n, p, r in images]
    out = SeriesOut(images, skipped, warnings)
    if opts.masks is not None:
        _add_masks(out, series, kept, opts)
    return out


def _add_masks(out: SeriesOut, series: Series, kept: list[SliceHeader], opts) -> None:
    """Each written image's mask (same name under masks/) and its manifest column."""
    found = match_series(series.slices, opts.mask_segs)
    out.mask_skipped += found.skipped
    by_name = {}
    for (name, _, _), sl in zip(out.images, kept, strict=True):
        got = _guarded(sl, training_mask, found, sl, opts.masks, opts.slice)
        if isinstance(got, bytes):
            by_name[name] = f"masks/{name}"
            out.masks.append((by_name[name], got))
        elif isinstance(got, Skipped):
            out.mask_skipped.append(got)
        else:
            out.no_mask.append(name)
    out.images = [(n, p, {**r, "mask_file": by_name.get(n, "")}) for n, p, r in out.images]


def _crashed(series: Series, exc: BaseException) -> SeriesOut:
    why = f"decoding crashed its worker process ({type(exc).__name__})"
    return SeriesOut([], [Skipped(sl.source, why) for sl in series.slices], [])


def _in_pool(series: list[Series], opts: PrepareOptions, workers: int, bar) -> list:
    """process_series in worker processes; a series whose worker died is None (retried alone)."""
    outs: list[SeriesOut | None] = [None] * len(series)
    # never more processes than series: a fork pool starts all of them at once (--workers 1e5)
    with ProcessPoolExecutor(max_workers=min(workers, len(series))) as pool:
        futures = {pool.submit(process_series, s, opts): i for i, s in enumerate(series)}
        for fut in as_completed(futures):
            try:
                outs[futures[fut]] = fut.result()
            except BrokenProcessPool:
                continue  # the pool is gone: every unfinished series lands here
            bar.update(len(series[futures[fut]].slices))
    return outs


def run_series(series: list[Series], opts: PrepareOptions, progress: bool) -> list[SeriesOut]:
    from tqdm import tqdm

    bar = tqdm(
        total=sum(len(s.slices) for s in series), desc="prepare", unit="slice", disable=not progress
    )
    if opts.workers == 1 or len(series) == 1:
        outs = []
        for s in series:
            outs.append(process_series(s, opts))
            bar.update(len(s.slices))
    else:
        outs = _in_pool(series, opts, opts.workers, bar)
        for i in [i for i, o in enumerate(outs) if o is None]:  # a worker died (abort, OOM kill)
            try:  # alone in a fresh process, so one bad series cannot fail the others
                outs[i] = _in_pool([series[i]], opts, 1, bar)[0] or _crashed(
                    series[i], BrokenProcessPool()
                )
            except OSError as e:  # cannot start a process at all
                outs[i] = _crashed(series[i], e)
    bar.close()
    return outs
