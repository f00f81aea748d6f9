"""Where metric images come from: generated batches (as NVIDIA's metrics draw them), a folder
or ZIP of images made elsewhere, and the training archive, plus the on-disk cache of real-image
features (Karras et al. 2020).

Generated images: z from per-image seeds (`np.random.RandomState(seed).randn(z_dim)`, as
`mrisynth generate` does, so any image can be regenerated), labels drawn from the dataset for
conditional generators, no truncation, output quantised `(x*127.5+128).clamp(0,255)` to uint8.
Both kinds of source yield `GeneratedBatch`es that name every image (`seed<N>` or file name).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mrisynth import atomic
from mrisynth.errors import InputError
from mrisynth.generate.seeds import latents_from_seeds
from mrisynth.imaging import quantize_images
from mrisynth.metrics.detectors import cache_dir
from mrisynth.metrics.extractor import FeatureExtractor
from mrisynth.metrics.feature_stats import FeatureStats

if TYPE_CHECKING:
    from mrisynth.data.archive import ImageArchive

log = logging.getLogger(__name__)


def metric_images(images):
    """What metrics measure of a batch [B, C, H, W] (numpy or torch): a paired image + mask
    (C = 2, `dataset --masks`) is measured on its image channel only; others unchanged.
    Every generated and real metric image passes here."""
    return images[:, :1] if images.shape[1] == 2 else images


def metric_shape(image_shape) -> tuple[int, int, int]:
    """[C, H, W] of an image as metrics measure it (see `metric_images`)."""
    c, h, w = image_shape
    return (1 if c == 2 else int(c), int(h), int(w))


@torch.no_grad()
def generate_batches(
    G: torch.nn.Module,
    num: int,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    first_seed: int = 0,
    labels: np.ndarray | None = None,
    noise_mode: str = "random",
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield `(seeds, uint8 images [B, C, H, W])` for seeds first_seed .. first_seed+num-1.

    `labels` [N, c_dim] are the dataset's; a conditional G gets a label drawn per image
    (seeded by the image's seed). `noise_mode="random"` is the reference's setting for
    metrics; the noise of a batch is seeded from its first seed, so reruns are identical.
    """
    device = torch.device(device)
    c_dim = int(getattr(G, "c_dim", 0))
    if c_dim > 0 and (labels is None or len(labels) == 0 or labels.shape[1] != c_dim):
        raise ValueError(f"conditional generator (c_dim={c_dim}) needs the dataset's labels")
    seeds = list(range(first_seed, first_seed + num))
    for start in range(0, num, batch_size):
        batch_seeds = seeds[start : start + batch_size]
        z = torch.from_numpy(latents_from_seeds(batch_seeds, int(G.z_dim))).to(device)
        if c_dim > 0:
            pick = [np.random.RandomState(s).randint(len(labels)) for s in batch_seeds]
            c = torch.from_numpy(np.asarray(labels[pick], np.float32)).to(device)
        else:
            c = torch.zeros([len(batch_seeds), 0], device=device)
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(batch_seeds[0])
            img = G(z, c, noise_mode=noise_mode)  # [B, C, H, W] ~[-1, 1]
        yield batch_seeds, metric_images(quantize_images(img).cpu())


@dataclass(frozen=True)
class GeneratedBatch:
    """One batch of generated images and what identifies each of them."""

    names: list[str]  # `seed<N>` for a network, the file name for --images
    seeds: list[int | None]  # None for images read from files
    images: torch.Tensor  # uint8 [B, C, H, W], CPU


class NetworkImages:
    """Images drawn from a generator: seeds first_seed, first_seed + 1, ..."""

    def __init__(self, G: torch.nn.Module, labels, device, first_seed: int = 0) -> None:
        self.G, self.labels, self.device, self.first_seed = G, labels, device, first_seed
        self.count: int | None = None  # as many as asked for

    def batches(self, num: int, batch_size: int, noise_mode: str) -> Iterator[GeneratedBatch]:
        labels = self.labels if int(getattr(self.G, "c_dim", 0)) > 0 else None
        for seeds, imgs in generate_batches(
            self.G, num, self.device, batch_size, self.first_seed, labels, noise_mode
        ):
            yield GeneratedBatch([f"seed{s}" for s in seeds], list(seeds), imgs)


