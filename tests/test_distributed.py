"""Two-process training with torchrun and the gloo backend on CPU (what multi-GPU runs do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from tests.test_train import write_archive

from mrisynth.training import checkpoint


def _train_2proc(*args: str) -> None:
    cmd = [
        sys.executable, "-m", "mrisynth", "train", "--gpus", "2", "--cfg", "tiny", "--batch", "8",
        "--kimg", "0.032", "--tick", "0.016", "--snap", "1", "--workers", "0", "--device", "cpu",
        "--p", "0.2", "--ada-kimg", "1", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_process_gloo_run_writes_one_run_folder_and_resumes_exactly(tmp_path):
    data = write_archive(tmp_path / "discs", n=16)
    outdir = tmp_path / "runs"
    _train_2proc("--data", str(data), "--outdir", str(outdir))
    (run_dir,) = outdir.iterdir()
    assert run_dir.name.startswith("00000-discs-tiny-gpus2-batch8")
    opts = json.loads((run_dir / "training_options.json").read_text())
    assert (opts["user"]["gpus"], opts["batch"], opts["batch_gpu"], opts["num_accum"]) == (
        2,
        8,
        4,
        1,
    )
    ticks = [json.loads(x) for x in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert [t["Progress/kimg"]["mean"] for t in ticks] == [0.008, 0.024, 0.032]
    # Stats are reduced over both ranks: 8 images per step, 2 steps in tick 1.
    assert ticks[1]["Loss/G/loss"]["num"] == 16
    log_text = (run_dir / "log.txt").read_text()
    assert log_text.count("tick 1 ") == 1  # rank 0 writes the log alone
    snap = checkpoint.load_snapshot(run_dir)
    assert snap.state["world_size"] == 2 and len(snap.state["rng"]) == 2
    assert "rng.rank1.torch" in snap.tensors
    G, info = checkpoint.load_generator(run_dir)
    assert info.kimg == 0.032 and torch.isfinite(G(torch.randn(1, G.z_dim), None)).all()

    # Stop after tick 0 and resume with two processes: every rank's RNG, data position and
    # ADA sums come back, so the end state equals the uninterrupted run's.
    _train_2proc("--data", str(data), "--outdir", str(tmp_path / "b"), "--stop-after-kimg", "0.008")
    (stopped,) = (tmp_path / "b").iterdir()
    assert checkpoint.load_snapshot(stopped).state["nimg"] == 8
    _train_2proc("--data", str(data), "--resume", str(stopped))
    resumed = checkpoint.load_snapshot(stopped)
    assert resumed.state["loop"] == snap.state["loop"] and resumed.state["ada"] == snap.state["ada"]
    assert resumed.state["augment_p"] == snap.state["augment_p"]
    for key, value in snap.tensors.items():
        if not key.startswith("rng."):
            torch.testing.assert_close(resumed.tensors[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_exit_worker_flushes_and_skips_teardown_only_in_a_launched_rank(tmp_path):
    # A torchrun rank ends at once with status 0 and its output flushed; the interpreter's
    # teardown (here: an atexit handler) never runs, since that is where gloo aborted.
    code = (
        "import atexit, pathlib, sys\n"
        "from mrisynth.training import distributed\n"
        f"atexit.register(lambda: pathlib.Path({str(tmp_path / 'teardown')!r}).write_text('ran'))\n"
        "print('done', end='')\n"
        "distributed.exit_worker()\n"
        "sys.exit(3)\n"
    )
    for world, rc, teardown in (("2", 0, False), ("1", 3, True)):
        env = {**os.environ, "WORLD_SIZE": world}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert (proc.returncode, proc.stdout) == (rc, "done"), proc.stderr
        assert (tmp_path / "teardown").exists() == teardown
