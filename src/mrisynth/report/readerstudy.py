"""The reader study's figures, its standalone analysis page, and its section of `mrisynth report`.

Input is `mrisynth.readerstudy.analysis.analyse`'s dict (results.json). Reader comments and
image sources are untrusted text: they reach HTML only through `report.plaintext.escape`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrisynth.report.figures import figure_png, new_figure
from mrisynth.report.plaintext import escape

FIG_READERS = "reader-accuracy.png"
FIG_ROC = "reader-roc.png"
FIG_REALISM = "reader-realism.png"
FIG_IMAGES = "reader-images.png"
SECTION = "readerstudy"
CHANCE = 0.5


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _p(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.3f}" if x >= 0.001 else "< 0.001")


def _p_text(x: float | None) -> str:
    """'= 0.032' or '< 0.001', to follow a 'p'."""
    text = _p(x)
    return text if text.startswith("<") else f"= {text}"


def _ci(prop: dict[str, Any]) -> str:
    if prop["value"] is None:
        return "n/a"
    return f"{prop['value']:.2f} ({prop['low']:.2f}-{prop['high']:.2f})"


def readers_figure(results: dict[str, Any]) -> bytes:
    """Accuracy, sensitivity and specificity per reader with 95% Wilson intervals."""
    rows = [*results["readers"], results["pooled"]]
    fig, axes = new_figure(figsize=(max(5.0, 1.2 * len(rows) + 2), 3.8))
    ax = axes[0, 0]
    x = np.arange(len(rows))
    for k, (key, color) in enumerate(
        (("accuracy", "#345"), ("sensitivity", "#c0392b"), ("specificity", "#2e8b57"))
    ):
        vals = [r[key] for r in rows]
        keep = [i for i, v in enumerate(vals) if v["value"] is not None]
        y = np.array([vals[i]["value"] for i in keep])
        err = np.array(
            [[y[j] - vals[i]["low"], vals[i]["high"] - y[j]] for j, i in enumerate(keep)]
        )
        ax.errorbar(
            x[keep] + (k - 1) * 0.22,
            y,
            yerr=err.T if len(keep) else None,
            fmt="o",
            color=color,
            capsize=3,
            label=key,
        )
    chance = results["pooled"].get("chance") or CHANCE
    ax.axhline(chance, color="#888", ls="--", lw=1, label="chance (accuracy)")
    ax.set_xticks(x, [r["reader"] for r in rows], rotation=30, ha="right")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("proportion (95% Wilson CI)")
    ax.set_title("Detecting synthetic images, per reader")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, alpha=0.3)
    return figure_png(fig)


def _roc_points(answers: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Empirical ROC of 'synthetic if realism <= t' for t = 0..5."""
    real = [a["realism"] for a in answers if a["truth"] == "real" and a["realism"] is not None]
    syn = [a["realism"] for a in answers if a["truth"] == "synthetic" and a["realism"] is not None]
    if not real or not syn:
        return [], []
    fpr = [sum(s <= t for s in real) / len(real) for t in range(6)]
    tpr = [sum(s <= t for s in syn) / len(syn) for t in range(6)]
    return fpr, tpr


def roc_figure(results: dict[str, Any]) -> bytes:
    fig, axes = new_figure(figsize=(4.6, 4.2))
    ax = axes[0, 0]
    for row in results["readers"]:
        fpr, tpr = _roc_points([a for a in results["answers"] if a["reader"] == row["reader"]])
        if fpr:
            ax.plot(fpr, tpr, "o-", ms=3, label=f"{row['reader']} AUC {_num(row['auc_realism'])}")
    ax.plot([0, 1], [0, 1], color="#888", ls="--", lw=1)
    ax.set_xlabel("real images called synthetic (1 - specificity)")
    ax.set_ylabel("synthetic images detected (sensitivity)")
    ax.set_title("ROC from the realism score")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, alpha=0.3)
    return figure_png(fig)


