"""Reviewers' fixes to `mrisynth metrics --network RUN` (issue 12): a run folder without
snapshots is said to be one before its data record is asked about, and a warning verdict that
rings for several snapshots is printed once, naming them (each record keeps its own)."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from metric_runs import runner_setup
from mrisynth.cli import cli
from mrisynth.metrics import records, verdict_summary

VERDICT = {"topic": "diversity", "level": "warning", "title": "Mode collapse", "text": "t"}


@pytest.mark.parametrize("record", [None, '{"user": {"data": "gone.zip"}}', "not json"])
def test_an_empty_run_folder_says_no_snapshots_first(tmp_path, monkeypatch, record):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "00000-x"
    run.mkdir(parents=True)
    (run / "network-snapshot-000004.safetensors.tmp-1").write_bytes(b"half")  # killed write
    if record is not None:
        (run / "training_options.json").write_text(record)
    res = CliRunner().invoke(cli, ["metrics", "--network", "runs/00000-x", "--metrics",
                                   "body_area"])  # fmt: skip
    assert res.exit_code == 1, res.output
    (line,) = [x for x in res.output.splitlines() if x.strip()]
    assert line.startswith("Error: --network runs/00000-x: no snapshots in runs/00000-x"), line
    assert "train first" in line and "training_options" not in line


def test_a_warning_verdict_for_every_snapshot_is_printed_once(tmp_path, caplog):
    _, archive, run, _ = runner_setup(tmp_path)  # two snapshots of one untrained G
    args = ["metrics", "--network", str(run), "--data", str(archive), "--metrics", "diversity16",
            "--device", "cpu"]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    snaps = ["network-snapshot-000000.safetensors", "network-snapshot-000004.safetensors"]
    recorded = records.read_records(run / "metric-diversity16.jsonl")
    assert [r["snapshot"] for r in recorded] == snaps
    titles = {r["verdicts"][0]["title"] for r in recorded if r["verdicts"][0]["level"] == "warning"}
    assert len(titles) == 1, recorded  # an untrained G: both records keep the warning
    (title,) = titles
    said = [r.getMessage() for r in caplog.records if title in r.getMessage()]
    assert len(said) == 1, said
    assert "in 2 of 2 snapshots" in said[0] and all(s in said[0] for s in snaps)


def test_summary_lines_group_and_count():
    other = dict(VERDICT, title="Generated images cover little")
    evaluated = [(f"s{i}", "diversity", [VERDICT]) for i in range(10)]
    evaluated += [("s10", "diversity", [other]), ("s11", "diversity", [{"level": "ok"}])]
    evaluated += [("s0", "memorisation", [dict(VERDICT, title="Copies")])]
    lines = verdict_summary.summary_lines(evaluated)
    assert len(lines) == 3
    assert lines[0].startswith("diversity: Mode collapse, in 10 of 12 snapshots")
    assert "s0, s1, s2, ... 4 more ..., s7, s8, s9" in lines[0] and "latest, s9" in lines[0]
    assert "in 1 of 12 snapshots evaluated (s10)" in lines[1]
    assert lines[2] == "memorisation: Copies. s0: t"  # one snapshot: as before


@pytest.mark.parametrize("verdicts", [None, "x", [1, None, "w"], [{"level": "warning"}], {}])
def test_summary_lines_take_damaged_records(verdicts):
    lines = verdict_summary.summary_lines([("s", "diversity", verdicts)])
    assert lines in ([], ["diversity: warning. s: "])


def test_held_warnings_are_said_if_the_evaluation_fails(caplog):
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(RuntimeError),
        verdict_summary.gathered(),
    ):
        verdict_summary.verdict_log.warning("diversity: Mode collapse. numbers")
        assert "Mode collapse" not in caplog.text
        raise RuntimeError("killed half-way")
    assert caplog.text.count("Mode collapse") == 1
    assert verdict_summary.verdict_log.propagate and not verdict_summary.verdict_log.handlers
