"""mrisynth report: figures, Table 1, HTML/Markdown from run folders in the contract formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fake_runs import (
    FID,
    HOSTILE,
    audit_record,
    diversity_record,
    evaluation_folder,
    jsonl,
    make_run,
    metric_records,
    no_markdown,
    pairs_picture,
    parse_page,
    referenced_files,
    verdict,
)
from mrisynth.cli import cli
from mrisynth.generate.images import read_png
from mrisynth.imaging import encode_png
from mrisynth.report.panel import nearest_by_ncc
from mrisynth.report.runfiles import read_run
from mrisynth.report.tables import best_table, collect_series


def test_best_table_picks_max_precision_recall_and_min_fid_kid(tmp_path):
    run = read_run(make_run(tmp_path, with_metrics=True))
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
    run_dir = make_run(tmp_path, with_metrics=True)
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--panel", "4", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = run_dir / "report"
    page = (out / "index.html").read_text()
    refs = referenced_files(page)
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
    run_dir = make_run(tmp_path, with_metrics=False)
    (run_dir / "training_options.json").unlink()
    out = tmp_path / "rep"
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--outdir", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "index.html").read_text()
    refs = referenced_files(page)
    assert "training-curves.png" in refs and "fig1-precision-recall.png" not in refs
    assert "fig4-real-vs-generated.png" not in refs
    assert all((out / ref).is_file() for ref in refs)
    assert "No metric-*.jsonl files" in page and "pass --data" in page


def test_report_of_an_empty_folder_and_a_missing_one(tmp_path):
    res = CliRunner().invoke(cli, ["report", str(tmp_path), "--panel", "0"])
    assert res.exit_code == 1 and "no run files in it" in res.output  # a mistyped folder
    assert not (tmp_path / "report").exists()
    (tmp_path / "stats.jsonl").write_text("")  # an empty run still gets its page
    res = CliRunner().invoke(cli, ["report", str(tmp_path), "--panel", "0"])
    page = (tmp_path / "report" / "index.html").read_text()
    assert referenced_files(page) == [] and "No stats.jsonl" in page
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
    run_dir = make_run(tmp_path, with_metrics=False)
    records = metric_records(
        "standin_fd2k_full", [{"standin_fd2k_full": v} for v in FID], 2000, False
    )
    jsonl(run_dir / "metric-standin_fd2k_full.jsonl", records)
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--panel", "0"])
    assert res.exit_code == 0, res.output
    page = (run_dir / "report" / "index.html").read_text()
    assert "No precision, recall, FID or KID results" in page
    assert "metric-standin_fd2k_full.png" in page and "stand-in network" in page


def test_a_re_evaluated_snapshot_counts_once_with_its_latest_numbers(tmp_path):
    run_dir = make_run(tmp_path, with_metrics=True)
    with (run_dir / "metric-fid2k_full.jsonl").open("a") as f:
        f.write(
            json.dumps(
                metric_records(
                    "fid2k_full", [{"fid2k_full": v} for v in (300.0, 70.0, 50.0)], 2000, True
                )[1]
            )
            + "\n"
        )
    series = {s.key: s for s in collect_series(read_run(run_dir).metrics)}
    assert series["fid2k_full"].kimg == [0, 4, 8]
    assert series["fid2k_full"].values == [300.0, 70.0, 45.0]


def test_report_refuses_an_archive_of_another_size(tmp_path):
    run_dir = make_run(tmp_path, with_metrics=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.png").write_bytes(encode_png(np.zeros((1, 32, 32), np.uint8)))
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--data", str(other)])
    assert res.exit_code == 1 and "--data" in res.output and "1x32x32" in res.output


# --- readability, verdicts, evaluation folders, hostile run files (issue 10) ---------------


def test_evaluation_folder_renders_with_offline_distance_summary_and_labelled_pairs(tmp_path):
    out = evaluation_folder(tmp_path)
    res = CliRunner().invoke(cli, ["report", str(out), "--outdir", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "rep" / "index.html").read_text()
    no_markdown(page)
    tags = [t for t, _ in parse_page(page).tags]
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
    assert "memorisation-gen-pairs.png" in referenced_files(page)
    assert "No stats.jsonl" not in page and "pass --data" not in page
    assert "evaluation of a folder of images" in page
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["best"][0]["by"] == "offline" and summary["best"][0]["kimg"] is None
    assert [v["level"] for v in summary["verdicts"]] == ["warning", "ok"]


def test_summary_box_shows_the_latest_snapshot_and_says_what_was_not_run(tmp_path):
    run_dir = make_run(tmp_path, with_metrics=False)
    old = verdict("diversity", "warning", "Old collapse warning")
    new = verdict("diversity", "ok", "Diversity as real", HOSTILE)
    jsonl(
        run_dir / "metric-diversity64.jsonl",
        [
            diversity_record("network-snapshot-000008.safetensors", 8, [new], 0.3),
            diversity_record("network-snapshot-000004.safetensors", 4, [old]),
        ],
    )
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--panel", "0"])
    assert res.exit_code == 0, res.output
    page = (run_dir / "report" / "index.html").read_text()
    no_markdown(page)
    box = page[page.index('<section id="summary">') : page.index("</section>")]
    assert "Diversity as real" in box and "Old collapse" not in box
    assert "at 8 kimg" in box
    assert "No copy test was run" in box
    assert "<code>mrisynth metrics --network RUN_DIR --data TRAIN.zip --metrics " in box
    assert "&lt;script&gt;" in box and "rm -rf" in box  # shown as text, harmless
    md = (run_dir / "report" / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Best snapshot")

    (tmp_path / "bare").mkdir()  # a run with no metric records
    (tmp_path / "bare" / "stats.jsonl").write_text("")
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "bare"), "--panel", "0"])
    page = (tmp_path / "bare" / "report" / "index.html").read_text()
    assert "No copy test was run" in page and "No diversity metric was run" in page


def test_grids_are_enlarged_with_nearest_neighbour_and_bad_pngs_are_skipped(tmp_path):
    run_dir = make_run(tmp_path, with_metrics=False)  # resolution 16 in training_options.json
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
    assert "fakes-000000.png" not in referenced_files(page)


def test_closest_pairs_rows_match_the_records_and_carry_their_labels():
    from mrisynth.report import pairs

    pic = pairs_picture(3)
    cut = pairs.tiles(pic)
    assert len(cut) == 3 and cut[2][1].shape == (16, 16) and cut[2][1][0, 0] == 60
    assert pairs.tiles(pic[:, :, :-1]) is None  # not the runner's geometry
    audit = audit_record("s", 0, [], ["seed7", "seed3", "seed9"])
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


def test_a_snapshot_without_its_json_copy_still_counts(tmp_path):
    # a kill between the snapshot's rename (the commit) and its .json copy leaves a valid
    # snapshot alone; the report must list it like any other
    run = make_run(tmp_path, with_metrics=False)
    last = sorted(run.glob("network-snapshot-*.safetensors"))[-1]
    last.with_suffix(".json").unlink()
    assert last in [p for _, p in read_run(run).snapshots]