def realism_figure(results: dict[str, Any]) -> bytes:
    r = results["realism"]
    fig, axes = new_figure(figsize=(4.6, 3.6))
    ax = axes[0, 0]
    x = np.arange(1, 6)
    for k, (truth, color) in enumerate((("real", "#2e8b57"), ("synthetic", "#c0392b"))):
        counts = np.array(r[truth]["counts"], dtype=float)
        share = counts / counts.sum() if counts.sum() else counts
        ax.bar(
            x + (k - 0.5) * 0.38,
            share,
            width=0.38,
            color=color,
            label=f"{truth} (n={r[truth]['n']})",
        )
    ax.set_xticks(x)
    ax.set_xlabel("realism score (1 = clearly artificial, 5 = fully realistic)")
    ax.set_ylabel("share of answers")
    ax.set_title(f"Realism by class (Mann-Whitney p {_p_text(r['mannwhitney_p'])})")
    ax.legend(fontsize=7)
    return figure_png(fig)


def images_figure(results: dict[str, Any]) -> bytes:
    """Per image, the share of readers who got it wrong ('fooled' for synthetic images)."""
    rows = sorted(
        (im for im in results["images"] if im["wrong_rate"] is not None),
        key=lambda im: (im["truth"], -im["wrong_rate"]),
    )
    fig, axes = new_figure(figsize=(6.4, 3.2))
    ax = axes[0, 0]
    colors = ["#c0392b" if im["truth"] == "synthetic" else "#2e8b57" for im in rows]
    ax.bar(np.arange(len(rows)), [im["wrong_rate"] for im in rows], color=colors, width=0.9)
    ax.set_ylim(0, 1)
    ax.set_xlabel("image (green: real, red: synthetic; sorted)")
    ax.set_ylabel("share of readers wrong")
    ax.set_title("Per image: synthetic ones called real (fooled), real ones called synthetic")
    return figure_png(fig)


def figures(results: dict[str, Any]) -> dict[str, bytes]:
    return {
        FIG_READERS: readers_figure(results),
        FIG_ROC: roc_figure(results),
        FIG_REALISM: realism_figure(results),
        FIG_IMAGES: images_figure(results),
    }


def reader_lines(results: dict[str, Any]) -> list[str]:
    """One plain sentence per reader (and all readers pooled)."""
    return [
        f"{r['reader']}: {r['answered']}/{r['of']} answered; accuracy {_ci(r['accuracy'])}, "
        f"sensitivity {_ci(r['sensitivity'])}, specificity {_ci(r['specificity'])}, "
        f"binomial p {_p(r['binomial_p'])} (chance {_num(r.get('chance'))}), Fisher p "
        f"{_p(r.get('independence_p'))}, realism AUC {_num(r['auc_realism'])}"
        for r in [*results["readers"], results["pooled"]]
    ]


def summary_lines(results: dict[str, Any]) -> list[str]:
    s, ag, re_ = results["study"], results["agreement"], results["realism"]
    fooled = [
        im["wrong_rate"]
        for im in results["images"]
        if im["truth"] == "synthetic" and im["wrong_rate"] is not None
    ]
    return [
        f"{s['images']} images ({s['real']} real, {s['synthetic']} synthetic), {s['readers']} "
        f"readers, {s['answers']} answers.",
        f"Fleiss' kappa {_num(ag['fleiss_kappa'])} over {ag['images']} images answered by all "
        f"{ag['readers']} readers with answers.",
        f"Synthetic images called real by readers: mean {_num(np.mean(fooled) if fooled else None)}"
        f" per image; realism median real {_num(re_['real']['median'], 1)} vs synthetic "
        f"{_num(re_['synthetic']['median'], 1)} (Mann-Whitney p {_p_text(re_['mannwhitney_p'])}, "
        f"pooled AUC {_num(re_['auc'])}).",
    ]


def tell_lines(tells: list[str] | None) -> list[str]:
    """The warning about pixel statistics that separate the classes (create's check)."""
    if not tells:
        return []
    return [
        "Warning: real and synthetic images differ in simple pixel statistics, so a reader "
        "could tell them apart without judging anatomy (by window/level or any image tool): "
        + "; ".join(tells)
        + "."
    ]


CAPTIONS = {
    FIG_READERS: "Positive class: synthetic. Accuracy against chance (dashed: the larger class "
    "share, what always giving the more common answer scores; 0.5 when balanced) with an exact "
    "binomial test (two-sided when balanced, else one-sided); Fisher's exact test of answer vs "
    "truth holds for any balance. The pooled row treats all answers as independent, which they "
    "are not.",
    FIG_ROC: "A low realism score read as 'synthetic'; AUC = Mann-Whitney U / (n_real n_synth).",
    FIG_REALISM: "Pooled over readers.",
    FIG_IMAGES: "A synthetic image many readers called real is a convincing one; a real image "
    "many called synthetic points at what readers take for artefacts.",
}
TITLES = {
    FIG_READERS: "Reader study: accuracy, sensitivity, specificity per reader",
    FIG_ROC: "Reader study: ROC from the realism score",
    FIG_REALISM: "Reader study: realism score by class",
    FIG_IMAGES: "Reader study: per-image error ('fooled') rate",
}


