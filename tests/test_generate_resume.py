"""A SIGKILLed `generate` leaves a folder marked unfinished; the same command finishes it with
files byte-identical to an uninterrupted run, keeping what the killed run wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.generate.output_folder import PLAN_NAME
from mrisynth.training.checkpoint import save_snapshot
from test_generate import tiny_generator


def test_killed_generate_resumes_without_loss(tmp_path):
    G = tiny_generator()
    snap = save_snapshot(tmp_path / "run" / "network-snapshot-000012.safetensors", G=G, D=None,
                         G_ema=G, state={"kimg": 12})
    args = ["generate", "--network", str(snap), "--seeds", "0-59", "--format", "png",
            "--format", "dicom", "--no-progress", "--device", "cpu"]
    out = tmp_path / "out"
    slow = ["--batch", "1"]  # the killed run; with const noise the batch size is not identity
    proc = subprocess.Popen([sys.executable, "-m", "mrisynth", *args, *slow, "--outdir", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and len(os.listdir(out)) > 12:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / PLAN_NAME).is_file() and not (out / "manifest.csv").exists()
    kept = {p.name: p.stat().st_ino for p in out.iterdir()
            if p.name.startswith("seed") and not p.name.endswith(".tmp")}
    assert 4 < len(kept) < 120
    assert CliRunner().invoke(cli, [*args, "--outdir", str(out)]).exit_code == 0
    reference = tmp_path / "reference"
    assert CliRunner().invoke(cli, [*args, "--outdir", str(reference)]).exit_code == 0
    names = sorted(os.listdir(out))
    assert names == sorted(os.listdir(reference)) and PLAN_NAME not in names  # no temp left
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert all((out / n).stat().st_ino == ino for n, ino in kept.items())
