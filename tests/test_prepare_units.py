"""Pure pieces of prepare: normalisation, fitting, resizing, sequence naming, sorting."""

import dataclasses

import numpy as np
import pytest

from mrisynth.data.dicom_scan import SliceHeader
from mrisynth.data.series import build_series, fat_water_phase, patient_key, sort_slices
from mrisynth.data.slice_pipeline import (
    SliceOptions,
    fit_square,
    make_isotropic,
    norm_bounds,
    normalise,
    quantise,
    resize,
    to_training_image,
)

BASE = SliceHeader(
    path="/x",
    rel="MR/1/InPhase/a.dcm",
    input_index=0,
    patient_ref="ID1",
    series_number="4",
    series_description="",
    modality="MR",
    echo_time_ms=4.6,
    repetition_time_ms=150.0,
    field_strength_t=1.5,
    scanning_sequence="GR",
    rows=32,
    columns=32,
    position=(0, 0, 0),
    orientation=(1, 0, 0, 0, 1, 0),
    spacing_mm=(1.5, 1.5),
    slice_thickness_mm=6.0,
    instance_number=1,
    transfer_syntax="1.2.840.10008.1.2.1",
)


KEY = b"unit-test-secret-0123456789"


def _h(**kw):
    return dataclasses.replace(BASE, **kw)


def _stack(n, te, folder, field=1.5, reverse=False, orientation=(1, 0, 0, 0, 1, 0)):
    normal = np.cross(orientation[:3], orientation[3:])
    return [
        _h(
            rel=f"{folder}/s{k}.dcm",
            echo_time_ms=te,
            field_strength_t=field,
            position=tuple(float(v) for v in normal * 7.0 * k),
            orientation=orientation,
            instance_number=(n - k if reverse else k + 1),
        )
        for k in range(n)
    ]


def test_percentile_norm_survives_a_hot_pixel():
    """One hot pixel at 4x the maximum wrecks min-max but not percentile clipping."""
    img = np.zeros((64, 64))
    img[16:48, 16:48] = 1000.0
    img[20, 20] = 4000.0
    body = (slice(24, 40), slice(24, 40))
    for method, expected in (("minmax", 64), ("percentile", 255)):
        lo, hi = norm_bounds(img, method, (0.5, 99.5))
        out = quantise(normalise(img, lo, hi), 8)
        assert out[body].mean() == pytest.approx(expected, abs=1)


def test_constant_slice_is_black():
    assert normalise(np.full((4, 4), 7.0), 7.0, 7.0).max() == 0


@pytest.mark.parametrize(
    ("fit", "shape"), [("pad", (40, 40)), ("crop", (20, 20)), ("stretch", (20, 40))]
)
def test_fit_square(fit, shape):
    img = np.ones((20, 40), dtype=np.float32)
    out = fit_square(img, fit)
    assert out.shape == shape
    if fit == "pad":  # centred, zero border
        assert out[10:30].min() == 1 and out[:10].max() == 0 and out[30:].max() == 0


def test_whole_field_of_view_is_kept_when_padding():
    img = np.zeros((30, 60), dtype=np.float64)
    img[:, 0] = img[:, -1] = 100.0  # edges of the field of view survive
    out = to_training_image(img, 0, 100, None, SliceOptions(size=60, fit="pad"))
    assert out.shape == (60, 60) and out[15:45, 0].min() == 255 and out[15:45, -1].min() == 255


def test_downsizing_uses_area_averaging():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64)).astype(np.float32)
    block_mean = img.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(resize(img, 16), block_mean, atol=1e-5)
    assert resize(img, 128).shape == (128, 128)


def test_non_square_pixels_are_made_square():
    img = np.ones((10, 20), dtype=np.float32)
    assert make_isotropic(img, (2.0, 1.0)).shape == (20, 20)  # rows 2 mm apart
    assert make_isotropic(img, (1.0, 1.0)).shape == (10, 20)


def test_sixteen_bit_output():
    out = to_training_image(
        np.arange(16.0).reshape(4, 4), 0, 15, None, SliceOptions(size=4, bit_depth=16)
    )
    assert out.dtype == np.uint16 and out.max() == 65535 and out.min() == 0


