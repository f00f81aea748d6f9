"""Figure 4 of the study: generated images beside their most similar training images.

Similarity is the normalised cross-correlation (NCC) of pixels, the measure a reader's eye
follows: 1.0 means the same image up to brightness and contrast, so a column with NCC near 1
is a likely copy of a training slice.
"""

from __future__ import annotations

import numpy as np

from mrisynth.report.figures import figure_png, new_figure


def _standardise(images: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W] -> zero-mean, unit-norm float32 rows [N, C*H*W]."""
    x = images.reshape(len(images), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-6)


def nearest_by_ncc(
    generated: np.ndarray, train: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Index of each generated image's most similar training image and that NCC.

    generated [N, C, H, W], train [M, C, H, W] (uint8, same shape) -> (idx [N], ncc [N]).
    """
    if generated.shape[1:] != train.shape[1:]:
        raise ValueError(
            f"image shapes differ: generated {generated.shape[1:]}, training {train.shape[1:]}"
        )
    g = _standardise(generated)  # [N, D]
    best_idx = np.zeros(len(g), dtype=np.int64)
    best = np.full(len(g), -np.inf, dtype=np.float32)
    for start in range(0, len(train), chunk):
        t = _standardise(train[start : start + chunk])  # [m, D]
        sim = g @ t.T  # [N, m]
        j = sim.argmax(axis=1)
        s = sim[np.arange(len(g)), j]
        better = s > best
        best[better] = s[better]
        best_idx[better] = j[better] + start
    return best_idx, best


def _show(ax, image: np.ndarray) -> None:
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def real_vs_generated_figure(
    generated: np.ndarray, train: np.ndarray, seeds: list[int], title: str = ""
) -> bytes:
    """Two rows: generated images (top) and their nearest training images by NCC (bottom)."""
    idx, ncc = nearest_by_ncc(generated, train)
    n = len(generated)
    fig, axes = new_figure(2, n, (1.7 * n, 3.9))
    for i in range(n):
        _show(axes[0, i], generated[i])
        axes[0, i].set_title(f"seed {seeds[i]}", fontsize=8)
        _show(axes[1, i], train[idx[i]])
        axes[1, i].set_title(f"NCC {ncc[i]:.3f}", fontsize=8)
    axes[0, 0].set_ylabel("generated", fontsize=9)
    axes[1, 0].set_ylabel("nearest real", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_png(fig)
