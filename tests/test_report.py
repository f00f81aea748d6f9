"""mrisynth report: figures, Table 1, HTML/Markdown from run folders in the contract formats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.config import resolve_preset
from mrisynth.generate.images import read_png
from mrisynth.imaging import encode_png
from mrisynth.networks import build_generator, network_config_from_preset
from mrisynth.report.panel import nearest_by_ncc
from mrisynth.report.runfiles import read_run
from mrisynth.report.tables import best_table, collect_series
from mrisynth.training.checkpoint import save_snapshot

KIMGS = [0, 4, 8]
PRECISION = [0.10, 0.55, 0.40]
RECALL = [0.00, 0.05, 0.12]
FID = [300.0, 60.0, 45.0]
KID = [0.30, 0.02, 0.03]


def _jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _metric_records(name: str, results: list[dict], num_gen: int, exact: bool) -> list[dict]:
    det = {"name": "inception-2015-12-05.pt" if exact else "standin-inception", "sha256": "0"}
    return [
        {
            "metric": name,
            "snapshot": f"network-snapshot-{k:06d}.safetensors",
            "kimg": k,
            "results": r,
            "num_gen": num_gen,
            "num_real": 20,
            "detector": det,
            "reference_exact": exact,
            "timestamp": 1.0 + k,
        }
        for k, r in zip(KIMGS, results, strict=True)
    ]


def _make_run(root: Path, with_metrics: bool) -> Path:
    """A run folder as training + metrics write it: options, stats, grids, snapshots, metrics."""
    run = root / "00000-tiny"
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = root / "archive"
    data.mkdir()
    for i in range(6):
        (data / f"img{i:04d}.png").write_bytes(
            encode_png(rng.integers(0, 256, (1, 16, 16), dtype=np.uint8))
        )
    (run / "training_options.json").write_text(
        json.dumps(
            {
                "user": {"data": str(data), "cfg": "tiny", "target": 0.6, "kimg": 8, "aug": "ada"},
                "resolution": 16,
                "batch": 16,
            }
        )
    )
    ticks = []
    for t, kimg in enumerate(np.linspace(0, 8, 9)):
        ticks.append(
            {
                "Progress/tick": {"num": 1, "mean": t, "std": 0},
                "Progress/kimg": {"num": 1, "mean": float(kimg), "std": 0},
                "Progress/augment": {"num": 1, "mean": 0.01 * t, "std": 0},
                "Loss/G/loss": {"num": 8, "mean": 1.0 + 0.1 * t, "std": 0.1},
                "Loss/D/loss": {"num": 8, "mean": 1.2 - 0.05 * t, "std": 0.1},
                "Loss/r1_penalty": {"num": 8, "mean": 0.1, "std": 0.0},
                "Loss/signs/real": {"num": 8, "mean": 0.5 + 0.02 * t, "std": 0.1},
                "timestamp": 100.0 + t,
            }
        )
    _jsonl(run / "stats.jsonl", ticks)
    with (run / "stats.jsonl").open("a") as f:
        f.write('{"Progress/kimg": {"mean": 9')  # a torn last line from a killed run
    for k in KIMGS:
        (run / f"fakes-{k:06d}.png").write_bytes(
            encode_png(rng.integers(0, 256, (1, 32, 32), dtype=np.uint8))
        )
    (run / "reals.png").write_bytes(encode_png(np.zeros((1, 32, 32), np.uint8)))
    torch.manual_seed(0)
    G = build_generator(network_config_from_preset(resolve_preset("tiny", 16), 1, 0))
    for k in KIMGS:
        save_snapshot(
            run / f"network-snapshot-{k:06d}.safetensors", G=G, D=None, G_ema=G, state={"kimg": k}
        )
    if with_metrics:
        _jsonl(
            run / "metric-fid2k_full.jsonl",
            _metric_records("fid2k_full", [{"fid2k_full": v} for v in FID], 2000, True),
        )
        _jsonl(
            run / "metric-kid2k_full.jsonl",
            _metric_records(
                "kid2k_full", [{"kid2k_full": v, "kid2k_full_std": 0.001} for v in KID], 2000, True
            ),
        )
        _jsonl(
            run / "metric-pr2k3_full.jsonl",
            _metric_records(
                "pr2k3_full",
                [
                    {"pr2k3_full_precision": p, "pr2k3_full_recall": r}
                    for p, r in zip(PRECISION, RECALL, strict=True)
                ],
                2000,
                False,
            ),
        )
        _jsonl(
            run / "metric-intensity_hist.jsonl",
            [
                {
                    "metric": "intensity_hist",
                    "snapshot": f"network-snapshot-{k:06d}.safetensors",
                    "kimg": k,
                    "results": {"intensity_hist_l1": 1.0 / (k + 1), "body_area_diff": 0.1},
                    "num_gen": 64,
                    "num_real": 6,
                    "detector": None,
                    "reference_exact": True,
                    "timestamp": 1.0,
                }
                for k in KIMGS
            ],
        )
        _jsonl(
            run / "metric-frd64.jsonl",
            [
                {
                    "metric": "frd64",
                    "snapshot": "network-snapshot-000008.safetensors",
                    "kimg": 8,
                    "results": {"frd64": 12.5},
                    "num_gen": 64,
                    "num_real": 6,
                    "detector": None,
                    "reference_exact": False,
                    "timestamp": 1.0,
                }
            ],
        )
        q = {"min": 0.2, "p05": 0.3, "median": 0.41, "p95": 0.6, "max": 0.63, "mean": 0.4}
        (run / "memorisation-network-snapshot-000008.json").write_text(
            json.dumps(
                {
                    "metric": "memorisation64",
                    "snapshot": "network-snapshot-000008.safetensors",
                    "kimg": 8,
                    "num_gen": 64,
                    "num_train": 6,
                    "copy_ncc": 0.97,
                    "pixel": {
                        "nearest_ncc": q,
                        "nearest_distance": q,
                        "ratio": q,
                        "histogram": {"bin_edges": [0.0, 0.5, 1.0], "counts": [10, 54]},
                    },
                    "feature": None,
                    "num_flagged": 1,
                    "flagged_fraction": 1 / 64,
                    "flagged": [
                        {
                            "gen_index": 3,
                            "seed": 3,
                            "train_index": 2,
                            "train_name": "img0002.png",
                            "ncc": 0.985,
                        }
                    ],
                    "holdout": None,
                    "a_future_key": {"x": [1, 2]},
                }
            )
        )
        (run / "memorisation-network-snapshot-000008.png").write_bytes(
            encode_png(np.zeros((1, 16, 32), np.uint8))
        )
        (run / "memorisation-network-snapshot-000004.json").write_text(
            json.dumps(
                {"snapshot": "network-snapshot-000004.safetensors", "kimg": 4, "num_flagged": 9}
            )
        )
    return run


def _referenced_files(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def test_best_table_picks_max_precision_recall_and_min_fid_kid(tmp_path):
    run = read_run(_make_run(tmp_path, with_metrics=True))
    rows = {r.category: r for r in best_table(collect_series(run.metrics))}
    assert rows["precision"].kimg == 4 and rows["recall"].kimg == 8
    assert rows["fid"].kimg == 8 and rows["kid"].kimg == 4
    assert rows["precision"].values == {
        "precision": 0.55,
        "recall": 0.05,
        "fid": 60.0,
        "kid": 0.02,
        "offline": None,  # frd64 was evaluated at 8 kimg only
    }
    assert rows["offline"].kimg == 8 and rows["offline"].values["fid"] == 45.0
    assert len(run.stats) == 9  # the torn line was skipped


def test_report_with_metrics(tmp_path):
    run_dir = _make_run(tmp_path, with_metrics=True)
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--panel", "4", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = run_dir / "report"
    page = (out / "index.html").read_text()
    refs = _referenced_files(page)
    for name in (
        "fig1-precision-recall.png",
        "fig2-fid.png",
        "fig3-kid.png",
        "fig4-real-vs-generated.png",
        "training-curves.png",
        "metric-intensity_hist.png",
        "memorisation-network-snapshot-000008.png",
        "fakes-000000.png",
        "fakes-000008.png",
        "reals.png",
    ):
        assert name in refs
    for ref in refs:  # self-contained: relative files that exist, nothing from the internet
        assert "://" not in ref and (out / ref).is_file(), ref
        assert read_png(out / ref).ndim == 3
    assert "<script" not in page and "http" not in page
    # Table 1 with caveats next to the numbers
    assert "55.00 %" in page and "45.00" in page and "20.00e-3" in page
    assert "stand-in detector" in page and "not 50k" in page
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"][0] == {
        "by": "precision",
        "kimg": 4,
        "snapshot": "network-snapshot-000004.safetensors",
        "precision": 0.55,
        "recall": 0.05,
        "fid": 60.0,
        "kid": 0.02,
        "offline": None,
    }
    assert len(summary["caveats"]["fid"]) == 1 and len(summary["caveats"]["precision"]) == 2
    md = (out / "report.md").read_text()
    assert "| Precision (max) | 4 |" in md and "(fig2-fid.png)" in md
    assert "flagged as near-copies" in page and "median 0.410" in page
    assert "img0002.png (NCC 0.985)" in page
    assert "memorisation-network-snapshot-000008-histogram.png" in refs
    assert "Metrics evaluated once" in page and "<td>frd64</td>" in page
    assert "metric-frd64.png" not in refs
    assert "2 memorisation audits" in page and not any("000004" in r for r in refs)
    assert res.output.strip().endswith("index.html")


def test_report_without_metrics_or_data(tmp_path):
    run_dir = _make_run(tmp_path, with_metrics=False)
    (run_dir / "training_options.json").unlink()
    out = tmp_path / "rep"
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--outdir", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "index.html").read_text()
    refs = _referenced_files(page)
    assert "training-curves.png" in refs and "fig1-precision-recall.png" not in refs
    assert "fig4-real-vs-generated.png" not in refs
    assert all((out / ref).is_file() for ref in refs)
    assert "No metric-*.jsonl files" in page and "pass --data" in page


def test_report_of_an_empty_folder_and_a_missing_one(tmp_path):
    res = CliRunner().invoke(cli, ["report", str(tmp_path), "--panel", "0"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert _referenced_files(page) == [] and "No stats.jsonl" in page
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "nope")])
    assert res.exit_code != 0


def test_nearest_by_ncc_finds_a_planted_copy():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (50, 1, 8, 8), dtype=np.uint8)
    gen = rng.integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    gen[1] = (train[17] // 2 + 10).astype(np.uint8)  # a copy with other brightness/contrast
    idx, ncc = nearest_by_ncc(gen, train, chunk=16)
    assert idx[1] == 17 and ncc[1] > 0.99
    assert ncc[0] < 0.8 and ncc[2] < 0.8
    with pytest.raises(ValueError):
        nearest_by_ncc(gen, train[:, :, :4])


def test_stand_in_detector_metrics_stay_out_of_table_1_and_say_so(tmp_path):
    run_dir = _make_run(tmp_path, with_metrics=False)
    records = _metric_records(
        "standin_fd2k_full", [{"standin_fd2k_full": v} for v in FID], 2000, False
    )
    _jsonl(run_dir / "metric-standin_fd2k_full.jsonl", records)
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--panel", "0"])
    assert res.exit_code == 0, res.output
    page = (run_dir / "report" / "index.html").read_text()
    assert "No precision, recall, FID or KID results" in page
    assert "metric-standin_fd2k_full.png" in page and "stand-in network" in page


def test_a_re_evaluated_snapshot_counts_once_with_its_latest_numbers(tmp_path):
    run_dir = _make_run(tmp_path, with_metrics=True)
    with (run_dir / "metric-fid2k_full.jsonl").open("a") as f:
        f.write(
            json.dumps(
                _metric_records(
                    "fid2k_full", [{"fid2k_full": v} for v in (300.0, 70.0, 50.0)], 2000, True
                )[1]
            )
            + "\n"
        )
    series = {s.key: s for s in collect_series(read_run(run_dir).metrics)}
    assert series["fid2k_full"].kimg == [0, 4, 8]
    assert series["fid2k_full"].values == [300.0, 70.0, 45.0]


def test_report_refuses_an_archive_of_another_size(tmp_path):
    run_dir = _make_run(tmp_path, with_metrics=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.png").write_bytes(encode_png(np.zeros((1, 32, 32), np.uint8)))
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--data", str(other)])
    assert res.exit_code == 1 and "--data" in res.output and "1x32x32" in res.output
