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
    (out / ".seed0059.png.x1y2z3.tmp").write_bytes(b"half")  # as a kill mid-write leaves
    assert CliRunner().invoke(cli, [*args, "--outdir", str(out)]).exit_code == 0
    reference = tmp_path / "reference"
    assert CliRunner().invoke(cli, [*args, "--outdir", str(reference)]).exit_code == 0
    names = sorted(os.listdir(out))
    assert names == sorted(os.listdir(reference)) and PLAN_NAME not in names  # no temp left
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert all((out / n).stat().st_ino == ino for n, ino in kept.items())


# In a child (an audit hook cannot be removed): every file opened for writing in OUT.
_OPENED_FOR_WRITING = """
import os, sys
from click.testing import CliRunner
from mrisynth.cli import cli
out = os.path.realpath(sys.argv[1])
seen = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path, mode, flags = os.path.realpath(os.fsdecode(args[0])), args[1], args[2]
        writing = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and flags & (os.O_WRONLY | os.O_RDWR))
        if writing and os.path.dirname(path) == out:
            seen.append(os.path.basename(path))
sys.addaudithook(hook)
res = CliRunner().invoke(cli, sys.argv[2:] + ["--outdir", out])
assert res.exit_code == 0, res.output
print("\\n".join(seen))
"""


def test_no_output_file_is_ever_written_under_its_final_name(tmp_path):
    """What lets a killed run resume: a file that has its final name is complete, because
    every file (images, plan, records, manifest) is written to a temp name and renamed."""
    G = tiny_generator()
    snap = save_snapshot(tmp_path / "run" / "network-snapshot-000012.safetensors", G=G, D=None,
                         G_ema=G, state={"kimg": 12})  # fmt: skip
    out = tmp_path / "out"
    args = ["generate", "--network", str(snap), "--seeds", "0-2", "--format", "png",
            "--format", "dicom", "--grid", "--no-progress", "--device", "cpu"]  # fmt: skip
    res = subprocess.run([sys.executable, "-c", _OPENED_FOR_WRITING, str(out), *args],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    written = [n for n in res.stdout.split("\n") if n]
    final = sorted(os.listdir(out))
    assert len(final) >= 8 and len(written) >= len(final)
    assert not set(written) & set(final), set(written) & set(final)
    assert all(n.startswith(".") and n.endswith(".tmp") for n in written), written
