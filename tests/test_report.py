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
    assert "<th>Fréchet radiomics distance (FRD, not FID)</th>" in page  # Table 1, own column
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
    for bad in ("-1", "100000", "x"):
        res = CliRunner().invoke(cli, ["report", str(tmp_path), "--panel", bad])
        assert res.exit_code != 0 and "--panel" in res.output


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


# --- readability, verdicts, evaluation folders, hostile run files (issue 10) ---------------

HOSTILE = "Use `rm -rf` **now** [here](http://evil.example) <script>alert(1)</script>"


def _verdict(topic: str, level: str, title: str, text: str = "Plain sentence.") -> dict:
    return {"topic": topic, "level": level, "title": title, "text": text}


def _diversity_record(snapshot: str, kimg, verdicts: list[dict], ms_gen: float = 0.62) -> dict:
    return {
        "metric": "diversity64",
        "snapshot": snapshot,
        "kimg": kimg,
        "results": {
            "diversity64_msssim_gen": ms_gen,
            "diversity64_msssim_real": 0.31,
            "diversity64_msssim_ratio": ms_gen / 0.31,
            "diversity64_body_area_std_gen": 0.006,
            "diversity64_body_area_std_real": 0.040,
            "diversity64_mean_intensity_std_gen": 2.5,
            "diversity64_mean_intensity_std_real": 9.0,
            "diversity64_coverage": 0.2,
        },
        "num_gen": 64,
        "num_real": 6,
        "detector": None,
        "reference_exact": False,
        "timestamp": 5.0,
        "verdicts": verdicts,
    }


def _audit(snapshot: str, kimg, verdicts: list[dict], names: list[str]) -> dict:
    """A memorisation summary in D's schema: every generated image has a record."""
    images = [
        {
            "gen_index": i,
            "gen_name": name,
            "seed": None,
            "train_index": i % 3,
            "train_name": f"img{i % 3:04d}.png",
            "patient_key": f"P{i % 2}",
            "distance": 0.05 * (i + 1),
            "percentile": 2.0 * i,
            "flagged": i == 0,
        }
        for i, name in enumerate(names)
    ]
    return {
        "metric": "memorisation64",
        "snapshot": snapshot,
        "kimg": kimg,
        "num_gen": len(names),
        "num_train": 6,
        "copy_test": {"statistic": "Z_U", "value": -4.2, "p_value": 1e-5, "num_flagged": 1},
        "images": images,
        "verdicts": verdicts,
        "picture": f"memorisation-{snapshot}.png",
    }


def _pairs_picture(rows: int, w: int = 16) -> np.ndarray:
    """The runner's closest-pairs picture geometry: rows of 3 tiles, 2-pixel separators."""
    pic = np.full((1, rows * (w + 2) - 2, 3 * w + 4), 255, np.uint8)
    for r in range(rows):
        for c in range(3):
            y, x = r * (w + 2), c * (w + 2)
            pic[0, y : y + w, x : x + w] = 40 * c + 10 * r
    return pic


def _evaluation_folder(root: Path) -> Path:
    """What `mrisynth metrics --images gen --data train.zip -o OUT` writes: kimg null."""
    out = root / "eval-gen"
    out.mkdir()
    copy = _verdict("copying", "ok", "No sign of data-copying", "Z_U 0.3 (p 0.6).")
    div = _verdict("diversity", "warning", "Mode collapse", "Generated MS-SSIM 0.62 vs 0.31.")
    _jsonl(out / "metric-diversity64.jsonl", [_diversity_record("gen", None, [div])])
    pixfd = {
        "metric": "pixfd64",
        "snapshot": "gen",
        "kimg": None,
        "results": {"pixfd64": 123.4},
        "num_gen": 64,
        "num_real": 6,
        "detector": None,
        "reference_exact": False,
        "timestamp": 5.0,
        "caveats": ["pixfd is standardised by **these** real images", 7],
    }
    _jsonl(out / "metric-pixfd64.jsonl", [pixfd])
    names = [f"gen_{i:03d}.png" for i in range(4)]
    (out / "memorisation-gen.json").write_text(json.dumps(_audit("gen", None, [copy], names)))
    (out / "memorisation-gen.png").write_bytes(encode_png(_pairs_picture(4)))
    return out


