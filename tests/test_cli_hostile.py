"""A hostile tester's command lines for every sub-command: each gives ONE line `Error: ...`
naming what was typed, exit status 1, no traceback, and leaves the paths it was handed alone."""

from __future__ import annotations

import os
import stat

import pytest
from tests.metric_runs import runner_setup


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """A folder holding a run with snapshots, its archive, and things that are not what a
    command expects: a text file, an empty folder, a FIFO, a folder of another tool."""
    root = runner_setup(tmp_path_factory.mktemp("hostile"))[0]  # archive/, 00000-tiny/
    (root / "file.txt").write_text("hello\n")
    (root / "empty").mkdir()
    (root / "other").mkdir()
    (root / "other" / "notes.txt").write_text("someone else's\n")
    os.mkfifo(root / "fifo")
    return root


def assert_one_error_line(res, *expected: str) -> str:
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, res.output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


# (command line, text the Error line must contain)
USAGE = [
    (["train", "--data", "archive", "--outdir", "r", "--batch", "0"], "'--batch'"),
    (["dataset", "nope", "-o", "d.zip"], "'nope'"),
    (["generate", "--network", "00000-tiny", "--outdir", "g", "--seeds", "0", "--position", "top"],
     "'top'"),
    (["generate", "--network", "00000-tiny", "--outdir", "g", "--seeds", "0", "--format", "jpg"],
     "'jpg'"),
    (["report", "file.txt"], "file.txt: a file, not a folder"),
    (["metrics", "--network", "00000-tiny", "--copy-ncc", "0.9"], "--copy-ncc"),
    (["bogus"], "bogus"),
    (["reader-study", "create", "--real", "archive", "--synthetic", "00000-tiny", "--outdir", "s",
      "--n-real", "x"], "'x'"),
    (["reader-study", "serve", "empty", "--port", "70000"], "--port"),
    (["import-nvidia", "file.txt"], "--output"),
    (["downstream", "--real", "archive", "--synthetic", "empty", "--outdir", "ds", "--steps", "x"],
     "'x'"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "text"), USAGE)
def test_usage_errors_are_one_line_exit_1(cli_in, fx, args, text):
    line = assert_one_error_line(cli_in(fx, args), text)
    assert "--help" in line  # says where the options are listed


SPECIAL_FILES = [
    (["prepare", "empty", "-o", "p", "--patient-key-secret", "fifo"], "fifo: not a regular file"),
    (["weights", "trust", "fifo", "--as", "inception"], "fifo: not a regular file"),
    (["metrics", "--network", "00000-tiny", "--data", "archive", "--metrics", "body_area4",
      "--json", "fifo"], "fifo"),
    (["phantom", "fifo", "--small", "--patients", "1"], "fifo"),
    (["report", "00000-tiny", "--outdir", "fifo"], "--outdir fifo"),  # before Figure 4's work
    (["reader-study", "create", "--real", "fifo", "--synthetic", "00000-tiny", "--outdir", "s"],
     "fifo"),
    (["reader-study", "create", "--real", "archive", "--synthetic", "fifo", "--outdir", "s"],
     "fifo"),
    (["reader-study", "create", "--real", "archive", "--synthetic", "00000-tiny", "--outdir",
      "fifo"], "--outdir fifo"),
    (["import-nvidia", "fifo", "-o", "n.safetensors"], "fifo: not a regular file"),
    (["import-nvidia", "file.txt", "-o", "fifo"], "--output fifo"),
    (["project", "--network", "00000-tiny", "--target", "fifo", "--outdir", "pj"], "fifo"),
    (["project", "--network", "00000-tiny", "--target", "archive", "--outdir", "fifo"],
     "--outdir fifo"),
    (["export", "--network", "00000-tiny", "--format", "torchscript", "--output", "fifo"],
     "fifo"),
    (["downstream", "--real", "fifo", "--synthetic", "empty", "--test", "fifo", "--outdir", "ds"],
     "fifo"),
]  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "text"), SPECIAL_FILES)
def test_a_fifo_is_refused_never_read_or_replaced(cli_in, fx, args, text):
    assert_one_error_line(cli_in(fx, args), text)
    assert stat.S_ISFIFO((fx / "fifo").lstat().st_mode)


