"""pydicom / pydicom-data's real files: rescale, MONOCHROME1, big-endian, codecs, odd objects."""

import csv
import json
import shutil

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceError, SliceOptions, decode_slice


def _testdata(name):
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} missing: install the test extra (pydicom-data) to run this case")
    return path


def _prepare_one(tmp_path, name, size=32, **kw):
    """prepare --sequence any on a folder holding just `name`; returns (png, manifest row)."""
    src = tmp_path / f"in_{name}"
    src.mkdir()
    shutil.copy(_testdata(name), src / name)
    out = tmp_path / f"out_{name}"
    opts = PrepareOptions(sequence="any", slice=SliceOptions(size=size, **kw), source_paths=True)
    res = prepare([src], out, opts)
    assert res.num_images == 1
    with open(out / "manifest.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    return cv2.imread(str(out / row["file"]), cv2.IMREAD_UNCHANGED), row, res


def test_rescale_slope_is_applied():
    path = _testdata("MR2_UNCR.dcm")
    ds = pydicom.dcmread(path)
    assert float(ds.RescaleSlope) == pytest.approx(3.774114)
    values, _ = decode_slice(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(values, expected)


def test_rescaled_bounds_in_manifest(tmp_path):
    ds = pydicom.dcmread(_testdata("MR2_UNCR.dcm"))
    img, row, _ = _prepare_one(tmp_path, "MR2_UNCR.dcm", size=64)
    top = ds.pixel_array.max() * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert float(row["norm_hi"]) == pytest.approx(top, rel=1e-5)
    assert (row["rows"], row["columns"]) == ("1024", "1024") and img.shape == (64, 64)


def test_monochrome1_is_inverted(tmp_path):
    path = _testdata("RG1_UNCI.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    stored = ds.pixel_array.astype(np.float64)
    values, _ = decode_slice(path)
    np.testing.assert_allclose(values + stored, 2 ** int(ds.BitsStored) - 1)  # mirrored
    img, _, _ = _prepare_one(tmp_path, "RG1_UNCI.dcm", size=32, fit="stretch")
    small = cv2.resize(stored, (32, 32), interpolation=cv2.INTER_AREA)
    assert np.corrcoef(img.ravel(), small.ravel())[0, 1] < -0.95  # low stored = bright


def test_big_endian_gives_the_same_image(tmp_path):
    little, _, _ = _prepare_one(tmp_path, "MR_small.dcm")
    big, _, _ = _prepare_one(tmp_path, "MR_small_bigendian.dcm")
    np.testing.assert_array_equal(little, big)
    values, _ = decode_slice(_testdata("MR_small_bigendian.dcm"))
    assert values.dtype == np.float64 and values.dtype.isnative


def test_rle_is_decoded_natively(tmp_path):
    reference, _ = decode_slice(_testdata("MR_small.dcm"))
    rle, _ = decode_slice(_testdata("MR_small_RLE.dcm"))
    np.testing.assert_array_equal(reference, rle)


@pytest.mark.parametrize(
    ("name", "syntax", "package"),
    [
        ("MR_small_jp2klossless.dcm", JPEG2000Lossless, "pylibjpeg-openjpeg"),
        ("MR_small_jpeg_ls_lossless.dcm", JPEGLSLossless, "pylibjpeg-libjpeg"),
    ],
)
def test_lossless_codecs_decode_or_say_what_to_install(name, syntax, package):
    """Both outcomes are asserted: which one runs depends on the installed decoder plugins."""
    reference, _ = decode_slice(_testdata("MR_small.dcm"))
    if get_decoder(syntax).is_available:
        values, _ = decode_slice(_testdata(name))
        np.testing.assert_array_equal(values, reference)
    else:
        with pytest.raises(SliceError) as err:
            decode_slice(_testdata(name))
        assert syntax in str(err.value) and package in str(err.value)


def test_real_jpeg2000_mr_matches_its_uncompressed_twin():
    """pydicom-data's 1024x1024 MR2 as J2K lossless decodes to the uncompressed file's values."""
    if not get_decoder(JPEG2000Lossless).is_available:
        with pytest.raises(SliceError, match="pylibjpeg-openjpeg"):
            decode_slice(_testdata("MR2_J2KR.dcm"))
        return
    compressed, _ = decode_slice(_testdata("MR2_J2KR.dcm"))
    plain, _ = decode_slice(_testdata("MR2_UNCR.dcm"))
    np.testing.assert_array_equal(compressed, plain)


def test_single_file_input(tmp_path):
    """A file can be an input; its output may sit next to it."""
    shutil.copy(_testdata("MR_small.dcm"), tmp_path / "MR_small.dcm")
    res = prepare(
        [tmp_path / "MR_small.dcm"],
        tmp_path / "out",
        PrepareOptions(sequence="any", slice=SliceOptions(size=16)),
    )
    assert res.num_images == 1


def test_odd_objects_are_reported(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in (
        "MR_small.dcm",
        "MR_truncated.dcm",
        "liver.dcm",
        "emri_small.dcm",
        "CT_small.dcm",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
    ):
        shutil.copy(_testdata(name), src / name)
    opts = PrepareOptions(sequence="any", slice=SliceOptions(size=32), source_paths=True)
    res = prepare([src], tmp_path / "out", opts)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reasons = {s["source"]: s["reason"] for s in report["skipped"]}
    assert reasons["MR_truncated.dcm"].startswith("truncated pixel data")
    assert reasons["liver.dcm"] == "not an image (Segmentation Storage)"
    assert reasons["emri_small.dcm"].startswith("multi-frame object (10 frames")
    assert res.num_images == 3  # MR_small, CT_small (sequence 'other'), the Siemens MR
    with open(tmp_path / "out" / "manifest.csv", newline="") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    assert rows["CT_small.dcm"]["sequence"] == "other"
