"""Every bad-input case is skipped with a one-line reason, and the run goes on."""

import json
import shutil

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless

from mrisynth.cli import cli
from mrisynth.data.phantom_dicom import write_phantom_tree


def _testdata(name):
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} missing: install the test extra (pydicom-data) to run this case")
    return path


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """A one-patient phantom with every kind of bad file mixed in."""
    root = tmp_path_factory.mktemp("messy")
    (patient,) = write_phantom_tree(
        root, 1, seed=11, matrix_sizes=(32,), num_slices=(5, 5), t2spir=False
    )
    inphase = patient.folder / "T1DUAL" / "DICOM_anon" / "InPhase"
    first = sorted(inphase.glob("*.dcm"))[0]
    (root / ".DS_Store").write_bytes(b"\0\1junk")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: main")
    (root / "readme.txt").write_text("study notes")
    (root / "garbage").write_bytes(np.random.default_rng(0).bytes(2000))
    shutil.copy(_testdata("dicomdirtests/DICOMDIR"), root / "DICOMDIR")
    shutil.copy(_testdata("liver.dcm"), root / "seg.dcm")
    shutil.copy(_testdata("emri_small.dcm"), root / "enhanced.dcm")
    data = first.read_bytes()
    (inphase / "IMG-trunc.dcm").write_bytes(data[: len(data) - 300])
    ds = pydicom.dcmread(first)  # a sagittal localizer in the same folder and series
    ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["loc"])
    ds.save_as(inphase / "IMG-loc.dcm")
    ds = pydicom.dcmread(first)  # a slice with another matrix size
    ds.Rows = ds.Columns = 16
    ds.PixelData = np.full((16, 16), 100, dtype="<u2").tobytes()
    ds.ImagePositionPatient = [0.0, 0.0, 999.0]
    ds.save_as(inphase / "IMG-small.dcm")
    ds = pydicom.dcmread(first)  # claims JPEG-LS; the codec is missing or the data is junk
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8not-really-jpeg-ls\xff\xd9"])
    ds.ImagePositionPatient = [0.0, 0.0, 1999.0]
    ds.save_as(inphase / "IMG-jls.dcm")
    return root, patient


EXPECTED = {
    ".DS_Store": "hidden file",
    ".git": "hidden folder",
    "readme.txt": "not a DICOM file",
    "garbage": "not a DICOM file",
    "DICOMDIR": "DICOMDIR",
    "seg.dcm": "not an image (Segmentation Storage)",
    "enhanced.dcm": "multi-frame object (10 frames",
    "IMG-trunc.dcm": "truncated pixel data",
    "IMG-loc.dcm": "orientation [0.00,1.00,0.00,0.00,0.00,-1.00] differs",
    "IMG-small.dcm": "matrix size 16x16 differs from the rest of its series (32x32)",
    "IMG-jls.dcm": "JPEG-LS",
}


def test_each_bad_file_is_skipped_with_its_reason(messy, tmp_path):
    root, patient = messy
    res = CliRunner().invoke(
        cli,
        [
            "prepare",
            str(root),
            "-o",
            str(tmp_path / "out"),
            "--size",
            "16",
            "--no-progress",
            "--keep-source-paths",
        ],
    )
    assert res.exit_code == 0, res.output
    assert f"prepared {patient.num_slices} images of 1 patients" in res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reasons = {s["source"].rsplit("/", 1)[-1]: s["reason"] for s in report["skipped"]}
    for name, expected in EXPECTED.items():
        assert expected in reasons[name], (name, reasons.get(name))
    jls = reasons["IMG-jls.dcm"]
    assert "no decoder is installed: pip install" in jls or "cannot decode JPEG-LS" in jls
    assert all("\n" not in r for r in reasons.values())  # one line each
    assert len(list((tmp_path / "out").glob("*.png"))) == patient.num_slices


def test_strict_fails_on_dicom_problems_only(messy, tmp_path):
    root, patient = messy
    res = CliRunner().invoke(
        cli, ["prepare", str(root), "-o", str(tmp_path / "out"), "--size", "16", "--strict"]
    )
    assert res.exit_code == 1 and "--strict" in res.output
    assert len(list((tmp_path / "out").glob("*.png"))) == patient.num_slices  # still written
    clean = tmp_path / "clean"
    shutil.copytree(patient.folder / "T1DUAL" / "DICOM_anon" / "OutPhase", clean / "OutPhase")
    (clean / "notes.txt").write_text("benign")
    res = CliRunner().invoke(
        cli,
        [
            "prepare",
            str(clean),
            "-o",
            str(tmp_path / "o2"),
            "--size",
            "16",
            "--strict",
            "--sequence",
            "t1-opp",
        ],
    )
    assert res.exit_code == 0, res.output


def test_no_usable_slices_exits_1_with_a_hint(messy, tmp_path):
    root, _ = messy
    res = CliRunner().invoke(
        cli, ["prepare", str(root), "-o", str(tmp_path / "out"), "--sequence", "t2spir"]
    )
    assert res.exit_code == 1
    assert "no usable t2spir slices (series found: t1_in: 1, t1_opp: 1" in res.output


@pytest.mark.parametrize("implicit", [True, False])
def test_file_without_preamble_or_meta_header_is_used(tmp_path, implicit):
    """Old files without the 128-byte preamble and file meta: the scan accepts them (a SOP class
    parses) and decoding needs the transfer syntax they were read with."""
    import io

    from mrisynth.data.prepare import PrepareOptions, prepare
    from mrisynth.data.slice_pipeline import SliceOptions

    ds = pydicom.dcmread(_testdata("MR_small.dcm"))
    del ds.file_meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False, implicit_vr=implicit, little_endian=True)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "old").write_bytes(buf.getvalue())
    opts = PrepareOptions(sequence="any", slice=SliceOptions(size=16))
    res = prepare([tmp_path / "in"], tmp_path / "out", opts)
    assert res.num_images == 1 and res.skipped == []
