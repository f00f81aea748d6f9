"""`mrisynth dataset` handed the DICOM tree instead of prepare's output says that `prepare`
comes first (issue 12 item 5), without reading more than the first files of a big tree."""

from __future__ import annotations

import os

import numpy as np
from click.testing import CliRunner
from PIL import Image
from tests.cli_errors import only_error_line

from mrisynth.cli import cli
from mrisynth.data import source_kind


def one_error(args) -> str:
    return only_error_line(CliRunner().invoke(cli, args))


def test_a_dicom_tree_is_not_a_prepare_output(dicom_tree, tmp_path):
    line = one_error(["dataset", str(dicom_tree), "-o", str(tmp_path / "d.zip")])
    assert f"{dicom_tree}: a DICOM tree" in line and "not a `prepare` output" in line
    assert f"mrisynth prepare {dicom_tree} -o PREPARED" in line and "side" not in line
    assert not (tmp_path / "d.zip").exists()


def test_dicom_without_a_suffix_is_found_by_its_magic(dicom_tree, tmp_path):
    src = next(dicom_tree.rglob("*.dcm"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "IM0001").write_bytes(src.read_bytes())
    os.mkfifo(tmp_path / "in" / "a-fifo")  # looked past, never opened
    assert source_kind.first_dicom(tmp_path / "in") == tmp_path / "in" / "IM0001"
    assert "a DICOM tree" in one_error(["dataset", str(tmp_path / "in"), "-o", "x.zip"])


def test_the_search_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(source_kind, "MAX_LOOKED_AT", 3)
    for i in range(5):
        (tmp_path / f"{i}.txt").write_text("x")
    (tmp_path / "z.dcm").write_bytes(b"")  # sorted after the 3 files it may look at
    assert source_kind.first_dicom(tmp_path) is None


def test_unprepared_pngs_get_the_hint_and_prepared_ones_pack(tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    for i, side in enumerate((16, 72)):
        Image.fromarray(np.zeros((side, side), np.uint8)).save(odd / f"{i}.png")
    line = one_error(["dataset", str(odd), "-o", str(tmp_path / "o.zip")])
    assert "1.png" in line and "no manifest.csv, so it is not a `prepare` output" in line
    (odd / "1.png").unlink()  # a plain folder of valid PNGs (NVIDIA style) still packs
    res = CliRunner().invoke(cli, ["dataset", str(odd), "-o", str(tmp_path / "o.zip")])
    assert res.exit_code == 0, res.output
