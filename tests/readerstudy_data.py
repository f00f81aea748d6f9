"""Tiny reader-study inputs: a prepared-like folder of real PNGs with patient keys, and a
folder of 'synthetic' PNGs as `mrisynth generate` writes them (seedNNNNNN.png + grid.png)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from mrisynth.imaging import encode_png
from mrisynth.readerstudy.create import StudyPlan, create_study


def write_real(folder: Path, patients: int = 4, per_patient: int = 6, size: int = 16) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = ["file,patient_key"]
    for p in range(patients):
        for s in range(per_patient):
            name = f"p{p:010x}_t1_in_{s:03d}.png"
            img = rng.integers(0, 256, (1, size, size), dtype=np.uint8)
            (folder / name).write_bytes(encode_png(img))
            rows.append(f"{name},p{p:010x}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


def write_synthetic(folder: Path, n: int = 24, size: int = 16) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for seed in range(n):
        img = rng.integers(0, 256, (1, size, size), dtype=np.uint8)
        (folder / f"seed{seed:06d}.png").write_bytes(encode_png(img))
    grid = rng.integers(0, 256, (1, size * 4, size * 4), dtype=np.uint8)
    (folder / "grid.png").write_bytes(encode_png(grid))
    (folder / "generation.json").write_text(json.dumps({"seeds": list(range(n))}))
    return folder


def make_study(tmp: Path, n_real: int = 4, n_synthetic: int = 4, readers: int = 2):
    """A study folder and its secret links."""
    real = write_real(tmp / "real")
    synth = write_synthetic(tmp / "synth")
    plan = StudyPlan(real, synth, n_real, n_synthetic, readers, seed=3, device="cpu")
    return tmp / "study", create_study(plan, tmp / "study")


def start_server(study: Path, *args: str, said: list[str] | None = None):
    """The server process and its base URL; `said` collects its stderr up to then."""
    cmd = [sys.executable, "-m", "mrisynth", "reader-study", "serve", str(study), "--port", "0"]
    proc = subprocess.Popen([*cmd, *args], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the server says where it listens once it does
        if said is not None:
            said.append(line)
        m = re.search(r"on (http://[^/]+)/", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep pipe drained
            return proc, m.group(1)
    raise AssertionError(f"server did not start (exit {proc.wait()})")
