"""One trainer per run folder: a second one (another process) gets one Error line with the
holder's PID and changes nothing; concurrent new runs get distinct folders."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.test_train import tiny, write_archive

from mrisynth.cli import cli
from mrisynth.errors import ConfigError, InputError
from mrisynth.training.loop import train
from mrisynth.training.run_lock import RunLock, RunLockedError, create_numbered_run

HOLD = "import sys, time; from mrisynth.training.run_lock import RunLock; " \
       "lock = RunLock(sys.argv[1]); print('held', flush=True); time.sleep(60)"  # fmt: skip


def _hold(folder) -> subprocess.Popen:
    """Another process holding the lock on `folder` until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc


def _snapshot_of_files(folder) -> dict[str, tuple[int, int]]:
    """Every file but the lock file (which the holder wrote its PID into)."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
            if p.name != ".lock"}  # fmt: skip


def test_a_second_process_is_refused_with_the_holders_pid_and_a_kill_frees_it(tmp_path):
    holder = _hold(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=f"PID {holder.pid}"):
            RunLock(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path) as lock:  # the kernel dropped the killed holder's lock
        assert lock.held and (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(RunLockedError):
            RunLock(tmp_path)  # also refused within one process (a second descriptor)
    assert not lock.held
    RunLock(tmp_path).release()


def test_resuming_a_run_that_is_training_exits_at_once_and_writes_nothing(tmp_path):
    data = write_archive(tmp_path / "discs", n=8)
    run_dir = train(tiny(data, tmp_path / "runs", kimg=0.016))
    before = _snapshot_of_files(run_dir)
    stats = (run_dir / "stats.jsonl").read_bytes()
    holder = _hold(run_dir)
    try:
        start = time.time()
        result = CliRunner().invoke(cli, ["train", "--data", str(data), "--resume", str(run_dir),
                                          "--kimg", "0.04", "--workers", "0", "--device", "cpu"])
        elapsed = time.time() - start
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert line.count("\n") == 0 and line.startswith("Error: ") and f"PID {holder.pid}" in line
    assert str(run_dir) in line and elapsed < 30
    assert _snapshot_of_files(run_dir) == before and (run_dir / "stats.jsonl").read_bytes() == stats
    # The check comes before the data is read (minutes on a real archive): even a missing
    # archive is reported after the lock, and a snapshot path means its run folder.
    holder = _hold(run_dir)
    try:
        with pytest.raises(RunLockedError, match=f"PID {holder.pid}"):
            train(tiny(tmp_path / "no-data", None, resume=str(run_dir / "x.safetensors")))
        train(tiny(data, tmp_path / "weights", kimg=0.008, resume=str(run_dir),
                   resume_mode="weights"))  # reading a run in training is fine  # fmt: skip
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Once the holder is gone the same command resumes.
    resumed = train(tiny(data, tmp_path / "unused", kimg=0.024, resume=str(run_dir)))
    assert resumed == run_dir


def _claim(outdir: str) -> list[str]:
    names = []
    for _ in range(8):
        run_dir, lock = create_numbered_run(Path(outdir), "race")
        lock.release()
        names.append(run_dir.name)
    return names


def test_concurrent_new_runs_never_share_a_folder(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        claimed = [name for names in pool.map(_claim, [str(tmp_path)] * 4) for name in names]
    assert len(claimed) == 32 and len(set(claimed)) == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i:05d}-race" for i in range(32)]


@pytest.mark.parametrize("planted", ["symlink", "directory", "fifo"])
def test_a_planted_lock_file_is_refused_and_its_target_untouched(tmp_path, planted):
    run_dir, outside = tmp_path / "run", tmp_path / "precious.txt"
    run_dir.mkdir()
    outside.write_text("keep me")
    lock = run_dir / ".lock"
    if planted == "symlink":
        lock.symlink_to(outside)
    elif planted == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with pytest.raises(ConfigError, match=r"\.lock.*(lock file|not a plain file)"):
        RunLock(run_dir)
    assert outside.read_text() == "keep me"


def test_resume_refuses_a_log_that_links_outside_the_run(tmp_path):
    data = write_archive(tmp_path / "discs", n=8)
    run_dir = train(tiny(data, tmp_path / "runs", kimg=0.008))
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    (run_dir / "log.txt").unlink()
    (run_dir / "log.txt").symlink_to(outside)
    with pytest.raises(InputError, match=r"log\.txt: not a plain file"):
        train(tiny(data, None, kimg=0.016, resume=str(run_dir)))
    assert outside.read_text() == "keep me"
