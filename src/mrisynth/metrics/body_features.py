"""A weight-free representation of the body in a slice, robust to shifts, flips and gain.

Whole-image similarity is dominated by the black background around the body: on abdominal
slices every pair has a pixel NCC of 0.90-0.97, so a copy threshold on it means nothing. Here
each image is reduced to what is inside the body:

1. body mask: `mrisynth.metrics.weightfree.body_mask`, the same mask `body_area`,
   `pixfd` and the diversity figures measure;
2. crop to the mask's bounding box and resample crop and mask to `size` x `size` (area
   interpolation): a body shifted by a few pixels gives the same crop;
3. grey levels inside the mask standardised to zero mean and unit variance, 0 outside: an
   intensity-scaled copy (gain, offset) gives the same vector.

`body_distances` compares each query and its left-right mirror image against every reference
and keeps the smaller distance, so a flipped copy is as close as the original. Distances are
root-mean-square differences of those standardised grey levels (0 = identical body; unrelated
bodies sit around 0.5-1.4).
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from mrisynth.metrics.weightfree import body_mask

DEFAULT_SIZE = 32
_MIN_BODY_PIXELS = 4  # fewer: no body (blank or noise-only image), the zero vector


def to_gray(images: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W] -> float64 [N, H, W] (mean over channels)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, C, H, W], got {x.dtype} {x.shape}")
    return x.astype(np.float64).mean(axis=1)


def _gray_uint8(gray: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def _body_frame(mask: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine map from the `size` x `size` output grid to image coordinates.

    Centred on the mask's centroid, each axis spanning +-2.2 standard deviations of the mask's
    coordinates (a uniform ellipse's semi-axis is 2 of them): moments move by a fraction of a
    pixel when one boundary pixel flickers, where a bounding box would jump a whole pixel.
    """
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    hy, hx = (2.2 * max(float(v.std()), 0.5) for v in (ys, xs))
    c = (size - 1) / 2
    sx, sy = 2 * hx / size, 2 * hy / size
    return np.array([[sx, 0, cx - c * sx], [0, sy, cy - c * sy]], np.float64)


def body_vector(gray: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """One float64 [H, W] slice (0..255) -> float32 [size * size] body representation."""
    mask = body_mask(_gray_uint8(gray))
    if mask.sum() < _MIN_BODY_PIXELS:
        return np.zeros(size * size, np.float32)
    frame = _body_frame(mask, size)
    src = gray.astype(np.float32)
    shrink = max(frame[0, 0], frame[1, 1])
    if shrink > 1:  # downsampling: blur first so that the grid does not alias
        src = cv2.GaussianBlur(src, (0, 0), sigmaX=0.5 * shrink)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    crop = cv2.warpAffine(src, frame, (size, size), flags=flags)
    inside = cv2.warpAffine(mask.astype(np.float32), frame, (size, size), flags=flags) >= 0.5
    values = crop[inside].astype(np.float64)
    if values.size < 2:
        return np.zeros(size * size, np.float32)
    std = values.std()
    out = np.zeros([size, size], np.float64)
    out[inside] = (values - values.mean()) / (std if std > 1e-6 else 1.0)
    return out.astype(np.float32).ravel()


def body_vectors(images: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """uint8 [N, C, H, W] -> float32 [N, size * size] body representations."""
    gray = to_gray(images)
    if gray.shape[0] == 0:
        return np.zeros([0, size * size], np.float32)
    return np.stack([body_vector(g, size) for g in gray])


def mirrored(vectors: np.ndarray) -> np.ndarray:
    """Representations of the left-right mirrored images (the crop is mirrored with the body)."""
    n, d = vectors.shape
    size = round(float(np.sqrt(d)))
    return vectors.reshape(n, size, size)[:, :, ::-1].reshape(n, d)


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances [len(a), len(b)] in float64, clipped at 0."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def distance_blocks(
    queries: np.ndarray, refs: np.ndarray, batch: int = 512
) -> Iterator[tuple[int, np.ndarray]]:
    """(row offset, RMS distances [b, len(refs)]) blocks; each query's mirror image counts too."""
    dim = max(1, queries.shape[1])
    for start in range(0, queries.shape[0], batch):
        q = queries[start : start + batch]
        d = np.minimum(_sq_distances(q, refs), _sq_distances(mirrored(q), refs))
        yield start, np.sqrt(d / dim)


def nearest(queries: np.ndarray, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to and index of each query's nearest reference: float64 [Q], int64 [Q]."""
    if refs.shape[0] == 0:
        raise ValueError("no reference images to compare with")
    dist = np.empty(queries.shape[0], np.float64)
    idx = np.empty(queries.shape[0], np.int64)
    for start, block in distance_blocks(queries, refs):
        j = block.argmin(axis=1)
        idx[start : start + len(j)] = j
        dist[start : start + len(j)] = block[np.arange(len(j)), j]
    return dist, idx


def _nearest_excluding(vectors: np.ndarray, rows: np.ndarray | None, excluded) -> np.ndarray:
    """Distance of each of vectors[rows] to its nearest vector not `excluded(i_rows, cols)`."""
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows, np.int64)
    out = np.full(len(rows), np.nan)
    for start, block in distance_blocks(vectors[rows], vectors):
        idx = rows[start : start + block.shape[0]]
        block = np.where(excluded(idx[:, None], np.arange(len(vectors))[None, :]), np.inf, block)
        best = block.min(axis=1)
        out[start : start + len(best)] = np.where(np.isfinite(best), best, np.nan)
    return out


def nearest_other_patient(
    vectors: np.ndarray, patient_keys: list[str], rows: np.ndarray | None = None
) -> np.ndarray:
    """Distance of each image (of `rows`, default all) to its nearest image of ANOTHER
    patient; NaN when there is none."""
    keys = np.unique(np.asarray(patient_keys), return_inverse=True)[1]  # ints compare fast
    if len(keys) != vectors.shape[0]:
        raise ValueError("one patient key per image is needed")
    return _nearest_excluding(vectors, rows, lambda i, j: keys[i] == keys[j])


def nearest_other_image(vectors: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Distance of each image (of `rows`) to its nearest OTHER image (no patient keys)."""
    return _nearest_excluding(vectors, rows, lambda i, j: i == j)


def body_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: body-mask area fraction and mean grey level inside the mask (NaN if no body)."""
    gray = to_gray(images)
    area = np.zeros(gray.shape[0])
    mean = np.full(gray.shape[0], np.nan)
    for i, g in enumerate(gray):
        mask = body_mask(_gray_uint8(g))
        area[i] = mask.mean()
        if mask.any():
            mean[i] = g[mask].mean()
    return area, mean