class _Page(__import__("html.parser").parser.HTMLParser):
    """Text nodes and attribute values of a page, and the order of its top-level blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.texts += [v for _, v in attrs if v]

    def handle_data(self, data):
        self.texts.append(data)


def _parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    return p


def _no_markdown(page: str) -> None:
    parsed = _parse(page)
    text = "\n".join(parsed.texts)
    assert "`" not in text and "**" not in text, text
    assert not re.search(r"\[[^\]\n]*\]\([^)\n]*\)", text), text
    assert not any(tag == "script" for tag, _ in parsed.tags)


def test_evaluation_folder_renders_with_offline_distance_summary_and_labelled_pairs(tmp_path):
    out = _evaluation_folder(tmp_path)
    res = CliRunner().invoke(cli, ["report", str(out), "--outdir", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "rep" / "index.html").read_text()
    _no_markdown(page)
    tags = [t for t, _ in _parse(page).tags]
    assert tags[tags.index("h1") + 1] == "section"  # the summary box right after the title
    box = page[page.index('<section id="summary">') : page.index("</section>")]
    assert box.index("WARNING") < box.index("Mode collapse") < box.index("No sign of data-copying")
    assert "No copy test" not in box and "No diversity" not in box
    # Table 1: the offline distance in its own named column, never called FID
    assert "Pixel Fréchet distance (weight-free, not FID)" in page and "123.4" in page
    assert "<th>FID</th>" not in page and "not comparable with the study" in page
    assert "Table 1 has no FID, KID or precision/recall" in page
    assert "pixfd is standardised by these real images" in page  # the record's own caveat
    # diversity next to real data, with units
    assert '<td>Body area spread (std)</td><td class="num">0.006</td>' in page
    assert "fraction of image area" in page and "Metrics evaluated once" not in page
    # the closest pairs, labelled from the audit's records, no training-only notes
    assert "memorisation-gen-pairs.png" in _referenced_files(page)
    assert "No stats.jsonl" not in page and "pass --data" not in page
    assert "evaluation of a folder of images" in page
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["best"][0]["by"] == "offline" and summary["best"][0]["kimg"] is None
    assert [v["level"] for v in summary["verdicts"]] == ["warning", "ok"]


def test_summary_box_shows_the_latest_snapshot_and_says_what_was_not_run(tmp_path):
    run_dir = _make_run(tmp_path, with_metrics=False)
    old = _verdict("diversity", "warning", "Old collapse warning")
    new = _verdict("diversity", "ok", "Diversity as real", HOSTILE)
    _jsonl(
        run_dir / "metric-diversity64.jsonl",
        [
            _diversity_record("network-snapshot-000008.safetensors", 8, [new], 0.3),
            _diversity_record("network-snapshot-000004.safetensors", 4, [old]),
        ],
    )
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--panel", "0"])
    assert res.exit_code == 0, res.output
    page = (run_dir / "report" / "index.html").read_text()
    _no_markdown(page)
    box = page[page.index('<section id="summary">') : page.index("</section>")]
    assert "Diversity as real" in box and "Old collapse" not in box
    assert "at 8 kimg" in box
    assert "No copy test was run" in box
    assert "<code>mrisynth metrics --network RUN_DIR --data TRAIN.zip --metrics " in box
    assert "&lt;script&gt;" in box and "rm -rf" in box  # shown as text, harmless
    md = (run_dir / "report" / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Best snapshot")

    res = CliRunner().invoke(cli, ["report", str(tmp_path / "archive"), "--panel", "0"])
    page = (tmp_path / "archive" / "report" / "index.html").read_text()
    assert "No copy test was run" in page and "No diversity metric was run" in page


def test_hostile_metric_records_are_cleaned_where_they_are_read(tmp_path, monkeypatch):
    from mrisynth.report import runfiles

    monkeypatch.setattr(runfiles, "MAX_FILE_BYTES", 200_000)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    good = {"metric": "x", "snapshot": "s1", "kimg": 4, "results": {"fid2k_full": 10.0}}
    lines = [
        json.dumps(good | {"reference_exact": "true", "num_gen": 10**30}),
        json.dumps(good | {"snapshot": "s2", "kimg": 1e300, "results": {"fid2k_full": "12"}}),
        json.dumps(good | {"snapshot": "s3", "kimg": True, "results": {"fid2k_full": 1e400}}),
        '{"snapshot": "s4", "kimg": NaN, "results": {"fid2k_full": NaN, "kid2k_full": 0.5}}',
        "[" * 100_000,  # nested beyond the recursion limit
        json.dumps(good | {"snapshot": ["not", "a", "name"], "results": {"fid2k_full": 7.0}}),
        json.dumps(good | {"snapshot": "s6", "verdicts": "not a list", "detector": "inception"}),
    ]
    (run_dir / "metric-x.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "metric-huge.jsonl").write_text((json.dumps(good) + "\n") * 4000)
    records = read_run(run_dir).metrics["x"]
    by_snap = {r["snapshot"]: r for r in records}
    assert by_snap["s1"]["reference_exact"] is False and by_snap["s1"]["num_gen"] is None
    assert "s2" not in by_snap and "s3" not in by_snap  # no usable number left
    assert by_snap["s4"]["kimg"] is None and by_snap["s4"]["results"] == {"kid2k_full": 0.5}
    assert by_snap["record 4"]["results"] == {"fid2k_full": 7.0}
    assert by_snap["s6"]["detector"] is None
    frac = {"snapshot": "network-snapshot-000000.160.safetensors", "kimg": 0, "results": {"a": 1}}
    assert runfiles.clean_metric_record(frac, 0)["kimg"] == 0.16  # the name knows the fraction
    assert runfiles.clean_metric_record(frac | {"kimg": 3}, 0)["kimg"] == 3  # they disagree
    assert "huge" not in read_run(run_dir).metrics
    for odd in ("metric-a#b.jsonl", "metric-a?b.jsonl"):  # names that would break a URL
        rec = good | {"results": {"w1": 1.0}}
        (run_dir / odd).write_text(json.dumps(rec) + "\n" + json.dumps(rec | {"snapshot": "s9"}))
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--panel", "0"])
    assert res.exit_code == 0, res.output
    refs = _referenced_files((run_dir / "report" / "index.html").read_text())
    assert {"metric-a_b.png", "metric-a_b-1.png"} <= set(refs)
    assert all((run_dir / "report" / r).is_file() for r in refs)


def test_grids_are_enlarged_with_nearest_neighbour_and_bad_pngs_are_skipped(tmp_path):
    run_dir = _make_run(tmp_path, with_metrics=False)  # resolution 16 in training_options.json
    grid = np.random.default_rng(3).integers(0, 256, (1, 64, 128), dtype=np.uint8)
    (run_dir / "reals.png").write_bytes(encode_png(grid))
    bomb = bytearray(encode_png(np.zeros((1, 8, 8), np.uint8)))
    bomb[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR claims 100000 x 100000 pixels
    (run_dir / "fakes-000000.png").write_bytes(bytes(bomb))
    (run_dir / "fakes-000008.png").write_bytes(encode_png(grid)[:60])  # truncated
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--panel", "0"])
    assert res.exit_code == 0, res.output
    out = run_dir / "report"
    shown = read_png(out / "reals.png")
    assert shown.shape == (1, 64 * 8, 128 * 8)  # 16 px tiles -> 128 px
    assert np.array_equal(shown, grid.repeat(8, axis=1).repeat(8, axis=2))
    page = (out / "index.html").read_text()
    assert 'class="px" src="reals.png"' in page
    assert "fakes-000000.png is not a readable PNG" in page
    assert "fakes-000008.png is not a readable PNG" in page
    assert "fakes-000000.png" not in _referenced_files(page)


def test_audit_picture_cannot_point_out_of_the_run_folder(tmp_path):
    from mrisynth.report.build import build_report

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "secret.png").write_bytes(encode_png(_pairs_picture(1)))
    (run_dir / "inside.png").write_bytes(encode_png(_pairs_picture(1)))
    tricks = ["../secret.png", str(tmp_path / "secret.png"), ".hidden.png", "x.json", ""]
    for trick in [*tricks, "inside.png"]:
        audit = _audit("s", 1, [], ["seed0"]) | {"picture": trick}
        (run_dir / "memorisation-s.json").write_text(json.dumps(audit))
        files = build_report(read_run(run_dir)).files
        assert ("inside-pairs.png" in files) == (trick == "inside.png"), (trick, list(files))
        assert not any("secret" in f for f in files)


def test_closest_pairs_rows_match_the_records_and_carry_their_labels():
    from mrisynth.report import pairs

    pic = _pairs_picture(3)
    cut = pairs.tiles(pic)
    assert len(cut) == 3 and cut[2][1].shape == (16, 16) and cut[2][1][0, 0] == 60
    assert pairs.tiles(pic[:, :, :-1]) is None  # not the runner's geometry
    audit = _audit("s", 0, [], ["seed7", "seed3", "seed9"])
    audit["images"].reverse()  # the records' order must not matter: sorted by distance
    recs = pairs.closest_records(audit, 3)
    assert [r["gen_name"] for r in recs] == ["seed7", "seed3", "seed9"]
    label = pairs.row_label(recs[0])
    assert "seed7 FLAGGED" in label and "patient P0" in label and "distance 0.05" in label
    assert pairs.closest_records(audit, 4) is None
    assert pairs.closest_pairs_figure(pic, audit).startswith(b"\x89PNG")


def test_every_axis_has_a_unit_and_histograms_fit_the_data(monkeypatch):
    from mrisynth.report import figures, panel
    from mrisynth.report.tables import Series

    drawn = []
    monkeypatch.setattr(figures, "figure_png", lambda fig: drawn.append(fig) or b"")
    monkeypatch.setattr(panel, "figure_png", lambda fig: drawn.append(fig) or b"")
    s = Series("body_area64", "body_area64_gen_std", [0.0, 4.0], [0.1, 0.2], ["a", "b"])
    r = Series("body_area64", "body_area64_real_std", [0.0, 4.0], [0.1, 0.1], ["a", "b"])
    figures.metric_group_figure("body_area64", [s, r])
    figures.single_metric_figure(
        Series("fid", "fid2k_full", [0.0, 4.0], [9, 8], ["a", "b"]), "t", "FID (unitless)"
    )
    ticks = [{"Progress/kimg": k, "Loss/G/loss": 1.0, "Progress/augment": 0.1} for k in (0, 1)]
    figures.training_figure(ticks, 0.6)
    figures.histogram_figure(
        [0.0, 0.25, 0.5, 0.75, 1.0],
        {"generated": [0, 0, 5, 0]},
        title="h",
        xlabel="distance (unitless)",
        marks=[(0.55, "threshold")],
    )
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (2, 1, 8, 8), dtype=np.uint8)
    panel.real_vs_generated_figure(imgs, imgs, [0, 1], ["a.png", "b.png"], ["P1", "P2"])
    for fig in drawn[:-1]:
        for ax in fig.axes:
            if ax.get_visible():
                assert "(" in ax.get_xlabel() and "(" in ax.get_ylabel(), ax.get_title()
    lo, hi = drawn[3].axes[0].get_xlim()
    assert 0.45 < lo < 0.5 and 0.75 < hi < 0.8  # occupied bin [0.5, 0.75] and the mark
    texts = [ax.get_xlabel() + ax.get_title() for ax in drawn[-1].axes]
    assert any("seed 1" in t for t in texts)
    assert any("patient P2" in t and "b.png" in t and "1 - NCC = 0.000" in t for t in texts)


def test_plain_text_drops_markdown_and_inline_html_marks_commands():
    from mrisynth.report.plaintext import inline_html, plain

    assert plain(HOSTILE) == "Use 'rm -rf' now here <script>alert(1)</script>"
    assert plain("a\x00b\u202ec\n# d", 10) == "a b c # d"
    assert plain("x" * 50, 10) == "xxxxxxx..."
    assert inline_html("run `a <b>` now") == "run <code>a &lt;b&gt;</code> now"


def test_verdicts_from_run_files_are_bounded_and_mapped_to_known_values():
    from mrisynth.report.verdicts import MAX_PER_SOURCE, clean_verdicts

    assert clean_verdicts("warning", "s") == [] and clean_verdicts(None, "s") == []
    odd = [
        {"topic": "??", "level": "fatal", "title": "**T** `x`", "text": "y" * 5000},
        {"topic": "copying", "level": "warning", "title": "", "text": ""},  # nothing to say
        "not a dict",
        {"topic": ["copying"], "level": {"a": 1}, "title": 42},
    ]
    got = clean_verdicts(odd + [odd[0]] * 1000, "src")
    assert len(got) == MAX_PER_SOURCE - 2
    assert (got[0].topic, got[0].level, got[0].title) == ("data", "info", "T 'x'")
    assert len(got[0].text) <= 400 and (got[1].title, got[1].topic) == ("42", "data")


def test_a_snapshot_without_its_json_copy_still_counts(tmp_path):
    # a kill between the snapshot's rename (the commit) and its .json copy leaves a valid
    # snapshot alone; the report must list it like any other
    run = _make_run(tmp_path, with_metrics=False)
    last = sorted(run.glob("network-snapshot-*.safetensors"))[-1]
    last.with_suffix(".json").unlink()
    assert last in [p for _, p in read_run(run).snapshots]
