"""Snapshot I/O: round trip, optimiser state, corrupt/truncated detection and fallback,
sub-kimg names, one-file commit, and snapshots of the older two-file format."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from mrisynth.errors import CheckpointError
from mrisynth.hashing import sha256_file
from mrisynth.training import checkpoint as ckpt
from mrisynth.training.optim_state import optimizer_from_tensors, optimizer_to_tensors


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    return net


def _save(run_dir, kimg: int, seed: int = 0, **extra):
    G, D = _net(seed), _net(seed + 100)
    nimg = extra.get("nimg", kimg * 1000)
    path = run_dir / f"{ckpt.snapshot_stem(nimg)}.safetensors"
    state = {"kimg": nimg // 1000, "dataset_hash": "abc", **extra}
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
    (tmp_path / "network-snapshot-000200.safetensors").write_bytes(b"not a snapshot")
    (tmp_path / ".network-snapshot-000300.safetensors.abc.tmp").write_bytes(b"killed write")
    names = [p.name for p in ckpt.list_snapshots(tmp_path)]
    assert names == [f"network-snapshot-{k:06d}.safetensors" for k in (4, 40, 120)]
    assert ckpt.latest_snapshot(tmp_path).name == "network-snapshot-000120.safetensors"


def test_sub_kimg_snapshots_get_their_own_names_sorted_by_images_shown(tmp_path):
    for nimg in (8, 1000, 16, 1008, 24, 2000):
        _save(tmp_path, 0, nimg=nimg, marker=nimg)
    names = [p.name.removesuffix(".safetensors") for p in ckpt.list_snapshots(tmp_path)]
    assert names == [
        "network-snapshot-000000.008",
        "network-snapshot-000000.016",
        "network-snapshot-000000.024",
        "network-snapshot-000001",
        "network-snapshot-000001.008",
        "network-snapshot-000002",
    ]
    for p in ckpt.list_snapshots(tmp_path):  # none overwrote another
        nimg = ckpt.snapshot_nimg(p)
        assert ckpt.load_snapshot(p).state["marker"] == nimg
        assert ckpt.load_snapshot(p.with_suffix(".json")).info.path == p  # sidecar name works
    assert ckpt.load_snapshot(tmp_path).state["marker"] == 2000
    assert ckpt.snapshot_nimg("network-snapshot-000004.safetensors") == 4000  # old names
    assert ckpt.snapshot_nimg("fakes-000004.png") is None


def test_the_weights_file_alone_is_the_commit_and_the_json_copy_is_not_trusted(tmp_path):
    first, _ = _save(tmp_path, 4, seed=1)
    second, G = _save(tmp_path, 8, seed=2, nimg=8016)
    second.with_suffix(".json").unlink()  # killed between the rename and the JSON copy
    first.with_suffix(".json").write_text('{"kimg": "abc"}')  # a tampered copy is ignored
    snap = ckpt.load_snapshot(tmp_path)
    assert snap.info.path == second and snap.info.nimg == 8016 and snap.info.kimg == 8.016
    assert [p.name for p in ckpt.list_snapshots(tmp_path)] == [first.name, second.name]
    assert ckpt.load_snapshot(first).info.kimg == 4
    G2 = _net(9)
    ckpt.load_module_state(G2, snap, "G_ema")
    for a, b in zip(G2.state_dict().values(), G.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_an_edited_header_fails_its_checksum(tmp_path):
    path, _ = _save(tmp_path, 4)
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = json.loads(meta["state"])
    state["dataset_hash"] = "forged"
    save_file(tensors, str(path), metadata={**meta, "state": json.dumps(state)})
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ckpt.load_snapshot(path)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ckpt.read_snapshot_info(path)


def _save_format_1(path, G, kimg: int):
    """A snapshot as mrisynth wrote them before the state moved into the weights file."""
    save_file({f"G.{k}": v.contiguous() for k, v in G.state_dict().items()}, str(path),
              metadata={"format": ckpt.FORMAT, "version": "1"})  # fmt: skip
    sidecar = {"format": ckpt.FORMAT, "version": 1, "kimg": kimg,
               "weights_file": path.name, "weights_bytes": path.stat().st_size,
               "weights_sha256": sha256_file(path), "configs": {}, "state": {"kimg": kimg}}
    path.with_suffix(".json").write_text(json.dumps(sidecar))  # fmt: skip


def test_format_1_snapshots_still_load_and_are_verified(tmp_path):
    G = _net(7)
    _save_format_1(tmp_path / "network-snapshot-000012.safetensors", G, 12)
    _save_format_1(tmp_path / "network-snapshot-000016.safetensors", G, 16)
    (tmp_path / "network-snapshot-000016.json").unlink()  # killed before its commit marker
    names = [p.name for p in ckpt.list_snapshots(tmp_path)]
    assert names == ["network-snapshot-000012.safetensors"]
    snap = ckpt.load_snapshot(tmp_path)
    assert snap.info.kimg == 12 and snap.info.nimg is None
    fresh = _net(1)
    ckpt.load_module_state(fresh, snap, "G")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                 G.state_dict().values(), strict=True))
    weights = tmp_path / "network-snapshot-000012.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"XXXX")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ckpt.load_snapshot(weights)


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "empty"])
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
        latest.write_bytes(b"")
    with pytest.raises(CheckpointError, match="network-snapshot-000008"):
        ckpt.load_snapshot(latest)
    assert ckpt.latest_snapshot(tmp_path).name == "network-snapshot-000004.safetensors"
    assert ckpt.load_snapshot(tmp_path).info.kimg == 4


def test_missing_or_empty_run_dir_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="no network-snapshot"):
        ckpt.latest_snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="nope: not found"):
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
    tensors, meta = optimizer_to_tensors(opt_a, "opt_G")
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
    optimizer_from_tensors(opt_b, snap.tensors, snap.state["opt_G"], "opt_G")
    assert opt_b.param_groups[0]["betas"] == (0.0, 0.99)
    for k in range(3, 6):
        step(net_a, opt_a, k)
        step(net_b, opt_b, k)
    for a, b in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(a, b)


def test_save_requires_kimg(tmp_path):
    with pytest.raises(ValueError, match="kimg"):
        ckpt.save_snapshot(tmp_path / "x", G=_net(), D=None, G_ema=None, state={})


def test_mutated_snapshot_files_are_always_one_checkpoint_error(tmp_path):
    """Truncations, byte flips and forged header lengths anywhere in the file: never a traceback
    of another type, never a silently different snapshot."""
    import random

    path, _ = _save(tmp_path, 4, nimg=4008)
    good = path.read_bytes()
    rng = random.Random(1)
    header_len = int.from_bytes(good[:8], "little")
    mutations = [good[:n] for n in (0, 1, 7, 8, 9, 8 + header_len // 2, 8 + header_len)]
    mutations += [good[: rng.randrange(len(good))] for _ in range(10)]
    for _ in range(30):
        data = bytearray(good)
        at = rng.randrange(8 + header_len) if rng.random() < 0.5 else rng.randrange(len(good))
        data[at] ^= 1 << rng.randrange(8)
        mutations.append(bytes(data))
    for claim in (0, 7, 2**31, 2**63 - 1, len(good)):
        mutations.append(claim.to_bytes(8, "little") + good[8:])
    for i, data in enumerate(mutations):
        bad = tmp_path / "bad" / f"network-snapshot-{i:06d}.safetensors"
        bad.parent.mkdir(exist_ok=True)
        bad.write_bytes(data)
        with pytest.raises(CheckpointError, match=re.escape(bad.name)):
            ckpt.load_snapshot(bad)
        with pytest.raises(CheckpointError):
            ckpt.verify_snapshot(bad)
    assert len(mutations) == 52
    with pytest.raises(CheckpointError, match=r"every snapshot is corrupt|no network-snapshot"):
        ckpt.load_snapshot(tmp_path / "bad")  # a folder of only broken snapshots
    assert ckpt.load_snapshot(path).info.nimg == 4008  # the original is untouched
