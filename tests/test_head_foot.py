"""Head-foot level of a slice (manifest `z_mm`): the image centre's patient z against a pixel
grid, mirrored and tilted geometry, hostile header values; position labels that agree between a
normal and a mirrored axial series of one patient; old manifests without the column."""

import csv
import io
import math

import numpy as np
import pytest
from tests.test_conditions import _manifest_folder
from tests.test_orientation import _raw, _rewrite

from mrisynth.data.conditions import AXIS, AXIS_NORMAL, ConditionSpec, derive_conditions
from mrisynth.data.manifest import MANIFEST_COLUMNS, manifest_csv
from mrisynth.data.orientation import head_foot_mm, slice_normal
from mrisynth.data.pack import pack_archive
from mrisynth.data.phantom_dicom import write_phantom_tree
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions
from mrisynth.errors import InputError


def _grid_centre_z(ipp, iop, spacing, rows, cols):
    """Mean patient z over every pixel centre, from DICOM's pixel -> patient mapping
    P(r, c) = IPP + c * dc * row_dir + r * dr * col_dir (PS 3.3 C.7.6.2.1.1)."""
    row_dir, col_dir = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")  # [R, C]
    z = ipp[2] + c * spacing[1] * row_dir[2] + r * spacing[0] * col_dir[2]
    return float(z.mean())


def _tilted(degrees):
    """Axial IOP tilted about the left-right axis: column direction (0, cos t, sin t)."""
    t = math.radians(degrees)
    return (1.0, 0.0, 0.0, 0.0, math.cos(t), math.sin(t))


@pytest.mark.parametrize("degrees", [0, 7.5, 20, -25])
@pytest.mark.parametrize(("rows", "cols", "spacing"), [(256, 256, (1.5, 1.5)),
                                                       (192, 320, (1.8, 1.2))])
def test_centre_z_matches_the_pixel_grid(degrees, rows, cols, spacing):
    ipp, iop = (-190.0, -150.0, 42.0), _tilted(degrees)
    got = head_foot_mm(ipp, iop, spacing, rows, cols)
    assert got == pytest.approx(_grid_centre_z(ipp, iop, spacing, rows, cols), abs=1e-9)
    if degrees == 0:
        assert got == 42.0  # an untilted slice: ImagePositionPatient[2] everywhere


@pytest.mark.parametrize("degrees", [0, 15])
def test_a_mirrored_slice_has_the_same_level(degrees):
    """The same plane stored flipped (rows reversed: IPP at the bottom-left pixel, column
    direction negated, normal to the feet): position along the normal changes sign, z does not."""
    rows, cols, spacing = 64, 48, (2.0, 1.5)
    ipp, iop = np.array([-30.0, -40.0, -95.0]), _tilted(degrees)
    col_dir = np.asarray(iop[3:])
    flipped_ipp = ipp + (rows - 1) * spacing[0] * col_dir
    flipped_iop = (*iop[:3], *(-col_dir))
    n, m = np.asarray(slice_normal(iop)), np.asarray(slice_normal(flipped_iop))
    assert n[2] > 0.9 and m[2] < -0.9
    assert float(ipp @ n) == pytest.approx(-float(flipped_ipp @ m))  # position_mm flips
    assert head_foot_mm(flipped_ipp, flipped_iop, spacing, rows, cols) == pytest.approx(
        head_foot_mm(ipp, iop, spacing, rows, cols), abs=1e-9)


class _Bad:
    def __float__(self):
        raise RuntimeError("hostile")


AXIAL = (1, 0, 0, 0, 1, 0)
HOSTILE = [
    ((math.nan, 0, 10), AXIAL), ((0, 0, math.inf), AXIAL), ((0, 0, -math.inf), AXIAL),
    (("a", "b", "c"), AXIAL), ("12mm", AXIAL), ((0, 0, 1e308), AXIAL), ((0, 0, 2e6), AXIAL),
    ((0, 0, 10**400), AXIAL), ((0, 0), AXIAL), ((0, 0, 1, 2), AXIAL), (None, AXIAL),
    ((0, 0, _Bad()), AXIAL), ((0, 0, "nan"), AXIAL), ((0, 0, b"\xff"), AXIAL), (object(), AXIAL),
    ((0, 0, 5), None), ((0, 0, 5), (math.nan, 0, 0, 0, 1, 0)), ((0, 0, 5), "axial"),
    ((0, 0, 5), (0, 0, 0, 0, 0, 0)), ((0, 0, 5), (1, 0, 0, 1, 0, 0)),
]


