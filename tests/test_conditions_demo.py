"""`mrisynth demo --quick --cond`: a position-conditional model end to end, on CPU."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.data.labels import archive_class_names


def test_demo_cond_trains_and_reports_per_position(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["demo", "--quick", "--cond", "--outdir", str(out),
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "slice-position bins" in res.output
    names = archive_class_names(ImageArchive(out / "data.zip"))
    assert names == ["pos0.00-0.25", "pos0.25-0.50", "pos0.50-0.75", "pos0.75-1.00"]
    run_dir = next((out / "runs").iterdir())
    assert run_dir.name.endswith("demo-cond")
    options = json.loads((run_dir / "training_options.json").read_text())
    assert options["c_dim"] == 4 and options["classes"] == names
    rec = json.loads((run_dir / "metric-faithfulness64.jsonl").read_text().splitlines()[-1])
    assert {"faithfulness64_acc_gen", "faithfulness64_acc_real"} <= set(rec["results"])
    sampled = json.loads((out / "samples" / "generation.json").read_text())
    assert sampled["sampling"]["class_idx"] == 2  # position 0.5 of 4 bins
    page = (run_dir / "report" / "index.html").read_text()
    refs = re.findall(r'src="([^"]+)"', page)
    assert "classes.png" in refs and "fig4-real-vs-generated.png" in refs
    assert all((run_dir / "report" / f"class-{i:02d}.png").is_file() for i in range(4))
