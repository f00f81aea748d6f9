"""Header scan of DICOM trees: find image slices, and give a one-line reason for every other file.

Only headers are read here (`stop_before_pixels`), so a scan of thousands of files is fast; pixel
problems (truncation, missing codecs) surface when `slice_pipeline` decodes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from mrisynth.data.dicom_checks import (
    FATAL,
    HeaderProblem,
    check_image_header,
    failure_reason,
    frame_count,
    optional_float,
    position_value,
    read_bounded_header,
    spacing_value,
)
from mrisynth.data.enhanced import frame_fields, multiframe_problem
from mrisynth.data.orientation import checked_orientation

logger = logging.getLogger(__name__)

NOT_DICOM_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".txt",
    ".csv",
    ".json",
    ".zip",
    ".md",
    ".pdf",
    ".nii",
    ".gz",
    ".xml",
    ".html",
    ".py",
}
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
DEFER_BYTES = 1 << 20  # header values larger than this stay on disk while scanning
NON_IMAGE_WORDS = (
    "Segmentation",
    "SR Storage",
    "Presentation State",
    "Structure Set",
    "Raw Data",
    "Registration",
    "Key Object",
    "Waveform",
    "Encapsulated",
    "Spectroscopy",
    "Real World Value",
    "Parametric Map",
)


@dataclass(frozen=True)
class SliceHeader:
    """What grouping, sorting and the manifest need from one image file (no identity kept)."""

    path: str  # absolute path
    rel: str  # POSIX path relative to its input
    input_index: int
    patient_ref: str  # PatientID (or a fallback); hashed before it reaches any output
    series_number: str
    series_description: str
    modality: str
    echo_time_ms: float | None
    repetition_time_ms: float | None
    field_strength_t: float | None
    scanning_sequence: str
    rows: int
    columns: int
    position: tuple[float, float, float] | None  # ImagePositionPatient
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6 direction cosines)
    spacing_mm: tuple[float, float] | None  # PixelSpacing (row, column)
    slice_thickness_mm: float | None
    instance_number: int | None
    transfer_syntax: str
    frame: int | None = None  # 0-based frame of an Enhanced (multi-frame) object

    @property
    def source(self) -> str:
        """How reports name it: the relative path, plus `#N` (1-based) for a frame."""
        return self.rel if self.frame is None else f"{self.rel}#{self.frame + 1}"

    @property
    def folder(self) -> str:
        return os.path.dirname(self.rel)

    @property
    def folder_hint(self) -> str | None:
        """Sequence named by CHAOS folder names (a cross-check only, never trusted alone)."""
        parts = [p.lower() for p in Path(self.rel).parts[:-1]]
        if "inphase" in parts:
            return "t1_in"
        if "outphase" in parts:
            return "t1_opp"
        if "t2spir" in parts:
            return "t2spir"
        return None


@dataclass(frozen=True)
class Skipped:
    """A file (or folder) that was not used, with a one-line reason."""

    rel: str
    reason: str


def iter_files(root: Path) -> Iterator[tuple[Path, str | None]]:
    """Every file under `root` in sorted order; hidden entries come with a skip reason."""
    if root.is_file():
        yield root, ("hidden file" if root.name.startswith(".") else None)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        hidden_dirs = sorted(d for d in dirnames if d.startswith("."))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in hidden_dirs:
            yield Path(dirpath) / d, "hidden folder (not searched)"
        for name in sorted(filenames):
            yield Path(dirpath) / name, ("hidden file" if name.startswith(".") else None)


def read_header(path: Path) -> pydicom.Dataset | str:
    """The header dataset, or a skip reason for files that are not DICOM images.

    Large values are left on disk (`defer_size`), the header's size is bounded and a Deflated
    file is inflated in bounded chunks (see `dicom_checks.read_bounded_header`).
    """
    if path.name.upper() == "DICOMDIR":
        return "DICOMDIR (a directory index, not an image)"
    if path.suffix.lower() in NOT_DICOM_SUFFIXES:
        return f"not a DICOM file ({path.suffix.lower()})"
    try:
        ds = read_bounded_header(path, DEFER_BYTES)
    except InvalidDicomError:
        try:  # old files without the 128-byte preamble: accept only if a SOP class parses
            ds = read_bounded_header(path, DEFER_BYTES, force=True)
            if "SOPClassUID" not in ds:
                return "not a DICOM file"
        except FATAL:
            raise
        except BaseException:
            return "not a DICOM file"
    except FATAL:
        raise
    except BaseException as e:  # truncated header, bad tags, I/O errors
        return failure_reason(e, [path], what="unreadable DICOM header")
    return ds


def classify(ds: pydicom.Dataset) -> str | None:
    """None for a single-frame grey-scale image; else why it cannot be used."""
    sop = ds.get("SOPClassUID", "")
    sop_name = getattr(sop, "name", str(sop))
    if str(sop) == MEDIA_STORAGE_DIRECTORY:
        return "DICOMDIR (a directory index, not an image)"
    if any(w.lower() in sop_name.lower() for w in NON_IMAGE_WORDS):
        return f"not an image ({sop_name})"
    if "Rows" not in ds or "Columns" not in ds:
        return f"no image in this object ({sop_name or 'unknown SOP class'})"
    try:
        check_image_header(ds)
    except HeaderProblem as e:
        return str(e)
    frames = frame_count(ds)
    if frames > 1:
        problem = multiframe_problem(ds, frames, sop_name)
        if problem:
            return problem
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        return f"colour image (SamplesPerPixel={samples}); need grey-scale slices"
    return None


def chaos_patient(path: Path) -> str | None:
    """'Train_Sets/MR/5' for a file under CHAOS's `<split>/MR/<id>/{T1DUAL,T2SPIR}/` layout."""
    parts = Path(path).absolute().parts
    for i in range(1, len(parts) - 2):
        if parts[i] == "MR" and parts[i + 2] in ("T1DUAL", "T2SPIR"):
            return f"{parts[i - 1]}/MR/{parts[i + 1]}"
    return None