@pytest.mark.parametrize(("ipp", "iop"), HOSTILE)
def test_hostile_values_are_unknown_never_a_crash(ipp, iop):
    assert head_foot_mm(ipp, iop, (1.0, 1.0), 8, 8) is None


@pytest.mark.parametrize(("spacing", "rows", "cols"), [
    (None, 8, 8), ((math.nan, 1), 8, 8), ((0, 0), 8, 8), ((-1, -1), 8, 8), ("1\\1", 8, 8),
    ((1, 1), 0, 8), ((1, 1), 8, 10**9), ((1, 1), True, 8), ((1, 1), 8.5, 8), ((1, 1), "8", 8),
])
def test_unusable_spacing_or_size(spacing, rows, cols):
    """Without a usable PixelSpacing/Rows/Columns an untilted slice still has its z (the same
    everywhere in the plane); a tilted one's centre cannot be told, so None."""
    assert head_foot_mm((1, 2, -33.5), AXIAL, spacing, rows, cols) == -33.5
    assert head_foot_mm((1, 2, -33.5), _tilted(10), spacing, rows, cols) is None


def test_numpy_values_and_huge_results():
    got = head_foot_mm(np.array([0.0, 0.0, 7.0]), np.array(AXIAL, float), np.array([1.0, 1.0]),
                       np.int64(16), np.uint16(16))
    assert got == 7.0
    # every input within bounds, but the centre beyond a kilometre: unknown
    assert head_foot_mm((0, 0, 999_999.0), _tilted(25), (30.0, 30.0), 65535, 65535) is None


