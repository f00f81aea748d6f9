"""Slice plane from ImageOrientationPatient: hand-computed cosines, tilts, flips, hostile values,
the manifest column written by prepare, and `--labels position:K` refusing non-axial slices."""

import csv
import io
import math
import warnings

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.valuerep import DSfloat

from mrisynth.cli import cli
from mrisynth.data.conditions import ConditionSpec, derive_conditions
from mrisynth.data.manifest import MANIFEST_COLUMNS
from mrisynth.data.orientation import PLANE_MIN_COSINE, slice_normal, slice_plane
from mrisynth.data.phantom_dicom import write_phantom_tree
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions
from mrisynth.errors import InputError

# (IOP, normal = row x column worked out by hand, plane); LPS: x left, y back, z head
HAND = [
    ((1, 0, 0, 0, 1, 0), (0, 0, 1), "axial"),  # the usual axial: rows to the left, cols back
    ((1, 0, 0, 0, 0, -1), (0, 1, 0), "coronal"),  # cols to the feet
    ((0, 1, 0, 0, 0, -1), (-1, 0, 0), "sagittal"),  # rows back, cols to the feet
    ((-1, 0, 0, 0, 1, 0), (0, 0, -1), "axial"),  # flipped row: normal to the feet
    ((1, 0, 0, 0, -1, 0), (0, 0, -1), "axial"),  # flipped column
    ((-1, 0, 0, 0, -1, 0), (0, 0, 1), "axial"),  # both flipped: a 180-degree in-plane turn
    ((0, -1, 0, 0, 0, 1), (-1, 0, 0), "sagittal"),  # (-y) x (+z) = -x
    # axial tilted 30 degrees about x: column (0, cos30, sin30), normal (0, -sin30, cos30)
    ((1, 0, 0, 0, math.sqrt(3) / 2, 0.5), (0, -0.5, math.sqrt(3) / 2), "oblique"),
    # 20 degrees: still axial (cos 20 = 0.940 >= 0.9)
    ((1, 0, 0, 0, math.cos(math.radians(20)), math.sin(math.radians(20))),
     (0, -math.sin(math.radians(20)), math.cos(math.radians(20))), "axial"),
    # coronal tilted 30 degrees towards axial: oblique
    ((1, 0, 0, 0, 0.5, -math.sqrt(3) / 2), (0, math.sqrt(3) / 2, 0.5), "oblique"),
    # rounded header values (DS strings carry 4-6 digits), as pydicom hands them over
    (["0.99999", "0.0", "0.00447", "-0.00447", "0.0", "0.99999"], (0, -1, 0), "coronal"),
]


@pytest.mark.parametrize(("iop", "normal", "plane"), HAND)
def test_hand_computed_cosines(iop, normal, plane):
    assert slice_plane(iop) == plane
    assert np.allclose(slice_normal(iop), normal, atol=1e-4)


def _rotate(v, axis, degrees):
    """Rodrigues' rotation of v about the unit axis (independent of the code under test)."""
    v, k, t = np.asarray(v, float), np.asarray(axis, float), math.radians(degrees)
    return v * math.cos(t) + np.cross(k, v) * math.sin(t) + k * np.dot(k, v) * (1 - math.cos(t))


@pytest.mark.parametrize(("row", "col", "plane"), [
    ((1, 0, 0), (0, 1, 0), "axial"), ((1, 0, 0), (0, 0, -1), "coronal"),
    ((0, 1, 0), (0, 0, -1), "sagittal"),
])
def test_tilt_sweep_names_the_plane_up_to_the_tolerance(row, col, plane):
    """Tilting a plane by t degrees about random axes in it: named while cos t >= 0.9 (25.8
    degrees), oblique beyond, for any in-plane tilt axis and either normal sign."""
    rng = np.random.default_rng(3)
    limit = math.degrees(math.acos(PLANE_MIN_COSINE))
    for t in [0, 5, 15, 25, 25.5, 26.5, 30, 45, 60]:
        for _ in range(4):
            a = rng.uniform(0, 2 * math.pi)  # tilt axis inside the plane
            axis = math.cos(a) * np.asarray(row, float) + math.sin(a) * np.asarray(col, float)
            r, c = _rotate(row, axis, t), _rotate(col, axis, t)
            n = np.abs(np.cross(r, c))  # numpy's normal: which axis, how close
            named = ("sagittal", "coronal", "axial")[int(n.argmax())]
            assert slice_plane(np.r_[r, c]) == (named if n.max() >= 0.9 else "oblique")
            if t < 45:  # up to 45 degrees the nearest axis is the untilted plane's
                want = plane if t <= limit else "oblique"
                assert slice_plane(np.r_[r, c]) == want, (t, a)
            assert slice_plane(np.r_[-r, c]) == want  # flipped normal: same plane


