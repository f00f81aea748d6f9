"""Training batches from an archive: x-flip mirroring and a seeded sampler that can resume exactly.

The sampler is a pure function of (seed, position): epoch e visits a permutation drawn from
`numpy.random.default_rng([seed, e])`, and global batch k takes the next `batch_gpu * world`
positions, rank r its own slice. So the whole data state is one integer, the number of global
micro-batches consumed, and a resumed run sees exactly the batches the uninterrupted run would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)


class MirroredDataset(torch.utils.data.Dataset):
    """An ImageArchive, optionally doubled with x-flipped copies (index >= N means flipped)."""

    def __init__(self, archive, mirror: bool, use_labels: bool) -> None:
        self.archive = archive
        self.mirror = mirror
        self.num_raw = len(archive)
        labels = np.asarray(archive.labels, dtype=np.float32)  # [N, label_dim]
        if not use_labels:
            labels = np.zeros((self.num_raw, 0), dtype=np.float32)
        self.labels = torch.from_numpy(labels)  # [N, c_dim]

    def __len__(self) -> int:
        return self.num_raw * (2 if self.mirror else 1)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        raw = idx % self.num_raw
        img = np.asarray(self.archive[raw])  # [C, H, W] uint8
        if idx >= self.num_raw:
            img = img[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(img)), self.labels[raw]

    def label_at(self, idx: int) -> torch.Tensor:
        return self.labels[idx % self.num_raw]


class ResumableSampler:
    """Infinite shuffled index stream, sharded over ranks, restartable at any batch."""

    def __init__(self, num_items: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if num_items < 1:
            raise ValueError("ResumableSampler needs at least one item")
        self.num_items, self.seed = num_items, seed
        self.rank, self.world_size = rank, world_size
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
        return self._perm

    def indices(self, batch_idx: int, batch_gpu: int) -> list[int]:
        """This rank's item indices for global micro-batch number `batch_idx`."""
        start = (batch_idx * self.world_size + self.rank) * batch_gpu
        out = []
        for pos in range(start, start + batch_gpu):
            epoch, offset = divmod(pos, self.num_items)
            out.append(int(self._permutation(epoch)[offset]))
        return out

    def batches(self, batch_gpu: int, start_batch: int = 0) -> Iterator[list[int]]:
        """Index lists for micro-batches start_batch, start_batch + 1, ... (never ends)."""
        k = start_batch
        while True:
            yield self.indices(k, batch_gpu)
            k += 1


class _BatchSampler:
    """Adapter so a DataLoader (possibly with workers) draws from a ResumableSampler."""

    def __init__(self, sampler: ResumableSampler, batch_gpu: int, start_batch: int) -> None:
        self.sampler, self.batch_gpu, self.start_batch = sampler, batch_gpu, start_batch

    def __iter__(self) -> Iterator[list[int]]:
        return self.sampler.batches(self.batch_gpu, self.start_batch)


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    imgs = torch.stack([i for i, _ in items])  # [B, C, H, W] uint8
    labels = torch.stack([c for _, c in items])  # [B, c_dim]
    return imgs, labels


def batch_stream(
    dataset: MirroredDataset,
    *,
    batch_gpu: int,
    seed: int,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (uint8 images [B, C, H, W], labels [B, c_dim]) for this rank, from `start_batch`.

    Workers only prefetch: the order is fixed by the sampler, so their number does not change
    which images are seen.
    """
    sampler = ResumableSampler(len(dataset), seed, rank, world_size)
    if workers <= 0:
        for idx in sampler.batches(batch_gpu, start_batch):
            yield _collate([dataset[i] for i in idx])
        return
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_BatchSampler(sampler, batch_gpu, start_batch),
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        prefetch_factor=2,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),  # leave the global RNG untouched
    )
    yield from loader


def to_network_range(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 in [-1, 1] on `device` (the convention x / 127.5 - 1)."""
    return images.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1


def random_labels(dataset, n: int, device: torch.device) -> torch.Tensor:
    """Labels [n, c_dim] for fakes, drawn from the dataset's (empty when unconditional)."""
    labels = dataset.labels  # [N, c_dim]
    if labels.shape[1] == 0:
        return torch.zeros(n, 0, device=device)
    return labels[torch.randint(len(labels), (n,))].to(device)
