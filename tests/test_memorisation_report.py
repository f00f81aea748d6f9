"""The memorisation section of the report: rows and histogram of the calibrated audit; hostile
and old (whole-image NCC) audit files still render without raw or Markdown text."""

from mrisynth.metrics import memorisation as mem
from mrisynth.report import memorisation as report_mem
from phantom_bodies import cohort


def test_report_rows_and_histogram_for_the_new_audit():
    train, keys = cohort(0, 4, num_slices=8, size=16)
    held, _ = cohort(4, 2, num_slices=8, size=16)
    s = mem.audit(
        mem.AuditInputs(gen=train[:10], train=train, train_names=[f"t{i}" for i in range(32)],
                        patient_keys=keys, holdout=held, seeds=list(range(10)))
    ).summary  # fmt: skip
    s["snapshot"] = "network-snapshot-000004.safetensors"
    rows = dict(report_mem.summary_rows(s))
    assert "Meehan" in " ".join(rows) and rows["generated images"] == "10"
    assert rows["generated images flagged as copies"].startswith("10 of 10")
    assert "between-patient" in rows["copy threshold (distance below)"]
    assert sum(k.startswith("  seed") for k in rows) == 5  # the closest flagged are named
    assert not any("`" in k + v for k, v in rows.items())
    png = report_mem.histogram_figure(s)
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    no_holdout = dict(s, copy_test=dict(s["copy_test"], holdout=False, value=None, p_value=None))
    text = dict(report_mem.summary_rows(no_holdout))["data-copying test"]
    assert "mrisynth dataset --holdout-patients N" in text


def test_report_survives_hostile_and_old_audit_files():
    hostile = {
        "copy_test": {"value": "x", "p_value": float("nan"), "threshold": -1, "num_flagged": 1e300},
        "images": [{"flagged": True, "gen_name": "**bold** `code`", "distance": "near"}, 3],
        "distances": {"histogram": {"bin_edges": [0, 1, float("inf")], "generated": [1, 2]}},
        "num_gen": "many",
    }
    rows = report_mem.summary_rows(hostile)
    assert all("`" not in k + v and "**" not in k + v for k, v in rows)
    assert report_mem.histogram_figure(hostile) is None
    assert report_mem.summary_rows([]) == [] and report_mem.histogram_figure("x") is None
    old = {
        "num_gen": 64, "copy_ncc": 0.97, "num_flagged": 1, "flagged_fraction": 1 / 64,
        "pixel": {"nearest_ncc": {"median": 0.41}, "histogram": {"bin_edges": [0, 0.5, 1],
                                                                 "counts": [3, 61]}},
        "flagged": [{"seed": 5, "train_name": "img2.png", "ncc": 0.985}],
    }  # fmt: skip
    rows = dict(report_mem.summary_rows(old))
    assert rows["flagged as near-copies"] == "1 (1.6 %)" and "median 0.410" in " ".join(
        rows.values()
    )
    assert report_mem.histogram_figure(old) is not None


def test_the_audit_of_a_sub_kimg_snapshot_shows_its_fraction():
    from mrisynth.report.memorisation import _sizes

    rows = dict(_sizes({"snapshot": "network-snapshot-000000.200.safetensors", "kimg": 0}))
    assert rows["kimg"] == "0.2"
    assert "kimg" not in dict(_sizes({"snapshot": "s", "kimg": True}))  # not a number


def test_summary_box_and_audit_section_quote_the_same_audit(tmp_path):
    import json

    from mrisynth.report.build import build_report
    from mrisynth.report.runfiles import read_run

    def audit(stem, kimg, title):
        verdict = {"topic": "copying", "level": "ok", "title": title, "text": "t"}
        obj = {"metric": "memorisation8", "snapshot": f"{stem}.safetensors", "kimg": kimg,
               "verdicts": [verdict]}
        (tmp_path / f"memorisation-{stem}.json").write_text(json.dumps(obj))

    audit("network-snapshot-000004", 4, "from 4 kimg")
    audit("network-snapshot-000008", "not a number", "from a broken record")
    report = build_report(read_run(tmp_path))
    (shown, _), = report.memorisation
    quoted = [v.source for v in report.verdicts if v.title.startswith("from")]
    assert len(quoted) == 1 and quoted[0].startswith(shown)
