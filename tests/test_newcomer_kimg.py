"""A run shorter than a kimg (the quick start's 0.2) is labelled with its fraction in metric
records, the memorisation audit, generation.json, DICOM and the report (issue 12 item 8)."""

from __future__ import annotations

import json

import pydicom
import pytest
from click.testing import CliRunner
from tests.test_train import tiny, write_archive

from mrisynth import untrusted
from mrisynth.cli import cli
from mrisynth.training import checkpoint
from mrisynth.training.kimg import checked_kimg, kimg_number, rounded_kimg
from mrisynth.training.loop import train


@pytest.mark.parametrize(
    ("nimg", "kimg"),
    [(0, 0), (8, 0.008), (112, 0.112), (200, 0.2), (4000, 4), (4500, 4.5),
     (10**12 + 1, 10**9 + 0.001)],
)  # fmt: skip
def test_kimg_numbers_keep_the_fraction_and_whole_kimg_stay_ints(nimg, kimg):
    assert kimg_number(nimg) == kimg
    assert isinstance(kimg_number(nimg), int) == (nimg % 1000 == 0)
    assert rounded_kimg(nimg / 1000) == kimg
    assert rounded_kimg(kimg) == kimg


@pytest.mark.parametrize("bad", [True, "1", float("nan"), float("inf"), -0.001, 1e30, 0.0005])
def test_a_kimg_read_from_a_file_is_checked(bad):
    with pytest.raises(untrusted.BadValue):
        checked_kimg(bad, "kimg")
    assert checked_kimg(0.2, "kimg") == 0.2 and checked_kimg(4, "kimg") == 4


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("subkimg")
    data = write_archive(root / "discs", n=8)
    opts = tiny(data, root / "runs", kimg=0.016, tick=0.008, metrics=("body_area8",))
    return root, data, train(opts)


def test_metric_records_and_snapshot_info_carry_the_fraction(short_run):
    _, _, run = short_run
    lines = (run / "metric-body_area8.jsonl").read_text().splitlines()
    assert [json.loads(x)["kimg"] for x in lines] == [0.008, 0.016]  # was [0, 0]
    assert checkpoint.read_snapshot_info(run).kimg == 0.016
    log = (run / "log.txt").read_text()  # each value once per snapshot (was twice: item 9)
    assert log.count("body_area8_w1 =") == 2, log


def test_generate_and_report_show_the_fraction(short_run, monkeypatch):
    root, data, run = short_run
    monkeypatch.chdir(root)
    out = root / "synth"
    args = ["--network", str(run), "--outdir", str(out), "--seeds", "0", "--format", "dicom"]
    res = CliRunner().invoke(cli, ["generate", *args, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "generation.json").read_text())["kimg"] == 0.016
    dcm = pydicom.dcmread(next(out.rglob("*.dcm")))
    assert "kimg 0.016;" in dcm.DerivationDescription
    res = CliRunner().invoke(cli, ["metrics", "--network", str(run), "--data", str(data),
                                   "--metrics", "memorisation8"])  # fmt: skip
    assert res.exit_code == 0, res.output
    audit = json.loads(next(run.glob("memorisation-*000.016.json")).read_text())
    assert audit["kimg"] == 0.016
    res = CliRunner().invoke(cli, ["report", str(run), "--data", str(data), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    page = (run / "report" / "index.html").read_text()
    assert "Generated at 0.016 kimg" in page and "at 0.016 kimg" in page
    assert "Generated at 0 kimg" not in page and " at 0 kimg" not in page
