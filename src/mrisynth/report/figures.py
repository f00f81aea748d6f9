"""The study's figures as PNG bytes: precision/recall (Fig. 1), FID (Fig. 2) and KID x1e3
(Fig. 3) against kimg, other logged metrics, and the training curves (losses, r_t, augment p).

matplotlib's object API with the Agg renderer (no pyplot state, no display, nothing fetched
from the internet), so figures can be drawn from any thread or a headless server.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mrisynth.report.runfiles import stat_series
from mrisynth.report.tables import Series

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
    ax.set_xlabel("kimg (thousands of real images shown to D)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if caption:
        fig.text(0.01, -0.02, caption, fontsize=7, color="#a33", va="top")
    return fig, ax


def precision_recall_figure(precision: Series | None, recall: Series | None) -> bytes:
    """Figure 1: precision and recall (%) over training."""
    present = [s for s in (precision, recall) if s is not None]
    fig, ax = _axes("Precision and recall vs kimg", "%", _caption(present))
    for s, label, style in ((precision, "precision", "o-"), (recall, "recall", "s-")):
        if s is not None:
            ax.plot(s.kimg, [100 * v for v in s.values], style, ms=3, label=f"{label} ({s.key})")
    ax.legend()
    return figure_png(fig)


def single_metric_figure(
    s: Series, title: str, ylabel: str, scale: float = 1.0, std: Series | None = None
) -> bytes:
    """Figure 2 (FID) or 3 (KID, scale 1e3, with its std band when logged)."""
    fig, ax = _axes(title, ylabel, _caption([s]))
    ys = [scale * v for v in s.values]
    ax.plot(s.kimg, ys, "o-", ms=3, label=s.key)
    if std is not None:
        lo = [y - scale * d for y, d in zip(ys, std.values, strict=True)]
        hi = [y + scale * d for y, d in zip(ys, std.values, strict=True)]
        ax.fill_between(s.kimg, lo, hi, alpha=0.2, label=std.key)
    best = min(range(len(s.values)), key=lambda i: s.values[i])
    if s.category in ("fid", "kid"):
        ax.annotate(
            f"best {scale * s.values[best]:.3g} @ {s.kimg[best]:g} kimg",
            (s.kimg[best], scale * s.values[best]),
            textcoords="offset points",
            xytext=(5, 10),
            fontsize=8,
        )
    ax.legend()
    return figure_png(fig)


def _panels(series: Sequence[Series]) -> list[tuple[str, list[Series]]]:
    """One panel per key, except that `X_gen_Y` and `X_real_Y` share a panel `X_Y`, so the
    generated value is read against the real one."""
    panels: dict[str, list[Series]] = {}
    for s in series:
        title = s.key
        for side in ("_gen_", "_real_"):
            if side in s.key:
                title = s.key.replace(side, "_", 1)
        panels.setdefault(title, []).append(s)
    return list(panels.items())


def metric_group_figure(metric: str, series: Sequence[Series]) -> bytes:
    """Every key of one metric file in small panels (keys have different scales)."""
    panels = _panels(series)
    n = len(panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = new_figure(rows, cols, (3.6 * cols, 2.8 * rows))
    for ax, (title, group) in zip(axes.flat, panels, strict=False):
        for s in group:
            label = "real" if "_real_" in s.key else "generated" if "_gen_" in s.key else None
            ax.plot(s.kimg, s.values, "o-", ms=3, label=label)
        if len(group) > 1:
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("kimg", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"metric {metric}")
    fig.tight_layout()
    return figure_png(fig)


TRAINING_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Losses", ("Loss/G/loss", "Loss/D/loss")),
    ("Regularisers", ("Loss/r1_penalty", "Loss/pl_penalty")),
    ("ADA overfitting heuristic r_t", ("Loss/signs/real", "Augment/r_t")),
    ("Augment probability p", ("Progress/augment",)),
)


def training_figure(stats: list[dict[str, Any]], target: float | None = None) -> bytes | None:
    """Training curves from stats.jsonl; None when no tick has any of them."""
    found = [
        (title, [(k, *stat_series(stats, k)) for k in keys]) for title, keys in TRAINING_PANELS
    ]
    found = [(t, [c for c in curves if c[1]]) for t, curves in found]
    found = [(t, curves) for t, curves in found if curves]
    if not found:
        return None
    fig, axes = new_figure(2, 2, (10, 6.5))
    for ax, (title, curves) in zip(axes.flat, found, strict=False):
        for key, xs, ys in curves:
            ax.plot(xs, ys, "-", lw=1.2, label=key)
        if "r_t" in title and target is not None:
            ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:g}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("kimg", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(found) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return figure_png(fig)
