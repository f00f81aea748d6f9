"""Every command that opens images (`train --data`, `metrics --images`, `dataset`, ...) names a
DICOM tree, a run folder, a folder of runs or a network file as what it is, before any PNG is
read (issue 12 items 4-5): CHAOS's 256x256 mask PNGs, or a run's square fakes grid, are valid
images that training would otherwise take silently."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tests.cli_errors import only_error_line

from mrisynth.cli import cli
from mrisynth.data import source_kind
from mrisynth.data.archive import ImageArchive
from mrisynth.errors import InputError


def _pngs(folder, n=4, side=16):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((side, side), 30 * i % 256, np.uint8)).save(folder / f"img{i}.png")


def _dicom_bytes():
    return b"\0" * 128 + b"DICM" + b"\0" * 64


@pytest.fixture
def files(tmp_path):
    tree = tmp_path / "chaos" / "1" / "T1DUAL"
    _pngs(tree / "Ground")  # power-of-two masks: valid training PNGs by shape
    (tree / "DICOM_anon").mkdir()
    (tree / "DICOM_anon" / "IM0001").write_bytes(_dicom_bytes())  # found by its magic
    run = tmp_path / "runs" / "00000-train-tiny"
    _pngs(run)  # square grids a run keeps (fakes*.png, reals.png)
    (run / "training_options.json").write_text(json.dumps({"data": "x.zip"}))
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04junk")
    (tmp_path / "net.safetensors").write_bytes(b"\0" * 16)
    return tmp_path


def _train_dry_run(folder, data):
    args = ["train", "--data", str(data), "--outdir", str(folder / "out"), "--cfg", "tiny",
            "--kimg", "0.01", "--dry-run"]  # fmt: skip
    return only_error_line(CliRunner().invoke(cli, args))


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("chaos", "chaos: a DICOM tree (e.g. 1/T1DUAL/DICOM_anon/IM0001), not PNG images; "
                  "`prepare` comes first: mrisynth prepare"),
        ("runs", "runs: a folder of training runs, not images"),
        ("runs/00000-train-tiny", "00000-train-tiny: a training run folder (`mrisynth train`)"),
        ("model.pkl", "model.pkl: an NVIDIA network pickle, not images"),
        ("net.safetensors", "net.safetensors: a network snapshot, not images"),
        ("chaos/1/T1DUAL/DICOM_anon/IM0001", "IM0001: a DICOM file, not PNG images"),
    ],
)
def test_train_data_names_what_was_given(files, name, said):
    line = _train_dry_run(files, files / name)
    assert said in line and str(files / name) in line
    assert not (files / "out").exists()


def test_other_commands_share_the_check(files, tmp_path):
    _pngs(tmp_path / "pngs")
    for args, said in (
        (["metrics", "--images", files / "runs", "--data", tmp_path / "pngs", "--metrics",
          "body_area64", "-o", tmp_path / "m"], "runs: a folder of training runs"),
        (["metrics", "--images", tmp_path / "pngs", "--data", files / "chaos", "--metrics",
          "body_area64", "-o", tmp_path / "m"], "chaos: a DICOM tree"),
        (["dataset", files / "runs" / "00000-train-tiny", "-o", tmp_path / "d.zip"],
         "00000-train-tiny: a training run folder"),
    ):  # fmt: skip
        line = only_error_line(CliRunner().invoke(cli, [str(a) for a in args]))
        assert said in line, line
    assert not (tmp_path / "d.zip").exists() and not (tmp_path / "m").exists()


def test_archives_of_our_own_making_still_open(tmp_path):
    _pngs(tmp_path / "gen")
    (tmp_path / "gen" / "seed000000.dcm").write_bytes(_dicom_bytes())  # generate --format dicom
    (tmp_path / "gen" / "generation.json").write_text("{}")
    assert len(ImageArchive(tmp_path / "gen")) == 4
    _pngs(tmp_path / "nvidia")  # a plain folder of PNGs (NVIDIA's dataset_tool)
    assert len(ImageArchive(tmp_path / "nvidia")) == 4


def test_pngs_are_never_opened_in_the_search(tmp_path, monkeypatch):
    _pngs(tmp_path / "big", n=8)
    opened = []
    monkeypatch.setattr(source_kind, "_has_dicom_magic", lambda p: opened.append(p) or False)
    assert source_kind.first_dicom(tmp_path / "big") is None and opened == []


def test_an_error_that_is_not_about_the_kind_is_kept(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="contains no PNG images"):
        ImageArchive(tmp_path / "empty")


def test_dataset_never_writes_into_its_source(tmp_path):
    _pngs(tmp_path / "src")
    (tmp_path / "src" / "manifest.csv").write_text("")
    before = sorted(p.name for p in (tmp_path / "src").iterdir())
    args = ["dataset", str(tmp_path / "src"), "-o", str(tmp_path / "src" / "train.zip")]
    line = only_error_line(CliRunner().invoke(cli, args))
    assert "inside the source" in line and f"{tmp_path / 'src.zip'}" in line
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == before


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])  # one validation path for both
def test_train_outdir_that_is_a_file(tmp_path, dry_run):
    _pngs(tmp_path / "data")
    (tmp_path / "notes.txt").write_text("mine")
    args = ["train", "--data", str(tmp_path / "data"), "--outdir", str(tmp_path / "notes.txt"),
            "--cfg", "tiny", "--kimg", "0.01", *dry_run]  # fmt: skip
    line = only_error_line(CliRunner().invoke(cli, args))
    assert f"{tmp_path / 'notes.txt'}: not a folder" in line
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_downstream_names_a_wrong_real_before_its_holdout(files, tmp_path):
    _pngs(tmp_path / "synth")
    args = ["downstream", "--real", str(files / "model.pkl"), "--synthetic",
            str(tmp_path / "synth"), "--outdir", str(tmp_path / "ds")]  # fmt: skip
    line = only_error_line(CliRunner().invoke(cli, args))
    assert "model.pkl: an NVIDIA network pickle, not images" in line and "holdout" not in line


def test_dataset_of_a_generate_grid_folder_says_so(tmp_path):
    _pngs(tmp_path / "synth")
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "synth" / "grid.png")
    (tmp_path / "synth" / "generation.json").write_text("{}")
    (tmp_path / "synth" / "manifest.csv").write_text("file,format,seed\nimg0.png,png,0\n")
    args = ["dataset", str(tmp_path / "synth"), "-o", str(tmp_path / "s.zip")]
    line = only_error_line(CliRunner().invoke(cli, args))
    assert "grid.png" in line and "a `mrisynth generate --grid` output" in line


@pytest.mark.parametrize(("name", "said"), [("runs", "a folder of training runs"),
                                            ("chaos", "a DICOM tree")])  # fmt: skip
def test_reader_study_synthetic_names_what_was_given(files, tmp_path, name, said):
    _pngs(tmp_path / "real")
    args = ["reader-study", "create", "--real", str(tmp_path / "real"), "--synthetic",
            str(files / name), "--n-real", "2", "--n-synthetic", "2", "--readers", "1",
            "--outdir", str(tmp_path / "study")]  # fmt: skip
    line = only_error_line(CliRunner().invoke(cli, args))
    assert f"--synthetic {files / name}: {said}" in line
    assert not (tmp_path / "study").exists()


def test_holdout_patients_1e308_is_not_echoed_as_309_digits():
    from mrisynth.data.holdout import num_holdout_patients
    from mrisynth.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\(e\.g\. 2\)$"):
        num_holdout_patients("1e308", 8)
    with pytest.raises(ConfigError, match=r"\(e\.g\. 3\)$"):
        num_holdout_patients("3.0", 8)
