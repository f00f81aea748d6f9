"""Write the abdominal phantom as a CHAOS-like DICOM tree (Kavur et al. 2021, CHAOS challenge).

Layout per patient: `Train_Sets/MR/<id>/T1DUAL/DICOM_anon/{InPhase,OutPhase}/IMG-0004-NNNNN.dcm`,
`T1DUAL/Ground/*.png` (CHAOS mask values) and optionally `T2SPIR/DICOM_anon/*.dcm` + `Ground`.
As in CHAOS, both T1 echoes share one series (same SeriesInstanceUID), instance numbers
interleave the echoes, and odd-numbered patients are numbered head-first (instance order is the
reverse of the position order), so readers must group by echo time and sort by position.
The files are MR Image Storage (they imitate scanner output to exercise readers) and are marked
synthetic; their identifiers are obviously fake. Output is deterministic for a given seed.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from mrisynth import atomic
from mrisynth.data.phantom import render_slice, sample_anatomy
from mrisynth.errors import ConfigError

logger = logging.getLogger(__name__)

# 1.5 T dual echo: opposed ~2.3 ms, in-phase ~4.6 ms (the longer echo is in-phase)
ECHO_MS = {"opp": 2.3, "in": 4.6, "t2": 80.0}
FAKE_IDENTITY = {  # looks like PHI on purpose, so tests can prove none of it leaks into outputs
    "PatientBirthDate": "19700101",
    "AccessionNumber": "PHANTOMACC{pid:03d}",
    "InstitutionName": "mrisynth phantom site",
    "ReferringPhysicianName": "Nobody^Phantom",
    "PatientName": "Phantom^Patient{pid:03d}",
    "PatientID": "PHANTOM-{pid:03d}",
}


@dataclass(frozen=True)
class PhantomPatient:
    """What was written for one patient."""

    patient_id: str
    matrix: int
    num_slices: int
    spacing_mm: float
    slice_spacing_mm: float
    head_first_numbering: bool
    folder: Path


def _uid(*parts: object) -> str:
    return str(generate_uid(entropy_srcs=["mrisynth-phantom", *map(str, parts)]))


def _dataset(
    pid: int, seed: int, kind: str, k: int, instance: int, pixels: np.ndarray, geo: dict
) -> Dataset:
    """One MR slice dataset. `kind` is 'in', 'opp' or 't2'; `k` the slice index by position."""
    series = "t2" if kind == "t2" else "t1dual"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = _uid(seed, pid, kind, k)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    for key, value in FAKE_IDENTITY.items():
        setattr(ds, key, value.format(pid=pid))
    ds.PatientSex, ds.PatientPosition, ds.BodyPartExamined = "O", "HFS", "ABDOMEN"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20000101", "120000", "1"
    ds.StudyInstanceUID = _uid(seed, pid, "study")
    ds.SeriesInstanceUID = _uid(seed, pid, series)
    ds.FrameOfReferenceUID = _uid(seed, pid, "for")
    ds.PositionReferenceIndicator = ""
    ds.Modality, ds.Manufacturer = "MR", "mrisynth"
    ds.ManufacturerModelName = "abdominal phantom"
    ds.SyntheticData = "YES"
    ds.ImageComments = "synthetic phantom (mrisynth), not a real patient"
    ds.MagneticFieldStrength = 1.5
    ds.MRAcquisitionType = "2D"
    if kind == "t2":
        ds.SeriesNumber, ds.SeriesDescription = 3, "T2 SPIR"
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "SK", "FS"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"]
        ds.RepetitionTime, ds.FlipAngle, ds.EchoNumbers = 1600.0, 90.0, 1
    else:
        ds.SeriesNumber, ds.SeriesDescription = 4, "T1 DUAL FFE"
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SP", ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"]
        ds.RepetitionTime, ds.FlipAngle = 150.0, 80.0
        ds.EchoNumbers = 2 if kind == "in" else 1
    ds.EchoTime = ECHO_MS[kind]
    ds.InstanceNumber, ds.AcquisitionNumber = instance, 1
    ds.ImagePositionPatient = [round(float(v), 4) for v in geo["ipp"]]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [round(geo["spacing"], 6)] * 2
    ds.SliceThickness = round(geo["slice_spacing"], 3)
    ds.SpacingBetweenSlices = round(geo["slice_spacing"], 3)
    ds.SliceLocation = round(float(geo["ipp"][2]), 4)
    ds.WindowCenter, ds.WindowWidth = 1200, 2400  # display only; prepare must ignore it
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def _save(ds: Dataset, path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def _save_mask(mask: np.ndarray, path: Path) -> None:
    ok, buf = cv2.imencode(".png", mask)
    if not ok:  # pragma: no cover - cv2 always encodes uint8
        raise RuntimeError(f"cannot encode {path}")
    atomic.write_bytes(path, buf.tobytes())


def write_patient(
    root: Path,
    pid: int,
    seed: int,
    matrix_sizes: tuple[int, ...],
    num_slices: tuple[int, int],
    t2spir: bool,
) -> PhantomPatient:
    """Render and write one patient's T1 dual-echo (and optionally T2 SPIR) series and masks."""
    rng = np.random.default_rng([seed, pid])
    matrix = int(rng.choice(matrix_sizes))
    n = int(rng.integers(num_slices[0], num_slices[1] + 1))
    spacing = float(rng.uniform(380, 440)) / matrix
    slice_spacing = float(np.round(rng.uniform(5.5, 9.0), 1))
    extent = n * slice_spacing
    anatomy = sample_anatomy(rng, extent)
    z0 = float(rng.uniform(-160, -60))
    offset = rng.uniform(-15, 15, size=2)
    corner = -(matrix - 1) / 2 * spacing + offset  # centre of the top-left voxel (x, y)
    head_first = pid % 2 == 1
    folder = root / "Train_Sets" / "MR" / str(pid)
    t1 = folder / "T1DUAL"
    for k in range(n):
        z_mm = (k + 0.5) * slice_spacing  # in the anatomy's frame, 0 = bottom of the slab
        img = render_slice(anatomy, z_mm, matrix, spacing, rng, extent)
        geo = {
            "ipp": (corner[0], corner[1], z0 + k * slice_spacing),
            "spacing": spacing,
            "slice_spacing": slice_spacing,
        }
        m = n - 1 - k if head_first else k  # order of the instance numbers
        for kind, sub, inst in (("opp", "OutPhase", 2 * m + 1), ("in", "InPhase", 2 * m + 2)):
            name = f"IMG-0004-{inst:05d}"
            _save(
                _dataset(pid, seed, kind, k, inst, img[kind], geo),
                t1 / "DICOM_anon" / sub / f"{name}.dcm",
            )
            if kind == "in":
                _save_mask(img["mask"], t1 / "Ground" / f"{name}.png")
        if t2spir:
            name = f"IMG-0003-{m + 1:05d}"
            _save(
                _dataset(pid, seed, "t2", k, m + 1, img["t2"], geo),
                folder / "T2SPIR" / "DICOM_anon" / f"{name}.dcm",
            )
            _save_mask(img["mask"], folder / "T2SPIR" / "Ground" / f"{name}.png")
    logger.info("phantom patient %d: %d slices of %dx%d", pid, n, matrix, matrix)
    return PhantomPatient(str(pid), matrix, n, spacing, slice_spacing, head_first, folder)


