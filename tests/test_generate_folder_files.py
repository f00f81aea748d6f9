"""generate's manifest.csv and the files it names, read back by downstream and the reader study
through one reader (`generate.folder_files`): hostile folders (links leaving the folder, FIFOs,
huge or malformed manifests, path tricks in mask_file, huge PNGs) end in a reason, never in a
read outside the folder, a hang or unbounded memory."""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from downstream_data import phantom_set, write_generated, write_paired_zip
from mrisynth.cli import cli
from mrisynth.downstream.pairs import load_generated
from mrisynth.errors import InputError
from mrisynth.generate import folder_files
from mrisynth.generate.folder_files import plain_name, read_file, read_manifest
from mrisynth.readerstudy.sources import _without_masks


@pytest.fixture()
def synth(tmp_path):
    write_generated(tmp_path / "synth", phantom_set(range(8, 9), 16, 3))
    return tmp_path / "synth"


def _rows(folder, lines):
    (folder / "manifest.csv").write_text("\n".join(["file,format,mask_file", *lines]) + "\n")


def test_manifest_pairs_and_mask_names(tmp_path):
    assert read_manifest(tmp_path, "--synthetic") is None  # no manifest: none named
    _rows(tmp_path, ["a.png,png,a-mask.png", "a.dcm,dicom,a-seg.dcm", "b.png,png,"])
    got = read_manifest(tmp_path, "--synthetic")
    assert got.has_masks and got.pairs() == [("a.png", "a-mask.png"), ("b.png", None)]
    assert got.mask_names() == {"a-mask.png", "a-seg.dcm"}
    (tmp_path / "manifest.csv").write_text("name,score\nx.png,1\n")  # another tool's
    assert read_manifest(tmp_path, "--synthetic") is None
    (tmp_path / "manifest.csv").write_text("file,format\nx.png,png\n")  # an unpaired model's
    assert not read_manifest(tmp_path, "--synthetic").has_masks


@pytest.mark.parametrize("how", ["link", "fifo", "dir", "huge", "latin1", "csv", "rows"])
def test_unreadable_manifest_is_one_reason(tmp_path, monkeypatch, how):
    outside = tmp_path / "outside.csv"
    outside.write_text("file,format,mask_file\nx.png,png,x-mask.png\n")
    folder = tmp_path / "synth"
    folder.mkdir()
    path = folder / "manifest.csv"
    if how == "link":
        path.symlink_to(outside)
    elif how == "fifo":
        os.mkfifo(path)  # must not block
    elif how == "dir":
        path.mkdir()
    elif how == "huge":
        monkeypatch.setattr(folder_files, "MAX_FILE_BYTES", 100)
        _rows(folder, [f"s{i}.png,png,s{i}-mask.png" for i in range(20)])
    elif how == "latin1":
        path.write_bytes("file,mask_file\nsé.png,x\n".encode("latin-1"))
    elif how == "csv":
        path.write_text("file,mask_file\n" + '"' + "x" * 200_000 + '",m\n')  # over csv's limit
    else:
        monkeypatch.setattr(folder_files, "MAX_ROWS", 3)
        _rows(folder, ["a.png,png,"] * 4)
    reason = {"link": "symbolic link", "fifo": "not a regular file", "dir": "not a regular",
              "huge": "at most", "latin1": "not UTF-8", "csv": "malformed CSV",
              "rows": "more than 3 rows"}[how]  # fmt: skip
    with pytest.raises(InputError, match=reason) as err:
        read_manifest(folder, "--synthetic")
    msg = str(err.value)
    assert msg.startswith(f"--synthetic {path}") and "\n" not in msg and "remove" in msg


def test_plain_names_only():
    assert plain_name("seed000001-mask.png") and plain_name("é ü.png")
    for bad in ["../x.png", "/etc/x.png", "a/b.png", ".hidden.png", "x.dcm", "", "..", "a\\b.png",
                "x\n.png", "x" * 300 + ".png"]:  # fmt: skip
        assert not plain_name(bad), bad


def test_read_file_never_follows_links(tmp_path, monkeypatch):
    (tmp_path / "secret.png").write_bytes(b"outside")
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "l.png").symlink_to(tmp_path / "secret.png")
    (folder / "inner.png").write_bytes(b"x")
    (folder / "l2.png").symlink_to(folder / "inner.png")  # even inside: a link may be swapped
    assert read_file(folder, "absent.png") is None
    for name in ("l.png", "l2.png"):
        with pytest.raises(InputError, match="symbolic link"):
            read_file(folder, name)
    assert read_file(folder, "inner.png") == b"x"
    with pytest.raises(InputError, match="at most 0 bytes"):
        read_file(folder, "inner.png", limit=0)


