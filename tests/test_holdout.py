"""Patient-level holdout: sibling naming, disjointness check, seeded choice of patients."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from mrisynth.data.archive import ImageArchive
from mrisynth.data.holdout import (
    choose_holdout_patients,
    find_holdout,
    holdout_path,
    num_holdout_patients,
)
from mrisynth.data.manifest import manifest_csv
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
    for bad in ("0", "-1", "nan", "inf", "abc", "1.5", "10", "1e30"):
        with pytest.raises(ConfigError):
            num_holdout_patients(bad, 10)


def test_choice_is_seeded_and_order_free():
    keys = [f"p{i}" for i in range(20)]
    a = choose_holdout_patients(keys, 4, seed=3)
    assert a == choose_holdout_patients(list(reversed(keys)) * 2, 4, seed=3)
    assert len(a) == 4 and a <= set(keys)
    assert a != choose_holdout_patients(keys, 4, seed=4)
