"""Snapshot I/O: round trip, optimiser state, corrupt/truncated detection and fallback."""

from __future__ import annotations

import json

import pytest
import torch

from mrisynth.errors import CheckpointError
from mrisynth.training import checkpoint as ckpt


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    return net


def _save(run_dir, kimg: int, seed: int = 0, **extra):
    G, D = _net(seed), _net(seed + 100)
    path = run_dir / f"{ckpt.snapshot_name(kimg)}.safetensors"
    state = {"kimg": kimg, "dataset_hash": "abc", **extra}
    return ckpt.save_snapshot(path, G=G, D=D, G_ema=G, state=state), G


def test_round_trip_restores_every_tensor_and_state(tmp_path):
    path, G = _save(tmp_path, 12, tick=3, augment_p=0.25)
    assert path.name == "network-snapshot-000012.safetensors"
    snap = ckpt.load_snapshot(tmp_path)
    assert snap.info.kimg == 12 and snap.info.dataset_hash == "abc"
    assert snap.info.run_dir == tmp_path and snap.info.path == path
    assert snap.state["tick"] == 3 and snap.state["augment_p"] == 0.25
    fresh = _net(seed=5)
    ckpt.load_module_state(fresh, snap, "G_ema")
    for a, b in zip(fresh.state_dict().values(), G.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # No temp files are left behind by the atomic writes.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "network-snapshot-000012.json",
        "network-snapshot-000012.safetensors",
    ]


def test_list_sorted_by_kimg_and_ignores_snapshots_without_sidecar(tmp_path):
    for kimg in (40, 4, 120):
        _save(tmp_path, kimg)
    (tmp_path / "network-snapshot-000200.safetensors").write_bytes(b"half written")
    names = [p.name for p in ckpt.list_snapshots(tmp_path)]
    assert names == [f"network-snapshot-{k:06d}.safetensors" for k in (4, 40, 120)]
    assert ckpt.latest_snapshot(tmp_path).name == "network-snapshot-000120.safetensors"


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "bad_sidecar"])
def test_corrupt_latest_falls_back_to_previous(tmp_path, damage):
    _save(tmp_path, 4, seed=1)
    latest, _ = _save(tmp_path, 8, seed=2)
    if damage == "truncate":
        data = latest.read_bytes()
        latest.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        data = bytearray(latest.read_bytes())
        data[-5] ^= 0xFF
        latest.write_bytes(bytes(data))
    else:
        latest.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match="network-snapshot-000008"):
        ckpt.load_snapshot(latest)
    assert ckpt.latest_snapshot(tmp_path).name == "network-snapshot-000004.safetensors"
    assert ckpt.load_snapshot(tmp_path).info.kimg == 4


def test_missing_or_empty_run_dir_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="no network-snapshot"):
        ckpt.latest_snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.list_snapshots(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load_snapshot(tmp_path / "network-snapshot-000001.safetensors")


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    def make():
        net = _net(3)
        return net, torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.0, 0.99), eps=1e-8)

    def step(net, opt, k):
        torch.manual_seed(k)
        opt.zero_grad()
        net(torch.randn(6, 4)).square().mean().backward()
        opt.step()

    net_a, opt_a = make()
    for k in range(3):
        step(net_a, opt_a, k)
    tensors, meta = ckpt.optimizer_to_tensors(opt_a, "opt_G")
    path = ckpt.save_snapshot(
        tmp_path / "s",
        G=net_a,
        D=None,
        G_ema=None,
        state={"kimg": 0, "opt_G": meta},
        tensors=tensors,
    )
    json.loads(path.with_suffix(".json").read_text())  # the sidecar is plain JSON
    snap = ckpt.load_snapshot(path)
    net_b, opt_b = make()
    ckpt.load_module_state(net_b, snap, "G")
    ckpt.optimizer_from_tensors(opt_b, snap.tensors, snap.state["opt_G"], "opt_G")
    assert opt_b.param_groups[0]["betas"] == (0.0, 0.99)
    for k in range(3, 6):
        step(net_a, opt_a, k)
        step(net_b, opt_b, k)
    for a, b in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(a, b)


def test_save_requires_kimg(tmp_path):
    with pytest.raises(ValueError, match="kimg"):
        ckpt.save_snapshot(tmp_path / "x", G=_net(), D=None, G_ema=None, state={})
