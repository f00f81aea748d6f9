"""Improved precision/recall (Kynkaanniemi et al. 2019, arXiv 1904.06991) plus density and
coverage (Naeem et al. 2020, arXiv 2002.09797) from the same k-NN radii.

A point's radius is the distance to its k-th nearest neighbour in its own set, itself excluded
(the (k+1)-th smallest distance with itself included). Precision: fraction of generated points
inside at least one real ball (`<=`); recall: fraction of real points inside at least one
generated ball. Density/coverage use the real balls only, with Naeem's strict `<`.
Distances are computed in blocks (rows x cols) so 50k x 50k never sits in memory; with
`fp16=True` the features are cast to float16 first for precision and recall, as NVIDIA's
reference does. Density and coverage are not in the reference and always come from float32
distances: from float16 ones, with the strict `<`, they come out up to ~11 % low (identical
sets gave density 0.92 instead of 1.00), because rounding creates ties at the k-th radius.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PrResult:
    precision: float
    recall: float
    density: float
    coverage: float


def _blocks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _to_tensor(x: np.ndarray | torch.Tensor, fp16: bool, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.to(device=device, dtype=torch.float16 if fp16 else torch.float32)


def _distance_block(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [r, D] x [c, D] -> [r, c] in the inputs' dtype.

    float16 always takes the matrix-product form (|x|^2 + |y|^2 - 2 x.y), which is what
    `torch.cdist` uses for blocks over 25 rows, so every block size behaves alike (and the
    direct form has no float16 kernel on CPU).
    """
    mode = (
        "use_mm_for_euclid_dist"
        if rows.dtype == torch.float16
        else ("use_mm_for_euclid_dist_if_necessary")
    )
    return torch.cdist(rows.unsqueeze(0), cols.unsqueeze(0), compute_mode=mode)[0]


def knn_radii(
    features: torch.Tensor, k: int, row_batch: int = 10000, col_batch: int = 10000
) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point: [N, D] -> [N].

    Keeps a running set of the k+1 smallest distances per row across column blocks, so memory
    stays at one block. The point itself (distance 0) is the first of the k+1.
    """
    n = features.shape[0]
    if n <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii, got {n}")
    radii = torch.empty([n], dtype=features.dtype, device=features.device)
    for rs in _blocks(n, row_batch):
        best = None  # [r, <=k+1] smallest distances so far
        for cs in _blocks(n, col_batch):
            dist = _distance_block(features[rs], features[cs])  # [r, c]
            merged = dist if best is None else torch.cat([best, dist], dim=1)
            take = min(k + 1, merged.shape[1])
            best = torch.topk(merged, take, dim=1, largest=False, sorted=True).values
        radii[rs] = best[:, k]
    return radii


def _ball_pass(
    real: torch.Tensor,
    gen: torch.Tensor,
    real_radii: torch.Tensor,
    gen_radii: torch.Tensor | None,
    row_batch: int,
    col_batch: int,
) -> dict[str, float]:
    """One blocked real-gen distance pass. Always density/coverage (strict `<`, Naeem);
    with `gen_radii` also precision/recall (`<=`, Kynkaanniemi)."""
    n, m, device = real.shape[0], gen.shape[0], real.device
    gen_in_real_ball = torch.zeros([m], dtype=torch.bool, device=device)  # precision
    real_in_gen_ball = torch.zeros([n], dtype=torch.bool, device=device)  # recall
    gen_ball_count = torch.zeros([m], dtype=torch.float64, device=device)  # density
    real_covered = torch.zeros([n], dtype=torch.bool, device=device)  # coverage
    for rs in _blocks(n, row_batch):
        r_rad = real_radii[rs].unsqueeze(1)  # [r, 1]
        nearest_gen = None
        for cs in _blocks(m, col_batch):
            dist = _distance_block(real[rs], gen[cs])  # [r, c]
            if gen_radii is not None:
                real_in_gen_ball[rs] |= (dist <= gen_radii[cs].unsqueeze(0)).any(dim=1)
                gen_in_real_ball[cs] |= (dist <= r_rad).any(dim=0)
            gen_ball_count[cs] += (dist < r_rad).sum(dim=0).to(torch.float64)
            block_min = dist.min(dim=1).values
            nearest_gen = (
                block_min if nearest_gen is None else torch.minimum(nearest_gen, block_min)
            )
        real_covered[rs] = nearest_gen < real_radii[rs]
    out = {"density": gen_ball_count.sum(), "coverage": real_covered.double().mean()}
    if gen_radii is not None:
        out["precision"] = gen_in_real_ball.double().mean()
        out["recall"] = real_in_gen_ball.double().mean()
    return {key: float(v) for key, v in out.items()}


def precision_recall_density_coverage(
    real_features: np.ndarray | torch.Tensor,
    gen_features: np.ndarray | torch.Tensor,
    k: int = 3,
    fp16: bool = True,
    row_batch: int = 10000,
    col_batch: int = 10000,
    device: str | torch.device = "cpu",
) -> PrResult:
    """All four manifold metrics. Precision/recall from distances in `fp16` (the reference)
    or float32; density/coverage always from float32 distances (one more real-real and
    real-gen pass when `fp16`)."""
    device = torch.device(device)
    real32 = _to_tensor(real_features, False, device)  # [N, D]
    gen32 = _to_tensor(gen_features, False, device)  # [M, D]
    if real32.ndim != 2 or gen32.ndim != 2 or real32.shape[1] != gen32.shape[1]:
        raise ValueError(f"feature arrays must be [N, D] alike: {real32.shape} vs {gen32.shape}")
    if not (torch.isfinite(real32).all() and torch.isfinite(gen32).all()):
        raise ValueError("features contain NaN or inf")
    m = gen32.shape[0]
    real_radii32 = knn_radii(real32, k, row_batch, col_batch)
    if fp16:
        real16, gen16 = real32.half(), gen32.half()
        real_radii16 = knn_radii(real16, k, row_batch, col_batch)
        gen_radii16 = knn_radii(gen16, k, row_batch, col_batch)
        pr = _ball_pass(real16, gen16, real_radii16, gen_radii16, row_batch, col_batch)
        dc = _ball_pass(real32, gen32, real_radii32, None, row_batch, col_batch)
    else:
        gen_radii32 = knn_radii(gen32, k, row_batch, col_batch)
        pr = dc = _ball_pass(real32, gen32, real_radii32, gen_radii32, row_batch, col_batch)
    return PrResult(
        precision=pr["precision"],
        recall=pr["recall"],
        density=dc["density"] / (k * m),
        coverage=dc["coverage"],
    )


class PrecisionRecall:
    """Accumulator form: keeps both feature sets, computes the manifold metrics at the end."""

    def __init__(self, k: int = 3, fp16: bool = True, device: str = "cpu") -> None:
        self.k, self.fp16, self.device = k, fp16, device
        self._real: list[np.ndarray] = []
        self._gen: list[np.ndarray] = []

    def update(self, features: np.ndarray, real: bool) -> None:
        (self._real if real else self._gen).append(np.asarray(features, dtype=np.float32))

    def compute(self) -> PrResult:
        return precision_recall_density_coverage(
            np.concatenate(self._real),
            np.concatenate(self._gen),
            k=self.k,
            fp16=self.fp16,
            device=self.device,
        )
