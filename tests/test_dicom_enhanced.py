"""Enhanced (multi-frame) MR: frames become slices via functional groups, same images as classic."""

import csv

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

from mrisynth.data.phantom_dicom import write_phantom_tree
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions

SLOPE, INTERCEPT = 2.0, 10.0


def _item(**kw):
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _enhanced_from(classic, path, seed=0):
    """Pack classic single-frame slices, shuffled, into one Enhanced MR object."""
    dss = [pydicom.dcmread(f) for f in classic]
    order = np.random.default_rng(seed).permutation(len(dss))
    base = dss[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, meta.MediaStorageSOPInstanceUID
    for kw in (
        "PatientID",
        "Modality",
        "SeriesNumber",
        "MagneticFieldStrength",
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
    ):
        setattr(ds, kw, base.data_element(kw).value)
    ds.NumberOfFrames = len(dss)
    ds.EchoPulseSequence = "GRADIENT"
    ds.SharedFunctionalGroupsSequence = [
        _item(
            PixelMeasuresSequence=[
                _item(PixelSpacing=base.PixelSpacing, SliceThickness=base.SliceThickness)
            ],
            PlaneOrientationSequence=[_item(ImageOrientationPatient=base.ImageOrientationPatient)],
            MREchoSequence=[_item(EffectiveEchoTime=float(base.EchoTime))],
            MRTimingAndRelatedParametersSequence=[_item(RepetitionTime=float(base.RepetitionTime))],
            PixelValueTransformationSequence=[
                _item(RescaleSlope=SLOPE, RescaleIntercept=INTERCEPT, RescaleType="US")
            ],
        )
    ]
    ds.PerFrameFunctionalGroupsSequence = [
        _item(PlanePositionSequence=[_item(ImagePositionPatient=dss[i].ImagePositionPatient)])
        for i in order
    ]
    ds.PixelData = np.stack([dss[i].pixel_array for i in order]).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return [dss[i] for i in order]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("enh")
    (patient,) = write_phantom_tree(
        root / "classic", 1, seed=2, matrix_sizes=(32,), num_slices=(5, 5), t2spir=False
    )
    inphase = sorted((patient.folder / "T1DUAL" / "DICOM_anon" / "InPhase").glob("*.dcm"))
    (root / "enhanced").mkdir()
    frames = _enhanced_from(inphase, root / "enhanced" / "multi.dcm")
    return root, patient, inphase, frames


def _prepared(src, out):
    prepare([src], out, PrepareOptions(slice=SliceOptions(size=16), source_paths=True))
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, [cv2.imread(str(out / r["file"]), cv2.IMREAD_UNCHANGED) for r in rows]


def test_enhanced_frames_become_sorted_slices(trees, tmp_path):
    root, patient, _, frames = trees
    rows, images = _prepared(root / "enhanced", tmp_path / "enh")
    assert len(rows) == patient.num_slices
    assert {r["sequence"] for r in rows} == {"t1_in"}  # from EffectiveEchoTime at 1.5 T
    pos = [float(r["position_mm"]) for r in rows]
    assert np.all(np.diff(pos) > 0)
    # frame numbers follow the shuffled storage order, not the position order
    assert [r["source"] for r in rows] != [f"multi.dcm#{k}" for k in range(1, 6)]
    assert all(r["source"] == f"multi.dcm#{r['source_frame']}" for r in rows)
    # the frame's functional-group rescale is applied
    k = int(rows[0]["source_frame"]) - 1
    assert float(rows[0]["norm_hi"]) == pytest.approx(
        frames[k].pixel_array.max() * SLOPE + INTERCEPT
    )
    assert all(img.shape == (16, 16) for img in images)


def test_enhanced_gives_the_classic_images(trees, tmp_path):
    root, patient, _, _ = trees
    _, enhanced = _prepared(root / "enhanced", tmp_path / "enh")
    _, classic = _prepared(
        patient.folder / "T1DUAL" / "DICOM_anon" / "InPhase", tmp_path / "classic"
    )
    assert len(enhanced) == len(classic)
    for a, b in zip(enhanced, classic, strict=True):  # per-slice min-max cancels the rescale
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
