"""Atomic writes: a full disk is one DiskFullError naming the file; nothing half-written stays."""

from __future__ import annotations

import errno
import os

import pytest

from mrisynth import atomic
from mrisynth.errors import DiskFullError, MrisynthError


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_during_write_is_one_error_and_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    atomic.write_json(target, {"old": 1})
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(DiskFullError) as err:
        atomic.write_json(target, {"new": 2})
    assert isinstance(err.value, MrisynthError)
    assert str(target) in str(err.value) and "free" in str(err.value)
    assert target.read_text().strip().startswith('{\n  "old"')  # old content kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temp left


def test_foreign_full_disk_messages_are_recognised(tmp_path):
    with pytest.raises(DiskFullError), atomic.disk_full_as_error(tmp_path / "x.safetensors"):
        raise RuntimeError("I/O error: No space left on device (os error 28)")
    with pytest.raises(ValueError), atomic.disk_full_as_error(tmp_path / "x"):
        raise ValueError("boom")  # other errors pass through unchanged


def test_append_line_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(DiskFullError):
        atomic.append_line(tmp_path / "log.jsonl", "{}")


def test_stale_temps_are_removed_but_nothing_else(tmp_path):
    (tmp_path / ".net.safetensors.abc123.tmp").write_bytes(b"x")
    (tmp_path / "keep.tmp").write_bytes(b"x")  # not one of ours: no leading dot
    (tmp_path / "net.safetensors").write_bytes(b"x")
    removed = atomic.remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [".net.safetensors.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp", "net.safetensors"]
