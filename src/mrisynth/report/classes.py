"""Per-class grids of a conditional run: the same latents asked for every class, one row each.

With position classes (`dataset --labels position:K`) the rows go from the top of the abdomen
to the bottom, so the figure shows whether the model moves through the body as asked; with
sequences each row is one contrast. The class names come from the snapshot
(`generate.classes.snapshot_class_names`); a run without them gets no such figure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrisynth.errors import CheckpointError
from mrisynth.imaging import encode_png, make_grid
from mrisynth.report.figures import figure_png, new_figure

log = logging.getLogger(__name__)

MAX_CLASSES = 32  # rows of the figure; more would not be readable
SEEDS = 8  # columns: latents shared by every row


@dataclass(frozen=True)
class ClassGrids:
    """Generated images per class: uint8 [K, S, C, H, W] for `names` (class order)."""

    names: list[str]
    images: np.ndarray
    seeds: list[int]
    snapshot: str
    kimg: int | None = None


def class_grids(snapshot: Path, device: str = "cpu", num: int = SEEDS) -> ClassGrids | None:
    """Images of every class of a conditional snapshot with recorded class names, else None."""
    from mrisynth.devices import resolve_device
    from mrisynth.generate.classes import snapshot_class_names
    from mrisynth.generate.sampling import SamplingOptions, sample_images
    from mrisynth.training.checkpoint import load_generator

    dev = resolve_device(device)
    G, info = load_generator(snapshot, device=str(dev))
    if int(G.c_dim) == 0:
        return None
    try:  # a bad name record costs this figure, not the whole report
        names = snapshot_class_names(info.path)
    except CheckpointError as exc:
        log.warning("per-class figure left out: %s", exc)
        return None
    if names is not None and len(names) != int(G.c_dim):
        log.warning("per-class figure left out: %s records %d class names for %d classes",
                    info.path.name, len(names), int(G.c_dim))
        return None
    if not names:
        return None
    if len(names) > MAX_CLASSES:
        log.warning("%d classes: the per-class figure shows the first %d", len(names), MAX_CLASSES)
        names = names[:MAX_CLASSES]
    seeds = list(range(num))
    rows = []
    for k in range(len(names)):
        opts = SamplingOptions(class_idx=k)
        rows.append(np.stack([img for _, img in sample_images(G, seeds, opts, dev)]))
    return ClassGrids(names, np.stack(rows), seeds, info.path.name, info.kimg)


def is_position(names: list[str]) -> bool:
    """Every class is a position bin (alone or paired with a sequence)."""
    from mrisynth.generate.classes import class_parts

    return all(class_parts(n)[1] is not None for n in names)


def class_figure(grids: ClassGrids) -> bytes:
    """One labelled row per class (matplotlib PNG)."""
    k, s = grids.images.shape[:2]
    fig, axes = new_figure(k, s, figsize=(0.9 * s + 1.6, 0.9 * k + 0.4))
    for r in range(k):
        for c in range(s):
            ax = axes[r, c]
            img = grids.images[r, c]  # [C, H, W]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(grids.names[r], rotation=0, ha="right", va="center", fontsize=8)
    return figure_png(fig)


def class_grid_files(grids: ClassGrids) -> dict[str, bytes]:
    """`class-<index>.png`: one plain grid per class (the seeds in a row), for reuse."""
    return {f"class-{i:02d}.png": encode_png(make_grid(grids.images[i], cols=len(grids.seeds)))
            for i in range(len(grids.names))}


def caption(grids: ClassGrids) -> str:
    kimg = "" if grids.kimg is None else f" at {grids.kimg} kimg"
    paired = any("+" in n for n in grids.names)
    order = ("" if not is_position(grids.names) else
             "Rows from the top of the abdomen (position 0) to the bottom (1) within each "
             "sequence. " if paired else
             "Rows from the top of the abdomen (position 0) to the bottom (1). ")
    return (f"Snapshot {grids.snapshot}{kimg}: seeds {grids.seeds[0]}-{grids.seeds[-1]} (one "
            f"column each, the same latent in every row) generated for each class. {order}"
            "Each row is also saved alone as class-NN.png (NN = the class index).")


def run_class_grids(run, device: str = "cpu") -> ClassGrids | None:
    """`class_grids` of the snapshot Figure 4 uses (report.build.panel_snapshot)."""
    from mrisynth.report.build import panel_snapshot

    snapshot = panel_snapshot(run)
    return class_grids(snapshot, device) if snapshot is not None else None


def panel_samples(G, seeds: list[int], device) -> list[np.ndarray]:
    """Figure 4's generated images; a conditional G gets class seed % c_dim for each seed."""
    from mrisynth.generate.sampling import SamplingOptions, sample_images

    c_dim = int(G.c_dim)
    if c_dim == 0:
        return [img for _, img in sample_images(G, seeds, SamplingOptions(), device)]
    return [next(sample_images(G, [s], SamplingOptions(class_idx=s % c_dim), device))[1]
            for s in seeds]
