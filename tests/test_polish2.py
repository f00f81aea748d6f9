"""Three review fixes: a run finds its archive from any folder (train records `data_resolved`;
training.run_record is the one place that looks), the metrics CLI says a caveat shared by
several snapshots once, and generate on a paired model says it wrote masks too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tests.test_train import write_archive

from mrisynth.cli import cli
from mrisynth.errors import InputError
from mrisynth.training import run_record
from mrisynth.training.run_record import archive_candidates, find_recorded_data, recorded_data

TINY = ["--cfg", "tiny", "--batch", "8", "--tick", "0.008", "--snap", "1", "--workers", "0",
        "--device", "cpu", "--seed", "1"]  # fmt: skip


def record(run: Path, options) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "training_options.json").write_text(json.dumps(options))
    return run


# ---- 1. the recorded archive, from any folder ------------------------------------------------


def test_train_records_the_resolved_archive_and_resume_finds_it_from_elsewhere(cli_in, tmp_path):
    write_archive(tmp_path / "data" / "discs", n=8)
    res = cli_in(tmp_path, ["train", "--data", "data/discs", "--outdir", "runs",
                            "--kimg", "0.008", *TINY])  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    options = json.loads((run / "training_options.json").read_text())
    assert options["user"]["data"] == "data/discs"  # as typed: --resume from here keeps it
    assert options["data_resolved"] == str((tmp_path / "data" / "discs").resolve())
    (tmp_path / "elsewhere").mkdir()
    res = cli_in(tmp_path / "elsewhere", ["train", "--resume", str(run), "--kimg", "0.016",
                                          "--workers", "0", "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"--data {options['data_resolved']} (recorded by the run)" in res.output
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["Progress/kimg"]["mean"] == pytest.approx(0.016)


def test_candidates_typed_then_resolved_then_from_the_run_folder(tmp_path):
    run = tmp_path / "runs" / "00000-x"
    opts = {"user": {"data": "data/a.zip"}, "data_resolved": "/abs/data/a.zip"}
    assert archive_candidates(opts, run) == [
        Path("data/a.zip"), Path("/abs/data/a.zip"), run / "data/a.zip"]  # fmt: skip
    # An absolute path typed is not also tried under the run folder; duplicates once.
    opts = {"user": {"data": "/abs/a.zip"}, "data": "/abs/a.zip", "data_resolved": "/abs/a.zip"}
    assert archive_candidates(opts, run) == [Path("/abs/a.zip")]


@pytest.mark.parametrize("where", ["cwd", "resolved", "run folder"])
def test_each_place_is_found_by_metrics_report_and_generate(tmp_path, monkeypatch, where):
    from mrisynth.cli.metrics import _data_from_run
    from mrisynth.cli.report import data_path_from_options
    from mrisynth.generate.masks import _training_data

    archive = write_archive(tmp_path / "data" / "discs", n=2)
    run = tmp_path / "runs" / "00000-x"
    typed = {"cwd": "data/discs", "resolved": "moved/discs", "run folder": "../../data/discs"}
    options = {"user": {"data": typed[where]}}
    if where == "resolved":
        options["data_resolved"] = str(archive)
    record(run, options)
    monkeypatch.chdir(tmp_path if where == "cwd" else run.parent)
    found = Path(_data_from_run(run))
    assert found.resolve() == archive.resolve()
    assert data_path_from_options(options, run).resolve() == archive.resolve()
    assert _training_data(run).resolve() == archive.resolve()
    assert Path(recorded_data(run / "network-snapshot-000000.safetensors")).resolve() == (
        archive.resolve())  # a snapshot names its run


def test_an_old_record_without_the_resolved_path_still_works_and_nvidia_too(tmp_path):
    archive = write_archive(tmp_path / "discs", n=2)
    run = record(tmp_path / "run", {"user": {"data": "../discs"}})  # before data_resolved
    assert find_recorded_data(json.loads((run / "training_options.json").read_text()), run)
    nvidia = {"training_set_kwargs": {"path": str(archive)}}
    assert find_recorded_data(nvidia, run) == archive


def test_the_error_names_every_place_tried_on_one_line(tmp_path, monkeypatch):
    run = record(tmp_path / "runs" / "00000-x",
                 {"user": {"data": "gone/a\nb.zip"}, "data_resolved": "/nowhere/a.zip"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as e:
        recorded_data(run, "--network")
    msg = str(e.value)
    assert "\n" not in msg and "pass --data" in msg and "training_options.json" in msg
    for tried in ("gone/a\\nb.zip", "/nowhere/a.zip", str(run / "gone") + "/a\\nb.zip"):
        assert tried in msg, msg
    assert str(tmp_path) in msg  # the folder the relative path was tried from


@pytest.mark.parametrize("data", [123, None, "", "x\0y", "a" * 5000, ["a"], {"p": 1}])
def test_hostile_recorded_paths_are_skipped_not_crashed_on(tmp_path, data):
    run = record(tmp_path / "run", {"user": {"data": data}, "data_resolved": data})
    assert archive_candidates({"user": {"data": data}, "data_resolved": data}, run) == []
    assert find_recorded_data({"user": {"data": data}}, run) is None
    with pytest.raises(InputError, match="pass --data"):
        recorded_data(run)


@pytest.mark.parametrize("options", [None, [1, 2], "text", {"user": "x"}, {"user": None}])
def test_a_record_that_is_not_ours_finds_nothing(tmp_path, options):
    assert find_recorded_data(options, tmp_path) is None


def test_the_resolved_path_is_absolute_even_for_a_missing_or_looping_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for typed in ("missing/a.zip", "loop/a.zip"):
        got = run_record.with_data_resolved({"user": {"data": typed}})
        assert Path(got["data_resolved"]).is_absolute() and typed.split("/")[1] in (
            got["data_resolved"])
    assert "data_resolved" not in run_record.with_data_resolved({"user": {"data": 5}})


# ---- 2. a caveat shared by several snapshots, said once --------------------------------------


def _caveat_records(folder: Path, snaps: list[str], caveats: dict[str, list[str]]) -> None:
    from mrisynth.metrics.records import append_record, make_record

    for i, snap in enumerate(snaps):
        append_record(folder, make_record("pixfd50", snap, i, {"pixfd50": 1.0 + i}, 8, 8, None,
                                          False, caveats=caveats.get(snap)))


def test_metrics_prints_a_caveat_of_three_snapshots_once(tmp_path, capsys):
    from mrisynth.cli.metrics import _print_results

    snaps = [f"network-snapshot-00000{i}.safetensors" for i in range(3)]
    same = ["pixel FD is not the reference FID"]
    _caveat_records(tmp_path, snaps, {s: same for s in snaps})
    _print_results([(s, {"pixfd50": {"pixfd50": 1.0}}) for s in snaps], tmp_path)
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note")]
    assert notes == [f"note (pixfd50, all 3 snapshots): {same[0]}"]


def test_a_caveat_of_some_snapshots_names_them_and_one_snapshot_is_unchanged(tmp_path, capsys):
    from mrisynth.cli.metrics import _print_results

    snaps = [f"s{i}.safetensors" for i in range(3)]
    _caveat_records(tmp_path, snaps, {snaps[1]: ["float32 distances"]})
    _print_results([(s, {"pixfd50": {"pixfd50": 1.0}}) for s in snaps], tmp_path)
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note")]
    assert notes == ["note (pixfd50, 1 of 3 snapshots: s1.safetensors): float32 distances"]
    _print_results([(snaps[1], {"pixfd50": {"pixfd50": 1.0}})], tmp_path)
    assert "note (pixfd50): float32 distances" in capsys.readouterr().out.splitlines()


def test_hostile_caveats_in_a_record_do_not_stop_the_summary():
    from mrisynth.metrics.verdict_summary import caveat_lines

    lines = caveat_lines([("a", "m", "not a list"), ("b", "m", [1, None, "x"]), ("c", "m", None)])
    assert lines == ["note (m, 1 of 3 snapshots: b): 1", "note (m, 1 of 3 snapshots: b): None",
                     "note (m, 1 of 3 snapshots: b): x"]  # fmt: skip


# ---- 3. generate on a paired model mentions its masks ----------------------------------------


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory):
    from mrisynth.config import resolve_preset
    from mrisynth.networks import build_generator, network_config_from_preset
    from mrisynth.training.checkpoint import save_snapshot

    labels = ["background", "liver", "right_kidney", "left_kidney", "spleen"]
    run = record(tmp_path_factory.mktemp("paired") / "00000-paired",
                 {"user": {"data": "gone.zip"}, "mask_labels": labels})
    torch.manual_seed(1)
    G = build_generator(network_config_from_preset(resolve_preset("tiny", 16), 2, 0))
    save_snapshot(run / "network-snapshot-000000.safetensors", G=G, D=None, G_ema=G,
                  state={"kimg": 0})
    return run


@pytest.mark.parametrize(("formats", "said"), [
    (["png", "dicom"], "Wrote 2 synthetic images (png + dicom) and 2 masks "
                       "(png label maps + DICOM SEG) from"),
    (["png"], "Wrote 2 synthetic images (png) and 2 masks (png label maps) from"),
])  # fmt: skip
def test_generate_on_a_paired_model_says_it_wrote_masks(paired_run, tmp_path, formats, said):
    args = ["generate", "--network", str(paired_run), "--outdir", str(tmp_path / "out"),
            "--seeds", "0-1", "--no-progress", *[a for f in formats for a in ("--format", f)]]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert said in res.output, res.output
    assert len(list((tmp_path / "out").glob("*-mask.png"))) == (2 if "png" in formats else 0)


def test_an_image_only_record_mentions_no_masks():
    from mrisynth.generate.masks import masks_written

    assert masks_written({"mask": None, "formats": ["png"], "num_images": 3}) == ""
    assert masks_written({"mask": {"labels": []}, "formats": ["dicom"], "num_images": 3}) == (
        " and 3 masks (DICOM SEG)")
