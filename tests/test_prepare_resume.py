"""prepare and a full disk or a kill: one `Error:` line, no manifest that looks valid beside PNGs
it does not describe, and the same command run again finishes the job (own folder recognised
by its marker, never by guessing)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.data import prepare_folder, series_images
from mrisynth.data.phantom_dicom import write_phantom_tree

_PROCESS_SERIES = series_images.process_series


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    write_phantom_tree(root, 2, seed=8, matrix_sizes=(32,), num_slices=(5, 6), t2spir=False)
    return root


def _prepare(tree, out, *extra):
    args = ["prepare", str(tree), "-o", str(out), "--size", "16", "--no-progress", *extra]
    return CliRunner().invoke(cli, args)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _visible(folder):
    return {k: v for k, v in _files(folder).items() if not k.startswith(".")}


def _full_after(monkeypatch, n_ok):
    """The disk fills up after `n_ok` more fsyncs (what atomic writes call last)."""
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > n_ok:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _clean_run(tree, tmp_path, out):
    """The same job done in one go elsewhere, with the same patient-key secret."""
    ref = tmp_path / "ref"
    res = _prepare(tree, ref, "--patient-key-secret", str(out / ".mrisynth-secret"))
    assert res.exit_code == 0, res.output
    return _visible(ref)


def test_full_disk_mid_run_then_rerun_finishes(tree, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _full_after(monkeypatch, 6)  # marker, secret, then a few PNGs
    res = _prepare(tree, out)
    monkeypatch.undo()
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert "no space left on the disk while writing" in lines[0] and "MB more" in lines[0]
    assert not (out / "manifest.csv").exists() and not (out / "report.json").exists()
    assert json.loads((out / ".mrisynth-prepare").read_text())["complete"] is False
    assert "did not finish" in prepare_folder.unfinished(out)
    assert list(out.glob(".*.tmp")) == []  # the failed write left no temp file
    res = _prepare(tree, out)  # space freed: the same command again
    assert res.exit_code == 0, res.output
    assert json.loads((out / ".mrisynth-prepare").read_text())["complete"] is True
    assert prepare_folder.unfinished(out) is None
    assert _visible(out) == _clean_run(tree, tmp_path, out)


def test_not_enough_space_is_refused_before_writing(tree, tmp_path, monkeypatch):
    out = tmp_path / "out"
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(prepare_folder.shutil, "disk_usage", lambda _p: usage._replace(free=10_000))
    res = _prepare(tree, out)
    assert res.exit_code == 1
    assert "Error:" in res.output and "not enough free space: prepare needs" in res.output
    assert "MB are free" in res.output and list(out.glob("*.png")) == []


def test_changed_rerun_hit_by_full_disk_leaves_no_stale_manifest(tree, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _prepare(tree, out).exit_code == 0
    _full_after(monkeypatch, 3)
    res = _prepare(tree, out, "--size", "32")  # every PNG changes
    monkeypatch.undo()
    assert res.exit_code == 1 and "no space left" in res.output
    # some PNGs are 32 px now, some still 16: no manifest may vouch for that mix
    assert not (out / "manifest.csv").exists()
    assert _prepare(tree, out, "--size", "32").exit_code == 0
    assert (out / "manifest.csv").is_file()


def test_killed_run_leftovers_are_cleaned_on_rerun(tree, tmp_path):
    out = tmp_path / "out"
    assert _prepare(tree, out).exit_code == 0
    clean = _visible(out)
    # what a SIGKILL mid-run leaves: marker 'incomplete', no manifest/report, a temp file,
    # a PNG of an earlier configuration that this run does not produce
    (out / ".mrisynth-prepare").write_text('{"complete": false}\n')
    (out / "manifest.csv").unlink()
    (out / "report.json").unlink()
    (out / ".p0123456789_t1_in_01234567_000.png.abc.tmp").write_bytes(b"half")
    (out / "p0123456789_t1_in_01234567_000.png").write_bytes(b"old run")
    res = _prepare(tree, out)
    assert res.exit_code == 0, res.output
    assert _visible(out) == clean
    assert not list(out.glob("*.tmp"))


def test_only_own_folders_are_reused(tree, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "p0123456789_t1_in_01234567_000.png").write_bytes(b"looks like ours")
    res = _prepare(tree, foreign)
    assert res.exit_code == 1 and "not a previous `mrisynth prepare` output" in res.output
    assert _files(foreign) == {"p0123456789_t1_in_01234567_000.png": b"looks like ours"}
    started = tmp_path / "started"  # killed right after the marker: still ours
    started.mkdir()
    (started / ".mrisynth-prepare").write_text('{"complete": false}\n')
    assert _prepare(tree, started).exit_code == 0


def _die_in_patient_2(series, opts):
    """A decoder that kills its whole process (as a Rust abort or the OOM killer would)."""
    if any("/MR/2/" in sl.path for sl in series.slices):
        os._exit(134)
    return _PROCESS_SERIES(series, opts)


def test_a_worker_process_dying_skips_its_series_only(tree, tmp_path, monkeypatch):
    # worker processes are forked, so they see the patched function
    monkeypatch.setattr(series_images, "process_series", _die_in_patient_2)
    out = tmp_path / "out"
    res = _prepare(tree, out, "--workers", "2", "--keep-source-paths")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    crashed = [s for s in report["skipped"] if "crashed its worker process" in s["reason"]]
    assert len(crashed) >= 5 and all("/MR/2/" in s["source"] for s in crashed)
    rows = (out / "manifest.csv").read_text().splitlines()[1:]
    assert len(rows) >= 5 and all("/MR/1/" in row for row in rows)