UNWRITABLE = [
    ["phantom", "/proc/mrisynth-x", "--small", "--patients", "1"],
    ["prepare", "empty", "-o", "/proc/mrisynth-x"],
    ["report", "00000-tiny", "--outdir", "/proc/mrisynth-x", "--panel", "0"],
    ["demo", "--quick", "--outdir", "/proc/mrisynth-x"],
]


@pytest.mark.parametrize("args", UNWRITABLE)
def test_an_output_that_cannot_be_created_is_one_error_line(cli_in, fx, args):
    assert_one_error_line(cli_in(fx, args), "/proc/mrisynth-x")


PHANTOM = [
    (["--patients", "100000000"], "--patients"),
    (["--patients", "0"], "--patients"),
    (["--seed", "-1"], "--seed"),
    (["--matrix", "100000"], "--matrix"),
    (["--matrix", "0"], "--matrix"),
    (["--slices", "1000000"], "--slices"),
    (["--slices", "9-3"], "--slices"),
    (["--workers", "100000"], "--workers"),
]


@pytest.mark.parametrize(("extra", "text"), PHANTOM)
def test_phantom_sizes_are_bounded_before_writing(cli_in, fx, tmp_path, extra, text):
    assert_one_error_line(cli_in(fx, ["phantom", str(tmp_path / "ph"), *extra]), text)
    assert not (tmp_path / "ph").exists()


def test_phantom_never_writes_into_a_folder_of_something_else(cli_in, fx):
    assert_one_error_line(cli_in(fx, ["phantom", "other", "--small", "--patients", "1"]),
                          "other", "not empty")  # fmt: skip
    assert sorted(p.name for p in (fx / "other").iterdir()) == ["notes.txt"]


def _listing(folder):
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*"))


# Outputs pointed at an input or at someone else's folder: refused, the folder untouched.
# (synthetic PNGs in a training folder would be packed as real ones; the report's enlarged grids
# are named like the run's own reals.png and fakes-*.png)
INTO_INPUTS = [
    (["generate", "--network", "00000-tiny", "--outdir", "archive", "--seeds", "0"], "archive"),
    (["generate", "--network", "00000-tiny", "--outdir", "00000-tiny", "--seeds", "0"],
     "00000-tiny"),
    (["report", "00000-tiny", "--outdir", "00000-tiny", "--panel", "0"], "inside an input"),
    (["report", "00000-tiny", "--outdir", "archive", "--panel", "0"], "not an earlier report"),
    (["report", "00000-tiny", "--outdir", "archive/x", "--panel", "0", "--data", "archive"],
     "inside an input"),
    (["demo", "--quick", "--outdir", "other"], "not an earlier demo"),
    (["reader-study", "create", "--real", "archive", "--synthetic", "00000-tiny", "--outdir",
      "archive/s", "--n-real", "2", "--n-synthetic", "2"], "overlaps the input"),
    (["reader-study", "create", "--real", "archive", "--synthetic", "00000-tiny", "--outdir",
      "other", "--n-real", "2", "--n-synthetic", "2"], "not empty"),
    (["reader-study", "create", "--real", "archive", "--synthetic", "archive", "--outdir",
      "s"], "both"),
    (["project", "--network", "00000-tiny", "--target", "archive", "--outdir", "archive/p"],
     "inside the target folder"),
    (["project", "--network", "00000-tiny", "--target", "archive", "--outdir", "other"],
     "not empty"),
    (["downstream", "--real", "archive", "--synthetic", "00000-tiny", "--test", "archive",
      "--outdir", "00000-tiny/ds"], "inside --synthetic"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "text"), INTO_INPUTS)
def test_outputs_never_go_into_inputs_or_foreign_folders(cli_in, fx, args, text):
    before = {d: _listing(fx / d) for d in ("archive", "00000-tiny", "other")}
    assert_one_error_line(cli_in(fx, args), text)
    assert {d: _listing(fx / d) for d in before} == before


