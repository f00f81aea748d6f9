"""The report as one self-contained HTML page and a Markdown summary.

The page has inline CSS, no scripts and no external URLs; images are PNGs next to it, referenced
by relative path, so the folder can be copied to an offline machine and opened as is. Every
string reaches the page through `plaintext.escape` (data) or `plaintext.inline_html` (the
report's own sentences, whose `command` spans become <code>): no Markdown marks on the page.
"""

from __future__ import annotations

import json
from typing import Any

from mrisynth import __version__
from mrisynth.report import downstream
from mrisynth.report.build import FigureEntry, Report
from mrisynth.report.memorisation import summary_rows
from mrisynth.report.plaintext import escape, inline_html, plain
from mrisynth.report.tables import (
    CATEGORIES,
    category_label,
    format_value,
    kimg_text,
    pick_series,
)
from mrisynth.report.units import unit_of

HTML_NAME = "index.html"
MARKDOWN_NAME = "report.md"
SUMMARY_NAME = "summary.json"
SECTIONS = (
    ("figures", "Metrics over training"),
    ("training", "Training"),
    ("images", "Images"),
    ("memorisation", "Memorisation audit"),
    ("readerstudy", "Reader study (visual Turing test)"),
    ("downstream", downstream.HEADING),
)
NO_REFERENCE = (
    "No precision, recall, FID or KID results in this run: they need NVIDIA's "
    "Inception/VGG16 detectors (`mrisynth weights status`) and `--metrics "
    "fid50k_full,kid50k_full,pr50k3_full` (or smaller counts) in training or "
    "`mrisynth metrics`."
)
STUDY = {"precision": 0.5933, "recall": 0.1570, "fid": 18.14, "kid": 7.17e-3}

