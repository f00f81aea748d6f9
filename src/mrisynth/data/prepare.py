"""`prepare`: DICOM studies -> square PNG training images + manifest + report.

Never stops half-way with partial output: every file is written atomically, PNGs first, the
manifest and report last; bad files are skipped with a one-line reason. A re-run with the same
inputs and options rewrites nothing (same names, same bytes). Inputs are only read.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mrisynth import __version__, atomic
from mrisynth.data.dicom_scan import Skipped, scan_inputs
from mrisynth.data.manifest import manifest_csv, read_manifest
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

MANIFEST_FILE = "manifest.csv"
REPORT_FILE = "report.json"
# skip reasons that are expected in any real tree and do not fail a --strict run
BENIGN_PREFIXES = ("hidden", "not a DICOM file", "DICOMDIR")


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that decides the output bytes (recorded in the report)."""

    sequence: str = "t1-in"  # key of SEQUENCE_CHOICES
    slice: SliceOptions = field(default_factory=SliceOptions)
    workers: int = 1  # processes decoding series in parallel
    strict: bool = False  # any non-benign skip fails the run
    source_paths: bool = True  # False: manifest/report name sources by hash only


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


@dataclass
class _SeriesOut:
    images: list[tuple[str, bytes, dict]]  # (file name, PNG bytes, manifest row)
    skipped: list[Skipped]
    warnings: list[str]


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


def check_paths(inputs: list[Path], output: Path) -> None:
    """Inputs exist; the output is neither an input nor inside one (inputs are never written)."""
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
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST_FILE).is_file():
        raise ConfigError(
            f"{output}: folder is not empty and is not a previous `mrisynth prepare` output; "
            "choose a new folder"
        )


def _sha256(path: str) -> str:
    st = os.stat(path)
    return _sha256_cached(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)  # the frames of one Enhanced file share it
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def process_series(series: Series, opts: PrepareOptions) -> _SeriesOut:
    """Decode, normalise and encode one series (runs in a worker process)."""
    s_opts = opts.slice
    skipped, decoded = [], []
    for sl, pos in zip(series.slices, series.positions_mm, strict=True):
        try:
            values, _ = decode_slice(sl.path, sl.frame)  # [H, W] float64
            if min(values.shape) < 2 or not np.isfinite(values).all():
                raise SliceError(f"unusable pixel values (shape {values.shape} or NaN/inf)")
        except SliceError as e:
            skipped.append(Skipped(sl.source, str(e)))
            continue
        decoded.append((sl, pos, values))
    warnings = list(series.warnings)
    if decoded and s_opts.norm.startswith("volume"):
        vol = np.stack([v for _, _, v in decoded])  # [S, H, W]
        volume_bounds = norm_bounds(vol, s_opts.norm, s_opts.percentiles)
    images = []
    for idx, (sl, pos, values) in enumerate(decoded):
        if s_opts.norm.startswith("volume"):
            lo, hi = volume_bounds
        else:
            lo, hi = norm_bounds(values, s_opts.norm, s_opts.percentiles)
        if hi <= lo:
            warnings.append(f"{_src(sl.source, opts)}: constant image, written as black")
        png = encode_png(to_training_image(values, lo, hi, sl.spacing_mm, s_opts))
        name = f"{series.patient_key}_{series.sequence}_{series.series_key}_{idx:03d}.png"
        digest = _sha256(sl.path)
        row = {
            "file": name,
            "patient_key": series.patient_key,
            "series_key": series.series_key,
            "sequence": series.sequence,
            "slice_index": idx,
            "slice_count": len(decoded),
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
        images.append((name, png, row))
    return _SeriesOut(images, skipped, warnings)


def _src(rel: str, opts: PrepareOptions) -> str:
    return rel if opts.source_paths else "<source hidden>"


def _run_series(series: list[Series], opts: PrepareOptions, progress: bool) -> list[_SeriesOut]:
    from tqdm import tqdm

    bar = tqdm(
        total=sum(len(s.slices) for s in series), desc="prepare", unit="slice", disable=not progress
    )
    outs: list[_SeriesOut | None] = [None] * len(series)
    if opts.workers == 1 or len(series) == 1:
        for i, s in enumerate(series):
            outs[i] = process_series(s, opts)
            bar.update(len(s.slices))
    else:
        with ProcessPoolExecutor(max_workers=opts.workers) as pool:
            futures = {pool.submit(process_series, s, opts): i for i, s in enumerate(series)}
            for fut in as_completed(futures):
                outs[futures[fut]] = fut.result()
                bar.update(len(series[futures[fut]].slices))
    bar.close()
    return [o for o in outs if o is not None]


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Atomic write unless the file already holds exactly these bytes (idempotent re-runs)."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    atomic.write_bytes(path, data)
    return True


def _remove_stale(output: Path, keep: set[str]) -> int:
    """Delete PNGs a previous run listed in its manifest that this run no longer produces."""
    old = output / MANIFEST_FILE
    if not old.is_file():
        return 0
    removed = 0
    for row in read_manifest(old.read_text(encoding="utf-8"), str(old)):
        name = row["file"]
        if name not in keep and "/" not in name and name.endswith(".png"):
            (output / name).unlink(missing_ok=True)
            removed += 1
    return removed


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


def _report(inputs, opts, all_series, chosen, outs, skipped, warnings, counts) -> dict:
    patients: dict[str, dict[str, int]] = {}
    for s, o in zip(chosen, outs, strict=True):
        p = patients.setdefault(s.patient_key, {"series": 0, "images": 0})
        p["series"] += 1
        p["images"] += len(o.images)
    found = Counter(s.sequence for s in all_series)
    return {
        "tool": "mrisynth prepare",
        "inputs": [p.name for p in inputs],
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
                "folder": _src(s.slices[0].folder, opts),
            }
            for s, o in zip(chosen, outs, strict=True)
        ],
        "skipped": [{"source": _src(k.rel, opts), "reason": k.reason} for k in skipped],
        "warnings": warnings,
    }


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
    headers, skipped = scan_inputs(in_paths, progress=progress)
    all_series, bad = build_series(headers)
    skipped += bad
    chosen = select_series(all_series, SEQUENCE_CHOICES[opts.sequence])
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
    out.mkdir(parents=True, exist_ok=True)
    written = sum(_write_if_changed(out / name, png) for name, png, _ in images)
    removed = _remove_stale(out, {name for name, _, _ in images})
    # no timestamps or write counts in the report: a re-run must reproduce it byte for byte
    counts = {
        "files_skipped": len(skipped),
        "slices_found": len(headers),
        "series_selected": len(chosen),
        "images": len(images),
    }
    report = _report(in_paths, opts, all_series, chosen, outs, skipped, warnings, counts)
    _write_if_changed(out / MANIFEST_FILE, manifest_csv([r for _, _, r in images]).encode())
    _write_if_changed(out / REPORT_FILE, (json.dumps(report, indent=2) + "\n").encode())
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