def test_downstream_skips_pairs_that_leave_the_folder(synth, tmp_path, monkeypatch):
    """mask_file pointing outside (.., absolute, a link), absent, or a huge PNG: that pair is
    skipped with its reason, the others are used, nothing outside is read."""
    outside = tmp_path / "outside-mask.png"
    outside.write_bytes((synth / "seed000000-mask.png").read_bytes())
    (synth / "seed000001-mask.png").unlink()
    (synth / "seed000001-mask.png").symlink_to(outside)
    _rows(synth, ["seed000000.png,png,../outside-mask.png",
                  "seed000001.png,png,seed000001-mask.png", f"seed000002.png,png,{outside}",
                  "seed000002.png,png,seed000009-mask.png",
                  "seed000002.png,png,seed000002-mask.png"])  # fmt: skip
    got = load_generated(synth, 5)
    reasons = [r for _, r in got.skipped]
    assert len(got) == 1 and len(reasons) == 4
    assert "not a PNG in the folder" in reasons[0] and "symbolic link" in reasons[1]
    assert "not a PNG in the folder" in reasons[2] and "no such file" in reasons[3]
    monkeypatch.setattr("mrisynth.downstream.pairs.MAX_PNG_BYTES", 10)  # a huge PNG
    _rows(synth, ["seed000002.png,png,seed000002-mask.png"])
    with pytest.raises(InputError, match=r"none of its 1 pairs.*; at most 10 bytes"):
        load_generated(synth, 5)


def test_downstream_cli_refuses_a_linked_manifest(synth, tmp_path):
    real = write_paired_zip(tmp_path / "data.zip", phantom_set(range(1, 2), 16, 3, "real"))
    write_paired_zip(tmp_path / "data-holdout.zip", phantom_set(range(5, 6), 16, 3, "test"))
    (tmp_path / "m.csv").write_bytes((synth / "manifest.csv").read_bytes())
    (synth / "manifest.csv").unlink()
    (synth / "manifest.csv").symlink_to(tmp_path / "m.csv")
    res = CliRunner().invoke(cli, ["downstream", "--real", str(real), "--synthetic", str(synth),
                                   "--outdir", str(tmp_path / "ds"), "--steps", "1"])  # fmt: skip
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert res.output.startswith("Error: --synthetic") and "symbolic link" in res.output
    assert not (tmp_path / "ds").exists()


def test_reader_study_uses_the_same_reader(synth, tmp_path):
    names = sorted(p.name for p in synth.glob("*.png"))
    kept = _without_masks(synth, names)
    assert kept and not [n for n in kept if n.endswith("-mask.png")]
    os.replace(synth / "manifest.csv", tmp_path / "m.csv")
    os.mkfifo(synth / "manifest.csv")  # was ignored: masks drawn as images
    with pytest.raises(InputError, match=r"--synthetic .*manifest\.csv: not a regular file"):
        _without_masks(synth, names)
    assert np.all([(synth / n).is_file() for n in names])


def test_folders_without_pairs_say_what_to_do(tmp_path):
    """A DICOM-only output of a paired model and an unpaired model's output need other fixes."""
    for name, lines, hint in [
        ("dcm", ["seed000000.dcm,dicom,seed000000-seg.dcm"], "--format png into a new --outdir"),
        ("plain", ["seed000000.dcm,dicom,", "seed000000.png,png,"], "draws no masks"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        _rows(folder, lines)
        with pytest.raises(InputError, match=f"no image \\+ mask pairs .*{hint}"):
            load_generated(folder, 5)


def test_a_run_or_prepare_folder_as_synthetic_says_generate_first(synth):
    (synth / "network-snapshot-000000.008.safetensors").write_bytes(b"w")
    with pytest.raises(InputError, match=r"a training run, not generated .*`mrisynth generate"):
        load_generated(synth, 5)
    (synth / "network-snapshot-000000.008.safetensors").unlink()
    (synth / ".mrisynth-prepare").write_text("")
    with pytest.raises(InputError, match=r"a `mrisynth prepare` output, not generated"):
        load_generated(synth, 5)

