"""`mrisynth prepare -o FOLDER` never writes into someone else's folder that happens to hold a
manifest.csv: a `generate` output or a training archive folder used to pass as a prepare
output from before markers, and prepare removed the PNGs its manifest listed as 'stale'
(issue 12 audit: the newcomer who types the wrong -o loses generated images)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from tests.cli_errors import only_error_line

from mrisynth.cli import cli


def _folder(path, marker_file):
    path.mkdir()
    (path / "seed000000.png").write_bytes(b"generated")
    (path / "manifest.csv").write_text("file,format,seed\nseed000000.png,png,0\n")
    (path / marker_file).write_text("{}")
    return path


@pytest.mark.parametrize("marker_file", ["generation.json", "generation.partial.json",
                                         "dataset.json"])  # fmt: skip
def test_a_folder_with_someone_elses_manifest_is_refused(dicom_tree, tmp_path, marker_file):
    out = _folder(tmp_path / "out", marker_file)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    args = ["prepare", str(dicom_tree), "-o", str(out), "--size", "16"]
    line = only_error_line(CliRunner().invoke(cli, args))
    assert "is not a previous `mrisynth prepare` output" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_prepare_output_from_before_markers_is_still_ours(dicom_tree, tmp_path):
    out = tmp_path / "old"
    assert CliRunner().invoke(cli, ["prepare", str(dicom_tree), "-o", str(out), "--size", "16"]
                              ).exit_code == 0  # fmt: skip
    (out / ".mrisynth-prepare").unlink()  # as written before the marker existed
    res = CliRunner().invoke(cli, ["prepare", str(dicom_tree), "-o", str(out), "--size", "16"])
    assert res.exit_code == 0 and "unchanged" in res.output, res.output


def test_prepare_says_what_a_non_dicom_input_is(dicom_tree, tmp_path):
    zipped = tmp_path / "CHAOS_Train_Sets.zip"
    import zipfile

    with zipfile.ZipFile(zipped, "w") as z:
        z.write(next(dicom_tree.rglob("*.dcm")), "a.dcm")
    prepared = tmp_path / "prepared"
    assert CliRunner().invoke(cli, ["prepare", str(dicom_tree), "-o", str(prepared), "--size", "16"]
                              ).exit_code == 0  # fmt: skip
    for given, said in (
        (zipped, f"{zipped} is a ZIP archive: unzip it and give the folder"),
        (prepared, f"mrisynth dataset {prepared} -o train.zip"),
    ):
        args = ["prepare", str(given), "-o", str(tmp_path / "out"), "--size", "16"]
        line = only_error_line(CliRunner().invoke(cli, args))
        assert "no usable t1-in slices" in line and said in line, line


def test_demo_never_takes_the_quick_starts_data_folder(dicom_tree, tmp_path):
    """The quick start leaves data/phantom, data/prepared (prepare's marker) and data/train.zip;
    `demo --outdir data` took that for a demo from before the demo marker and deleted
    data/phantom (with real data: replaced the user's prepared slices)."""
    data = tmp_path / "data"
    args = ["prepare", str(dicom_tree), "-o", str(data / "prepared"), "--size", "16"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (data / "phantom").mkdir()
    (data / "phantom" / "mine.dcm").write_bytes(b"user data")
    (data / "train.zip").write_bytes(b"user archive")
    line = only_error_line(CliRunner().invoke(cli, ["demo", "--quick", "--outdir", str(data)]))
    assert "is not an earlier demo's" in line
    assert (data / "phantom" / "mine.dcm").read_bytes() == b"user data"
    assert not (data / ".mrisynth-demo").exists()


def test_a_huge_secret_file_is_refused_unread(dicom_tree, tmp_path, monkeypatch):
    big = tmp_path / "scan.dcm"  # a mistyped --patient-key-secret: some large file
    big.write_bytes(b"k" * 100_000)
    args = ["prepare", str(dicom_tree), "-o", str(tmp_path / "o"), "--size", "16",
            "--patient-key-secret", str(big)]  # fmt: skip
    line = only_error_line(CliRunner().invoke(cli, args))
    assert f"{big}: over 4096 bytes, not a patient-key secret" in line
    ok = tmp_path / "key"
    ok.write_text("0123456789abcdef" * 4 + "\n")
    res = CliRunner().invoke(cli, ["prepare", str(dicom_tree), "-o", str(tmp_path / "o"),
                                   "--size", "16", "--patient-key-secret", str(ok)])  # fmt: skip
    assert res.exit_code == 0, res.output
