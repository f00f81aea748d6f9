"""Reviewers' fixes to `train` (issues 12 and 13): a repeat hint only for a genuinely repeated
transfer run (same source snapshot and --resume-channels), the transfer lines in the run's
log.txt, and a resolution mismatch that says how to make a matching archive."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.errors import CheckpointError
from mrisynth.networks import NetworkConfig, build_generator
from mrisynth.training import checkpoint, run_record
from mrisynth.training.loop import train
from test_train import tiny, write_archive

HINT_LOGGER = "mrisynth.training.run_record"


def _snapshot(path, channels: int = 1, seed: int = 0, res: int = 16):
    """A bare generator (no D), as an NVIDIA import of a generator-only pickle gives."""
    cfg = NetworkConfig(img_resolution=res, img_channels=channels, z_dim=32, w_dim=32,
                        map_depth=2, channel_base=256, channel_max=32)  # fmt: skip
    torch.manual_seed(seed)
    G = build_generator(cfg)
    return checkpoint.save_snapshot(path, G=G, D=None, G_ema=G, state={"kimg": 0})


def _hints(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == HINT_LOGGER]


def test_repeat_hint_compares_the_source_snapshot(tmp_path, caplog):
    data = write_archive(tmp_path / "grey", n=8)
    a, b = _snapshot(tmp_path / "a.safetensors"), _snapshot(tmp_path / "b.safetensors", seed=1)
    copy_of_a = tmp_path / "elsewhere" / "a-copy.safetensors"
    copy_of_a.parent.mkdir()
    shutil.copy(a, copy_of_a)
    runs = tmp_path / "runs"
    opts = dict(kimg=0.008, tick=0.008, batch=8)
    with caplog.at_level(logging.WARNING, logger=HINT_LOGGER):
        first = train(tiny(data, runs, resume=str(a), **opts))
        assert not _hints(caplog)
        recorded = json.loads((first / "training_options.json").read_text())
        source = recorded["resume_source"]
        assert source["path"] == str(a.resolve()) and len(source["sha256"]) == 64

        train(tiny(data, runs, resume=str(b), **opts))  # another model: not a repeat
        assert not _hints(caplog), "a run from a different snapshot was told to resume"

        train(tiny(data, runs, resume=str(copy_of_a), **opts))  # same content elsewhere
        (hint,) = _hints(caplog)
        assert first.name in hint and "--resume" in hint

        caplog.clear()  # the same snapshot, but its channels handled differently
        train(tiny(data, runs, resume=str(a), resume_channels="average", **opts))
        assert not _hints(caplog)


def _record(run, **user):
    run.mkdir(parents=True)
    base = {"data": "d", "gamma": 1.0, "resume": None, "resume_channels": "same"}
    (run / "training_options.json").write_text(
        json.dumps({"dataset_hash": "h", "user": {**base, **user}})
    )


def test_records_without_a_source_sha_compare_resolved_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    _record(tmp_path / "runs" / "00000-old", resume="m/../snap.safetensors")  # before sha256s
    ours = {"dataset_hash": "h", "user": {"data": "d2", "gamma": 1.0, "resume": "x",
                                          "resume_channels": "same"}}  # fmt: skip
    same = run_record.with_resume_source(ours, {"sha256": "f" * 64,
                                                "path": str(tmp_path / "snap.safetensors")})
    other = run_record.with_resume_source(ours, {"sha256": "f" * 64, "path": "/else/s"})
    assert [p.name for p in run_record.same_option_runs(tmp_path / "runs", same)] == ["00000-old"]
    assert run_record.same_option_runs(tmp_path / "runs", other) == []
    scratch = {"dataset_hash": "h", "user": {"data": "d", "gamma": 1.0}}
    assert run_record.same_option_runs(tmp_path / "runs", scratch) == []  # it had a source


@pytest.mark.parametrize(
    "source",
    [[1, 2], "str", {"sha256": 5, "path": 7}, {"sha256": None, "path": "a\0b"},
     {"path": "/" + "x" * 5000}, {"sha256": ["f"]}],
)  # fmt: skip
def test_hostile_resume_source_records_are_no_match_and_no_crash(tmp_path, source):
    runs = tmp_path / "runs"
    _record(runs / "00000-x", resume="s.safetensors")
    rec = json.loads((runs / "00000-x" / "training_options.json").read_text())
    rec["resume_source"] = source
    (runs / "00000-x" / "training_options.json").write_text(json.dumps(rec))
    ours = run_record.with_resume_source(
        {"dataset_hash": "h", "user": {"data": "d", "gamma": 1.0, "resume": "t.safetensors"}},
        {"sha256": "e" * 64, "path": str(tmp_path / "t.safetensors")},
    )
    assert run_record.same_option_runs(runs, ours) == []


def test_transfer_lines_reach_the_run_log(tmp_path, caplog):
    data = write_archive(tmp_path / "grey", n=8)
    rgb = _snapshot(tmp_path / "rgb.safetensors", channels=3)
    args = ["train", "--data", str(data), "--outdir", str(tmp_path / "runs"), "--cfg", "tiny",
            "--batch", "8", "--resume", str(rgb), "--resume-channels", "average", "--kimg",
            "0.008", "--tick", "0.008", "--workers", "0", "--device", "cpu"]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="mrisynth.training"):
        res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    text = (run / "log.txt").read_text()
    for line in ("image layers adapted from 3 to 1 channels", "architecture from",
                 "holds no discriminator: D starts from a fresh initialisation"):  # fmt: skip
        assert text.count(line) == 1, (line, text)
        assert caplog.text.count(line) == 1, line  # said once on the console as well
    # In the order it happened: checked inputs first, then the run's own lines.
    assert text.index("adapted from 3 to 1") < text.index("holds no discriminator") < \
        text.index("resuming from") < text.index("training tiny")


def test_a_resolution_mismatch_says_how_to_make_a_matching_archive(tmp_path):
    data = write_archive(tmp_path / "grey", n=8)  # 16 px
    snap = _snapshot(tmp_path / "s32.safetensors", res=32)
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "runs", resume=str(snap), kimg=0.008))
    msg = str(e.value)
    assert "trained at 32px" in msg and "holds 16px" in msg
    assert "mrisynth prepare" in msg and "--size 32" in msg and "32px archive" in msg
    assert not (tmp_path / "runs").exists()
