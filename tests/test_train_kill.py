"""A real `mrisynth train` killed with SIGKILL mid-run resumes from its last good snapshot."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from tests.test_train import write_archive

from mrisynth.training import checkpoint
from mrisynth.training.loop import train


def _latest_nimg(run_dir) -> int:
    try:
        return checkpoint.load_snapshot(run_dir).state["nimg"]
    except Exception:  # not written yet, or being replaced right now
        return 0


def test_sigkill_mid_run_then_resume_continues_at_the_snapshot(tmp_path):
    data = write_archive(tmp_path / "discs", n=16)
    outdir = tmp_path / "runs"
    common = ["--cfg", "tiny", "--batch", "8", "--tick", "0.008", "--snap", "1", "--workers", "0",
              "--device", "cpu"]  # fmt: skip
    cmd = [sys.executable, "-m", "mrisynth", "train", "--data", str(data), "--outdir",
           str(outdir), "--kimg", "10", *common]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        run_dir = None
        while time.time() < deadline:
            runs = list(outdir.glob("00000-*")) if outdir.exists() else []
            if runs and _latest_nimg(runs[0]) >= 24:
                run_dir = runs[0]
                break
            time.sleep(0.2)
        assert run_dir is not None, "training did not reach kimg 0.024 in time"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoint.load_snapshot(run_dir).state  # the latest snapshot still verifies
    stop = (killed_at["nimg"] + 16) / 1000
    resume = [sys.executable, "-m", "mrisynth", "train", "--data", str(data), "--resume",
              str(run_dir), "--kimg", "10", "--stop-after-kimg", str(stop), *common]  # fmt: skip
    done = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(run_dir)
    ticks = [json.loads(x) for x in (run_dir / "stats.jsonl").read_text().splitlines()]
    kimgs = [t["Progress/kimg"]["mean"] for t in ticks]
    assert kimgs == sorted(set(kimgs))  # ticks logged after the snapshot were not duplicated
    i = kimgs.index(killed_at["nimg"] / 1000)
    assert kimgs[i + 1 :] == [(killed_at["nimg"] + 8) / 1000, (killed_at["nimg"] + 16) / 1000]
    assert ticks[i + 1]["Progress/tick"]["mean"] == killed_at["tick"] + 1
    assert checkpoint.load_snapshot(run_dir).state["nimg"] == killed_at["nimg"] + 16
    assert "resuming from" in (run_dir / "log.txt").read_text()


# ---- Many kills: at random moments and at every step of writing a snapshot ---------------------

KILL_POINTS = ("mid_write", "before_rename", "after_rename", "after_json_copy")


def _arm(point: str, at_snapshot: int) -> None:
    """In the child: SIGKILL itself at `point` of its `at_snapshot`-th snapshot write."""
    real_replace, real_save = os.replace, checkpoint.save_file
    seen = {"n": 0}

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def save_file(tensors, filename, metadata=None):
        seen["n"] += 1
        if point == "mid_write" and seen["n"] == at_snapshot:
            real_save(tensors, filename, metadata=metadata)
            with open(filename, "r+b") as f:
                f.truncate(os.path.getsize(filename) // 2)
            die()
        return real_save(tensors, filename, metadata=metadata)

    def replace(src, dst):
        snapshot = str(dst).endswith(".safetensors") and seen["n"] == at_snapshot
        copy = str(dst).endswith(".json") and "network-snapshot" in str(dst)
        if snapshot and point == "before_rename":
            die()
        real_replace(src, dst)
        if snapshot and point == "after_rename":
            die()
        if copy and seen["n"] == at_snapshot and point == "after_json_copy":
            die()

    checkpoint.save_file = save_file
    os.replace = replace


def _life(opts, point: str | None, at_snapshot: int) -> int:
    """Run `train(opts)` in a forked child (torch is already imported: starts in ~0.3 s)."""
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            if point is not None:
                _arm(point, at_snapshot)
            train(opts)
        except BaseException:
            code = 3
        os._exit(code)
    return pid


def _wait(pid: int, kill_after: float | None, timeout: float = 60.0) -> int:
    """Wait for the child (SIGKILL it after `kill_after` s); returns its wait status."""
    start = time.time()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        elapsed = time.time() - start
        if (kill_after is not None and elapsed >= kill_after) or elapsed > timeout:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert elapsed <= timeout, "a training life hung"
            return status
        time.sleep(0.01)


def test_sigkill_at_many_moments_never_loses_a_committed_snapshot(tmp_path):
    from tests.test_train import tiny

    rng = random.Random(9)
    data = write_archive(tmp_path / "discs", n=16)
    base = dict(kimg=100, tick=0.008, snap=1)
    # 4 kills at each step of a snapshot write, 10 at random times (startup and restore
    # included), then one life that runs to its end.
    lives = [(p, rng.randint(1, 3), None) for p in KILL_POINTS] * 1
    lives += [(None, 0, rng.uniform(0.1, 1.2)) for _ in range(10)]
    lives = lives[:1] + rng.sample(lives[1:], len(lives) - 1)
    committed: dict[str, tuple] = {}  # snapshot name -> (inode, size, mtime), once committed
    identity = lambda p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)  # noqa: E731
    run_dir, kills, resumes = None, 0, 0
    for point, at, after in lives:
        if run_dir is None:
            opts = tiny(data, tmp_path / "runs", **base)
        else:
            opts, resumes = tiny(data, tmp_path / "x", resume=str(run_dir), **base), resumes + 1
        status = _wait(_life(opts, point, at), after)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        kills += 1
        run_dir = run_dir or next((tmp_path / "runs").iterdir())
        names = {p.name: p for p in checkpoint.list_snapshots(run_dir)}
        for name, ident in committed.items():  # nothing committed was lost or rewritten
            assert name in names and identity(names[name]) == ident, name
        checkpoint.load_snapshot(run_dir)  # resumable from its newest good snapshot
        for name, path in names.items():
            if name not in committed:
                checkpoint.verify_snapshot(path)  # every listed snapshot is whole
                committed[name] = identity(path)
    stop = checkpoint.load_snapshot(run_dir).state["nimg"] / 1000 + 0.016
    opts = tiny(data, tmp_path / "x", resume=str(run_dir), stop_after_kimg=stop, **base)
    assert _wait(_life(opts, None, 0), None) == 0  # the last life ends normally
    resumes += 1
    assert kills >= 14 and resumes == kills and len(committed) >= len(KILL_POINTS)
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]  # cleaned on start
    for name, ident in committed.items():
        assert identity(run_dir / name) == ident
    ticks = [json.loads(x) for x in (run_dir / "stats.jsonl").read_text().splitlines()]
    kimgs = [round(t["Progress/kimg"]["mean"] * 1000) for t in ticks]
    assert kimgs == list(range(8, kimgs[-1] + 1, 8))  # every tick once, none lost or doubled
    assert [t["Progress/tick"]["mean"] for t in ticks] == list(range(len(ticks)))


def _logged_kimgs(run_dir) -> list[float]:
    lines = (run_dir / "stats.jsonl").read_text().splitlines()
    return [json.loads(x)["Progress/kimg"]["mean"] for x in lines]


def test_ticks_logged_after_the_resumed_snapshot_are_logged_once(tmp_path):
    """A run that ends (or dies) ticks after its last snapshot: a resume drops those stats
    lines and logs the ticks again, so each kimg appears once."""
    from tests.test_train import tiny

    data = write_archive(tmp_path / "discs", n=8)
    base = dict(kimg=1, tick=0.008, snap=2)
    run_dir = train(tiny(data, tmp_path / "runs", stop_after_kimg=0.032, **base))
    assert _logged_kimgs(run_dir) == [0.008, 0.016, 0.024, 0.032]  # no snapshot at 0.032
    assert checkpoint.load_snapshot(run_dir).state["nimg"] == 24
    train(tiny(data, None, resume=str(run_dir), stop_after_kimg=0.048, **base))
    assert _logged_kimgs(run_dir) == [0.008, 0.016, 0.024, 0.032, 0.04, 0.048]
