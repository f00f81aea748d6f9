"""A study's answers -> per-reader, pooled, agreement, per-image and realism results.

`analyse(con)` is pure over the database's rows (returns JSON-able dicts); `write_analysis`
writes STUDY/analysis/: results.json, readers.csv, images.csv, answers.csv, the figures and
index.html. The database is opened read-only, so this can run while the study is served.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mrisynth import atomic
from mrisynth.errors import InputError
from mrisynth.readerstudy import stats, store
from mrisynth.readerstudy.tells import describe

ANALYSIS_DIR = "analysis"


def _answers(con: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT r.name AS reader, im.id AS image, im.truth, im.source, a.label, a.realism, "
        "a.seconds, a.comment, a.answered_at FROM answers a "
        "JOIN readers r ON r.id = a.reader_id "
        "JOIN items i ON i.reader_id = a.reader_id AND i.position = a.position "
        "JOIN images im ON im.id = i.image_id ORDER BY r.id, a.position"
    ).fetchall()
    return [_clean(dict(r)) for r in rows]


def _clean(a: dict[str, Any]) -> dict[str, Any]:
    """The schema's CHECKs hold labels and truth to their two values; a score or time that a
    hand-edited file made fractional, negative, infinite or text is dropped, not averaged."""
    if not (isinstance(a["realism"], int) and 1 <= a["realism"] <= 5):
        a["realism"] = None
    if not (isinstance(a["seconds"], float) and 0 <= a["seconds"] < math.inf):
        a["seconds"] = None
    a["comment"] = store.clean_comment(a["comment"]) if isinstance(a["comment"], str) else ""
    return a


def stored_tells(con: sqlite3.Connection) -> list[str] | None:
    """create's pixel statistics that separate the classes, one sentence each (tells.py);
    None for a study made before that check or a record a hand edit broke."""
    row = con.execute("SELECT value FROM meta WHERE key = 'tells'").fetchone()
    try:
        found = json.loads(row["value"])
        return [describe(t) for t in found]
    except (TypeError, ValueError, KeyError, IndexError):
        return None


def _prop(p: stats.Proportion) -> dict[str, Any]:
    return asdict(p)


def reader_row(name: str, answers: list[dict[str, Any]], of: int) -> dict[str, Any]:
    """Accuracy, sensitivity, specificity (Wilson CIs), binomial test, realism AUC and test."""
    c = stats.confusion([a["truth"] for a in answers], [a["label"] for a in answers])
    real = [a["realism"] for a in answers if a["truth"] == "real" and a["realism"] is not None]
    synth = [
        a["realism"] for a in answers if a["truth"] == "synthetic" and a["realism"] is not None
    ]
    times = [a["seconds"] for a in answers if a["seconds"] is not None]
    chance = stats.chance_accuracy(c)
    return {
        "reader": name,
        "answered": c.total,
        "of": of,
        "accuracy": _prop(stats.wilson(c.correct, c.total)),
        "sensitivity": _prop(stats.wilson(c.tp, c.tp + c.fn)),
        "specificity": _prop(stats.wilson(c.tn, c.tn + c.fp)),
        "chance": chance,
        "binomial_p": None if chance is None else stats.binomial_p(c.correct, c.total, chance),
        "independence_p": stats.independence_p(c),
        "confusion": asdict(c),
        "auc_realism": stats.auc_from_scores(real, synth),
        "realism_p": stats.rank_test_p(real, synth),
        "realism_scored": len(real) + len(synth),
        "median_seconds": statistics.median(times) if times else None,
    }


def agreement(answers: list[dict[str, Any]], readers: list[str]) -> dict[str, Any]:
    """Fleiss' kappa over the images every reader with answers has answered."""
    active = sorted({a["reader"] for a in answers})
    by_image: dict[int, list[str]] = {}
    for a in answers:
        by_image.setdefault(a["image"], []).append(a["label"])
    full = [labels for labels in by_image.values() if len(labels) == len(active)]
    table = np.array([[ls.count(x) for x in store.LABELS] for ls in full]).reshape(-1, 2)
    kappa = stats.fleiss_kappa(table) if len(active) >= 2 else None
    return {
        "fleiss_kappa": kappa,
        "images": len(full),
        "readers": len(active),
        "of_readers": len(readers),
    }


