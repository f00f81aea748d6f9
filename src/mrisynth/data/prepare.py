"""`prepare`: DICOM studies -> square PNG training images + manifest + report.

Never stops half-way: any failure of one file (hostile header, decoder crash, memory bomb) makes
it a skipped file with a one-line reason, and every input file is either used or listed as
skipped. Output is written atomically in a resumable order (see `prepare_folder`); a re-run with
the same inputs and options rewrites nothing (same names, same bytes). Inputs are only read. By
default no input path or name reaches an output; patient keys are keyed hashes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from mrisynth import __version__
from mrisynth.data import prepare_folder as folder
from mrisynth.data.dicom_checks import FATAL, failure_reason
from mrisynth.data.dicom_scan import Skipped, SliceHeader, scan_inputs
from mrisynth.data.manifest import manifest_csv
from mrisynth.data.mask_seg import seg_files
from mrisynth.data.mask_sources import mask_report, match_series, training_mask
from mrisynth.data.masks import LabelMap, label_map_json
from mrisynth.data.prepare_folder import MANIFEST_FILE, MASK_LABELS_FILE, REPORT_FILE, check_paths
from mrisynth.data.series import SEQUENCE_CHOICES, Series, build_series, select_series
from mrisynth.data.slice_pipeline import (
    FIT_METHODS,
    NORM_METHODS,
    SliceError,
    SliceOptions,
    decode_slice,
    encode_png,
    norm_bounds,
    to_training_image,
)
from mrisynth.errors import ConfigError, InputError
from mrisynth.hashing import sha256_file

logger = logging.getLogger(__name__)

# skip reasons that are expected in any real tree and do not fail a --strict run
BENIGN_PREFIXES = ("hidden", "not a DICOM file", "DICOMDIR", "not selected")


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that decides the output bytes (recorded in the report)."""

    sequence: str = "t1-in"  # key of SEQUENCE_CHOICES
    slice: SliceOptions = field(default_factory=SliceOptions)
    workers: int = 1  # processes decoding series in parallel
    strict: bool = False  # any non-benign skip fails the run
    source_paths: bool = False  # True: manifest/report name input files by their paths
    secret_file: Path | None = None  # HMAC key for patient keys (default: the output's own)
    masks: LabelMap | None = None  # --masks: also write each slice's label mask (masks/NAME)
    mask_segs: tuple[str, ...] = ()  # DICOM SEG files found by the scan (set by prepare)


@dataclass
class PrepareResult:
    """Counts of one run (the report holds the details)."""

    output: Path
    num_images: int
    num_written: int
    num_unchanged: int
    num_removed: int  # stale PNGs of a previous run that this run no longer produces
    num_patients: int
    skipped: list[Skipped]
    warnings: list[str]
    report: dict
    num_masks_written: int = 0  # --masks: mask PNGs, counted apart from the images
    num_masks_unchanged: int = 0


@dataclass
class _SeriesOut:
    images: list[tuple[str, bytes, dict]]  # (file name, PNG bytes, manifest row)
    skipped: list[Skipped]
    warnings: list[str]
    masks: list[tuple[str, bytes]] = field(default_factory=list)  # (masks/NAME, PNG bytes)
    mask_skipped: list[Skipped] = field(default_factory=list)  # masks that could not be used
    no_mask: list[str] = field(default_factory=list)  # images whose slice has no mask


def check_options(opts: PrepareOptions) -> None:
    s = opts.slice
    if opts.sequence not in SEQUENCE_CHOICES:
        choices = ", ".join(SEQUENCE_CHOICES)
        raise ConfigError(f"unknown sequence '{opts.sequence}'; choose {choices}")
    if s.norm not in NORM_METHODS:
        raise ConfigError(f"unknown --norm '{s.norm}'; choose {', '.join(NORM_METHODS)}")
    if s.fit not in FIT_METHODS:
        raise ConfigError(f"unknown --fit '{s.fit}'; choose {', '.join(FIT_METHODS)}")
    if not 8 <= s.size <= 4096:
        raise ConfigError(f"--size must be in 8..4096, got {s.size}")
    if s.bit_depth not in (8, 16):
        raise ConfigError(f"--bit-depth must be 8 or 16, got {s.bit_depth}")
    lo, hi = s.percentiles
    if not 0 <= lo < hi <= 100:
        raise ConfigError(f"--percentiles must satisfy 0 <= low < high <= 100, got {lo},{hi}")
    if opts.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {opts.workers}")


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


