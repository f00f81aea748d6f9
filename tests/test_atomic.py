"""Atomic writes: a full disk is one DiskFullError naming the file; nothing half-written stays."""

from __future__ import annotations

import errno
import os

import pytest

from mrisynth import atomic
from mrisynth.errors import ConfigError, DiskFullError, MrisynthError


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


def _planted(tmp_path, name="log.txt"):
    """A run folder whose `name` links to a file outside it."""
    run, outside = tmp_path / "run", tmp_path / "precious.txt"
    run.mkdir()
    outside.write_text("keep me\n")
    (run / name).symlink_to(outside)
    return run / name, outside


@pytest.mark.parametrize(
    "write",
    [
        lambda p: atomic.append_line(p, "{}"),
        lambda p: atomic.write_json(p, {}),
        lambda p: atomic.write_bytes(p, b"x"),
        lambda p: atomic.open_append(p),
    ],
    ids=["append_line", "write_json", "write_bytes", "open_append"],
)
def test_a_link_where_we_write_is_refused_and_its_target_untouched(tmp_path, write):
    link, outside = _planted(tmp_path, "stats.jsonl")
    with pytest.raises(ConfigError, match=r"stats\.jsonl: not a plain file but a symbolic link"):
        write(link)
    assert outside.read_text() == "keep me\n" and link.is_symlink()  # neither followed nor replaced
    dangling = tmp_path / "run" / "metric-fid50k_full.jsonl"
    dangling.symlink_to(tmp_path / "created-outside.jsonl")
    with pytest.raises(ConfigError, match="symbolic link"):
        write(dangling)
    assert not (tmp_path / "created-outside.jsonl").exists()


def test_a_link_planted_after_the_check_is_refused_by_the_open(tmp_path, monkeypatch):
    link, outside = _planted(tmp_path)
    monkeypatch.setattr(atomic, "_refuse_special", lambda path: None)  # the race: check passed
    with pytest.raises(ConfigError, match="symbolic link"):
        atomic.append_line(link, "line")
    assert outside.read_text() == "keep me\n"


def test_a_fifo_or_folder_is_never_appended_to(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    for name in ("fifo", "folder"):
        with pytest.raises(ConfigError, match="not a file"):
            atomic.append_line(tmp_path / name, "x")


def test_a_folder_the_user_names_may_be_a_link_the_files_in_it_may_not(tmp_path):
    """Parent-directory case: a run folder reached through a link the user typed (an output
    on another disk) is written as usual; a link inside it where we would write (here one to a
    folder) is not followed, whichever way the run folder is reached."""
    disk = tmp_path / "other-disk" / "run"
    disk.mkdir(parents=True)
    (tmp_path / "run").symlink_to(disk, target_is_directory=True)
    atomic.append_line(tmp_path / "run" / "stats.jsonl", "{}")
    atomic.write_json(tmp_path / "run" / "opts.json", {})
    assert (disk / "stats.jsonl").read_text() == "{}\n" and (disk / "opts.json").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (disk / "sub").symlink_to(elsewhere, target_is_directory=True)
    for target in (disk / "sub", tmp_path / "run" / "sub"):
        with pytest.raises(ConfigError, match="symbolic link"):
            atomic.append_line(target, "{}")
    assert list(elsewhere.iterdir()) == []


def test_the_run_log_is_never_opened_through_a_link(tmp_path):
    from mrisynth.training.run_files import attach_log_file

    link, outside = _planted(tmp_path)
    with pytest.raises(ConfigError, match=r"log\.txt: not a plain file"):
        attach_log_file(link)
    assert outside.read_text() == "keep me\n"
