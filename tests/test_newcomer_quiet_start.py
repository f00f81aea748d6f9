"""A run refused while its inputs are checked prints one `Error:` line on the console, not the
INFO lines said while checking (`archive ...: 44 images`); a run that starts shows them, in
order, once (issue 12 item 9, audit)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mrisynth.training import held_log


@pytest.fixture
def console():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root, pkg = logging.getLogger(), logging.getLogger("mrisynth")
    root.addHandler(handler)
    level = pkg.level
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        pkg.setLevel(level)


def test_info_waits_for_the_run_and_warnings_do_not(console):
    log = logging.getLogger("mrisynth.test_quiet")
    file_lines: list[str] = []
    to_file = logging.Handler(logging.INFO)
    to_file.emit = lambda r: file_lines.append(r.getMessage())
    with held_log.holding() as held:
        log.info("archive: 44 images")
        log.warning("same options as run 00000")
        assert console.getvalue() == "WARNING same options as run 00000\n"
        held.replay_into(to_file)
    log.info("tick 0")
    assert console.getvalue().splitlines() == [
        "WARNING same options as run 00000", "INFO archive: 44 images", "INFO tick 0"]
    assert file_lines == ["archive: 44 images", "same options as run 00000"]


def test_a_refused_run_never_shows_the_held_lines(console):
    log = logging.getLogger("mrisynth.test_quiet")
    with pytest.raises(RuntimeError), held_log.holding():
        log.info("archive: 44 images")
        raise RuntimeError("refused")
    log.info("later")  # the console is back to normal afterwards
    assert console.getvalue() == "INFO later\n"


def test_train_refused_after_reading_the_archive_prints_one_line(tmp_path):
    (tmp_path / "data").mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16), 9 * i, np.uint8)).save(tmp_path / "data" / f"{i}.png")
    (tmp_path / "notes.txt").write_text("mine")
    res = subprocess.run(
        [sys.executable, "-m", "mrisynth", "train", "--data", "data", "--outdir", "notes.txt",
         "--cfg", "tiny", "--kimg", "0.01"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.splitlines() == ["Error: notes.txt: not a folder; give a folder to write "
                                       "runs into"], res.stderr
