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


PER_ROW = 4  # pairs per row: each tile stays >= ~200 px wide on a 1100 px page


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def real_vs_generated_figure(
    generated: np.ndarray,
    train: np.ndarray,
    seeds: list[int],
    train_names: list[str] | None = None,
    patient_keys: list[str] | None = None,
    title: str = "",
) -> bytes:
    """Generated images (upper row of each pair) above their nearest training images by NCC.

    Each pair is labelled with the seed, the training image's patient key and file name (when
    the archive has them) and the NCC with its distance 1 - NCC.
    """
    idx, ncc = nearest_by_ncc(generated, train)
    n = len(generated)
    cols = min(n, PER_ROW)
    bands = -(-n // cols)
    fig, axes = new_figure(2 * bands, cols, (2.6 * cols, 5.6 * bands))
    for ax in axes.flat:
        ax.set_visible(False)
    for i in range(n):
        top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        top.set_visible(True)
        bottom.set_visible(True)
        _show(top, generated[i])
        top.set_title(f"generated, seed {seeds[i]}", fontsize=9)
        j = int(idx[i])
        who = []
        if patient_keys is not None and j < len(patient_keys):
            who.append(f"patient {_short(str(patient_keys[j]))}")
        if train_names is not None and j < len(train_names):
            who.append(_short(str(train_names[j])))
        who.append(f"NCC {ncc[i]:.3f} (1 - NCC = {1 - ncc[i]:.3f})")
        _show(bottom, train[j])
        bottom.set_xlabel("\n".join(who), fontsize=8)
        if i % cols == 0:
            top.set_ylabel("generated", fontsize=9)
            bottom.set_ylabel("nearest training image", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_png(fig)