def image_rows(con: sqlite3.Connection, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per image: how many readers answered, how many got it wrong ('fooled' for synthetic)."""
    rows = []
    for im in con.execute("SELECT id, truth, source FROM images ORDER BY id").fetchall():
        mine = [a for a in answers if a["image"] == im["id"]]
        wrong = sum(a["label"] != im["truth"] for a in mine)
        scores = [a["realism"] for a in mine if a["realism"] is not None]
        rows.append(
            {
                "image": im["id"],
                "truth": im["truth"],
                "source": im["source"],
                "answers": len(mine),
                "wrong": wrong,
                "wrong_rate": wrong / len(mine) if mine else None,
                "mean_realism": statistics.fmean(scores) if scores else None,
            }
        )
    return rows


def realism_by_class(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled realism scores: counts of 1..5 per class, medians, Mann-Whitney p, AUC."""
    out: dict[str, Any] = {}
    scores = {}
    for truth in store.LABELS:
        s = [a["realism"] for a in answers if a["truth"] == truth and a["realism"] is not None]
        scores[truth] = s
        out[truth] = {
            "n": len(s),
            "counts": [s.count(k) for k in range(1, 6)],
            "median": statistics.median(s) if s else None,
            "mean": statistics.fmean(s) if s else None,
        }
    out["mannwhitney_p"] = stats.rank_test_p(scores["real"], scores["synthetic"])
    out["auc"] = stats.auc_from_scores(scores["real"], scores["synthetic"])
    return out


def analyse(con: sqlite3.Connection) -> dict[str, Any]:
    """Every result of the study as one JSON-able dict."""
    answers = _answers(con)
    readers = [
        (r["id"], r["name"])
        for r in con.execute("SELECT id, name FROM readers WHERE role = 'reader' ORDER BY id")
    ]
    names = [n for _, n in readers]
    rows = [
        reader_row(n, [a for a in answers if a["reader"] == n], store.count_items(con, rid))
        for rid, n in readers
    ]
    counts = dict(con.execute("SELECT truth, COUNT(*) FROM images GROUP BY truth").fetchall())
    return {
        "study": {
            "images": sum(counts.values()),
            "real": counts.get("real", 0),
            "synthetic": counts.get("synthetic", 0),
            "readers": len(readers),
            "answers": len(answers),
            "tells": stored_tells(con),
        },
        "readers": rows,
        "pooled": reader_row("all readers", answers, sum(r["of"] for r in rows)),
        "agreement": agreement(answers, names),
        "realism": realism_by_class(answers),
        "images": image_rows(con, answers),
        "answers": answers,
    }


def _csv_cell(value: Any) -> Any:
    """Readers' comments are untrusted: a cell starting with = + - @ would run as a formula
    in a spreadsheet, so it gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return buf.getvalue()


def flat_reader(row: dict[str, Any]) -> dict[str, Any]:
    """A reader row as one CSV line (value, low, high per proportion)."""
    out = {k: v for k, v in row.items() if not isinstance(v, dict)}
    for key in ("accuracy", "sensitivity", "specificity"):
        for part in ("value", "low", "high"):
            out[f"{key}_{part}" if part != "value" else key] = row[key][part]
    out.update(row["confusion"])
    return out


def write_analysis(study: Path) -> Path:
    """Write STUDY/analysis/ and return its index.html."""
    from mrisynth.report.readerstudy import figures, render_page

    con = store.open_study(study, readonly=True)
    try:
        results = analyse(con)
    finally:
        con.close()
    out = study / ANALYSIS_DIR
    if out.is_symlink() or (out.exists() and not out.is_dir()):  # a hand-edited study folder
        raise InputError(f"{out}: not a folder (a link?); remove it, analyze writes it afresh")
    atomic.write_json(out / "results.json", results)
    atomic.write_text(
        out / "readers.csv",
        to_csv([flat_reader(r) for r in [*results["readers"], results["pooled"]]]),
    )
    atomic.write_text(out / "images.csv", to_csv(results["images"]))
    atomic.write_text(out / "answers.csv", to_csv(results["answers"]))
    files = figures(results)
    for name, blob in files.items():
        atomic.write_bytes(out / name, blob)
    atomic.write_text(out / "index.html", render_page(results, list(files)))
    return out / "index.html"