class _Bomb:
    def __float__(self):
        raise RuntimeError("hostile __float__")


HOSTILE = [
    None, "", "abc", b"\x00\xff", 42, {}, object(), _Bomb(), [_Bomb()] * 6,
    [math.nan, 0, 0, 0, 1, 0], [1, 0, 0, 0, math.inf, 0], [1e308] * 6, ["1e999"] * 6,
    [1, 0, 0, 0, 1], [1, 0, 0, 0, 1, 0, 0], [0] * 6, [1, 0, 0, 1, 0, 0],  # zero / parallel
    [2, 0, 0, 0, 2, 0], [1, 0, 0, 0, 0.5, 0], ["a", "b", "c", "d", "e", "f"],
    "1\\0\\0\\0\\1\\0", [[1, 0, 0], [0, 1, 0]], [None] * 6, list(range(10**5)),
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_iop_is_unknown_never_a_crash(value):
    assert slice_plane(value) == "unknown"
    assert slice_normal(value) is None


def test_pydicom_multivalue_is_read():
    iop = MultiValue(DSfloat, ["1", "0", "0", "0", "0", "-1"])
    assert slice_plane(iop) == "coronal"


def _raw(ds, keyword, value: bytes):
    tag = Tag(tag_for_keyword(keyword))
    ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def _rewrite(files, edit):
    for f in files:
        ds = pydicom.dcmread(f)
        edit(ds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(f, enforce_file_format=False)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Two phantom patients: patient 1's T2 series coronal, patient 2's opposed-phase series
    with NaN in every IOP, and one lone slice of patient 1's in-phase series with text IOP."""
    root = tmp_path_factory.mktemp("tree")
    p1, p2 = write_phantom_tree(root, 2, seed=2, matrix_sizes=(32,), num_slices=(5, 6))

    def coronal(ds):
        z = float(ds.ImagePositionPatient[2])
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [0, z, 0]

    _rewrite(sorted((p1.folder / "T2SPIR").rglob("*.dcm")), coronal)
    opposed = sorted((p2.folder / "T1DUAL" / "DICOM_anon" / "OutPhase").glob("*.dcm"))
    _rewrite(opposed, lambda ds: _raw(ds, "ImageOrientationPatient", b"NaN\\0\\0\\0\\1\\0"))
    lone = sorted((p1.folder / "T1DUAL" / "DICOM_anon" / "InPhase").glob("*.dcm"))[0]
    _rewrite([lone], lambda ds: _raw(ds, "ImageOrientationPatient", b"left\\up "))
    out = tmp_path_factory.mktemp("prep") / "out"
    res = prepare([root], out, PrepareOptions(sequence="any", slice=SliceOptions(size=16)))
    return out, res, p1, p2, len(opposed), lone.name


def _manifest(out):
    return list(csv.DictReader(io.StringIO((out / "manifest.csv").read_text())))


def test_prepare_records_the_plane_of_every_slice(mixed):
    out, res, _, _, n_opposed, lone = mixed
    rows = _manifest(out)
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    by = {}
    for r in rows:
        by.setdefault((r["patient_key"], r["sequence"]), set()).add(r["orientation"])
    planes = sorted((seq, *sorted(p)) for (_, seq), p in by.items())
    assert ("t2spir", "axial") in planes and ("t2spir", "coronal") in planes
    unknown = [r for r in rows if r["orientation"] == "unknown"]
    # the NaN-IOP series is still prepared: every slice, no position, ordered by number
    assert len(unknown) == n_opposed and {r["sequence"] for r in unknown} == {"t1_opp"}
    assert all(r["position_mm"] == "" for r in unknown)
    assert {r["orientation"] for r in rows} == {"axial", "coronal", "unknown"}
    # report.json names each series' plane, so the series a refusal names can be found
    series = {(x["series_key"], x["orientation"]) for x in res.report["series"]}
    assert series == {(r["series_key"], r["orientation"]) for r in rows}
    # a lone slice whose IOP is text, in a series of axial ones: outvoted, skipped with reason
    reasons = [k.reason for k in res.skipped if k.rel.endswith(lone)]
    assert reasons == ["orientation unknown differs from the rest of its series "
                       "([1.00,0.00,0.00,0.00,1.00,0.00])"]


def test_position_labels_refuse_non_axial_slices(mixed, tmp_path):
    out = mixed[0]
    res = CliRunner().invoke(cli, ["dataset", str(out), "-o", str(tmp_path / "d.zip"),
                                   "--labels", "position:4"])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    # the largest offending series is named: the 6 NaN-IOP slices; the 5 coronal ones count
    assert "needs axial slices, but 11 of 32 images are not" in lines[0]
    assert ": 6 'unknown' ('unknown': no usable ImageOrientationPatient)" in lines[0]
    assert "2 series in all" in lines[0] and "--labels sequence" in lines[0]
    assert not (tmp_path / "d.zip").exists()
    ok = CliRunner().invoke(cli, ["dataset", str(out), "-o", str(tmp_path / "s.zip"),
                                  "--labels", "sequence"])
    assert ok.exit_code == 0, ok.output


def _table(rows, drop=()):
    cols = [c for c in rows[0] if c not in drop]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def test_refusal_names_the_series_and_count(mixed, caplog):
    rows = [r for r in _manifest(mixed[0]) if r["orientation"] != "unknown"]
    names = [r["file"] for r in rows]
    coronal = [r for r in rows if r["orientation"] == "coronal"]
    with pytest.raises(InputError) as err:
        derive_conditions(_table(rows), names, ConditionSpec(2, False), "m.csv")
    key = f"{coronal[0]['patient_key']}/{coronal[0]['series_key']}"
    assert f"{len(coronal)} of {len(rows)} images are not (series {key}: {len(coronal)} " \
           "'coronal'" in str(err.value)
    axial = [r for r in rows if r["orientation"] == "axial"]
    got = derive_conditions(_table(axial), [r["file"] for r in axial], ConditionSpec(2, False))
    assert sorted(set(got.classes)) == [0, 1]
    # an old manifest (no orientation column) still loads: taken as axial, with a warning
    with caplog.at_level("WARNING"):
        old = derive_conditions(_table(rows, drop=("orientation",)), names, ConditionSpec(2, False))
    assert len(old.classes) == len(rows)
    assert any("no orientation" in r.getMessage() for r in caplog.records)
    for bad in ("oblique", "unknown", "AXIAL", "x" * 10_000, "axial\n"):
        hostile = [{**r, "orientation": bad} if i == 0 else r for i, r in enumerate(axial)]
        with pytest.raises(InputError, match="needs axial slices") as err:
            derive_conditions(_table(hostile), [r["file"] for r in axial], ConditionSpec(2, False))
        assert len(str(err.value)) < 500


@pytest.mark.parametrize(("iop", "plane"), [(b"NaN\\0\\0\\0\\1\\0", "unknown"),
                                            (b"1\\0\\0\\0\\0\\-1", "coronal")])
def test_enhanced_frames_get_the_plane_of_their_functional_group(tmp_path, iop, plane):
    """Enhanced MR: the orientation comes from PlaneOrientationSequence; a NaN there leaves the
    frames prepared with plane 'unknown' (the file used to be skipped)."""
    from tests.test_dicom_enhanced import _enhanced_from

    (patient,) = write_phantom_tree(tmp_path / "c", 1, seed=2, matrix_sizes=(32,),
                                    num_slices=(4, 4), t2spir=False)
    classic = sorted((patient.folder / "T1DUAL" / "DICOM_anon" / "InPhase").glob("*.dcm"))
    (tmp_path / "e").mkdir()
    multi = tmp_path / "e" / "multi.dcm"
    _enhanced_from(classic, multi)
    shared = lambda ds: ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]  # noqa: E731
    _rewrite([multi], lambda ds: _raw(shared(ds), "ImageOrientationPatient", iop))
    res = prepare([tmp_path / "e"], tmp_path / "out", PrepareOptions(slice=SliceOptions(size=16)))
    rows = _manifest(tmp_path / "out")
    assert len(rows) == 4 and not res.skipped
    assert {r["orientation"] for r in rows} == {plane}
