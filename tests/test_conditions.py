"""Named class labels from the manifest: position bins, sequence, both; archive round trip."""

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.data.conditions import (
    ConditionSpec,
    derive_conditions,
    parse_condition_spec,
    position_bin,
)
from mrisynth.data.labels import class_names
from mrisynth.data.manifest import manifest_csv
from mrisynth.data.pack import pack_archive
from mrisynth.data.phantom_dicom import write_phantom_tree
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions
from mrisynth.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Two phantom patients (the first numbered head first), every sequence, 16 px."""
    root = tmp_path_factory.mktemp("tree")
    patients = write_phantom_tree(root, 2, seed=5, matrix_sizes=(32,), num_slices=(6, 9))
    assert patients[0].head_first_numbering and not patients[1].head_first_numbering
    out = tmp_path_factory.mktemp("prep") / "out"
    prepare([root], out, PrepareOptions(sequence="any", slice=SliceOptions(size=16)))
    return out


def _rows(folder):
    return list(csv.DictReader(io.StringIO((folder / "manifest.csv").read_text())))


def test_spec_parsing():
    assert parse_condition_spec("position:4") == ConditionSpec(4, False)
    assert parse_condition_spec("sequence") == ConditionSpec(None, True)
    assert parse_condition_spec("sequence,position:3") == ConditionSpec(3, True)
    assert parse_condition_spec("position:3, sequence").text() == "position:3,sequence"
    for bad in ("position", "position:1", "position:65", "position:-2", "position:2.5",
                "position:99999999999", "sequence,sequence", "position:2,position:3", "",
                "slice", "sequence:2", "position:٣"):
        with pytest.raises(ConfigError, match="--labels"):
            parse_condition_spec(bad)
    # each names what is wrong, not only the usage
    for bad, why in (("position:0", "asks for 0 bin"), ("position:-1", "asks for -1 bin"),
                     ("position:10000", "asks for 10000 bin"), ("position:abc", "'abc' is not"),
                     ("position:" + "9" * 5000, "asks for too many"),  # int() of it raises
                     ("position:00000000000000020000", "asks for 20000 bin"),
                     ("position:4,position:4", "position is given twice"),
                     ("sequence,sequence", "sequence is given twice"),
                     ("position:4,colour", "unknown label kind 'colour'"),
                     ("position:4,", "an empty part"), ("sequence:2", "sequence takes no")):
        with pytest.raises(ConfigError, match=why):
            parse_condition_spec(bad)


def test_bins_cover_zero_to_one():
    assert [position_bin(f, 4) for f in (0.0, 0.24, 0.25, 0.99, 1.0)] == [0, 0, 1, 3, 3]
    for bad in (-0.01, 1.01, float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            position_bin(bad, 4)


def test_position_bins_monotone_on_the_phantom(prepared):
    rows = _rows(prepared)
    names = [r["file"] for r in rows]
    text = (prepared / "manifest.csv").read_text()
    conds = derive_conditions(text, names, ConditionSpec(4, False))
    assert conds.names == ["pos0.00-0.25", "pos0.25-0.50", "pos0.50-0.75", "pos0.75-1.00"]
    by_patient = {}
    for r, c in zip(rows, conds.classes, strict=True):
        by_patient.setdefault(r["patient_key"], []).append((float(r["position_mm"]), c))
    assert len(by_patient) == 2
    for pairs in by_patient.values():
        pairs.sort(reverse=True)  # head (largest position along the normal) first
        bins = [c for _, c in pairs]
        assert bins == sorted(bins) and bins[0] == 0 and bins[-1] == 3
    # every sequence of a patient shares its frame: equal positions, equal bins
    same = {}
    for r, c in zip(rows, conds.classes, strict=True):
        same.setdefault((r["patient_key"], r["position_mm"]), set()).add(c)
    assert all(len(v) == 1 for v in same.values())


def test_labels_ignore_instance_numbers_and_row_order(prepared):
    """Reversed numbering, reversed slice_index, shuffled rows: the same class per image."""
    rows = _rows(prepared)
    names = [r["file"] for r in rows]
    text = (prepared / "manifest.csv").read_text()
    spec = ConditionSpec(3, True)
    ref = derive_conditions(text, names, spec)
    flipped = [dict(r, slice_index=str(int(r["slice_count"]) - 1 - int(r["slice_index"])))
               for r in rows]
    order = np.random.default_rng(0).permutation(len(flipped))
    shuffled = manifest_csv([flipped[i] for i in order])
    assert derive_conditions(shuffled, names, spec).classes == ref.classes
    assert len(set(ref.classes)) > 3  # several sequences x bins really occur


def test_sequence_and_combined_classes(prepared):
    rows = _rows(prepared)
    names = [r["file"] for r in rows]
    text = (prepared / "manifest.csv").read_text()
    seq = derive_conditions(text, names, ConditionSpec(None, True))
    assert seq.names == sorted({r["sequence"] for r in rows}) == ["t1_in", "t1_opp", "t2spir"]
    assert [seq.names[c] for c in seq.classes] == [r["sequence"] for r in rows]
    both = derive_conditions(text, names, ConditionSpec(2, True))
    pos = derive_conditions(text, names, ConditionSpec(2, False))
    assert len(both.names) == 6 and both.names[3] == "t1_opp+pos0.50-1.00"
    for b, s, p in zip(both.classes, seq.classes, pos.classes, strict=True):
        assert b == s * 2 + p
    assert both.record == {"labels": "position:2,sequence", "position_bins": 2,
                           "position": both.record["position"],
                           "sequences": ["t1_in", "t1_opp", "t2spir"]}


@pytest.mark.parametrize("dest", ["data.zip", "data"])
def test_archive_records_class_names_and_holdout_keeps_width(prepared, tmp_path, dest):
    res = pack_archive(prepared, tmp_path / dest, labels="position:4,sequence",
                       holdout_patients="1")
    train, held = ImageArchive(res.path), ImageArchive(res.holdout.path)
    for arc in (train, held):
        names = class_names(arc.dataset_json(), "x")
        assert names is not None and len(names) == 12 == arc.label_dim
        assert names[0] == "t1_in+pos0.00-0.25"
        meta = arc.dataset_json()["mrisynth"]
        assert meta["condition"]["position_bins"] == 4 and meta["num_classes"] == 12
    assert "holdout" in train.dataset_json()["mrisynth"]


def test_cli_labels_and_its_errors(prepared, tmp_path):
    runner = CliRunner()
    out = tmp_path / "d.zip"
    res = runner.invoke(cli, ["dataset", str(prepared), "-o", str(out), "--labels", "sequence"])
    assert res.exit_code == 0, res.output
    assert "3 classes" in res.output
    assert class_names(ImageArchive(out).dataset_json(), "x") == ["t1_in", "t1_opp", "t2spir"]
    for args, msg in (
        (["--labels", "position:1"], "2..64 bins"),
        (["--labels", "position:4", "--label", "patient"], "not both"),
        (["--labels", "colour"], "position:K"),
        (["--label", "position:4"], "for named classes use --labels position:4"),  # a typo
        (["--label", "position:4,sequence"], "use --labels position:4,sequence"),
    ):
        res = runner.invoke(cli, ["dataset", str(prepared), "-o", str(tmp_path / "e.zip"),
                                  *args])
        assert res.exit_code == 1 and res.output.startswith("Error: ") and msg in res.output
        assert "Traceback" not in res.output
    assert not (tmp_path / "e.zip").exists()


def _manifest_folder(root, rows):
    """A prepare-like folder with 8 px PNGs for hostile manifests."""
    import cv2

    root.mkdir()
    for r in rows:
        _ok, buf = cv2.imencode(".png", np.full((8, 8), 9, np.uint8))
        (root / r["file"]).write_bytes(buf.tobytes())
    (root / "manifest.csv").write_text(manifest_csv(rows))
    return root


@pytest.mark.parametrize(
    ("change", "labels", "msg"),
    [
        ({"position_mm": "nan"}, "position:2", "not a finite number"),
        ({"position_mm": "1e999"}, "position:2", "not a finite number"),
        ({"position_mm": "-inf"}, "position:2", "not a finite number"),
        ({"position_mm": "12mm"}, "position:2", "not a finite number"),
        ({"position_mm": "1e308"}, "position:2", "within"),  # top - bottom would overflow
        ({"position_mm": "-2e6"}, "position:2", "within"),
        ({"position_mm": ""}, "position:2", "no position_mm"),
        ({"patient_key": ""}, "position:2", "patient_key"),
        ({"sequence": ""}, "sequence", "not a sequence name"),
        ({"sequence": "t1\x00in"}, "sequence", "not a sequence name"),
        ({"sequence": "<script>"}, "sequence", "not a sequence name"),
        ({"sequence": "x" * 5000}, "sequence", "not a sequence name"),
    ],
)
def test_hostile_manifest_values(tmp_path, change, labels, msg):
    rows = [{"file": f"i{i}.png", "patient_key": "pa", "sequence": "t1_in",
             "position_mm": str(float(i))} for i in range(4)]
    rows[2].update(change)
    src = _manifest_folder(tmp_path / "src", rows)
    with pytest.raises(InputError, match=msg):
        pack_archive(src, tmp_path / "o.zip", labels=labels)
    assert not (tmp_path / "o.zip").exists()


def test_missing_rows_and_no_manifest(tmp_path):
    rows = [{"file": f"i{i}.png", "patient_key": "pa", "position_mm": str(i)} for i in range(3)]
    src = _manifest_folder(tmp_path / "src", rows)
    (src / "manifest.csv").write_text(manifest_csv(rows[:2]))
    with pytest.raises(InputError, match=r"no row for i2\.png"):
        pack_archive(src, tmp_path / "o.zip", labels="position:2")
    (src / "manifest.csv").unlink()
    with pytest.raises(InputError, match=r"needs manifest\.csv"):
        pack_archive(src, tmp_path / "o.zip", labels="position:2")


@pytest.mark.parametrize(
    "names",
    [["a", "a"], ["a", 3], [], ["x" * 65], ["a\nb"], "abc", [None], [["a"]],
     ["n"] * 2000,  # below: names that reach figure labels (matplotlib mathtext), HTML, keys
     ["a", "$\\frac{x"], ["<b>a</b>", "b"], ["../x", "b"], ["a/b", "c"], ["..", "b"],
     ["\u0440os0.00-0.50", "pos0.50-1.00"], ["a b", "c"], ["a\u202e", "b"], ["-a", "b"]],
)
def test_hostile_class_names_in_dataset_json(tmp_path, names):
    rows = [{"file": f"i{i}.png"} for i in range(2)]
    src = _manifest_folder(tmp_path / "src", rows)
    obj = {"labels": [["i0.png", 0], ["i1.png", 1]], "mrisynth": {"classes": names}}
    (src / "dataset.json").write_text(json.dumps(obj))
    arc = ImageArchive(src)  # the labels themselves are fine; the names are checked when read
    with pytest.raises(InputError, match=r"mrisynth\.classes"):
        class_names(arc.dataset_json(), "dataset.json")


def test_repacking_keeps_the_class_names(prepared, tmp_path):
    """Re-packing (zip -> folder, or splitting off a holdout later) keeps the names."""
    first = pack_archive(prepared, tmp_path / "a.zip", labels="position:3,sequence").path
    again = pack_archive(first, tmp_path / "b", holdout_patients="1").path
    for arc in (ImageArchive(again), ImageArchive(tmp_path / "b-holdout")):
        assert class_names(arc.dataset_json(), "x") == class_names(
            ImageArchive(first).dataset_json(), "x")
        assert arc.label_dim == 9
        assert arc.dataset_json()["mrisynth"]["condition"]["position_bins"] == 3
    plain = pack_archive(first, tmp_path / "c.zip", label="none").path
    assert class_names(ImageArchive(plain).dataset_json(), "x") is None


def test_a_hostile_condition_record_is_not_copied(tmp_path):
    rows = [{"file": f"i{i}.png"} for i in range(2)]
    src = _manifest_folder(tmp_path / "src", rows)
    obj = {"labels": [["i0.png", 0], ["i1.png", 1]],
           "mrisynth": {"classes": ["a", "b"], "condition": {"labels": {"x": [1] * 9},
                                                             "evil": "y", "position_bins": 2}}}
    (src / "dataset.json").write_text(json.dumps(obj))
    out = pack_archive(src, tmp_path / "o.zip").path
    meta = ImageArchive(out).dataset_json()["mrisynth"]
    assert meta == {"classes": ["a", "b"], "condition": {"position_bins": 2}, "num_classes": 2}
    obj["mrisynth"]["condition"] = ["not", "a", "dict"]
    (src / "dataset.json").write_text(json.dumps(obj))
    out = pack_archive(src, tmp_path / "p.zip").path
    assert ImageArchive(out).dataset_json()["mrisynth"]["condition"] == {}


def test_position_fractions_edge_patients(caplog):
    """One slice, all slices at one position (no span: middle, and a warning, since its level
    is unknown), duplicated positions (equal fractions), a reversed series (same fractions)."""
    from mrisynth.data.conditions import position_fractions

    rows = ([{"patient_key": "one", "position_mm": "12.5"}]
            + [{"patient_key": "flat", "position_mm": "3"} for _ in range(3)]
            + [{"patient_key": "dup", "position_mm": p} for p in ("10", "10", "0", "-10", "-10")])
    with caplog.at_level("WARNING"):
        got = position_fractions(rows, "m.csv")
    assert got == [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert any("2 patient(s)" in r.getMessage() and "middle" in r.getMessage()
               for r in caplog.records)
    assert position_fractions(rows[::-1], "m.csv") == got[::-1]
    assert [position_bin(f, 4) for f in got[4:]] == [0, 0, 2, 3, 3]


def test_one_sequence_is_no_sequence_label(tmp_path):
    """`--labels sequence` on a prepare run of one sequence made a 1-class 'conditional'
    archive silently; it is one error naming the fix."""
    rows = [{"file": f"i{i}.png", "patient_key": "pa", "sequence": "t1_in",
             "position_mm": str(float(i))} for i in range(3)]
    src = _manifest_folder(tmp_path / "src", rows)
    with pytest.raises(InputError, match=r"one class \(t1_in\).*--sequence any"):
        pack_archive(src, tmp_path / "o.zip", labels="sequence")
    assert not (tmp_path / "o.zip").exists()
    assert pack_archive(src, tmp_path / "p.zip", labels="position:2,sequence").path.exists()


@pytest.mark.parametrize("text", [b"{", b'{"labels": [["i0.png", 0]', b"\xff\xfe{}"])
def test_malformed_dataset_json_is_one_clear_line(tmp_path, text):
    """It said 'x/dataset.json: not valid UTF-8 JSON (x/dataset.json is not valid JSON (...'
    cut mid-word."""
    src = _manifest_folder(tmp_path / "src", [{"file": f"i{i}.png"} for i in range(2)])
    (src / "dataset.json").write_bytes(text)
    with pytest.raises(InputError) as err:
        ImageArchive(src)
    msg = str(err.value)
    assert msg.count("dataset.json") == 1 and msg.endswith("re-create it with `mrisynth dataset`")
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("num_classes", "labels", "msg"),
    [(True, [0, 1], "num_classes 'True'"), ("4", [0, 1], "num_classes '4'"),
     (10**9, [0, 1], "num_classes '1000000000'"), (-1, [0, 1], "num_classes '-1'"),
     (0, [0, 1], "num_classes '0'"), (2, [0, 7], "class 7 in an archive that declares 2")],
)
def test_declared_class_count_is_checked(tmp_path, num_classes, labels, msg):
    """A wrong-typed count was ignored (the one-hot width then came from the labels, so a
    holdout could get another width than its training archive); a class beyond it widened
    the one-hot silently."""
    src = _manifest_folder(tmp_path / "src", [{"file": f"i{i}.png"} for i in range(2)])
    obj = {"labels": [[f"i{i}.png", c] for i, c in enumerate(labels)],
           "mrisynth": {"num_classes": num_classes}}
    (src / "dataset.json").write_text(json.dumps(obj))
    with pytest.raises(InputError, match=msg):
        _ = ImageArchive(src).labels
    res = CliRunner().invoke(cli, ["dataset", str(src), "-o", str(tmp_path / "o.zip")])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and msg in res.output
    assert not (tmp_path / "o.zip").exists()