def _flip_series(files):
    """Store each slice mirrored left-right: row direction -x, the pixel columns reversed and
    IPP at the far pixel; the normal row x column then points to the feet."""
    def edit(ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        width = (int(ds.Columns) - 1) * float(ds.PixelSpacing[1])
        ds.ImagePositionPatient = [round(x + width, 4), y, z]
        ds.ImageOrientationPatient = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
    _rewrite(files, edit)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """Two phantom patients (the first numbered head first); each one's T2 series mirrored."""
    root = tmp_path_factory.mktemp("tree")
    patients = write_phantom_tree(root, 2, seed=7, matrix_sizes=(32,), num_slices=(5, 8))
    assert patients[0].head_first_numbering and not patients[1].head_first_numbering
    for p in patients:
        _flip_series(sorted((p.folder / "T2SPIR").rglob("*.dcm")))
    out = tmp_path_factory.mktemp("prep") / "out"
    prepare([root], out, PrepareOptions(sequence="any", slice=SliceOptions(size=16)))
    rows = list(csv.DictReader(io.StringIO((out / "manifest.csv").read_text())))
    return out, rows


def test_prepare_records_z_and_keeps_position_mm(mirrored):
    _, rows = mirrored
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert {r["orientation"] for r in rows} == {"axial"}
    for r in rows:
        sign = -1 if r["sequence"] == "t2spir" else 1  # the mirrored series' normal: feet
        assert float(r["position_mm"]) == pytest.approx(sign * float(r["z_mm"]), abs=1e-3)
    # position_mm's ordering contract is unchanged: slice_index follows increasing position_mm
    for key in {r["series_key"] for r in rows}:
        series = sorted((int(r["slice_index"]), float(r["position_mm"])) for r in rows
                        if r["series_key"] == key)
        assert [p for _, p in series] == sorted(p for _, p in series)
    levels = {}
    for r in rows:
        levels.setdefault((r["patient_key"], r["sequence"]), set()).add(r["z_mm"])
    for (patient, _seq), zs in levels.items():
        assert zs == levels[(patient, "t1_in")]  # every series of a patient: the same levels


POS4 = ConditionSpec(4, False)


def _classes(rows, spec=POS4, text=None):
    return derive_conditions(text or manifest_csv(rows), [r["file"] for r in rows], spec)


def test_normal_and_mirrored_series_get_the_same_bins(mirrored):
    _, rows = mirrored
    conds = _classes(rows)
    assert conds.record["position"] == AXIS
    per_level, by_patient = {}, {}
    for r, c in zip(rows, conds.classes, strict=True):
        per_level.setdefault((r["patient_key"], r["z_mm"]), set()).add(c)
        by_patient.setdefault(r["patient_key"], []).append((float(r["z_mm"]), c))
    assert len(by_patient) == 2 and all(len(v) == 1 for v in per_level.values())
    for pairs in by_patient.values():
        pairs.sort(reverse=True)  # head (largest z) first: bins 0 .. K-1
        bins = [c for _, c in pairs]
        assert bins == sorted(bins) and bins[0] == 0 and bins[-1] == 3
    # the old rule (position along the normal) splits the patient: the bug this fixes
    old = _classes(rows, text=_without(rows, "z_mm"))
    assert old.classes != conds.classes


def test_reversed_numbers_and_shuffled_rows_change_nothing(mirrored):
    _, rows = mirrored
    spec = ConditionSpec(3, True)
    ref = _classes(rows, spec)
    flipped = [dict(r, slice_index=str(int(r["slice_count"]) - 1 - int(r["slice_index"])))
               for r in rows]
    order = np.random.default_rng(1).permutation(len(rows))
    assert _classes(rows, spec, manifest_csv([flipped[i] for i in order])).classes == ref.classes


def _without(rows, column):
    cols = [c for c in rows[0] if c != column]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def test_an_old_manifest_falls_back_to_position_mm_with_a_warning(caplog):
    """No z_mm recorded: position_mm as before (without a mirrored series, the same bins)."""
    rows = [{"file": f"i{p}{i}.png", "patient_key": p, "sequence": "t1_in",
             "position_mm": str(10.0 * i - 50), "z_mm": str(10.0 * i - 50),
             "orientation": "axial"} for p in ("pa", "pb") for i in range(8)]
    new = _classes(rows)
    with caplog.at_level("WARNING"):
        old = _classes(rows, text=_without(rows, "z_mm"))
    assert old.classes == new.classes and old.record["position"] == AXIS_NORMAL
    # a z_mm column empty in every row (a table re-written by another tool) recorded nothing
    blank = _classes(rows, text=manifest_csv([{**r, "z_mm": ""} for r in rows]))
    assert blank.classes == new.classes and blank.record["position"] == AXIS_NORMAL
    assert any("no z_mm recorded" in r.getMessage() for r in caplog.records)
    assert new.classes[:8] == [3, 3, 2, 2, 1, 1, 0, 0]  # z rises to the head: bin 0 last


@pytest.mark.parametrize(("value", "msg"), [
    ("nan", "not a finite number"), ("inf", "not a finite number"),
    ("-1e999", "not a finite number"), ("12mm", "not a finite number"),
    ("1e308", "within"), ("2e6", "within"), ("", "no z_mm"), ("x" * 10_000, "not a finite"),
])
def test_hostile_z_in_a_manifest_is_one_error(tmp_path, value, msg):
    rows = [{"file": f"i{i}.png", "patient_key": "pa", "sequence": "t1_in",
             "position_mm": str(float(i)), "z_mm": str(float(i))} for i in range(4)]
    rows[1]["z_mm"] = value
    src = _manifest_folder(tmp_path / "src", rows)
    with pytest.raises(InputError, match=msg) as err:
        pack_archive(src, tmp_path / "o.zip", labels="position:2")
    assert len(str(err.value)) < 400 and "\n" not in str(err.value)
    assert not (tmp_path / "o.zip").exists()


def test_headers_that_leave_z_unknown(tmp_path):
    """A lone slice with a NaN ImagePositionPatient is skipped with its reason (the rest keep
    their z); a tilted series without PixelSpacing is prepared with position_mm but an empty
    z_mm (its centre cannot be placed), and position labels then refuse, naming z_mm."""
    (patient,) = write_phantom_tree(tmp_path / "t", 1, seed=3, matrix_sizes=(32,),
                                    num_slices=(4, 4), t2spir=False)
    inphase = sorted((patient.folder / "T1DUAL" / "DICOM_anon" / "InPhase").glob("*.dcm"))
    _rewrite(inphase[:1], lambda ds: _raw(ds, "ImagePositionPatient", b"0\\0\\NaN "))

    def tilt_without_spacing(ds):
        ds.ImageOrientationPatient = list(_tilted(10))
        del ds.PixelSpacing
    opposed = sorted((patient.folder / "T1DUAL" / "DICOM_anon" / "OutPhase").glob("*.dcm"))
    _rewrite(opposed, tilt_without_spacing)
    res = prepare([tmp_path / "t"], tmp_path / "out",
                  PrepareOptions(sequence="any", slice=SliceOptions(size=16)))
    dicom = [k.reason for k in res.skipped if k.rel.endswith(".dcm")]  # masks are PNGs
    assert dicom == ["ImagePositionPatient NaN is not a finite number"]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "manifest.csv").read_text())))
    by_seq = {s: [r for r in rows if r["sequence"] == s] for s in ("t1_in", "t1_opp")}
    assert len(by_seq["t1_in"]) == 3 and all(r["z_mm"] for r in by_seq["t1_in"])
    assert len(by_seq["t1_opp"]) == 4 and all(r["orientation"] == "axial" and r["position_mm"]
                                               and r["z_mm"] == "" for r in by_seq["t1_opp"])
    with pytest.raises(InputError, match=r"4 image\(s\) have no z_mm"):
        _classes(rows, ConditionSpec(2, False))
    assert len(set(_classes(by_seq["t1_in"], ConditionSpec(2, False)).classes)) == 2


