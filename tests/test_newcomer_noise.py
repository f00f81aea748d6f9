"""What a newcomer reads on the terminal (issue 12 item 9): mask PNGs called what they are,
click usage errors as one `Error:` line with exit status 1 naming the sub-command's help, no
'CPU training' line before an error, a --workers default that torch does not warn about."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from tests.test_train import write_archive

from mrisynth.cli import cli, train


def test_prepare_calls_mask_pngs_images_not_failures(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["phantom", str(tmp_path / "tree"), "--patients", "1", "--small",
                              "--no-t2spir"])  # fmt: skip
    assert res.exit_code == 0, res.output
    pngs = len(list((tmp_path / "tree").rglob("*.png")))
    assert pngs > 0
    (tmp_path / "tree" / "notes.txt").write_text("not an image either")
    res = runner.invoke(cli, ["prepare", str(tmp_path / "tree"), "-o", str(tmp_path / "p"),
                              "--size", "16", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"ignored {pngs} PNG/JPEG images (e.g. CHAOS masks), not DICOM" in res.output
    assert "skipped 1 files: 1 x not a DICOM file" in res.output  # the .txt is still reported
    assert f"{pngs} x not a DICOM file" not in res.output


USAGE = [  # (command line, the help it points to)
    (["--bogus"], "`cli --help`"),
    (["generate", "--seeds"], "`cli generate --help`"),  # said `cli --help`
    (["train", "--batch", "x"], "`cli train --help`"),
    (["weights", "fetch", "--bogus"], "`cli weights fetch --help`"),
    (["nosuchcommand"], "`cli --help`"),
]


@pytest.mark.parametrize(("args", "help_text"), USAGE)
def test_usage_errors_are_one_line_exit_1_naming_the_command(args, help_text):
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and help_text in lines[0], lines


def test_no_cpu_thread_line_before_an_error(tmp_path, caplog):
    data = write_archive(tmp_path / "d", n=2)
    with caplog.at_level(logging.INFO, logger="mrisynth"):
        res = CliRunner().invoke(cli, ["train", "--data", str(data), "--outdir", str(tmp_path),
                                       "--cfg", "tiny", "--augpipe", "nope", "--device", "cpu"])
    assert res.exit_code == 1 and "--augpipe 'nope'" in res.output
    assert not [r for r in caplog.records if "torch thread" in r.getMessage()]


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 2), (3, 3), (64, 3)])
def test_default_workers_never_exceed_the_cpus(monkeypatch, cpus, workers):
    """torch warns when a DataLoader has more workers than usable CPUs (twice per run)."""
    monkeypatch.setattr(train.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert train._default_workers() == workers
