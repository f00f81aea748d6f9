"""A full disk during `dataset` and `generate`: one `Error:` line, no half-written output that
looks valid, and (generate) a re-run after freeing space resumes into its own partial output."""

from __future__ import annotations

import csv
import zipfile

import pytest
from click.testing import CliRunner

from hostile_archives import good_png
from mrisynth.cli import cli
from mrisynth.generate.output_folder import PLAN_NAME
from mrisynth.training.checkpoint import save_snapshot
from small_disk import small_disk
from test_generate import tiny_generator

MODES = ["tmpfs-or-injected", "injected"]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    G = tiny_generator()
    return save_snapshot(run / "network-snapshot-000012.safetensors", G=G, D=None, G_ema=G,
                         state={"kimg": 12})


def _error_line(res) -> str:
    assert res.exit_code == 1 and (res.exception is None or isinstance(res.exception, SystemExit))
    lines = [x for x in res.output.splitlines() if x.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("out_name", ["data.zip", "data"])
def test_dataset_on_a_full_disk(tmp_path, mode, out_name):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"img{i:03d}.png").write_bytes(good_png(i, size=32))  # ~1.2 KB each
    with small_disk(tmp_path / "disk", 16, injected=mode == "injected") as disk:
        res = CliRunner().invoke(cli, ["dataset", str(src), "-o", str(disk.path / out_name)])
        line = _error_line(res)
        assert "no space left" in line and out_name in line
        assert list(disk.path.iterdir()) == []  # nothing half-written, no temp left
        disk.grow(1024)
        res = CliRunner().invoke(cli, ["dataset", str(src), "-o", str(disk.path / out_name)])
        assert res.exit_code == 0, res.output
        assert "packed 40 images" in res.output


def _generate(snapshot, out, seeds="0-39"):
    return CliRunner().invoke(cli, ["generate", "--network", str(snapshot), "--outdir", str(out),
                                    "--seeds", seeds, "--format", "png", "--format", "dicom",
                                    "--batch", "8", "--no-progress", "--device", "cpu"])


@pytest.mark.parametrize("mode", MODES)
def test_generate_on_a_full_disk_resumes(snapshot, tmp_path, mode):
    # At the depth of disk/out: generation.json records the snapshot relative to the folder.
    reference = tmp_path / "ref" / "out"
    assert _generate(snapshot, reference).exit_code == 0
    with small_disk(tmp_path / "disk", 40, injected=mode == "injected") as disk:
        out = disk.path / "out"
        line = _error_line(_generate(snapshot, out))
        assert "no space left" in line and "run the same command again" in line
        assert (out / PLAN_NAME).is_file()  # marked unfinished ...
        assert not (out / "manifest.csv").exists() and not (out / "generation.json").exists()
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # ... no temp left
        partial = {p.name: p.stat().st_ino for p in out.iterdir() if p.name != PLAN_NAME}
        assert 0 < len(partial) < 80
        disk.grow(2048)
        res = _generate(snapshot, out)
        assert res.exit_code == 0, res.output
        names = sorted(p.name for p in out.iterdir())
        assert names == sorted(p.name for p in reference.iterdir()) and PLAN_NAME not in names
        for name in names:
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
        # resumed: the files of the interrupted run were kept, not written again
        assert all((out / n).stat().st_ino == ino for n, ino in partial.items())
        rows = list(csv.DictReader((out / "manifest.csv").open()))
        assert len(rows) == 80


def test_generate_refuses_to_mix_runs(snapshot, tmp_path):
    out = tmp_path / "out"
    with small_disk(tmp_path / "disk", 12, injected=True) as disk:
        out = disk.path / "out"
        _error_line(_generate(snapshot, out))
        line = _error_line(_generate(snapshot, out, seeds="100-139"))  # other seeds: not ours
        assert "unfinished generation with other options" in line
    assert _generate(snapshot, out).exit_code == 0  # the same command finishes it
    line = _error_line(_generate(snapshot, out, seeds="5-6"))
    assert "another generation" in line


def test_zip_written_on_full_disk_is_never_left_behind(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"img{i}.png").write_bytes(good_png(i, size=32))
    with small_disk(tmp_path / "disk", 4, injected=True) as disk:
        _error_line(CliRunner().invoke(cli, ["dataset", str(src), "-o",
                                             str(disk.path / "d.zip")]))
        assert not (disk.path / "d.zip").exists()
    assert zipfile.is_zipfile(src / "img0.png") is False  # input untouched (still a PNG)
