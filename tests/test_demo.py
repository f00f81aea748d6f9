"""`mrisynth demo --quick`: the whole pipeline end to end on phantom data, offline, on CPU."""

from __future__ import annotations

import csv
import re

import pydicom
import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.cli.demo import QUICK, detector_metrics


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "seed000099.png").write_bytes(b"from an earlier, larger demo")
    (out / ".mrisynth-demo").write_text("")  # the earlier demo's marker
    res = CliRunner().invoke(cli, ["demo", "--quick", "--outdir", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    for n in range(1, 8):  # every step says what it does
        assert any(line.startswith(f"[{n}/7] ") for line in lines), res.output
    assert lines[-1].startswith("Report: ") and lines[-1].endswith("index.html")
    assert any(line.lstrip().startswith("tick 0 kimg") for line in lines), "no training progress"
    # the phantom's mask PNGs are named as what they are, as `mrisynth prepare` names them
    step2 = next(i for i, line in enumerate(lines) if line.startswith("[2/7] "))
    assert "PNG/JPEG images (e.g. CHAOS masks), not DICOM" in lines[step2 + 1], lines[step2 + 1]
    assert "not a DICOM file" not in res.output

    run_dir = next((out / "runs").iterdir())
    assert list(run_dir.glob("network-snapshot-*.safetensors"))
    assert (run_dir / "metric-intensity_hist64.jsonl").is_file()
    assert list(run_dir.glob("memorisation-*.json"))
    assert (run_dir / "metric-diversity64.jsonl").is_file() and (out / "data-holdout.zip").is_file()

    assert not (out / "samples" / "seed000099.png").exists()
    rows = list(csv.DictReader((out / "samples" / "manifest.csv").open()))
    assert {r["format"] for r in rows} == {"png", "dicom"} and len(rows) == 2 * QUICK.num_samples
    ds = pydicom.dcmread(out / "samples" / "seed000000.dcm")
    assert ds.SyntheticData == "YES" and ds.Rows == QUICK.resolution

    page_path = run_dir / "report" / "index.html"
    page = page_path.read_text()
    refs = re.findall(r'src="([^"]+)"', page)
    assert "fig4-real-vs-generated.png" in refs and "training-curves.png" in refs
    assert 'id="summary"' in page and "No copy test was run" not in page
    assert all((page_path.parent / ref).is_file() for ref in refs)


def test_reference_metrics_are_added_only_for_detectors_present(tmp_path, monkeypatch):
    monkeypatch.setenv("MRISYNTH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MRISYNTH_DETECTOR_DIR", str(tmp_path / "det"))
    assert detector_metrics(256) == []
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "vgg16.pt").write_bytes(b"stand-in")
    assert detector_metrics(256) == ["pr256_3_full"]
    (tmp_path / "det" / "inception-2015-12-05.pt").write_bytes(b"stand-in")
    assert detector_metrics(256) == ["fid256_full", "kid256_full", "pr256_3_full"]
