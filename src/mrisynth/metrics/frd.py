"""Fréchet Radiomics Distance (Konz, Osuala et al., Medical Image Analysis 2026, arXiv
2412.01496) through the optional `frd-score` package: radiomic features, no neural weights.

Install with `pip install 'mrisynth[frd]'` (builds `pyradiomics-bhklab` from source: needs gcc).
`frd-score` reads images from folders, so both sets are written as PNGs to a temporary folder
that is removed afterwards. Version 1 of FRD (log-transformed) is used; 0 distance gives -inf.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np

from mrisynth.errors import MissingDependencyError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the Fréchet Radiomics Distance needs the optional extra: pip install 'mrisynth[frd]' "
    "(frd-score + pyradiomics-bhklab; building it needs gcc)"
)


def import_frd():
    try:
        import frd_score
        import radiomics  # noqa: F401  (frd_score imports it lazily; fail early and clearly)
    except ImportError as e:
        raise MissingDependencyError(f"{INSTALL_HINT} [{e}]") from None
    return frd_score


def frd_available() -> bool:
    """True when `frd-score` and PyRadiomics import."""
    try:
        import_frd()
    except MissingDependencyError:
        return False
    return True


def _write_pngs(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, img in enumerate(images):  # [C, H, W]
        gray = img[0] if img.shape[0] == 1 else np.round(img.mean(axis=0)).astype(np.uint8)
        if not cv2.imwrite(str(folder / f"{i:06d}.png"), gray):
            raise OSError(f"cannot write {folder / f'{i:06d}.png'}")


def frechet_radiomics_distance(
    real: np.ndarray, gen: np.ndarray, num_workers: int | None = 1
) -> float:
    """FRD v1 between two uint8 [N, C, H, W] image sets (features from the whole image)."""
    frd_score = import_frd()
    if len(real) < 2 or len(gen) < 2:
        raise ValueError("FRD needs at least 2 images on each side")
    with tempfile.TemporaryDirectory(prefix="mrisynth-frd-") as tmp:
        real_dir, gen_dir = Path(tmp) / "real", Path(tmp) / "gen"
        _write_pngs(real_dir, real)
        _write_pngs(gen_dir, gen)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # frd-score prints its result
            value = frd_score.compute_frd(
                [str(real_dir), str(gen_dir)], frd_version="v1", num_workers=num_workers
            )
        if printed.getvalue().strip():
            log.debug("frd-score: %s", printed.getvalue().strip())
    return float(value)
