"""A real `mrisynth train` killed with SIGKILL mid-run resumes from its last good snapshot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.test_train import write_archive

from mrisynth.training import checkpoint


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
