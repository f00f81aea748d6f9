"""Training batches: the resumable sampler, rank sharding and x-flip mirroring."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from tests.test_train import write_archive

from mrisynth.data.archive import ImageArchive
from mrisynth.training.data_loader import MirroredDataset, ResumableSampler, batch_stream


def test_sampler_restarted_at_batch_k_continues_the_same_stream():
    s = ResumableSampler(num_items=10, seed=7)
    straight = list(itertools.islice(s.batches(4, 0), 8))
    resumed = list(itertools.islice(ResumableSampler(10, seed=7).batches(4, 3), 5))
    assert resumed == straight[3:]
    # Every epoch is a permutation: 10 consecutive positions hold each item once.
    flat = [i for b in straight for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert flat[:10] != flat[10:20]  # a new order each epoch
    assert list(itertools.islice(ResumableSampler(10, seed=8).batches(4), 1)) != straight[:1]


def test_ranks_split_each_global_batch_without_overlap():
    one = ResumableSampler(12, seed=1, rank=0, world_size=1)
    r0, r1 = (ResumableSampler(12, seed=1, rank=r, world_size=2) for r in (0, 1))
    for k in range(3):
        joint = one.indices(k, 6)
        assert r0.indices(k, 3) + r1.indices(k, 3) == joint
        assert not set(r0.indices(k, 3)) & set(r1.indices(k, 3))


@pytest.mark.parametrize("workers", [0, 1])
def test_mirror_doubles_the_dataset_with_flipped_copies(tmp_path, workers):
    archive = ImageArchive(write_archive(tmp_path / "d", n=4))
    ds = MirroredDataset(archive, mirror=True, use_labels=False)
    assert len(ds) == 8
    img, label = ds[5]
    assert torch.equal(img, torch.from_numpy(archive[1][:, :, ::-1].copy()))
    assert label.shape == (0,)
    rng_before = torch.get_rng_state()
    batches = list(itertools.islice(batch_stream(ds, batch_gpu=4, seed=0, workers=workers), 2))
    assert torch.equal(torch.get_rng_state(), rng_before)  # exact resume relies on this
    imgs = torch.cat([b[0] for b in batches])  # [8, 1, 16, 16] uint8
    assert imgs.dtype == torch.uint8 and imgs.shape == (8, 1, 16, 16)
    flipped = {bytes(ds[i][0].numpy()) for i in range(8)}
    assert {bytes(x.numpy()) for x in imgs} == flipped  # one epoch = every image and its mirror
    assert np.isfinite(imgs.float().numpy()).all()
