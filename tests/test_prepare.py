"""`prepare` end to end on a tiny phantom tree: counts, order, sequences, idempotency, privacy."""

import csv
import hashlib
import shutil

import cv2
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.data.manifest import MANIFEST_COLUMNS
from mrisynth.data.phantom_dicom import FAKE_IDENTITY, write_phantom_tree
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions
from mrisynth.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    patients = write_phantom_tree(root, 2, seed=3, matrix_sizes=(32, 40), num_slices=(4, 6))
    return root, patients


def _opts(size=16, **kw):
    kw.setdefault("source_paths", True)  # these tests check paths; privacy tests turn it off
    slice_kw = {k: kw.pop(k) for k in list(kw) if k in SliceOptions.__dataclass_fields__}
    return PrepareOptions(slice=SliceOptions(size=size, **slice_kw), **kw)


def _rows(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _tree_digest(root):
    return {
        p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_phantom_end_to_end(phantom, tmp_path):
    root, patients = phantom
    before = _tree_digest(root)
    res = prepare([root], tmp_path / "out", _opts())
    assert _tree_digest(root) == before  # inputs are only read
    total = sum(p.num_slices for p in patients)
    assert res.num_images == total and res.num_patients == 2
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert len(pngs) == total
    for p in pngs:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (16, 16)
        # per-slice min-max: air near 0, the body well above it (INTER_AREA smooths extremes)
        assert img.min() <= 8 and img.max() >= 128
        assert img[6:10, 6:10].mean() > 5 * max(img[:2, :2].mean(), 1)
    rows = _rows(tmp_path / "out")
    assert list(rows[0]) == list(MANIFEST_COLUMNS) and len(rows) == total
    assert [r["file"] for r in rows] == [p.name for p in pngs]
    assert {r["sequence"] for r in rows} == {"t1_in"}
    assert {r["echo_time_ms"] for r in rows} == {"4.6"}
    assert all("/InPhase/" in r["source"] for r in rows)
    assert {r["rows"] for r in rows} <= {"32", "40"}
    # ImageArchive reads prepare's folder directly (unlabelled)
    assert len(ImageArchive(tmp_path / "out")) == total


def test_slices_sorted_by_position_even_with_reversed_instance_numbers(phantom, tmp_path):
    root, patients = phantom
    prepare([root], tmp_path / "out", _opts())
    by_series = {}
    for r in _rows(tmp_path / "out"):
        by_series.setdefault(r["series_key"], []).append(r)
    assert len(by_series) == 2
    reversed_seen = False
    for rows in by_series.values():
        rows.sort(key=lambda r: int(r["slice_index"]))
        pos = [float(r["position_mm"]) for r in rows]
        assert np.all(np.diff(pos) > 0)
        assert [int(r["slice_count"]) for r in rows] == [len(rows)] * len(rows)
        inst = [
            int(pydicom.dcmread(root / r["source"], stop_before_pixels=True).InstanceNumber)
            for r in rows
        ]
        reversed_seen |= bool(np.all(np.diff(inst) < 0))
    assert reversed_seen and patients[0].head_first_numbering


@pytest.mark.parametrize(
    ("sequence", "echo", "folder"),
    [
        ("t1-opp", "2.3", "/OutPhase/"),
        ("t2spir", "80", "/T2SPIR/"),
    ],
)
def test_sequence_selection_by_headers(phantom, tmp_path, sequence, echo, folder):
    root, patients = phantom
    prepare([root], tmp_path / "out", _opts(sequence=sequence))
    rows = _rows(tmp_path / "out")
    assert len(rows) == sum(p.num_slices for p in patients)
    assert {r["echo_time_ms"] for r in rows} == {echo} and all(folder in r["source"] for r in rows)


def test_both_echoes_in_one_folder_are_split_by_echo_time(phantom, tmp_path):
    """An unsorted export: in- and opposed-phase files mixed in one folder, no hints in names."""
    _, patients = phantom
    mixed = tmp_path / "export"
    mixed.mkdir()
    for sub in ("InPhase", "OutPhase"):
        for f in (patients[1].folder / "T1DUAL" / "DICOM_anon" / sub).glob("*.dcm"):
            shutil.copy(f, mixed / f"{sub[:2]}{f.name}")
    res = prepare([mixed], tmp_path / "out", _opts())
    assert res.num_images == patients[1].num_slices
    assert {r["echo_time_ms"] for r in _rows(tmp_path / "out")} == {"4.6"}


def test_any_sequence_and_norm_bounds(phantom, tmp_path):
    root, patients = phantom
    res = prepare([root], tmp_path / "out", _opts(sequence="any", norm="volume-percentile"))
    assert res.num_images == 3 * sum(p.num_slices for p in patients)
    assert res.report["counts"]["series_found"] == {"t1_in": 2, "t1_opp": 2, "t2spir": 2}
    rows = _rows(tmp_path / "out")
    per_series = {}
    for r in rows:
        per_series.setdefault(r["series_key"], set()).add((r["norm_lo"], r["norm_hi"]))
    assert all(len(b) == 1 for b in per_series.values())  # one pair of bounds per volume


def test_rerun_is_idempotent_and_stale_images_are_removed(phantom, tmp_path):
    root, patients = phantom
    out = tmp_path / "out"
    prepare([root], out, _opts())
    first = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    res = prepare([root], out, _opts())
    assert res.num_written == 0 and res.num_unchanged == res.num_images
    second = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert first == second  # same names, same bytes, nothing rewritten
    # a narrower input: the other patient's PNGs go away, the rest stay untouched
    res = prepare([root / "Train_Sets" / "MR" / "2"], out, _opts())
    assert res.num_removed == patients[0].num_slices
    assert len(list(out.glob("*.png"))) == patients[1].num_slices


def test_no_identity_in_any_output(phantom, tmp_path):
    root, _ = phantom
    prepare([root], tmp_path / "out", _opts(sequence="any"))
    blob = b"".join(p.read_bytes() for p in (tmp_path / "out").iterdir())
    for value in FAKE_IDENTITY.values():
        for pid in (1, 2):
            assert value.format(pid=pid).encode() not in blob
    assert b"Phantom" not in blob and b"PHANTOM" not in blob


def test_source_paths_are_hidden_by_default(phantom, tmp_path):
    root, _ = phantom
    assert PrepareOptions().source_paths is False
    prepare([root], tmp_path / "out", _opts(source_paths=False, sequence="any"))
    assert all(r["source"].startswith("sha256:") for r in _rows(tmp_path / "out"))
    for name in ("manifest.csv", "report.json"):
        text = (tmp_path / "out" / name).read_text()
        for word in ("Train_Sets", "InPhase", "DICOM_anon", "T1DUAL", ".dcm", root.name):
            assert word not in text, (name, word)


def test_output_placement_is_checked(phantom, tmp_path):
    root, _ = phantom
    with pytest.raises(ConfigError, match="inside the input"):
        prepare([root], root / "out", _opts())
    assert not (root / "out").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("mine")
    with pytest.raises(ConfigError, match="not a previous"):
        prepare([root], busy, _opts())
    with pytest.raises(InputError, match="no such"):
        prepare([tmp_path / "missing"], tmp_path / "o", _opts())


def test_nothing_usable_fails_but_writes_report(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no usable t1-in slices"):
        prepare([src], tmp_path / "out", _opts())
    assert "not a DICOM file" in (tmp_path / "out" / "report.json").read_text()


def test_cli_prepare_then_dataset(phantom, tmp_path):
    root, patients = phantom
    runner = CliRunner()
    res = runner.invoke(
        cli, ["prepare", str(root), "-o", str(tmp_path / "out"), "--size", "16", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert f"prepared {sum(p.num_slices for p in patients)} images of 2 patients" in res.output
    res = runner.invoke(
        cli,
        [
            "dataset",
            str(tmp_path / "out"),
            "-o",
            str(tmp_path / "ds.zip"),
            "--label",
            "slice-fraction",
        ],
    )
    assert res.exit_code == 0, res.output
    arc = ImageArchive(tmp_path / "ds.zip")
    assert arc.resolution == 16 and arc.label_dim == 1 and arc.manifest_text() is not None
    res = runner.invoke(
        cli, ["prepare", str(root), "-o", str(tmp_path / "o3"), "--percentiles", "99"]
    )
    assert res.exit_code == 1 and "Error: --percentiles must be LOW,HIGH" in res.output
    res = runner.invoke(cli, ["prepare", str(root), "-o", str(tmp_path / "o2"), "--norm", "x"])
    assert res.exit_code == 1 and "Error: Invalid value for '--norm'" in res.output


def _secret(tmp_path):
    path = tmp_path / "key"
    path.write_text("0123456789abcdef0123456789abcdef\n")
    return path


def test_parallel_workers_give_identical_output(phantom, tmp_path):
    root, _ = phantom
    key = _secret(tmp_path)
    prepare([root], tmp_path / "one", _opts(sequence="any", secret_file=key))
    prepare([root], tmp_path / "two", _opts(sequence="any", workers=2, secret_file=key))
    assert _tree_digest(tmp_path / "one") == _tree_digest(tmp_path / "two")


def test_same_files_twice_are_flagged(phantom, tmp_path):
    root, patients = phantom
    shutil.copytree(root / "Train_Sets" / "MR" / "2", tmp_path / "dup")
    res = prepare([root, tmp_path / "dup"], tmp_path / "out", _opts())
    assert res.num_images == sum(p.num_slices for p in patients) + patients[1].num_slices
    assert len(set(p.name for p in (tmp_path / "out").glob("*.png"))) == res.num_images
    assert any("byte-identical copies" in w for w in res.warnings)


def test_inputs_copied_elsewhere_give_same_images(phantom, tmp_path):
    """PNG names and bytes depend on content, not on where the tree lives or which level of it
    is given; the manifest's source paths are relative to the input."""
    root, _ = phantom
    shutil.copytree(root / "Train_Sets", tmp_path / "copy" / "Train_Sets")
    key = _secret(tmp_path)  # the same secret links the patient keys of two output folders
    prepare([root], tmp_path / "a", _opts(secret_file=key))
    prepare([tmp_path / "copy" / "Train_Sets"], tmp_path / "b", _opts(secret_file=key))
    a, b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a if k.suffix == ".png")
    rows_a, rows_b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert [r["source"] for r in rows_a] == ["Train_Sets/" + r["source"] for r in rows_b]
