"""The study's figure: Dice per organ per arm (mean and std over seeds) and, when asked, mean
Dice against the share of real slices, with and without synthetic slices."""

from __future__ import annotations

from typing import Any

import numpy as np

from mrisynth.downstream.options import ARMS
from mrisynth.report.figures import figure_png, new_figure

COLOURS = {"real": "#4c72b0", "synthetic": "#dd8452", "real+synthetic": "#55a868"}


def downstream_figure(doc: dict[str, Any]) -> bytes:
    """PNG bytes of the figure for a downstream.json document."""
    curve = doc["results"].get("fraction_curve")
    fig, axes = new_figure(1, 2 if curve else 1, figsize=(11.0 if curve else 6.4, 4.0))
    _bars(axes[0, 0], doc)
    if curve:
        _curve(axes[0, 1], doc, curve)
    return figure_png(fig)


def _bars(ax: Any, doc: dict[str, Any]) -> None:
    organs = [*doc["organs"], "all_organs"]
    means = doc["results"]["dice"]["means"]
    width = 0.8 / len(ARMS)
    x = np.arange(len(organs))
    for i, arm in enumerate(ARMS):
        cells = [means[arm][o] for o in organs]
        mean = [c["mean"] if c["mean"] is not None else np.nan for c in cells]
        std = [c["std"] if c["std"] is not None else 0.0 for c in cells]
        ax.bar(x + (i - 1) * width, mean, width, yerr=std, capsize=2, label=arm, color=COLOURS[arm])
    ax.plot(x[:-1], doc["chance_dice"], "k_", markersize=14, label="chance")
    ax.set_xticks(x, [o.replace("_", " ") for o in organs], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice on held-out real patients")
    ax.set_title(f"Per organ, mean ± std over {len(doc['options']['seeds'])} seed(s)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)


def _curve(ax: Any, doc: dict[str, Any], curve: list[dict[str, Any]]) -> None:
    for arm in ("real", "real+synthetic"):
        rows = [r for r in curve if r["arm"] == arm and r["mean"] is not None]
        f = [100 * r["fraction"] for r in rows]
        ax.errorbar(
            f,
            [r["mean"] for r in rows],
            yerr=[r["std"] or 0.0 for r in rows],
            marker="o",
            capsize=3,
            label=arm,
            color=COLOURS[arm],
        )
    syn = doc["results"]["dice"]["means"]["synthetic"]["all_organs"]["mean"]
    if syn is not None:
        ax.axhline(syn, color=COLOURS["synthetic"], ls="--", label="synthetic only")
    ax.set_xscale("log")
    ax.set_xlabel("real training slices used (%)")
    ax.set_ylabel("mean Dice over organs")
    ax.set_ylim(0, 1)
    ax.set_title("How many real slices does synthetic data replace?")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