def section_entries(results: dict[str, Any]) -> list[tuple[str, str, str, bytes]]:
    """(file, title, caption, png) of each figure for `mrisynth report --reader-study`."""
    files = figures(results)
    tells = tell_lines(results["study"].get("tells"))  # first: it may explain the rest
    extra = {FIG_READERS: [*tells, *reader_lines(results)], FIG_IMAGES: summary_lines(results)}
    return [
        (name, TITLES[name], "\n".join([CAPTIONS[name], *extra.get(name, [])]), blob)
        for name, blob in files.items()
    ]


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;"
    "padding:.25em .6em}th{background:#eee}td.num{text-align:right;"
    "font-variant-numeric:tabular-nums}img{max-width:100%}figcaption{font-size:.9em;color:#555}"
    ".warn{background:#fff3cd;border-left:4px solid #c90;padding:.4em .8em}"
)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{escape(c)}</td>' for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _reader_table(results: dict[str, Any]) -> str:
    header = [
        "reader",
        "answered",
        "accuracy (95% CI)",
        "sensitivity",
        "specificity",
        "binomial p",
        "Fisher p",
        "realism AUC",
        "realism p",
        "median s",
    ]
    rows = [
        [
            r["reader"],
            f"{r['answered']}/{r['of']}",
            _ci(r["accuracy"]),
            _ci(r["sensitivity"]),
            _ci(r["specificity"]),
            _p(r["binomial_p"]),
            _p(r.get("independence_p")),
            _num(r["auc_realism"]),
            _p(r["realism_p"]),
            _num(r["median_seconds"], 1),
        ]
        for r in [*results["readers"], results["pooled"]]
    ]
    return _table(header, rows)


def _comments(results: dict[str, Any]) -> str:
    rows = [
        [a["reader"], str(a["image"]), a["truth"], a["label"], a["comment"]]
        for a in results["answers"]
        if a["comment"]
    ]
    if not rows:
        return "<p>No comments.</p>"
    return _table(["reader", "image", "truth", "answer", "comment"], rows)


def render_page(results: dict[str, Any], files: list[str]) -> str:
    """STUDY/analysis/index.html: tables, figures, comments."""
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Reader study '
        f"analysis</title><style>{_CSS}</style></head><body>",
        '<h1>Reader study: analysis</h1><section id="reader-study">',
    ]
    tells = tell_lines(results["study"].get("tells"))
    parts += [f'<p class="warn">{escape(line, limit=2000)}</p>' for line in tells]
    parts += [f"<p>{escape(line)}</p>" for line in summary_lines(results)]
    parts += ["<h2>Per reader</h2>", _reader_table(results)]
    parts.append(f"<p>{escape(CAPTIONS[FIG_READERS])}</p>")
    for name in files:
        parts.append(
            f'<figure><img src="{escape(name)}" alt="{escape(TITLES[name])}"><figcaption>'
            f"<b>{escape(TITLES[name])}</b><br>{escape(CAPTIONS[name])}</figcaption></figure>"
        )
    parts += ["<h2>Comments</h2>", _comments(results), "</section>"]
    parts.append(
        "<p><small>Files: results.json, readers.csv, images.csv, answers.csv.</small></p>"
        "</body></html>"
    )
    return "\n".join(parts) + "\n"


def add_to_report(report: Any, study: Path) -> None:
    """`mrisynth report RUN --reader-study STUDY`: the study's figures, with each reader's
    numbers in the captions, as the report's reader-study section."""
    from mrisynth.readerstudy import store
    from mrisynth.readerstudy.analysis import analyse
    from mrisynth.report.build import FigureEntry

    con = store.open_study(study, readonly=True)
    try:
        results = analyse(con)
    finally:
        con.close()
    for name, title, caption, blob in section_entries(results):
        report.add(FigureEntry(name, title, caption, section=SECTION), blob)
