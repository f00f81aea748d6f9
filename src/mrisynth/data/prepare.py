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
from dataclasses import dataclass, field, replace
from pathlib import Path

from mrisynth.data import prepare_folder as folder
from mrisynth.data.dicom_scan import Skipped, scan_inputs
from mrisynth.data.manifest import manifest_csv
from mrisynth.data.mask_seg import seg_files
from mrisynth.data.mask_sources import mask_report
from mrisynth.data.masks import LabelMap, label_map_json
from mrisynth.data.prepare_folder import MANIFEST_FILE, MASK_LABELS_FILE, REPORT_FILE, check_paths
from mrisynth.data.prepare_report import build_report, not_selected, sources_csv
from mrisynth.data.series import SEQUENCE_CHOICES, build_series, select_series
from mrisynth.data.series_images import run_series
from mrisynth.data.slice_pipeline import FIT_METHODS, NORM_METHODS, SliceOptions
from mrisynth.data.source_kind import not_dicom_hint
from mrisynth.errors import ConfigError, InputError

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
    skipped += not_selected(all_series, chosen, opts.sequence)
    outs = run_series(chosen, opts, progress)
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
    report = build_report(in_paths, opts, name, all_series, chosen, outs, skipped, warnings, counts)
    files = {n: png for n, png, _ in images}
    tables = {MANIFEST_FILE: manifest_csv([r for _, _, r in images]).encode()}
    mask_skipped = [k for o in outs for k in o.mask_skipped]
    if opts.masks is not None:
        report["masks"] = mask_report(outs, opts.masks, name, warnings)
        files.update((n, png) for o in outs for n, png in o.masks)
        tables[MASK_LABELS_FILE] = label_map_json(opts.masks).encode()
    tables[REPORT_FILE] = (json.dumps(report, indent=2) + "\n").encode()
    if not opts.source_paths:  # ids -> paths, for the user's eyes only (hidden, mode 0600)
        tables[folder.SOURCES_FILE] = sources_csv(in_paths, skipped + mask_skipped, chosen, name)
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
            f"see {out / REPORT_FILE})" + ("" if found else not_dicom_hint(list(in_paths)))
        )
    serious = [k for k in skipped if not k.reason.startswith(BENIGN_PREFIXES)]
    if opts.strict and serious:
        raise InputError(
            f"{serious[0].rel}: {serious[0].reason} (--strict: {len(serious)} files skipped; "
            f"see {out / REPORT_FILE})"
        )
    return result