def process_series(series: Series, opts: PrepareOptions) -> _SeriesOut:
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
    out = _SeriesOut(images, skipped, warnings)
    if opts.masks is not None:
        _add_masks(out, series, kept, opts)
    return out


def _add_masks(out: _SeriesOut, series: Series, kept: list[SliceHeader], opts) -> None:
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


def _crashed(series: Series, exc: BaseException) -> _SeriesOut:
    why = f"decoding crashed its worker process ({type(exc).__name__})"
    return _SeriesOut([], [Skipped(sl.source, why) for sl in series.slices], [])


def _in_pool(series: list[Series], opts: PrepareOptions, workers: int, bar) -> list:
    """process_series in worker processes; a series whose worker died is None (retried alone)."""
    outs: list[_SeriesOut | None] = [None] * len(series)
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


def _run_series(series: list[Series], opts: PrepareOptions, progress: bool) -> list[_SeriesOut]:
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


def _versions() -> dict[str, str]:
    import cv2
    import pydicom

    return {
        "mrisynth": __version__,
        "python": platform.python_version(),
        "pydicom": pydicom.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


def _report(inputs, opts, name, all_series, chosen, outs, skipped, warnings, counts) -> dict:
    """The report's content; `name(rel)` is how an input path appears (itself or an id)."""
    patients: dict[str, dict[str, int]] = {}
    for s, o in zip(chosen, outs, strict=True):
        p = patients.setdefault(s.patient_key, {"series": 0, "images": 0})
        p["series"] += 1
        p["images"] += len(o.images)
    found = Counter(s.sequence for s in all_series)
    return {
        "tool": "mrisynth prepare",
        "inputs": [p.name if opts.source_paths else f"input-{i + 1}" for i, p in enumerate(inputs)],
        "options": {
            "sequence": opts.sequence,
            **asdict(opts.slice),
            "source_paths": opts.source_paths,
            "strict": opts.strict,
        },
        "versions": _versions(),
        "counts": {
            **counts,
            "series_found": dict(sorted(found.items())),
            "skipped_by_reason": dict(
                Counter(k.reason.split(" (")[0] for k in skipped).most_common()
            ),
        },
        "patients": dict(sorted(patients.items())),
        "series": [
            {
                "series_key": s.series_key,
                "patient_key": s.patient_key,
                "sequence": s.sequence,
                "echo_time_ms": s.echo_time_ms,
                "slices": len(o.images),
                "matrix": f"{s.slices[0].rows}x{s.slices[0].columns}",
                "folder": name(s.slices[0].folder),
            }
            for s, o in zip(chosen, outs, strict=True)
        ],
        "skipped": [{"source": name(k.rel), "reason": k.reason} for k in skipped],
        "warnings": warnings,
    }


def _not_selected(all_series: list[Series], chosen: list[Series], sequence: str) -> list[Skipped]:
    """Slices of other sequences: listed too, so every input file is accounted for."""
    picked = {id(s) for s in chosen}
    return [
        Skipped(sl.source, f"not selected: {s.sequence} (--sequence {sequence})")
        for s in all_series
        if id(s) not in picked
        for sl in s.slices
    ]


def _sources_csv(inputs: list[Path], skipped: list[Skipped], chosen: list[Series], name) -> bytes:
    """`id,path` for every input, skipped file and series folder the report names by id."""
    rows = {(k.rel, name(k.rel)) for k in skipped}
    rows |= {(s.slices[0].folder, name(s.slices[0].folder)) for s in chosen}
    body = "".join(f"{i},{json.dumps(rel)}\n" for rel, i in sorted(rows, key=lambda r: r[1]))
    roots = "".join(f"input-{k + 1},{json.dumps(str(p))}\n" for k, p in enumerate(inputs))
    return ("id,path\n" + roots + body).encode()


def prepare(
    inputs: list[str | Path],
    output: str | Path,
    opts: PrepareOptions | None = None,
    progress: bool = False,
) -> PrepareResult:
    """Run the whole stage; raises InputError when nothing usable came out (or --strict)."""
    opts = opts or PrepareOptions()
    check_options(opts)
    in_paths, out = [Path(p) for p in inputs], Path(output)
    if not in_paths:
        raise ConfigError("give at least one input folder")
    check_paths(in_paths, out)
    folder.claim(out)  # marker first: a killed run's folder is recognised as ours
    secret = folder.load_secret(out, opts.secret_file)
    headers, skipped = scan_inputs(in_paths, progress=progress)
    if opts.masks is not None:  # SEG objects are masks then, not skipped files
        segs, skipped = seg_files(in_paths, skipped)
        opts = replace(opts, mask_segs=tuple(segs))
    all_series, bad = build_series(headers, secret)
    skipped += bad
    chosen = select_series(all_series, SEQUENCE_CHOICES[opts.sequence])
    skipped += _not_selected(all_series, chosen, opts.sequence)
    outs = _run_series(chosen, opts, progress)
    warnings = [w for o in outs for w in o.warnings]
    skipped += [k for o in outs for k in o.skipped]
    images = sorted((img for o in outs for img in o.images), key=lambda t: t[0])
    copies = len(images) - len({(r["source_sha256"], r["source_frame"]) for _, _, r in images})
    if copies:
        warnings.append(
            f"{copies} slices are byte-identical copies of other slices "
            "(the same files given twice?); duplicates inflate a training set"
        )
    # no timestamps or write counts in the report: a re-run must reproduce it byte for byte
    counts = {
        "files_skipped": len(skipped),
        "slices_found": len(headers),
        "series_selected": len(chosen),
        "images": len(images),
    }
    name = (lambda rel: rel) if opts.source_paths else functools.partial(folder.source_id, secret)
    report = _report(in_paths, opts, name, all_series, chosen, outs, skipped, warnings, counts)
    files = {n: png for n, png, _ in images}
    tables = {MANIFEST_FILE: manifest_csv([r for _, _, r in images]).encode()}
    mask_skipped = [k for o in outs for k in o.mask_skipped]
    if opts.masks is not None:
        report["masks"] = mask_report(outs, opts.masks, name, warnings)
        files.update((n, png) for o in outs for n, png in o.masks)
        tables[MASK_LABELS_FILE] = label_map_json(opts.masks).encode()
    tables[REPORT_FILE] = (json.dumps(report, indent=2) + "\n").encode()
    if not opts.source_paths:  # ids -> paths, for the user's eyes only (hidden, mode 0600)
        tables[folder.SOURCES_FILE] = _sources_csv(in_paths, skipped + mask_skipped, chosen, name)
    changed, removed = folder.write_outputs(out, files, tables)
    mask_names = {n for o in outs for n, _ in o.masks}
    written = len(changed - mask_names)
    if opts.masks is None:
        folder.drop_masks_folder(out)  # of an earlier --masks run: its PNGs are gone now
    result = PrepareResult(
        out,
        len(images),
        written,
        len(images) - written,
        removed,
        len(report["patients"]),
        skipped,
        warnings,
        report,
        len(changed & mask_names),
        len(mask_names - changed),
    )
    if not images:
        found = ", ".join(f"{k}: {v}" for k, v in report["counts"]["series_found"].items())
        raise InputError(
            f"{', '.join(map(str, in_paths))}: no usable {opts.sequence} slices "
            f"(series found: {found or 'none'}; {len(skipped)} files skipped; "
            f"see {out / REPORT_FILE})"
        )
    serious = [k for k in skipped if not k.reason.startswith(BENIGN_PREFIXES)]
    if opts.strict and serious:
        raise InputError(
            f"{serious[0].rel}: {serious[0].reason} (--strict: {len(serious)} files skipped; "
            f"see {out / REPORT_FILE})"
        )
    return result
