"""Archives as untrusted input: every hostile archive gives one `Error:` line, writes nothing
(inside or outside the output), leaves the input untouched, and stays within bounded memory."""

import json
import os
import stat
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hostile_archives import (
    DATASET_JSON_CASES,
    crafted_png,
    good_png,
    hostile_cases,
    png_bytes,
)
from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.data.png import MAX_DECODED_BYTES, decode_png, read_png_header
from mrisynth.errors import InputError
from mrisynth.hashing import sha256_file
from mrisynth.imaging import encode_png

ALL_CASES = sorted(hostile_cases(Path("/unused")))
MAY_SUCCEED = {"png-idat-bomb"}  # a valid 16x16 image with trailing data: bounded, may be read


def _digest(path: Path) -> list[tuple[str, str]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [(str(p), sha256_file(p) if p.stat().st_size < 2**26 else str(p.stat())) for p in files]


@pytest.mark.parametrize("case", ALL_CASES)
@pytest.mark.parametrize("out_name", ["out", "out.zip"])
def test_hostile_archive_is_refused_cleanly(tmp_path, case, out_name):
    source = hostile_cases(tmp_path)[case]()
    before = _digest(source)
    out = tmp_path / "work" / out_name
    res = CliRunner().invoke(cli, ["dataset", str(source), "-o", str(out)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    if case in MAY_SUCCEED and res.exit_code == 0:
        assert ImageArchive(out).resolution == 16
    else:
        assert res.exit_code == 1, res.output
        assert res.output.startswith("Error: ") and res.output.count("\n") == 1, res.output
        assert not out.exists()
    assert _digest(source) == before  # the input is never modified
    outside = [p for p in tmp_path.rglob("outside.png")] + list(tmp_path.parent.glob("outside*"))
    assert not outside  # zip-slip: nothing written outside OUT
    assert not list((tmp_path / "work").glob(".*")) if (tmp_path / "work").exists() else True


@pytest.mark.parametrize("key", sorted(DATASET_JSON_CASES))
def test_hostile_dataset_json_names_the_file(tmp_path, key):
    source = hostile_cases(tmp_path)[f"json-{key}"]()
    with pytest.raises(InputError, match=r"dataset\.json"):
        ImageArchive(source)


def test_valid_labels_still_load(tmp_path):
    names = ["img0.png", "img1.png"]
    for labels, shape in (([0, 2], (2, 3)), ([[0.5, 1], [1, 2.5]], (2, 2))):
        path = tmp_path / f"ok{len(shape)}{labels[0]!r:.1}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for i, n in enumerate(names):
                zf.writestr(n, good_png(i))
            zf.writestr("dataset.json", json.dumps({"labels": [list(p) for p in zip(names, labels,
                                                                                   strict=True)],
                                                    "mrisynth": {"other": 1}}))
        assert ImageArchive(path).labels.shape == shape


def test_png_header_is_checked_before_decoding():
    header = read_png_header(good_png(0, size=16), "x.png")
    assert (header.width, header.height, header.channels) == (16, 16, 1)
    bomb = crafted_png(100000, 100000, b"")
    with pytest.raises(InputError, match=r"100000x100000.*limit is 64 MiB"):
        decode_png(bomb, "bomb.png")
    side = int((MAX_DECODED_BYTES // 3) ** 0.5) + 1  # just over the limit as RGB
    with pytest.raises(InputError, match="limit"):
        read_png_header(crafted_png(side, side, b"", colour=2), "rgb.png")
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(png_bytes(rgb), "ok.png"), rgb[:, :, ::-1]
                                  .transpose(2, 0, 1))


_PEAK_SCRIPT = """
import resource, sys
from click.testing import CliRunner
from mrisynth.cli import cli

def peak_mib():  # VmHWM is reset at exec; ru_maxrss may carry pytest's high-water mark
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024

import cv2, numpy  # noqa: F401  (in the baseline: every run loads them)
base = peak_mib()
res = CliRunner().invoke(cli, ["dataset", sys.argv[1], "-o", sys.argv[2]])
print(res.exit_code, base, peak_mib())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("case", ["zip-lying-member", "png-idat-bomb", "png-ihdr-100000",
                                  "folder-1gb-json"])
def test_bombs_stay_in_bounded_memory(tmp_path, case):
    """Peak resident memory of a fresh process packing the bomb (VmHWM, MiB)."""
    source = hostile_cases(tmp_path)[case]()
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(source), str(tmp_path / "o.zip")],
        capture_output=True, text=True, timeout=120, check=True,
    )
    code, base, peak = (int(v) for v in out.stdout.split())
    assert code in (0, 1) and peak - base < 100, (case, base, peak)


@pytest.mark.parametrize("kind", ["fifo", "fifo.zip", "link", "file-parent", "file-parent.zip"])
def test_unusable_output_paths_are_refused_and_left_alone(tmp_path, kind):
    """An output that is a pipe, device or link is refused, never moved away or replaced
    (`-o /dev/null` once replaced the device node with a folder)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "img0.png").write_bytes(good_png(0))
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "target").mkdir()
    paths = {"fifo": tmp_path / "fifo", "fifo.zip": tmp_path / "fifo.zip",
             "link": tmp_path / "link", "file-parent": tmp_path / "afile" / "out",
             "file-parent.zip": tmp_path / "afile" / "out.zip"}
    out = paths[kind]
    if kind.startswith("fifo"):
        os.mkfifo(out)
    elif kind == "link":
        out.symlink_to(tmp_path / "target", target_is_directory=True)
    res = CliRunner().invoke(cli, ["dataset", str(src), "-o", str(out)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1
    assert (tmp_path / "afile").read_text() == "mine"
    if kind.startswith("fifo"):
        assert stat.S_ISFIFO(out.lstat().st_mode)
    if kind == "link":
        assert out.is_symlink() and not any((tmp_path / "target").iterdir())


@pytest.mark.parametrize("name", ["pipe.zip", "pipe"])
def test_a_pipe_as_source_is_refused_without_blocking(tmp_path, name):
    os.mkfifo(tmp_path / name)
    res = subprocess.run([sys.executable, "-m", "mrisynth", "dataset", str(tmp_path / name), "-o",
                          str(tmp_path / "o.zip")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stderr.startswith("Error: ") and "special file" in res.stderr


def test_read_all_refuses_what_cannot_fit(tmp_path, monkeypatch):
    """200 tiny PNGs that each decode to 1 MiB: read_all checks the total first."""
    import mrisynth.data.archive as archive_mod

    blank = crafted_png(1024, 1024, zlib.compress(bytes(1025 * 1024), 9))
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as zf:
        for i in range(200):
            zf.writestr(f"img{i:04d}.png", blank)
    arc = ImageArchive(tmp_path / "many.zip")
    monkeypatch.setattr(archive_mod, "_available_memory", lambda: 128 * 2**20)
    with pytest.raises(InputError, match=r"200 images of 1x1024x1024 need 0\.2 GiB"):
        arc.read_all()


@pytest.mark.parametrize(
    "args",
    [["--label", "slice-fraction"], ["--labels", "position:2"], ["--masks"], []],
    ids=["label", "labels", "masks", "patient-keys"],
)
def test_a_malformed_manifest_is_one_error_line_for_every_reader(tmp_path, args):
    """csv's own error (here a field over its 128 KiB limit) becomes one `Error:` line naming
    manifest.csv in each reader of prepare's manifest (read_manifest is where all pass)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(encode_png(np.zeros([1, 8, 8], np.uint8)))
    (src / "manifest.csv").write_text("file,patient_key,mask_file\na.png," + "k" * 200_000 + ",\n")
    res = CliRunner().invoke(
        cli, ["dataset", str(src), "-o", str(tmp_path / "out.zip"),
              "--holdout-patients", "1", *args],
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1, res.output
    assert "manifest.csv: malformed CSV (field larger than field limit" in res.output
    assert not (tmp_path / "out.zip").exists()


def test_a_windows_made_zip_says_how_to_use_it(tmp_path):
    # PowerShell 5's Compress-Archive stores folder names with backslashes: still refused (a
    # backslash may hide '..' from a POSIX check), but the line says what to do instead.
    src = tmp_path / "win.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("images\\img0.png", good_png(0))
    res = CliRunner().invoke(cli, ["dataset", str(src), "-o", str(tmp_path / "out.zip")])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "backslash" in res.output and "unzip it and pass the folder" in res.output
    assert "unsafe" not in res.output and not (tmp_path / "out.zip").exists()