class FolderImages:
    """Generated images from a folder or ZIP, opened as an `ImageArchive` (the one validated
    PNG path: size, channel and decode checks), read in sorted name order.

    `decoded`, when given, holds the first images already decoded (uint8 [M, C, H, W], as
    `metric_images` returns them): batches within it are served from memory, so a caller that
    decoded every image to check it does not decode them again for each image count."""

    def __init__(self, archive, decoded: np.ndarray | None = None) -> None:
        self.archive = archive
        self.decoded = decoded
        self.count: int | None = len(archive)

    def batches(self, num: int, batch_size: int, noise_mode: str) -> Iterator[GeneratedBatch]:
        del noise_mode  # files have no noise inputs
        num = min(num, len(self.archive))
        for start in range(0, num, batch_size):
            idx = range(start, min(start + batch_size, num))
            names = [self.archive.names[i] for i in idx]
            yield GeneratedBatch(names, [None] * len(idx), torch.from_numpy(self._images(idx)))

    def _images(self, idx: range) -> np.ndarray:
        if self.decoded is not None and idx.stop <= len(self.decoded):
            return self.decoded[idx.start : idx.stop]
        return metric_images(np.stack([self.archive[i] for i in idx]))


def real_batches(archive: ImageArchive, batch_size: int = 64, indices=None) -> Iterator[np.ndarray]:
    """uint8 [B, C, H, W] batches of the archive in order (or of `indices`)."""
    order = range(len(archive)) if indices is None else indices
    order = list(order)
    for start in range(0, len(order), batch_size):
        yield metric_images(np.stack([archive[i] for i in order[start : start + batch_size]]))


def features_cache_path(dataset_hash: str, extractor: FeatureExtractor) -> Path:
    """`<cache>/features/<dataset>-<detector>.npz`: one file per (dataset content, detector)."""
    name = f"{dataset_hash[:20]}-{extractor.name}-{extractor.sha256[:20]}.npz"
    return cache_dir() / "features" / name


def real_features(
    archive: ImageArchive, extractor: FeatureExtractor, batch_size: int = 64, use_cache: bool = True
) -> FeatureStats:
    """Features (and float64 moments) of every training image, cached on disk.

    The cache key is the archive's content hash plus the detector's sha256, so a changed
    dataset or a different detector file never reuses stale features.
    """
    path = features_cache_path(archive.content_hash(), extractor)
    if use_cache and path.is_file():
        try:
            stats = FeatureStats.load(path)
        except InputError as e:
            log.warning("%s; recomputing", e)
        else:
            if stats.num_items == len(archive) and stats.num_features == extractor.feature_dim:
                log.info("real features from cache %s", path)
                return stats
            log.warning("%s: cached features do not match the archive; recomputing", path)
    stats = FeatureStats(keep_features=True)
    for batch in real_batches(archive, batch_size):
        stats.update(extractor(batch))
    if use_cache:
        with atomic.atomic_path(path) as tmp:
            stats.save(tmp)
        log.info("cached real features at %s", path)
    return stats


def real_pixel_features(archive: ImageArchive, use_cache: bool = True) -> np.ndarray:
    """pixfd features [N, F] of every training image, cached like detector features (keyed by
    the archive's content hash and the feature version): 4 ms per 256 px image adds up when
    every snapshot of a run is evaluated."""
    from mrisynth.metrics.pixfd import FEATURE_VERSION, NUM_FEATURES, pixel_features

    path = cache_dir() / "features" / f"{archive.content_hash()[:20]}-{FEATURE_VERSION}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                feats = z["features"]
        except (OSError, KeyError, ValueError) as e:
            log.warning("%s: unreadable cache (%s); recomputing", path, e)
        else:
            if feats.shape == (len(archive), NUM_FEATURES) and np.isfinite(feats).all():
                return feats.astype(np.float64)
            log.warning("%s: cached features do not match the archive; recomputing", path)
    feats = np.concatenate([pixel_features(b) for b in real_batches(archive)])
    if use_cache:
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=feats)
    return feats


def read_real_images(archive: ImageArchive, indices=None) -> np.ndarray:
    """uint8 [N, C, H, W] of the whole archive (or of `indices`)."""
    if indices is None and hasattr(archive, "read_all"):
        return metric_images(archive.read_all())
    idx = range(len(archive)) if indices is None else indices
    return metric_images(np.stack([archive[i] for i in idx]))
