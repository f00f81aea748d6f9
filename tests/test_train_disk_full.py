"""A full disk during training: one Error line, no half-written file that looks valid, and the
same run resumes once space is freed. Injected ENOSPC always; a real tmpfs where we may mount."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid

import pytest
from click.testing import CliRunner
from tests.test_train import read_stats, tiny, write_archive

from mrisynth.cli import cli
from mrisynth.errors import DiskFullError
from mrisynth.training import checkpoint
from mrisynth.training.loop import train


def _temps(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_enospc_mid_snapshot_is_one_error_and_the_run_resumes(tmp_path, monkeypatch):
    data = write_archive(tmp_path / "discs", n=8)
    real_save = checkpoint.save_file
    calls = {"n": 0}

    def full_on_second(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:  # half the file reaches the disk, then the disk is full
            with open(filename, "wb") as f:
                f.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", full_on_second)
    with pytest.raises(DiskFullError, match=r"no space left.*network-snapshot-000000\.024"):
        train(tiny(data, tmp_path / "runs", kimg=0.04))
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert _temps(run_dir) == []  # the partial write was removed
    assert [p.name for p in checkpoint.list_snapshots(run_dir)] == [
        "network-snapshot-000000.008.safetensors"
    ]
    monkeypatch.setattr(checkpoint, "save_file", real_save)  # space freed
    assert train(tiny(data, tmp_path / "unused", kimg=0.04, resume=str(run_dir))) == run_dir
    assert [t["Progress/kimg"]["mean"] for t in read_stats(run_dir)] == [0.008, 0.024, 0.040]
    assert checkpoint.load_snapshot(run_dir).state["nimg"] == 40


def _mount_tmpfs(where, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", f"mrisynth-{uuid.uuid4().hex[:8]}"]
    try:
        return subprocess.run([*cmd, str(where)], capture_output=True).returncode == 0
    except OSError:
        return False


def test_a_real_full_disk_gives_one_error_line_then_resumes(tmp_path):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "20m"):
        pytest.skip("cannot mount a small tmpfs here (needs root); the injected test covers it")
    try:
        data = write_archive(tmp_path / "discs", n=8)
        args = ["train", "--data", str(data), "--cfg", "tiny", "--batch", "8", "--tick", "0.008",
                "--snap", "1", "--workers", "0", "--device", "cpu", "--min-free-gb", "0"]
        full = CliRunner().invoke(cli, [*args, "--outdir", str(disk / "runs"), "--kimg", "0.1"])
        assert full.exit_code == 1, full.output
        lines = full.output.strip().splitlines()
        assert lines[-1].startswith("Error: no space left on the disk while writing")
        assert sum("Error" in x for x in lines) == 1 and "Traceback" not in full.output
        (run_dir,) = (disk / "runs").iterdir()
        assert _temps(run_dir) == []
        good = checkpoint.list_snapshots(run_dir)
        assert good and all(checkpoint.verify_snapshot(p) for p in good)
        subprocess.run(["mount", "-o", "remount,size=80m", str(disk)], check=True)
        resumed = CliRunner().invoke(cli, [*args, "--resume", str(run_dir), "--kimg", "0.048"])
        assert resumed.exit_code == 0, resumed.output
        kimgs = [t["Progress/kimg"]["mean"] for t in read_stats(run_dir)]
        assert kimgs == sorted(set(kimgs)) and kimgs[-1] == pytest.approx(0.048)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
