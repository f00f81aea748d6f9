"""reader-study create --synthetic given NVIDIA's stylegan2-ada-pytorch run folder: one Error
line saying what it is and the way on (import-nvidia, then the snapshot; or generate)."""

from __future__ import annotations

from click.testing import CliRunner

from mrisynth.cli import cli
from readerstudy_data import write_real


def _create(tmp_path, synthetic):
    args = ["reader-study", "create", "--real", str(write_real(tmp_path / "real")),
            "--synthetic", str(synthetic), "--n-real", "2", "--n-synthetic", "2",
            "--outdir", str(tmp_path / "study")]  # fmt: skip
    return CliRunner().invoke(cli, args)


def test_an_nvidia_run_folder_says_import_nvidia_first(tmp_path):
    run = tmp_path / "00003-chaos-auto1"
    run.mkdir()
    (run / "training_options.json").write_text('{"training_set_kwargs": {}}')
    for kimg in (0, 200, 400):
        (run / f"network-snapshot-{kimg:06d}.pkl").write_bytes(b"\x80\x02}q\x00.")
    (run / "fakes000400.png").write_bytes(b"\x89PNG")  # NVIDIA's grids are no study images
    result = _create(tmp_path, run)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    said = lines[0]
    assert "NVIDIA stylegan2-ada-pytorch run folder" in said and "3 network-snapshot" in said
    assert f"mrisynth import-nvidia {run / 'network-snapshot-000400.pkl'}" in said
    assert "--synthetic SNAPSHOT.safetensors" in said and "mrisynth generate" in said
    assert "one run folder" not in said and "(`mrisynth train`)" not in said
    assert not (tmp_path / "study").exists()


def test_an_nvidia_snapshot_with_a_hostile_name_is_not_echoed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "network-snapshot-\x1b[2J.pkl").write_bytes(b"")
    result = _create(tmp_path, run)
    assert result.exit_code == 1 and "NVIDIA" in result.output
    assert "\x1b" not in result.output and "network-snapshot-NNNNNN.pkl" in result.output