@pytest.mark.parametrize(
    ("te", "field", "phase"),
    [
        (4.6, 1.5, "in"),
        (2.3, 1.5, "opp"),
        (6.9, 1.5, "opp"),
        (1.15, 3.0, "opp"),
        (2.3, 3.0, "in"),
        (3.45, 1.5, None),
    ],
)
def test_fat_water_phase(te, field, phase):
    assert fat_water_phase(te, field) == phase


def test_dual_echo_pair_longer_echo_is_in_phase_even_without_field_strength():
    """3 T echoes (1.15 / 2.3 ms) with no field tag: the 1.5 T rule alone would call 2.3 opposed."""
    slices = _stack(4, 1.15, "a/OutPhase", None) + _stack(4, 2.3, "a/InPhase", None)
    series, skipped = build_series(slices, KEY)
    assert not skipped
    assert {s.echo_time_ms: s.sequence for s in series} == {1.15: "t1_opp", 2.3: "t1_in"}


def test_headers_win_over_swapped_folder_names():
    slices = _stack(3, 2.3, "a/InPhase") + _stack(3, 4.6, "a/OutPhase")
    series, _ = build_series(slices, KEY)
    by_te = {s.echo_time_ms: s for s in series}
    assert by_te[4.6].sequence == "t1_in" and by_te[2.3].sequence == "t1_opp"
    assert any("folder name says t1_opp" in w for w in by_te[4.6].warnings)


def test_t2_and_single_echo_classification():
    t2 = _stack(3, 80.0, "b/T2SPIR")
    t2 = [dataclasses.replace(s, scanning_sequence="SE", repetition_time_ms=1600.0) for s in t2]
    series, _ = build_series(_stack(3, 4.6, "c") + t2, KEY)
    assert sorted(s.sequence for s in series) == ["t1_in", "t2spir"]


def test_sort_by_position_along_an_oblique_normal():
    c, s = np.cos(0.3), np.sin(0.3)
    oblique = (1.0, 0.0, 0.0, 0.0, c, s)  # tilted about x
    slices = _stack(5, 4.6, "d", reverse=True, orientation=oblique)[::-1]
    ordered, pos, warnings = sort_slices(slices)
    assert [x.rel for x in ordered] == [f"d/s{k}.dcm" for k in range(5)]
    np.testing.assert_allclose(np.diff(pos), 7.0)
    assert not warnings


def test_missing_geometry_falls_back_to_instance_number():
    slices = [_h(rel=f"e/{k}.dcm", position=None, instance_number=3 - k) for k in range(3)]
    ordered, pos, warnings = sort_slices(slices)
    assert [x.instance_number for x in ordered] == [1, 2, 3] and pos == [None] * 3
    assert "InstanceNumber" in warnings[0]


def test_orientation_without_majority_skips_the_group():
    slices = _stack(2, 4.6, "f") + _stack(2, 4.6, "f", orientation=(0, 1, 0, 0, 0, -1))
    series, skipped = build_series(slices, KEY)
    assert not series and len(skipped) == 4 and "no majority" in skipped[0].reason


def test_chaos_layout_separates_patients(tmp_path):
    from mrisynth.data.dicom_scan import chaos_patient

    f = tmp_path / "CHAOS_Train_Sets" / "Train_Sets" / "MR" / "5" / "T1DUAL" / "DICOM_anon" / "x"
    assert chaos_patient(f) == "Train_Sets/MR/5"
    assert chaos_patient(tmp_path / "study" / "series" / "x.dcm") is None


def test_patient_key_is_a_keyed_hash():
    """HMAC-SHA256 (RFC 2104) under the secret, checked against the stdlib's hmac, so that
    without the secret no one can test guessed PatientIDs against a key."""
    import hashlib
    import hmac

    key = patient_key("PHANTOM-001", KEY)
    expected = hmac.new(KEY, b"PHANTOM-001", hashlib.sha256).hexdigest()[:10]
    assert key == "p" + expected
    assert key == patient_key("PHANTOM-001", KEY) != patient_key("PHANTOM-002", KEY)
    assert key != patient_key("PHANTOM-001", b"another secret of 16+ bytes")
    assert "001" not in key and len(key) == 11
