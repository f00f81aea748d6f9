"""The study's figures as PNG bytes: precision/recall (Fig. 1), FID (Fig. 2) and KID x1e3
(Fig. 3) against kimg, other logged metrics, and the training curves (losses, r_t, augment p).

matplotlib's object API with the Agg renderer (no pyplot state, no display, nothing fetched
from the internet), so figures can be drawn from any thread or a headless server.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mrisynth.report.runfiles import stat_series
from mrisynth.report.tables import Series
from mrisynth.report.units import KIMG_LABEL, KIMG_SHORT, unit_of

DPI = 110


def figure_png(fig: Figure) -> bytes:
    """Render and close a figure; deterministic metadata so re-runs give the same bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def new_figure(
    rows: int = 1, cols: int = 1, figsize: tuple[float, float] = (6.4, 4.0)
) -> tuple[Figure, Any]:
    """A figure and its axes grid (always 2-D), outside pyplot's global state."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _caption(series: Sequence[Series]) -> str:
    notes = sorted({n for s in series for n in s.caveats()})
    return "\n".join(notes)


def _axes(title: str, ylabel: str, caption: str = "") -> tuple[Figure, Any]:
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.set_title(title)
    ax.set_xlabel(KIMG_LABEL)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if caption:
        fig.text(0.01, -0.02, caption, fontsize=7, color="#a33", va="top")
    return fig, ax


def precision_recall_figure(precision: Series | None, recall: Series | None) -> bytes:
    """Figure 1: precision and recall (%) over training."""
    present = [s for s in (precision, recall) if s is not None]
    fig, ax = _axes("Precision and recall vs kimg", "% of images", _caption(present))
    for s, label, style in ((precision, "precision", "o-"), (recall, "recall", "s-")):
        if s is not None:
            xs, ys = _points(s)
            ax.plot(xs, [100 * v for v in ys], style, ms=3, label=f"{label} ({s.key})")
    ax.legend()
    return figure_png(fig)


def single_metric_figure(
    s: Series, title: str, ylabel: str, scale: float = 1.0, std: Series | None = None
) -> bytes:
    """Figure 2 (FID) or 3 (KID, scale 1e3, with its std band when logged)."""
    fig, ax = _axes(title, ylabel, _caption([s]))
    xs, values = _points(s)
    ys = [scale * v for v in values]
    ax.plot(xs, ys, "o-", ms=3, label=s.key)
    if std is not None and len(std.values) == len(s.values):
        _, stds = _points(std)
        lo = [y - scale * d for y, d in zip(ys, stds, strict=True)]
        hi = [y + scale * d for y, d in zip(ys, stds, strict=True)]
        ax.fill_between(xs, lo, hi, alpha=0.2, label=std.key)
    if s.category in ("fid", "kid") and xs:
        best = min(range(len(ys)), key=lambda i: ys[i])
        ax.annotate(
            f"best {ys[best]:.3g} @ {xs[best]:g} kimg",
            (xs[best], ys[best]),
            textcoords="offset points",
            xytext=(5, 10),
            fontsize=8,
        )
    ax.legend()
    return figure_png(fig)


def side_of(key: str) -> str | None:
    """'generated' / 'real' for keys `X_gen_Y` / `X_real_Y` (or ending `_gen` / `_real`)."""
    for side, name in (("_gen", "generated"), ("_real", "real")):
        if f"{side}_" in key or key.endswith(side):
            return name
    return None


def _panels(series: Sequence[Series]) -> list[tuple[str, list[Series]]]:
    """One panel per key, except that `X_gen_Y` and `X_real_Y` (or `X_gen`, `X_real`) share a
    panel `X_Y`, so the generated value is read against the real one."""
    panels: dict[str, list[Series]] = {}
    for s in series:
        title = s.key
        for side in ("_gen", "_real"):
            if f"{side}_" in s.key:
                title = s.key.replace(f"{side}_", "_", 1)
            elif s.key.endswith(side):
                title = s.key[: -len(side)]
        panels.setdefault(title, []).append(s)
    return list(panels.items())


def _points(s: Series) -> tuple[list[float], list[float]]:
    """(kimg, value) pairs of a series that has a kimg (evaluations of image folders have none)."""
    pairs = [(k, v) for k, v in zip(s.kimg, s.values, strict=True) if k is not None]
    return [k for k, _ in pairs], [v for _, v in pairs]


def metric_group_figure(metric: str, series: Sequence[Series]) -> bytes:
    """Every key of one metric file in small panels (keys have different scales)."""
    panels = _panels(series)
    n = len(panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = new_figure(rows, cols, (3.6 * cols, 2.8 * rows))
    for ax, (title, group) in zip(axes.flat, panels, strict=False):
        for s in group:
            ax.plot(*_points(s), "o-", ms=3, label=side_of(s.key))
        if len(group) > 1:
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(KIMG_SHORT, fontsize=8)
        ax.set_ylabel(unit_of(title), fontsize=7)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"metric {metric}")
    fig.tight_layout()
    return figure_png(fig)


# (title, y-axis label with unit, stats.jsonl keys)
TRAINING_PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Losses", "loss (softplus of logits, nats)", ("Loss/G/loss", "Loss/D/loss")),
    ("Regularisers", "penalty (squared gradient norm)", ("Loss/r1_penalty", "Loss/pl_penalty")),
    (
        "ADA overfitting heuristic r_t",
        "mean sign of D(real), -1 to 1",
        ("Loss/signs/real", "Augment/r_t"),
    ),
    ("Augment probability p", "probability (0-1)", ("Progress/augment",)),
)


def training_figure(stats: list[dict[str, Any]], target: float | None = None) -> bytes | None:
    """Training curves from stats.jsonl; None when no tick has any of them."""
    found = [
        (title, unit, [(k, *stat_series(stats, k)) for k in keys])
        for title, unit, keys in TRAINING_PANELS
    ]
    found = [(t, u, [c for c in curves if c[1]]) for t, u, curves in found]
    found = [(t, u, curves) for t, u, curves in found if curves]
    if not found:
        return None
    fig, axes = new_figure(2, 2, (10, 6.5))
    for ax, (title, unit, curves) in zip(axes.flat, found, strict=False):
        ax.set_ylabel(unit, fontsize=8)
        for key, xs, ys in curves:
            ax.plot(xs, ys, "-", lw=1.2, label=key)
        if "r_t" in title and target is not None:
            ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:g}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(KIMG_LABEL, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(found) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return figure_png(fig)


def fitted_range(
    edges: Sequence[float], counts: Sequence[float], marks: Sequence[float] = ()
) -> tuple[float, float]:
    """x-limits that hold every occupied bin and every marked value, with a 5 % margin."""
    occupied = [i for i, c in enumerate(counts) if c > 0]
    lo = edges[occupied[0]] if occupied else edges[0]
    hi = edges[occupied[-1] + 1] if occupied else edges[-1]
    lo, hi = min([lo, *marks]), max([hi, *marks])
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 1e-3)
    return lo - pad, hi + pad


_HIST_COLOURS = ("#4a7ab5", "#e08a2c", "#5a9e5a", "#9b59b6")


def histogram_figure(
    edges: Sequence[float],
    counts: dict[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str = "images (count)",
    marks: Sequence[tuple[float, str]] = (),
) -> bytes:
    """Histograms sharing bin edges (one per named count list), x-axis fitted to the data.

    One series is drawn as bars; several as outlined steps so each stays readable. `marks` are
    (x, label) dashed vertical lines (e.g. a threshold). Both axis labels should carry a unit.
    """
    fig, axes = new_figure(figsize=(6.4, 3.6))
    ax = axes[0, 0]
    widths = [b - a for a, b in itertools.pairwise(edges)]
    total = [sum(c) for c in zip(*counts.values(), strict=True)] if counts else []
    for (name, c), colour in zip(counts.items(), itertools.cycle(_HIST_COLOURS), strict=False):
        if len(counts) == 1:
            ax.bar(edges[:-1], c, width=widths, align="edge", color=colour, edgecolor="white")
        else:
            ax.stairs(c, edges, color=colour, lw=1.6, label=name)
    for x, label in marks:
        ax.axvline(x, color="#c33", ls="--", lw=1, label=label)
    if marks or len(counts) > 1:
        ax.legend(fontsize=8)
    ax.set_xlim(*fitted_range(edges, total, [x for x, _ in marks]))
    peak = max((max(c, default=0) for c in counts.values()), default=0)
    ax.set_ylim(0, max(peak, 1) * 1.1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    return figure_png(fig)
