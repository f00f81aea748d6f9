"""The audit's closest pairs, labelled: which generated image, which patient, how close.

The memorisation runner writes `memorisation-<snapshot>.png`: rows of [generated | nearest
training | |difference|] tiles (W x W each, 2-pixel white separators), the closest pairs first,
in the order of the audit's per-image records sorted by distance (ties by generation index).
This module cuts that picture into its tiles and draws them again with a label per row: the
generated image's name (`seed<N>` or file name), the training image and its patient key, the
distance and its percentile among real between-patient distances, and the flag. A picture whose
geometry does not match the records is shown without labels (None here).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mrisynth.report.figures import figure_png, new_figure
from mrisynth.report.plaintext import plain
from mrisynth.report.runfiles import finite

SEP = 2  # separator width in the runner's picture
MAX_ROWS = 8


def tiles(picture: np.ndarray) -> list[list[np.ndarray]] | None:
    """[rows][3] tiles of grey [H, W] from the runner's picture uint8 [C, H, W], or None."""
    grey = picture[0]
    height, width = grey.shape
    w = (width - 2 * SEP) // 3
    if w <= 0 or 3 * w + 2 * SEP != width or (height + SEP) % (w + SEP):
        return None
    rows = (height + SEP) // (w + SEP)
    return [
        [
            grey[r * (w + SEP) : r * (w + SEP) + w, c * (w + SEP) : c * (w + SEP) + w]
            for c in range(3)
        ]
        for r in range(rows)
    ]


def closest_records(obj: dict[str, Any], count: int) -> list[dict[str, Any]] | None:
    """The audit's per-image records of the `count` closest pairs, in the picture's order."""
    images = obj.get("images")
    if not isinstance(images, list):
        return None
    usable = [r for r in images if isinstance(r, dict) and finite(r.get("distance")) is not None]
    usable.sort(key=lambda r: (finite(r["distance"]), finite(r.get("gen_index")) or 0.0))
    return usable[:count] if len(usable) >= count else None


def row_label(rec: dict[str, Any]) -> str:
    """Two-line label of one pair: generated name, then training image, patient, distance."""
    gen = plain(rec.get("gen_name") or f"seed {rec.get('seed')}", 40)
    patient = rec.get("patient_key")
    who = f"patient {plain(patient, 24)}" if patient not in (None, "") else "patient unknown"
    dist = finite(rec.get("distance"))
    pct = finite(rec.get("percentile"))
    closeness = f"distance {dist:.3g}" + (f" ({pct:.1f} percentile)" if pct is not None else "")
    flag = " FLAGGED" if rec.get("flagged") is True else ""
    train = plain(rec.get("train_name") or "", 32)
    return f"{gen}{flag}\n{train}, {who}\n{closeness}"


def closest_pairs_figure(picture: np.ndarray, obj: dict[str, Any]) -> bytes | None:
    """The labelled figure, or None when the picture and records do not fit together."""
    cut = tiles(picture)
    if not cut:
        return None
    cut = cut[:MAX_ROWS]
    records = closest_records(obj, len(cut))
    if records is None:
        return None
    fig, axes = new_figure(len(cut), 4, (9.0, 1.9 * len(cut)))
    heads = ("generated", "nearest training image", "|difference|")
    for r, (row, rec) in enumerate(zip(cut, records, strict=True)):
        for c, tile in enumerate(row):
            ax = axes[r, c]
            ax.imshow(tile, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=9)
        text = axes[r, 3]
        text.axis("off")
        colour = "#c0392b" if rec.get("flagged") is True else "#222"
        text.text(0.0, 0.5, row_label(rec), fontsize=9, va="center", color=colour)
    fig.tight_layout()
    return figure_png(fig)
