"""A newcomer's wrong paths: every command that takes a network says what the typed path is
and what was expected (issue 12 item 4), through the one check in `training.network_path`."""

from __future__ import annotations

import os
import zipfile

import pytest
from tests.cli_errors import only_error_line
from tests.metric_runs import runner_setup

from mrisynth.errors import CheckpointError
from mrisynth.training import checkpoint
from mrisynth.training.network_path import check_network_path


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """runs/00000-tiny with snapshots, a training ZIP, a prepare folder, a pickle, a FIFO."""
    root, _, run, _ = runner_setup(tmp_path_factory.mktemp("newcomer"))
    (root / "runs").mkdir()
    run.rename(root / "runs" / "00000-tiny")
    with zipfile.ZipFile(root / "train.zip", "w") as z:
        z.writestr("dataset.json", '{"labels": null}')
    (root / "prepared").mkdir()
    for name in ("manifest.csv", "report.json"):
        (root / "prepared" / name).write_text("x")
    (root / "model.pkl").write_bytes(b"\x80\x04")
    os.mkfifo(root / "fifo")
    return root


NETWORK_COMMANDS = [
    lambda p: ["generate", "--network", p, "--outdir", "g", "--seeds", "0"],
    lambda p: ["metrics", "--network", p, "--metrics", "body_area4"],
    lambda p: ["train", "--data", "archive", "--outdir", "new", "--cfg", "tiny", "--resume", p],
]
CASES = [  # (typed path, text the error must hold besides the path)
    ("train.zip", "a training archive"),
    ("model.pkl", "NVIDIA pickles are not loaded directly"),
    ("runs/nope", "not found (runs holds 1 run(s): 00000-tiny)"),
    ("runs", "a folder of runs, not one run; give one, e.g. runs/00000-tiny"),
    ("prepared", "a `prepare` output folder"),
    ("fifo", "not a snapshot (not a regular file"),
    ("", "an empty path was given"),
]


@pytest.mark.parametrize("command", NETWORK_COMMANDS)
@pytest.mark.parametrize(("typed", "text"), CASES)
def test_network_errors_name_the_typed_path_and_what_it_is(cli_in, fx, command, typed, text):
    line = only_error_line(cli_in(fx, command(typed)))
    assert f"{typed}: {text}" in line if typed else text in line
    assert "safetensors:" not in line  # never a name derived from what was typed
    if "give" not in text and "NVIDIA" not in text:
        assert "expected a run folder" in line
    assert not (fx / "g").exists() and not (fx / "new").exists()


@pytest.mark.parametrize(("typed", "text"), CASES[:4])
def test_report_names_the_typed_path(cli_in, fx, typed, text):
    line = only_error_line(cli_in(fx, ["report", typed]))
    assert f"{typed}: {text}" in line and "'RUN_DIR'" in line


def test_pickle_message_points_to_the_converter(cli_in, fx):
    args = ["generate", "--network", "model.pkl", "--outdir", "g", "--seeds", "0"]
    line = only_error_line(cli_in(fx, args))
    assert "`mrisynth import-nvidia`" in line and "expected a run folder" not in line


def test_library_loaders_refuse_the_same_way(fx):
    """The loaders (demo, scripts) go through the same check as the CLI's parameters."""
    with pytest.raises(CheckpointError, match=r"train\.zip: a training archive"):
        checkpoint.load_generator(fx / "train.zip")
    with pytest.raises(CheckpointError, match=r"runs: a folder of runs"):
        checkpoint.latest_snapshot(fx / "runs")
    with pytest.raises(CheckpointError, match=r"nope: not found \(.*runs holds 1 run"):
        checkpoint.list_snapshots(fx / "runs" / "nope")


def test_snapshot_names_a_user_may_type_are_accepted(fx):
    snap = checkpoint.list_snapshots(fx / "runs" / "00000-tiny")[-1]
    for typed in (snap, snap.with_suffix(".json"), snap.with_suffix("")):
        assert checkpoint.resolve_snapshot(typed) == snap
    assert check_network_path(fx / "runs" / "00000-tiny") == fx / "runs" / "00000-tiny"
    with pytest.raises(CheckpointError, match="a file, not a folder"):
        check_network_path(snap, folder_only=True)
