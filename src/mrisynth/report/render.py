"""The report as one self-contained HTML page and a Markdown summary.

The page has inline CSS, no scripts and no external URLs; images are PNGs next to it, referenced
by relative path, so the folder can be copied to an offline machine and opened as is.
"""

from __future__ import annotations

import html
import json
from typing import Any

from mrisynth import __version__
from mrisynth.report.build import FigureEntry, Report
from mrisynth.report.memorisation import summary_rows
from mrisynth.report.tables import CATEGORIES, format_value, pick_series

HTML_NAME = "index.html"
MARKDOWN_NAME = "report.md"
SUMMARY_NAME = "summary.json"
SECTIONS = (
    ("figures", "Metrics over training"),
    ("training", "Training"),
    ("images", "Images"),
    ("memorisation", "Memorisation audit"),
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
.note{background:#fff4e5;border-left:4px solid #e69500;padding:.4em .8em;margin:.4em 0}
details{margin:.5em 0 1.5em}code{background:#f3f3f3;padding:0 .2em}
"""


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts -> (dotted key, short text) rows; lists are shown as JSON."""
    rows: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            rows.extend(_flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
        return rows
    text = obj if isinstance(obj, str) else json.dumps(obj)  # JSON spelling: null, true, [..]
    if len(text) > 200:
        text = text[:197] + "..."
    return [(prefix.rstrip("."), text)]


def best_table_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and cells of Table 1 (best snapshot per metric), plus the study's row."""
    cats = [c for c in CATEGORIES if pick_series(report.series, c) is not None]
    header = ["best by", "kimg", *[CATEGORIES[c][0] for c in cats]]
    rows = [
        [
            f"{CATEGORIES[r.category][0]} ({'max' if CATEGORIES[r.category][1] else 'min'})",
            f"{r.kimg:g}",
            *[format_value(c, r.values[c]) for c in cats],
        ]
        for r in report.best
    ]
    if rows:
        rows.append(
            ["the study (published, 50k images)", "–", *[format_value(c, STUDY[c]) for c in cats]]
        )
    return header, rows


def single_rows(report: Report) -> list[list[str]]:
    """Rows (metric, key, kimg, value) of the metrics that have a single evaluation."""
    return [[s.metric, s.key, f"{s.kimg[0]:g}", f"{s.values[0]:.4g}"] for s in report.single]


def _html_table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if i >= numeric_from
            else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure_html(e: FigureEntry) -> str:
    cap = f"<b>{html.escape(e.title)}</b>"
    if e.caption:
        cap += "<br>" + html.escape(e.caption).replace("\n", "<br>")
    return (
        f'<figure><img src="{html.escape(e.file)}" alt="{html.escape(e.title)}">'
        f"<figcaption>{cap}</figcaption></figure>"
    )


def render_html(report: Report) -> str:
    """The whole page as text."""
    run = report.run
    title = f"mrisynth report: {run.name}"
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
        f"{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Run folder <code>{html.escape(str(run.run_dir))}</code>: {len(run.stats)} "
        f"ticks logged, {len(run.snapshots)} snapshots, metrics: "
        f"{html.escape(', '.join(run.metrics) or 'none')}.</p>",
    ]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in report.notes]
    header, rows = best_table_rows(report)
    parts.append("<h2>Best snapshot per metric (Table 1 layout)</h2>")
    if rows:
        parts.append(_html_table(header, rows, numeric_from=1))
        for cat in CATEGORIES:
            s = pick_series(report.series, cat)
            if s is not None:
                why = "; ".join(s.caveats()) or "reference detector, 50k generated images"
                parts.append(
                    f"<p><small>{html.escape(CATEGORIES[cat][0])}: <code>"
                    f"{html.escape(s.key)}</code> ({html.escape(why)})</small></p>"
                )
    else:
        parts.append(f"<p>{html.escape(NO_REFERENCE)}</p>")
    if report.single:
        parts.append("<h2>Metrics evaluated once</h2>")
        parts.append(
            _html_table(["metric", "key", "kimg", "value"], single_rows(report), numeric_from=2)
        )
    for section, heading in SECTIONS:
        entries = [e for e in report.entries if e.section == section]
        if section == "memorisation" and report.memorisation:
            parts.append(f"<h2>{heading}</h2>")
            for name, obj in report.memorisation:
                parts.append(f"<h3>{html.escape(name)}</h3>")
                parts.append(
                    _html_table(
                        ["field", "value"], [list(r) for r in summary_rows(obj)], numeric_from=2
                    )
                )
            parts += [_figure_html(e) for e in entries]
        elif entries:
            parts.append(f"<h2>{heading}</h2>")
            parts += [_figure_html(e) for e in entries]
    if run.options:
        parts.append(
            "<h2>Training options</h2><details open><summary>training_options.json</summary>"
        )
        parts.append(
            _html_table(
                ["option", "value"], [list(r) for r in _flatten(run.options)], numeric_from=2
            )
        )
        parts.append("</details>")
    parts.append(
        f"<hr><p><small>Written by mrisynth {html.escape(__version__)}. Synthetic "
        "images are not images of any patient.</small></p></body></html>"
    )
    return "\n".join(parts) + "\n"


def render_summary(report: Report) -> dict[str, Any]:
    """Table 1 and the notes as JSON, for scripts that compare runs."""
    return {
        "run": report.run.name,
        "best": [
            {"by": r.category, "kimg": r.kimg, "snapshot": r.snapshot, **r.values}
            for r in report.best
        ],
        "keys": {c: s.key for c in CATEGORIES if (s := pick_series(report.series, c))},
        "caveats": {c: s.caveats() for c in CATEGORIES if (s := pick_series(report.series, c))},
        "notes": report.notes,
        "figures": [e.file for e in report.entries],
    }


def render_markdown(report: Report) -> str:
    """A short Markdown summary: notes, Table 1, and links to the figures."""
    run = report.run
    lines = [
        f"# mrisynth report: {run.name}",
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
        for cat in CATEGORIES:
            s = pick_series(report.series, cat)
            if s is not None:
                why = "; ".join(s.caveats()) or "reference detector, 50k generated images"
                lines.append(f"- {CATEGORIES[cat][0]}: `{s.key}` ({why})")
    else:
        lines.append(NO_REFERENCE)
    if report.single:
        lines += [
            "",
            "## Metrics evaluated once",
            "",
            "| metric | key | kimg | value |",
            "|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in single_rows(report)]
    lines += ["", "## Figures", ""]
    lines += [f"- [{e.title}]({e.file})" for e in report.entries]
    for name, obj in report.memorisation:
        lines += ["", f"## Memorisation: {name}", ""]
        lines += [f"- {k.strip()}: {v}" for k, v in summary_rows(obj)]
    lines += ["", f"Full report: [{HTML_NAME}]({HTML_NAME})", ""]
    return "\n".join(lines)
