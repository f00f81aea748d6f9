"""`mrisynth train` as a newcomer uses it (issue 12 items 6 and 7): --dry-run refuses what a
real run refuses, a resume uses the run's recorded --data, and a repeated command is told that
a run with the same options exists."""

from __future__ import annotations

import json
import logging

import pytest
from tests.cli_errors import only_error_line
from tests.test_train import write_archive

TINY = ["--cfg", "tiny", "--batch", "8", "--tick", "0.008", "--snap", "1", "--workers", "0",
        "--device", "cpu", "--seed", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("newcomer-train")
    write_archive(root / "data" / "discs", n=8)
    return root


REFUSED = [  # (extra options, text of the one error line)
    (["--augpipe", "bgcx"], "--augpipe 'bgcx': unknown pipeline"),
    (["--aug", "noaug", "--p", "0.3"], "--p 0.3 has no effect with --aug noaug"),
    (["--aug", "noaug", "--p-max", "0.5"], "--p-max 0.5 has no effect with --aug noaug"),
    (["--aug", "fixed", "--p", "0.2", "--ada-kimg", "10"], "--ada-kimg 10 has no effect"),
    (["--metrics", "nosuchmetric"], "nosuchmetric"),
]


@pytest.mark.parametrize("dry", [True, False])
@pytest.mark.parametrize(("extra", "text"), REFUSED)
def test_dry_run_and_real_run_refuse_the_same_options(cli_in, work, dry, extra, text):
    args = ["--data", "data/discs", "--outdir", "refused", "--kimg", "0.008", *TINY, *extra]
    line = only_error_line(cli_in(work, ["train", *args, *(["--dry-run"] if dry else [])]))
    assert text in line
    assert not (work / "refused").exists()


@pytest.mark.parametrize("dry", [True, False])
def test_a_missing_outdir_is_refused_by_both(cli_in, work, dry):
    args = ["--data", "data/discs", "--kimg", "0.008", *TINY] + (["--dry-run"] if dry else [])
    assert "--outdir is required" in only_error_line(cli_in(work, ["train", *args]))


def test_accepted_augmentation_options_still_dry_run(cli_in, work):
    args = ["--data", "data/discs", "--outdir", "r", "--kimg", "1", *TINY, "--dry-run"]
    ok = (["--aug", "fixed", "--p", "0.2"], ["--aug", "ada", "--p", "0.1", "--p-max", "0.5"],
          ["--aug", "noaug"])  # fmt: skip
    for extra in ok:
        res = cli_in(work, ["train", *args, *extra])
        assert res.exit_code == 0, res.output
    assert not (work / "r").exists()


def test_resume_uses_the_recorded_data_and_a_repeat_gets_a_hint(cli_in, work, caplog):
    first = ["--data", "data/discs", "--outdir", "runs", "--kimg", "0.016", *TINY]
    res = cli_in(work, ["train", *first])
    assert res.exit_code == 0, res.output
    run = next((work / "runs").iterdir())
    rel = f"runs/{run.name}"

    # --resume without --data continues the run on the archive it recorded.
    res = cli_in(work, ["train", "--resume", rel, "--kimg", "0.024", "--workers", "0",
                        "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "--data data/discs (recorded by the run)" in res.output
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["Progress/kimg"]["mean"] == pytest.approx(0.024)
    assert len(list((work / "runs").iterdir())) == 1  # continued, no new run

    # From another folder, a run from before `data_resolved` was recorded has only the
    # relative path, not there from here: say so, where it looked, and what to pass.
    (work / "elsewhere").mkdir()
    opts_file = run / "training_options.json"
    saved = opts_file.read_text()
    opts_file.write_text(json.dumps({k: v for k, v in json.loads(saved).items()
                                     if k != "data_resolved"}))
    res = cli_in(work / "elsewhere", ["train", "--resume", str(run), "--kimg", "1"])
    line = only_error_line(res)
    opts_file.write_text(saved)
    assert "data/discs" in line and "training_options.json" in line and "--data" in line
    # An explicit --data wins, and is checked.
    res = cli_in(work, ["train", "--resume", rel, "--kimg", "1", "--data", "data/nope"])
    line = only_error_line(res)
    assert "data/nope" in line

    # The same command again: a new run, and a hint that the first can be resumed.
    with caplog.at_level(logging.WARNING, logger="mrisynth.training.run_record"):
        res = cli_in(work, ["train", *first])
    assert res.exit_code == 0, res.output
    hints = [r.getMessage() for r in caplog.records if r.name.endswith("run_record")]
    assert len(hints) == 1 and f"--resume runs/{run.name}" in hints[0], hints
    # ... but none when the options differ in what a resume could not change.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mrisynth.training.run_record"):
        res = cli_in(work, ["train", *first, "--gamma", "2"])
    assert res.exit_code == 0, res.output
    assert not [r for r in caplog.records if r.name.endswith("run_record")]


def test_no_data_and_no_resume_says_what_data_is(cli_in, work):
    line = only_error_line(cli_in(work, ["train", "--outdir", "runs2", *TINY]))
    assert "--data is required" in line and "mrisynth dataset" in line


@pytest.mark.parametrize(
    "record",
    ['{"user": {"data": 123}}', '{"user": null}', "[1, 2]", "not json", '{"user": {"data": ""}}',
     "[" * 100_000, '{"user": {"data": NaN}}'],
)  # fmt: skip
def test_a_damaged_run_record_asks_for_data(cli_in, tmp_path, record):
    run = tmp_path / "00000-x"
    run.mkdir()
    (run / "network-snapshot-000000.safetensors").write_bytes(b"")
    (run / "training_options.json").write_text(record)
    line = only_error_line(cli_in(tmp_path, ["train", "--resume", "00000-x", "--kimg", "1"]))
    assert "pass --data" in line