WRONG_VALUES = [
    (["report", "empty"], "no run files"),
    (["report", "00000-tiny", "--device", "tpu", "--panel", "0"], "--device"),
    (["demo", "--outdir", "d1", "--kimg", "nan"], "--kimg"),
    (["demo", "--outdir", "d2", "--kimg", "-1"], "--kimg"),
    (["demo", "--outdir", "d3", "--kimg", "inf"], "--kimg"),
    (["reader-study", "analyze", "empty"], "no study.sqlite"),
    (["reader-study", "serve", "empty"], "no study.sqlite"),
    (["report", "00000-tiny", "--panel", "0", "--reader-study", "empty"], "no study.sqlite"),
    (["import-nvidia", "file.txt", "-o", "d1.safetensors"], "file.txt: refused"),
    (["import-nvidia", "archive", "-o", "d1.safetensors"], "archive"),
    (["downstream", "--real", "archive", "--synthetic", "empty", "--outdir", "d1", "--lr", "nan"],
     "--lr"),
    (["downstream", "--real", "archive", "--synthetic", "empty", "--test", "archive", "--outdir",
      "d1"], "has no masks"),
]


@pytest.mark.parametrize(("args", "text"), WRONG_VALUES)
def test_wrong_values_stop_before_any_work(cli_in, fx, args, text):
    assert_one_error_line(cli_in(fx, args), text)
    assert not any((fx / d).exists() for d in ("d1", "d2", "d3", "empty/report", "d1.safetensors"))


METRICS = [
    (["--network", "00000-tiny", "--data", "archive", "--metrics", ","], "no metric name"),
    (["--network", "00000-tiny", "--data", "archive", "--metrics", "body_area",
      "--num-gen", "1000000000000"], "--num-gen"),  # was a MemoryError traceback
    (["--network", "00000-tiny", "--data", "archive", "--metrics", "body_area99999999999"],
     "body_area99999999999"),
    (["--network", "00000-tiny", "--data", "archive", "--metrics", "body_area4", "--json",
      "no/such/x.json"], "no folder"),  # said only after the whole evaluation
    (["--images", "archive", "--data", "archive", "--metrics", "body_area4", "-o", "00000-tiny"],
     "training run folder"),  # image records were appended to the run's own
    (["--images", "archive", "--data", "archive", "--metrics", "body_area4", "-o", "other"],
     "not an earlier evaluation"),
    (["--network", "00000-tiny", "--data", "archive", "--metrics", "faithfulness4"],
     "conditional generator"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "text"), METRICS)
def test_metrics_refuses_before_evaluating(cli_in, fx, args, text):
    before = {d: _listing(fx / d) for d in ("archive", "00000-tiny", "other")}
    assert_one_error_line(cli_in(fx, ["metrics", *args]), text)
    assert {d: _listing(fx / d) for d in before} == before


