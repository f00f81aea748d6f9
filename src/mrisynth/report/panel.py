"""Figure 4 of the study: generated images beside their most similar training images.

Similarity is the normalised cross-correlation (NCC) of pixels, the measure a reader's eye
follows: 1.0 means the same image up to brightness and contrast, so a column with NCC near 1
is a likely copy of a training slice.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mrisynth.metrics.sources import metric_images
from mrisynth.report.figures import figure_png


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
    Compared as metrics measure them (`metric_images`): a paired image + mask model by its
    image channel only, since a shared mask would otherwise decide the match.
    """
    if generated.shape[1:] != train.shape[1:]:
        raise ValueError(
            f"image shapes differ: generated {generated.shape[1:]}, training {train.shape[1:]}"
        )
    generated, train = metric_images(generated), metric_images(train)
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
    if image.shape[0] in (1, 2):  # 2: a paired image + mask model; show the image channel
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


PER_ROW = 4  # pairs per row: each tile stays >= ~200 px wide on a 1100 px page


def _short(text: str, limit: int = 26) -> str:
    """Head and tail of a long name: the tail tells slices of one series apart."""
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return text[:half] + "…" + text[-(limit - 1 - half) :]


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
    # One sub-figure per band of pairs, so the gap between bands is wider than within a pair.
    fig = Figure(figsize=(2.6 * cols, 5.4 * bands), layout="constrained")
    subs = fig.subfigures(bands, 1, hspace=0.04, squeeze=False)[:, 0]
    for b, sub in enumerate(subs):
        axes = sub.subplots(2, cols, squeeze=False)
        for c in range(cols):
            i = b * cols + c
            if i >= n:
                axes[0, c].set_visible(False)
                axes[1, c].set_visible(False)
                continue
            _show(axes[0, c], generated[i])
            axes[0, c].set_title(f"generated, seed {seeds[i]}", fontsize=9)
            j = int(idx[i])
            _show(axes[1, c], train[j])
            axes[1, c].set_xlabel(_pair_label(j, ncc[i], train_names, patient_keys), fontsize=8)
        axes[0, 0].set_ylabel("generated", fontsize=9)
        axes[1, 0].set_ylabel("nearest training image", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return figure_png(fig)


def _pair_label(j: int, ncc: float, names: list[str] | None, patient_keys: list[str] | None) -> str:
    """Patient key and file name of training image j (when known), NCC and 1 - NCC."""
    who = []
    if patient_keys is not None and j < len(patient_keys):
        who.append(f"patient {_short(str(patient_keys[j]))}")
    if names is not None and j < len(names):
        who.append(_short(str(names[j])))
    who.append(f"NCC {ncc:.3f} (1 - NCC = {1 - ncc:.3f})")
    return "\n".join(who)