def write_phantom_tree(
    root: str | os.PathLike[str],
    num_patients: int = 8,
    seed: int = 0,
    *,
    matrix_sizes: tuple[int, ...] = (256, 288, 320),
    num_slices: tuple[int, int] = (26, 50),
    t2spir: bool = True,
    workers: int = 1,
) -> list[PhantomPatient]:
    """Write `num_patients` phantom patients under `root` as a CHAOS-like tree.

    Patient `i` (1-based) depends only on (seed, i), so adding patients never changes earlier
    ones. Small values (`matrix_sizes=(32,)`, `num_slices=(6, 8)`) make a fast test tree;
    `workers` > 1 writes patients in parallel processes (same files).
    """
    if num_patients < 1:
        raise ConfigError(f"--patients must be >= 1, got {num_patients}")
    if not matrix_sizes or min(matrix_sizes) < 16:
        raise ConfigError(f"matrix sizes must be >= 16, got {matrix_sizes}")
    if not 1 <= num_slices[0] <= num_slices[1]:
        raise ConfigError(f"slice range must be 1 <= min <= max, got {num_slices}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    root = Path(root)
    args = [
        (root, pid, seed, tuple(matrix_sizes), num_slices, t2spir)
        for pid in range(1, num_patients + 1)
    ]
    if workers == 1 or num_patients == 1:
        return [write_patient(*a) for a in args]
    with ProcessPoolExecutor(max_workers=workers) as pool:  # patients are independent
        return list(pool.map(write_patient, *zip(*args, strict=True)))