def _positive(x: float | None) -> float | None:
    return x if x is not None and x > 0 else None


def headers_from_dataset(
    ds: pydicom.Dataset, path: Path, rel: str, input_index: int
) -> list[SliceHeader]:
    """One header per slice (per frame of an Enhanced object); identity stays inside
    `patient_ref` (hashed later)."""
    patient_ref = str(ds.get("PatientID", "") or "") or str(ds.get("StudyInstanceUID", "") or "")
    chaos = chaos_patient(path)
    if chaos:  # anonymised CHAOS headers may not tell patients apart; the layout does
        patient_ref = f"{patient_ref}|{chaos}"
    if not patient_ref:
        patient_ref = f"{input_index}:{Path(rel).parts[0] if Path(rel).parts else ''}"
    instance = optional_float(ds, "InstanceNumber")
    instance = int(instance) if instance is not None and abs(instance) < 2**31 else None
    seq = ds.get("ScanningSequence", "")
    header = SliceHeader(
        path=str(path),
        rel=rel,
        input_index=input_index,
        patient_ref=patient_ref,
        series_number=str(ds.get("SeriesNumber", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        echo_time_ms=optional_float(ds, "EchoTime"),
        repetition_time_ms=optional_float(ds, "RepetitionTime"),
        field_strength_t=_positive(optional_float(ds, "MagneticFieldStrength")),
        scanning_sequence="\\".join(seq) if isinstance(seq, (list, tuple)) else str(seq),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        position=position_value(ds.get("ImagePositionPatient")),
        orientation=checked_orientation(ds.get("ImageOrientationPatient")),
        spacing_mm=spacing_value(ds.get("PixelSpacing")),
        slice_thickness_mm=optional_float(ds, "SliceThickness"),
        instance_number=instance,
        transfer_syntax=str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or ""),
    )
    frames = frame_count(ds)
    if frames == 1:
        return [header]
    return [dataclasses.replace(header, frame=k, **frame_fields(ds, k)) for k in range(frames)]


def scan_file(path: Path, rel: str, input_index: int) -> list[SliceHeader] | str:
    """The slices of one file, or why it is skipped. Any failure inside (a hostile header, a
    library bug, a decoder panic) fails this file only."""
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity; reasons suffice
            warnings.simplefilter("ignore")
            ds = read_header(path)
            why = ds if isinstance(ds, str) else classify(ds)
            if why is not None:
                return why
            headers = headers_from_dataset(ds, path, rel, input_index)
    except FATAL:
        raise
    except BaseException as e:
        return failure_reason(e, [path, rel])
    if not headers:  # cannot happen with a checked NumberOfFrames; never drop a file silently
        return "no image slices in this object"
    return headers


def scan_inputs(
    inputs: list[Path], progress: bool = False
) -> tuple[list[SliceHeader], list[Skipped]]:
    """Walk every input; return usable slice headers and the skipped files with reasons."""
    from tqdm import tqdm

    found: list[tuple[int, Path, Path, str | None]] = []
    for i, root in enumerate(inputs):
        base = root if root.is_dir() else root.parent
        found += [(i, base, p, why) for p, why in iter_files(root)]
    headers: list[SliceHeader] = []
    skipped: list[Skipped] = []
    for i, base, path, why in tqdm(found, desc="scan", unit="file", disable=not progress):
        rel = path.relative_to(base).as_posix()
        got = scan_file(path, rel, i) if why is None else why
        if isinstance(got, str):
            skipped.append(Skipped(rel, got))
        else:
            headers.extend(got)
    logger.info(
        "scanned %d files: %d image slices, %d skipped", len(found), len(headers), len(skipped)
    )
    return headers, skipped