def test_enhanced_frames_get_the_z_of_their_classic_slices(tmp_path):
    """An Enhanced MR object packed (shuffled) from classic slices: each frame's z_mm, from its
    per-frame PlanePositionSequence, equals that of the classic slice it came from."""
    from tests.test_dicom_enhanced import _enhanced_from

    (patient,) = write_phantom_tree(tmp_path / "c", 1, seed=4, matrix_sizes=(32,),
                                    num_slices=(4, 4), t2spir=False)
    classic = sorted((patient.folder / "T1DUAL" / "DICOM_anon" / "InPhase").glob("*.dcm"))
    (tmp_path / "e").mkdir()
    _enhanced_from(classic, tmp_path / "e" / "multi.dcm")
    levels = []
    for src in ("c", "e"):
        prepare([tmp_path / src], tmp_path / f"out-{src}",
                PrepareOptions(slice=SliceOptions(size=16)))
        rows = csv.DictReader(io.StringIO((tmp_path / f"out-{src}" / "manifest.csv").read_text()))
        levels.append(sorted(float(r["z_mm"]) for r in rows))
    assert len(levels[0]) == 4 and levels[0] == levels[1]
    assert len(set(levels[0])) == 4


def test_dataset_cli_writes_the_same_labels(mirrored, tmp_path):
    """`mrisynth dataset PREPARED -o d.zip --labels position:4`, as the README shows it."""
    from click.testing import CliRunner

    from mrisynth.cli import cli
    from mrisynth.data.archive import ImageArchive

    out, rows = mirrored
    res = CliRunner().invoke(cli, ["dataset", str(out), "-o", str(tmp_path / "d.zip"),
                                   "--labels", "position:4"])
    assert res.exit_code == 0, res.output
    obj = ImageArchive(tmp_path / "d.zip").dataset_json()
    expected = dict(zip([r["file"] for r in rows], _classes(rows).classes, strict=True))
    assert dict(map(tuple, obj["labels"])) == expected
    assert obj["mrisynth"]["condition"]["position"] == AXIS