def test_metrics_names_the_run_archive_it_cannot_find(cli_in, fx, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_options.json").write_text('{"user": {"data": "data/train.zip"}}')
    (run / "network-snapshot-000000.safetensors").write_bytes(b"")  # a run with a snapshot:
    (run / "network-snapshot-000000.json").write_text("{}")  # else "no snapshots" comes first
    res = cli_in(fx, ["metrics", "--network", str(run), "--metrics", "body_area4"])
    assert_one_error_line(res, "data/train.zip", "training_options.json", "--data")


TRAIN_AND_GENERATE = [
    (["train", "--data", "archive", "--outdir", "runs", "--cfg", "tiny", "--desc", "../../evil"],
     "--desc"),  # was a FileNotFoundError traceback (the run folder escaped --outdir)
    (["train", "--data", "archive", "--outdir", "runs", "--cfg", "tiny", "--desc", "a/b"],
     "--desc"),
    (["train", "--data", "archive", "--outdir", "runs", "--cfg", "tiny", "--resume", "nope"],
     "nope: not found"),  # said 'nope.safetensors: snapshot not found'
    (["train", "--data", "archive", "--outdir", "runs", "--cfg", "tiny", "--resume", "fifo"],
     "fifo: not a snapshot"),
    (["generate", "--network", "file.txt", "--outdir", "g", "--seeds", "0"],
     "file.txt: not a snapshot"),
    (["generate", "--network", "00000-tiny", "--outdir", "g", "--seeds", "0", "--label", "t1-in"],
     "unconditional"),
    (["generate", "--network", "00000-tiny", "--outdir", "g", "--seeds", "0", "--position",
      "nan"], "--position"),
    (["dataset", "archive", "-o", "runs/d.zip", "--labels", "position:0"], "--labels"),
    (["dataset", "archive", "-o", "runs/d.zip", "--labels", "sequence"], "manifest.csv"),
    (["dataset", "archive", "-o", "runs/d.zip", "--masks"], "prepare --masks"),
    (["prepare", "empty", "-o", "runs/p", "--mask-labels", "liver=1"], "needs --masks"),
    (["prepare", "empty", "-o", "runs/p", "--masks", "--mask-labels", "liver=300"],
     "--mask-labels 'liver=300'"),
    (["prepare", "empty", "-o", "runs/p", "--masks", "--mask-labels", '{"liver": NaN}'],
     "--mask-labels"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "text"), TRAIN_AND_GENERATE)
def test_train_and_generate_name_what_was_typed(cli_in, fx, args, text):
    assert_one_error_line(cli_in(fx, args), text)
    assert not (fx / "runs").exists() and not (fx / "g").exists()


def test_weights_fetch_removes_a_download_that_is_no_detector(cli_in, fx, tmp_path):
    page = tmp_path / "error.html"
    page.write_text("<html>404 Not Found</html>")  # what a wrong mirror URL gives
    args = ["weights", "fetch", "inception", "--url", page.as_uri(), "--dest", str(tmp_path / "w")]
    assert_one_error_line(cli_in(fx, args), page.as_uri(), "not the Inception")
    assert not (tmp_path / "w" / "inception-2015-12-05.pt").exists()


def test_metrics_images_scores_a_generate_grid_folder_without_its_grid(cli_in, fx, tmp_path):
    gen = tmp_path / "gen"
    args = ["generate", "--network", "00000-tiny", "--outdir", str(gen), "--seeds", "0-2", "--grid",
            "--no-progress"]  # fmt: skip
    assert cli_in(fx, args).exit_code == 0
    (gen / "stray.png").write_bytes((gen / "seed000000.png").read_bytes())  # not listed
    args = ["metrics", "--images", gen, "--data", "archive", "--metrics", "pixfd", "--json", "-"]
    res = cli_in(fx, args)
    assert res.exit_code == 0, res.output
    assert "pixfd3" in res.output  # the manifest's 3 seeds: not grid.png, not stray.png


def test_train_never_puts_a_run_inside_its_data_folder(cli_in, fx):
    args = ["train", "--data", "archive", "--outdir", "archive/runs", "--cfg", "tiny"]
    assert_one_error_line(cli_in(fx, args), "--outdir archive/runs", "inside the --data")
    assert not (fx / "archive" / "runs").exists()


def test_metrics_refuses_data_of_another_size_than_the_generator(cli_in, fx, tmp_path):
    import numpy as np
    from PIL import Image

    small = tmp_path / "small"
    small.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8), "L").save(small / f"{i}.png")
    before = _listing(fx / "00000-tiny")
    args = ["metrics", "--network", "00000-tiny", "--data", str(small), "--metrics", "body_area4"]
    assert_one_error_line(cli_in(fx, args), "8x8", "16x16", "--data")
    assert _listing(fx / "00000-tiny") == before  # no record computed against the wrong set


def test_prepare_workers_are_bounded(cli_in, fx, tmp_path):
    res = cli_in(fx, ["prepare", "empty", "-o", str(tmp_path / "p"), "--workers", "100000"])
    assert_one_error_line(res, "--workers")  # a fork pool started all 100000 processes at once