_CSS = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.25em .6em}
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.9em;color:#555}
img.px{image-rendering:pixelated;max-width:none}.wide{overflow-x:auto}
.note{background:#fff4e5;border-left:4px solid #e69500;padding:.4em .8em;margin:.4em 0}
.caveat{font-size:.9em;color:#7a4a00}
details{margin:.5em 0 1.5em}code{background:#f3f3f3;padding:0 .2em}
#summary{border:2px solid #345;border-radius:6px;background:#f4f7fb;padding:.6em 1em;margin:1em 0}
#summary h2{margin:.2em 0 .4em;font-size:1.25em}#summary ul{list-style:none;padding:0;margin:0}
#summary li{margin:.35em 0;padding:.3em .6em;border-left:6px solid #888;background:#fff}
#summary li.warning{border-color:#c0392b;background:#fdecea}
#summary li.ok{border-color:#2e8b57}#summary li.info{border-color:#5b7db1}
.level{font-weight:bold;font-size:.8em;letter-spacing:.05em;margin-right:.4em}
.warning .level{color:#c0392b}.ok .level{color:#2e8b57}.info .level{color:#5b7db1}
.src{color:#666;font-size:.85em}
"""
LEVEL_WORDS = {"warning": "WARNING", "ok": "OK", "info": "NOTE"}


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts -> (dotted key, short text) rows; lists are shown as JSON."""
    rows: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            rows.extend(_flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
        return rows
    text = obj if isinstance(obj, str) else json.dumps(obj)  # JSON spelling: null, true, [..]
    return [(prefix.rstrip("."), plain(text, 200))]


def _columns(report: Report) -> list[tuple[str, str]]:
    """(category, column name) of Table 1's value columns."""
    return [
        (c, category_label(c, s))
        for c in CATEGORIES
        if (s := pick_series(report.series, c)) is not None
    ]


def best_table_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and cells of Table 1 (best snapshot per metric), plus the study's row."""
    cols = _columns(report)
    labels = dict(cols)
    header = ["best by", "kimg", "snapshot", *labels.values()]
    rows = [
        [
            f"{labels[r.category]} ({'max' if CATEGORIES[r.category][1] else 'min'})",
            kimg_text(r.kimg),
            r.snapshot,
            *[format_value(c, r.values[c]) for c in labels],
        ]
        for r in report.best
    ]
    if rows:
        study = [format_value(c, STUDY[c]) if c in STUDY else "–" for c in labels]
        rows.append(["the study (published, 50k images)", "–", "–", *study])
    return header, rows


def table_notes(report: Report) -> list[str]:
    """One line per Table 1 column: which result key it is and why it may not be comparable."""
    lines = []
    for cat, label in _columns(report):
        s = pick_series(report.series, cat)
        if s is not None:
            why = "; ".join(s.caveats()) or "reference detector, 50k generated images"
            lines.append(f"{label}: `{s.key}` ({why}).")
    if any(c == "offline" for c, _ in _columns(report)) and not any(
        c in ("fid", "kid", "precision", "recall") for c, _ in _columns(report)
    ):
        lines.append(
            "NVIDIA's Inception/VGG16 detectors were not used, so Table 1 has no FID, KID or "
            "precision/recall; `mrisynth weights status` says how to add them."
        )
    return lines


def single_rows(report: Report) -> list[list[str]]:
    """Rows (metric, key, kimg, value, unit) of the metrics that have a single evaluation."""
    return [
        [s.metric, s.key, kimg_text(s.kimg[0]), f"{s.values[0]:.4g}", unit_of(s.key)]
        for s in report.single
    ]


def _html_table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(c)}</td>' if i in numeric else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure_html(e: FigureEntry) -> str:
    cap = f"<b>{escape(e.title)}</b>"
    if e.caption:
        cap += "<br>" + "<br>".join(inline_html(line) for line in e.caption.split("\n"))
    cls = ' class="px"' if e.pixelated else ""
    img = f'<img{cls} src="{escape(e.file)}" alt="{escape(e.title)}">'
    if e.pixelated:
        img = f'<div class="wide">{img}</div>'
    return f"<figure>{img}<figcaption>{cap}</figcaption></figure>"


def _summary_html(report: Report) -> str:
    items = []
    for v in report.verdicts:
        src = f' <span class="src">({escape(v.source)})</span>' if v.source else ""
        items.append(
            f'<li class="{v.level}"><span class="level">{LEVEL_WORDS[v.level]}</span>'
            f"<b>{escape(v.title)}</b>. {inline_html(v.text)}{src}</li>"
        )
    return (
        '<section id="summary"><h2>Summary: copying, diversity, distribution</h2>'
        f"<ul>{''.join(items)}</ul></section>"
    )


def _diversity_html(report: Report) -> list[str]:
    d = report.diversity
    if d is None:
        return []
    return [
        "<h2>Diversity: generated vs real</h2>",
        f"<p>From {escape(d.where)}.</p>",
        _html_table(["quantity", "generated", "real", "unit", "how to read"], d.rows, {1, 2}),
    ]


def _intro(report: Report) -> str:
    run = report.run
    metrics = escape(", ".join(run.metrics) or "none")
    if run.is_evaluation:
        images = sorted({r["snapshot"] for rs in run.metrics.values() for r in rs})
        return (
            f"<p>Evaluation folder <code>{escape(run.run_dir, 300)}</code>: generated images "
            f"{escape(', '.join(images) or 'unnamed', 300)}, metrics: {metrics}.</p>"
        )
    return (
        f"<p>Run folder <code>{escape(run.run_dir, 300)}</code>: {len(run.stats)} ticks logged, "
        f"{len(run.snapshots)} snapshots, metrics: {metrics}.</p>"
    )


def _table1_html(report: Report) -> list[str]:
    header, rows = best_table_rows(report)
    parts = ["<h2>Best snapshot per metric (Table 1 layout)</h2>"]
    if not rows:
        return [*parts, f"<p>{inline_html(NO_REFERENCE)}</p>"]
    parts.append(_html_table(header, rows, set(range(3, len(header))) | {1}))
    parts += [f'<p class="caveat">{inline_html(line)}</p>' for line in table_notes(report)]
    return parts


def _sections_html(report: Report) -> list[str]:
    parts: list[str] = []
    for section, heading in SECTIONS:
        entries = [e for e in report.entries if e.section == section]
        if section == "memorisation" and report.memorisation:
            parts.append(f"<h2>{heading}</h2>")
            for name, obj in report.memorisation:
                parts.append(f"<h3>{escape(name)}</h3>")
                rows = [[str(k), str(v)] for k, v in summary_rows(obj)]
                parts.append(_html_table(["field", "value"], rows, set()))
            parts += [_figure_html(e) for e in entries]
        elif section == "downstream" and report.downstream:
            header, rows = downstream.dice_rows(report.downstream)
            parts.append(f"<h2>{heading}</h2>")
            parts.append(_html_table(header, rows, set(range(1, len(header)))))
            parts.append(f"<p>{escape(downstream.test_sentence(report.downstream))}</p>")
            if (hd95 := downstream.hd95_rows(report.downstream)) is not None:
                parts.append(_html_table(*hd95, set(range(1, len(hd95[0])))))
                parts.append(f"<p>{escape(downstream.HD95_NOTE)}</p>")
            parts += [_figure_html(e) for e in entries]
        elif entries:
            parts.append(f"<h2>{heading}</h2>")
            parts += [_figure_html(e) for e in entries]
    return parts


def render_html(report: Report) -> str:
    """The whole page as text: the summary box first, then Table 1, diversity, figures."""
    run = report.run
    title = f"mrisynth report: {run.name}"
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
        f"{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _summary_html(report),
        _intro(report),
    ]
    parts += [f'<p class="note">{inline_html(n)}</p>' for n in report.notes]
    parts += _table1_html(report)
    parts += _diversity_html(report)
    if report.single:
        parts.append("<h2>Metrics evaluated once</h2>")
        parts.append(
            _html_table(["metric", "key", "kimg", "value", "unit"], single_rows(report), {2, 3})
        )
    parts += _sections_html(report)
    if run.options:
        parts.append(
            "<h2>Training options</h2><details open><summary>training_options.json</summary>"
        )
        parts.append(
            _html_table(["option", "value"], [list(r) for r in _flatten(run.options)], set())
        )
        parts.append("</details>")
    parts.append(
        f"<hr><p><small>Written by mrisynth {escape(__version__)}. Synthetic "
        "images are not images of any patient.</small></p></body></html>"
    )
    return "\n".join(parts) + "\n"


def render_summary(report: Report) -> dict[str, Any]:
    """Table 1, verdicts and notes as JSON, for scripts that compare runs."""
    cats = [c for c, _ in _columns(report)]
    return {
        "run": report.run.name,
        "verdicts": [
            {
                "topic": v.topic,
                "level": v.level,
                "title": v.title,
                "text": v.text,
                "source": v.source,
            }
            for v in report.verdicts
        ],
        "best": [
            {"by": r.category, "kimg": r.kimg, "snapshot": r.snapshot, **r.values}
            for r in report.best
        ],
        "keys": {c: s.key for c in cats if (s := pick_series(report.series, c))},
        "caveats": {c: s.caveats() for c in cats if (s := pick_series(report.series, c))},
        "diversity": None if report.diversity is None else report.diversity.rows,
        "notes": report.notes,
        "figures": [e.file for e in report.entries],
    }


def render_markdown(report: Report) -> str:
    """A short Markdown summary: verdicts, notes, Table 1, and links to the figures."""
    run = report.run
    lines = [f"# mrisynth report: {run.name}", "", "## Summary", ""]
    for v in report.verdicts:
        src = f" ({v.source})" if v.source else ""
        lines.append(f"- **{LEVEL_WORDS[v.level]}** {v.title}. {v.text}{src}")
    lines += [
        "",
        f"{len(run.stats)} ticks, {len(run.snapshots)} snapshots, metrics: "
        f"{', '.join(run.metrics) or 'none'}.",
        "",
    ]
    lines += [f"> {n}" for n in report.notes]
    if report.notes:
        lines.append("")
    header, rows = best_table_rows(report)
    lines.append("## Best snapshot per metric")
    lines.append("")
    if rows:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
        lines += [f"- {line}" for line in table_notes(report)]
    else:
        lines.append(NO_REFERENCE)
    if report.diversity is not None:
        lines += ["", "## Diversity: generated vs real", "", f"From {report.diversity.where}.", ""]
        lines += ["| quantity | generated | real | unit | how to read |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in report.diversity.rows]
    if report.single:
        lines += [
            "",
            "## Metrics evaluated once",
            "",
            "| metric | key | kimg | value | unit |",
            "|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in single_rows(report)]
    lines += ["", "## Figures", ""]
    lines += [f"- [{e.title}]({e.file})" for e in report.entries]
    for name, obj in report.memorisation:
        lines += ["", f"## Memorisation: {name}", ""]
        lines += [f"- {str(k).strip()}: {v}" for k, v in summary_rows(obj)]
    if report.downstream:
        lines += downstream.section_lines(report.downstream)
    lines += ["", f"Full report: [{HTML_NAME}]({HTML_NAME})", ""]
    return "\n".join(lines)
