"""mrisynth report on run files anyone can write: values checked where they are read, every
string shown as plain text, pictures kept inside the run folder."""

from __future__ import annotations

import json

from click.testing import CliRunner

from fake_runs import (
    HOSTILE,
    audit_record,
    jsonl,
    make_run,
    no_markdown,
    pairs_picture,
    referenced_files,
)
from mrisynth.cli import cli
from mrisynth.imaging import encode_png
from mrisynth.report.runfiles import read_run


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
    refs = referenced_files((run_dir / "report" / "index.html").read_text())
    assert {"metric-a_b.png", "metric-a_b-1.png"} <= set(refs)
    assert all((run_dir / "report" / r).is_file() for r in refs)


def test_audit_picture_cannot_point_out_of_the_run_folder(tmp_path):
    from mrisynth.report.build import build_report

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "secret.png").write_bytes(encode_png(pairs_picture(1)))
    (run_dir / "inside.png").write_bytes(encode_png(pairs_picture(1)))
    tricks = ["../secret.png", str(tmp_path / "secret.png"), ".hidden.png", "x.json", ""]
    for trick in [*tricks, "inside.png"]:
        audit = audit_record("s", 1, [], ["seed0"]) | {"picture": trick}
        (run_dir / "memorisation-s.json").write_text(json.dumps(audit))
        files = build_report(read_run(run_dir)).files
        assert ("inside-pairs.png" in files) == (trick == "inside.png"), (trick, list(files))
        assert not any("secret" in f for f in files)


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


def test_every_string_from_run_files_reaches_the_page_as_text(tmp_path):
    """Markdown, links and HTML in every string field a record can carry (and in a metric's
    file name and the options) show as escaped plain text, on the page and in its tables."""
    run_dir = make_run(tmp_path, with_metrics=True)
    options = json.loads((run_dir / "training_options.json").read_text())
    options["user"]["cfg"] = HOSTILE
    (run_dir / "training_options.json").write_text(json.dumps(options))
    evil = {
        "metric": HOSTILE,
        "snapshot": HOSTILE,
        "kimg": 8,
        "results": {HOSTILE: 1.0, "fid2k_full": 3.0},
        "num_gen": 10,
        "num_real": 10,
        "detector": {"name": HOSTILE, "sha256": HOSTILE},
        "caveats": [HOSTILE],
        "verdicts": [{"topic": HOSTILE, "level": "warning", "title": HOSTILE, "text": HOSTILE}],
    }
    jsonl(run_dir / "metric-**x**`y`[a](b)<i>.jsonl", [evil])
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--panel", "0"])
    assert res.exit_code == 0, res.output
    page = (run_dir / "report" / "index.html").read_text()
    no_markdown(page)
    assert "<script" not in page and "<i>" not in page and "evil.example" not in page
    assert page.count("&lt;script&gt;") >= 4  # title, text, caveat, snapshot/key in a table
