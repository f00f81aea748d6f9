"""`mrisynth demo` shows a warning (the mode-collapse verdict) as `Warning: ...` between its step
lines, not in raw log format; a log file keeps the full line, and the console is as it was after
the demo."""

from __future__ import annotations

import io
import logging

import pytest
from click.testing import CliRunner

from mrisynth.cli import cli, demo

CLI_FORMAT = "%(levelname)s %(name)s: %(message)s"  # what `mrisynth` sets on its console
VERDICT = "diversity8: Mode collapse: generated images are much more alike than real ones"


@pytest.fixture()
def console():
    """The CLI's stderr handler on the root logger (pytest's own handlers are subclasses)."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    formatter = logging.Formatter(CLI_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    yield buf, handler, formatter
    root.removeHandler(handler)


def test_demo_warning_reads_like_its_lines_and_stays_in_the_log_file(console, monkeypatch):
    buf, handler, formatter = console
    log_file = io.StringIO()  # a run's log.txt: a handler of its own
    file_handler = logging.StreamHandler(log_file)
    file_handler.setFormatter(logging.Formatter(CLI_FORMAT))
    verdicts = logging.getLogger("mrisynth.metrics.runner.verdicts")
    verdicts.addHandler(file_handler)

    def fake_run(outdir, plan, **_):
        print("[5/7] Evaluating the last snapshot")
        verdicts.warning(VERDICT)
        logging.getLogger("mrisynth.x").error("kept as it was")

    monkeypatch.setattr(demo, "run_demo", fake_run)
    try:
        res = CliRunner().invoke(cli, ["demo", "--outdir", "d"])
    finally:
        verdicts.removeHandler(file_handler)
    assert res.exit_code == 0, res.output
    shown = buf.getvalue().splitlines()
    assert f"Warning: {VERDICT}" in shown
    assert "ERROR mrisynth.x: kept as it was" in shown
    assert not any(line.startswith("WARNING") for line in shown)
    assert log_file.getvalue() == f"WARNING mrisynth.metrics.runner.verdicts: {VERDICT}\n"
    assert handler.formatter is formatter  # the console is the CLI's again after the demo
