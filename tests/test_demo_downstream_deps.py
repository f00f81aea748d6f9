"""`mrisynth demo --downstream` checks its optional dependency before it trains."""

from __future__ import annotations

from click.testing import CliRunner

from mrisynth.cli import cli


def test_demo_downstream_without_highdicom_stops_before_training(tmp_path, monkeypatch):
    """scripts/install.sh installs no highdicom; the paired demo writes DICOM SEG masks in
    step 6, so it must say so before minutes of training, not after."""
    import importlib.util

    real_find = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "highdicom" else real_find(name, *a),
    )
    res = CliRunner().invoke(cli, ["demo", "--quick", "--downstream", "--outdir",
                                   str(tmp_path / "d")])  # fmt: skip
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert "needs highdicom: pip install 'mrisynth[dicom-seg]'" in res.output
    assert not (tmp_path / "d").exists()
