"""Patient-level holdout: sibling naming, disjointness check, seeded choice of patients."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.data.holdout import (
    choose_holdout_patients,
    find_holdout,
    holdout_path,
    num_holdout_patients,
)
from mrisynth.data.manifest import manifest_csv
from mrisynth.data.pack import pack_archive
from mrisynth.errors import ConfigError, InputError


def _folder(root: Path, patients: list[str], size: int = 8, manifest: bool = True) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(len(patients))
    rows = []
    for i, p in enumerate(patients):
        name = f"img{i:03d}.png"
        _ok, buf = cv2.imencode(".png", rng.integers(0, 256, (size, size), dtype=np.uint8))
        (root / name).write_bytes(buf.tobytes())
        rows.append({"file": name, "patient_key": p})
    if manifest:
        (root / "manifest.csv").write_text(manifest_csv(rows))
    return root


def test_holdout_path_names_the_sibling():
    assert holdout_path(Path("/x/data.zip")) == Path("/x/data-holdout.zip")
    assert holdout_path(Path("/x/DATA.ZIP")) == Path("/x/DATA-holdout.ZIP")
    assert holdout_path(Path("/x/data")) == Path("/x/data-holdout")
    assert holdout_path("rel/my.set") == Path("rel/my.set-holdout")


def test_patient_keys_come_from_the_manifest(tmp_path):
    arc = ImageArchive(_folder(tmp_path / "d", ["a", "b", "a"]))
    assert arc.patient_keys == ["a", "b", "a"]
    assert ImageArchive(_folder(tmp_path / "n", ["a"], manifest=False)).patient_keys is None


def test_find_holdout_none_disjoint_and_overlap(tmp_path):
    train = _folder(tmp_path / "data", ["a", "b"])
    assert find_holdout(train) is None
    _folder(tmp_path / "data-holdout", ["c"])
    held = find_holdout(train)
    assert held is not None and held.patient_keys == ["c"]
    assert find_holdout(ImageArchive(train)).path == held.path
    _folder(tmp_path / "other", ["a", "b"])
    _folder(tmp_path / "other-holdout", ["b", "z"])
    with pytest.raises(InputError, match="1 patient"):
        find_holdout(tmp_path / "other")
    _folder(tmp_path / "nokeys", ["a"], manifest=False)
    _folder(tmp_path / "nokeys-holdout", ["c"])
    with pytest.raises(InputError, match="no patient keys"):
        find_holdout(tmp_path / "nokeys")


def test_holdout_count_parsing():
    assert num_holdout_patients("2", 10) == 2
    assert num_holdout_patients("0.2", 10) == 2
    assert num_holdout_patients("0.01", 10) == 1
    for bad in ("0", "-1", "nan", "inf", "abc", "1.5", "10", "1e30", "1.0", "2.0"):
        with pytest.raises(ConfigError):
            num_holdout_patients(bad, 10)


def test_choice_is_seeded_and_order_free():
    keys = [f"p{i}" for i in range(20)]
    a = choose_holdout_patients(keys, 4, seed=3)
    assert a == choose_holdout_patients(list(reversed(keys)) * 2, 4, seed=3)
    assert len(a) == 4 and a <= set(keys)
    assert a != choose_holdout_patients(keys, 4, seed=4)


def _prepared(root: Path, num_patients: int = 6, per_patient: int = 3) -> Path:
    patients = [f"key{p:02d}" for p in range(num_patients) for _ in range(per_patient)]
    return _folder(root, patients)


@pytest.mark.parametrize("dest_name", ["data.zip", "data"])
def test_dataset_holds_out_whole_patients(tmp_path, dest_name):
    src = _prepared(tmp_path / "prepared")
    dest = tmp_path / dest_name
    res = pack_archive(src, dest, label="patient", holdout_patients="2", holdout_seed=7)
    train, held = ImageArchive(dest), find_holdout(dest)
    assert held is not None and res.holdout is not None
    assert held.path == holdout_path(dest) == res.holdout.path
    assert set(train.patient_keys).isdisjoint(held.patient_keys)  # no patient in both
    assert len(set(held.patient_keys)) == 2 and len(set(train.patient_keys)) == 4
    assert len(train) + len(held) == 18 and len(held) == 6  # whole patients: 3 images each
    assert set(train.names).isdisjoint(held.names)
    meta = train.dataset_json()["mrisynth"]["holdout"]
    assert meta == {"num_patients": 2, "num_images": 6, "seed": 7, "archive": held.path.name}
    assert held.dataset_json()["mrisynth"]["held_out_from"]["archive"] == dest.name
    # class numbers are derived over all patients, so they agree across the two archives
    assert train.label_dim == held.label_dim == 6
    by_key = dict(zip(train.patient_keys + held.patient_keys,
                      [*train.labels.argmax(1), *held.labels.argmax(1)], strict=True))
    assert by_key == {f"key{p:02d}": p for p in range(6)}
    # each archive carries only its own manifest rows
    assert held.manifest_text().count("\n") == 1 + len(held)


def test_holdout_is_seeded(tmp_path):
    src = _prepared(tmp_path / "prepared", num_patients=10, per_patient=1)
    picks = []
    for i, seed in enumerate((1, 1, 2)):
        dest = tmp_path / f"d{i}.zip"
        pack_archive(src, dest, holdout_patients="0.3", holdout_seed=seed)
        picks.append(set(find_holdout(dest).patient_keys))
    assert picks[0] == picks[1] and len(picks[0]) == 3 and picks[0] != picks[2]
    hashes = [ImageArchive(tmp_path / f"d{i}-holdout.zip").content_hash() for i in range(3)]
    assert hashes[0] == hashes[1] != hashes[2]


def test_holdout_cli_errors(tmp_path):
    nokeys = _folder(tmp_path / "nokeys", ["a", "b"], manifest=False)
    run = CliRunner().invoke(cli, ["dataset", str(nokeys), "-o", str(tmp_path / "x.zip"),
                                    "--holdout-patients", "1"])
    assert run.exit_code == 1 and run.output.startswith("Error:") and "patient_key" in run.output
    assert run.output.count("\n") == 1 and not (tmp_path / "x.zip").exists()
    src = _prepared(tmp_path / "prepared", num_patients=2, per_patient=1)
    run = CliRunner().invoke(cli, ["dataset", str(src), "-o", str(tmp_path / "x.zip"),
                                    "--holdout-patients", "2"])
    assert run.exit_code == 1 and "at least one must stay" in run.output
    run = CliRunner().invoke(cli, ["dataset", str(src), "-o", str(tmp_path / "x.zip"),
                                    "--holdout-patients", "1"])
    assert run.exit_code == 0 and "held out 1 patient(s), 1 images" in run.output
    # re-packing without a holdout would leave the old sibling looking like this one's holdout
    run = CliRunner().invoke(cli, ["dataset", str(src), "-o", str(tmp_path / "x.zip")])
    assert run.exit_code == 1 and "earlier run" in run.output


@pytest.mark.parametrize(
    "manifest",
    [
        b"\xff\xfe not utf-8",
        b"",
        b"name,patient_key\nimg000.png,a\n",  # no file column
        b"file,patient_key\nimg000.png," + b"x" * 200000 + b"\n",  # over csv's field limit
        b"file,patient_key\nimg000.png,a\n",  # img001 has no row
        b'file,patient_key\n"img000.png,a\n',  # unterminated quote
    ],
)
@pytest.mark.parametrize("options", [["--holdout-patients", "1"], ["--label", "patient"]])
def test_hostile_manifest_is_one_error_line(tmp_path, manifest, options):
    src = _folder(tmp_path / "src", ["a", "b"], manifest=False)
    (src / "manifest.csv").write_bytes(manifest)
    run = CliRunner().invoke(cli, ["dataset", str(src), "-o", str(tmp_path / "x.zip"), *options])
    assert run.exit_code == 1 and isinstance(run.exception, SystemExit), run.output
    assert run.output.startswith("Error:") and run.output.count("\n") == 1
    assert "manifest.csv" in run.output and not (tmp_path / "x.zip").exists()
