"""The synthetic abdominal phantom: anatomy/signal model and its CHAOS-like DICOM tree."""

import cv2
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.data.phantom import MASK_VALUES, TISSUES, render_slice, sample_anatomy
from mrisynth.data.phantom_dicom import write_phantom_tree
from mrisynth.errors import ConfigError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    patients = write_phantom_tree(root, 2, seed=5, matrix_sizes=(32, 40), num_slices=(4, 5))
    return root, patients


def _series(folder):
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def test_tree_layout_counts_and_pixels(tree):
    root, patients = tree
    for p in patients:
        t1 = root / "Train_Sets" / "MR" / p.patient_id / "T1DUAL"
        ins, opps = _series(t1 / "DICOM_anon" / "InPhase"), _series(t1 / "DICOM_anon" / "OutPhase")
        t2 = _series(root / "Train_Sets" / "MR" / p.patient_id / "T2SPIR" / "DICOM_anon")
        assert len(ins) == len(opps) == len(t2) == p.num_slices
        assert len(list((t1 / "Ground").glob("*.png"))) == p.num_slices
        for ds in ins + opps + t2:
            arr = ds.pixel_array
            assert arr.dtype == np.uint16 and arr.shape == (p.matrix, p.matrix)
            assert arr.max() < 4096 and ds.BitsStored == 12
            assert ds.SyntheticData == "YES" and ds.Modality == "MR"
        assert {float(d.EchoTime) for d in ins} == {4.6}
        assert {float(d.EchoTime) for d in opps} == {2.3}
        # both echoes share one series, as in CHAOS: readers must split them by echo time
        assert ins[0].SeriesInstanceUID == opps[0].SeriesInstanceUID
        assert float(ins[0].PixelSpacing[0]) == pytest.approx(p.spacing_mm, abs=1e-5)
        assert float(ins[0].SliceThickness) == pytest.approx(p.slice_spacing_mm)


def test_instance_numbers_run_against_position_for_odd_patients(tree):
    _, patients = tree
    for p in patients:
        ins = _series(p.folder / "T1DUAL" / "DICOM_anon" / "InPhase")
        ins.sort(key=lambda d: int(d.InstanceNumber))
        z = [float(d.ImagePositionPatient[2]) for d in ins]
        steps = np.diff(z)
        assert np.allclose(np.abs(steps), p.slice_spacing_mm, atol=1e-3)
        assert (steps < 0).all() if p.head_first_numbering else (steps > 0).all()
    assert [p.head_first_numbering for p in patients] == [True, False]


def test_deterministic_and_patient_independent(tmp_path, tree):
    root, _ = tree
    write_phantom_tree(tmp_path, 1, seed=5, matrix_sizes=(32, 40), num_slices=(4, 5))
    write_phantom_tree(
        tmp_path / "par", 2, seed=5, matrix_sizes=(32, 40), num_slices=(4, 5), workers=2
    )
    rel2 = "Train_Sets/MR/2/T1DUAL/DICOM_anon/OutPhase"
    a2, b2 = sorted((root / rel2).iterdir()), sorted((tmp_path / "par" / rel2).iterdir())
    assert [x.read_bytes() for x in a2] == [y.read_bytes() for y in b2]
    rel = "Train_Sets/MR/1/T1DUAL/DICOM_anon/InPhase"
    a, b = sorted((root / rel).iterdir()), sorted((tmp_path / rel).iterdir())
    assert [f.name for f in a] == [f.name for f in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))


def test_signal_model_anatomy():
    rng = np.random.default_rng(0)
    extent = 200.0
    anatomy = sample_anatomy(rng, extent)
    img = render_slice(anatomy, 0.66 * extent, 128, 3.0, rng, extent)  # liver level
    mask, in_, opp = img["mask"], img["in"].astype(float), img["opp"].astype(float)
    assert set(np.unique(mask)) <= {0, *MASK_VALUES.values()}
    liver = mask == MASK_VALUES["liver"]
    assert liver.sum() > 200
    assert np.nonzero(liver)[1].mean() < 64  # patient right = image left
    # two-point Dixon: pure fat stays bright in opposed phase; the liver (water + a little fat)
    # loses signal by (W - F) / (W + F)
    w, f, _ = TISSUES["liver"]
    f += anatomy.liver_fat
    ratio = np.median(opp[liver] / in_[liver])
    assert ratio == pytest.approx(1.04 * (w - f) / (w + f), rel=0.08)
    fat_outer, fat_inner = anatomy.blobs[0].semi[0], anatomy.blobs[1].semi[0]
    x = (np.arange(128) - 63.5) * 3.0
    ring = (np.abs(x) > fat_inner + 3) & (np.abs(x) < fat_outer - 3)
    assert ring.any()
    assert np.median(opp[64, ring] / in_[64, ring]) == pytest.approx(1.04 * 0.86 / 0.98, rel=0.1)
    assert in_[:3, :3].mean() < 0.05 * in_[liver].mean()  # air outside the body is dark


def test_masks_have_chaos_values(tree):
    root, _ = tree
    values = set()
    for png in (root / "Train_Sets" / "MR").rglob("Ground/*.png"):
        values |= set(np.unique(cv2.imread(str(png), cv2.IMREAD_UNCHANGED)).tolist())
    assert values <= {0, 63, 126, 189, 252} and 63 in values


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        write_phantom_tree(tmp_path, 0)
    with pytest.raises(ConfigError):
        write_phantom_tree(tmp_path, 1, num_slices=(5, 2))


def test_cli_small(tmp_path):
    res = CliRunner().invoke(
        cli, ["phantom", str(tmp_path / "ph"), "--patients", "1", "--small", "--no-t2spir"]
    )
    assert res.exit_code == 0, res.output
    assert "wrote 1 patients" in res.output
    assert not (tmp_path / "ph" / "Train_Sets" / "MR" / "1" / "T2SPIR").exists()
    files = list((tmp_path / "ph").rglob("InPhase/*.dcm"))
    assert 8 <= len(files) <= 12
    assert pydicom.dcmread(files[0]).Rows in (64, 72, 80)
    res = CliRunner().invoke(cli, ["phantom", str(tmp_path / "x"), "--slices", "a-b"])
    assert res.exit_code == 1 and "Error: --slices" in res.output
