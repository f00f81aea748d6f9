"""safetensors + JSON round trip of networks: rebuilt from the file alone, identical outputs."""

import json

import pytest
import safetensors
import safetensors.torch
import torch

from mrisynth.config import resolve_preset
from mrisynth.errors import CheckpointError, InputError
from mrisynth.networks import (
    Discriminator,
    Generator,
    build_discriminator,
    build_generator,
    load_network,
    load_network_tensors,
    network_config_from_preset,
    network_tensors,
    read_network_metadata,
    save_network,
)


def _cfg(c_dim=0):
    return network_config_from_preset(resolve_preset("tiny", 16), img_channels=1, c_dim=c_dim)


@pytest.mark.parametrize("c_dim", [0, 2])
def test_generator_round_trip_reproduces_outputs_exactly(tmp_path, c_dim):
    torch.manual_seed(0)
    G = build_generator(_cfg(c_dim))
    G.mapping(torch.randn(8, G.z_dim), torch.eye(2)[[0, 1] * 4] if c_dim else None,
              update_emas=True)  # non-trivial w_avg buffer
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            m.noise_strength.data.fill_(0.2)
    path = save_network(tmp_path / "G.safetensors", G)
    loaded = load_network(path)
    assert isinstance(loaded, Generator) and loaded.config == G.config
    z = torch.randn(3, G.z_dim)
    c = torch.eye(2)[[0, 1, 0]] if c_dim else None
    with torch.no_grad():
        for psi in (1.0, 0.7):
            a = G(z, c, truncation_psi=psi, noise_mode="const")
            b = loaded(z, c, truncation_psi=psi, noise_mode="const")
            assert torch.equal(a, b)


def test_discriminator_round_trip_and_metadata(tmp_path):
    torch.manual_seed(1)
    D = build_discriminator(_cfg(3))
    path = save_network(tmp_path / "sub" / "D.safetensors", D, extra_metadata={"kimg": 40})
    meta = read_network_metadata(path)
    assert meta["class"] == "Discriminator" and meta["config"]["c_dim"] == 3
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata()["kimg"] == "40"
        names = list(f.keys())
    assert names and not any("resample_filter" in k for k in names)  # constants aren't weights
    loaded = load_network(path)
    assert isinstance(loaded, Discriminator)
    img, c = torch.randn(4, 1, 16, 16), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        assert torch.equal(D(img, c), loaded(img, c))
    assert not list(tmp_path.glob("sub/*.tmp"))  # written atomically


def test_tensors_with_prefix_load_into_fresh_module():
    torch.manual_seed(2)
    G = build_generator(_cfg())
    tensors = network_tensors(G, prefix="G_ema.")
    fresh = build_generator(_cfg())
    load_network_tensors(fresh, tensors, prefix="G_ema.")
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const"), fresh(z, None, noise_mode="const"))
    del tensors["G_ema.synthesis.b16.conv1.weight"]
    with pytest.raises(CheckpointError, match="missing"):
        load_network_tensors(fresh, tensors, prefix="G_ema.")


def test_bad_files_raise_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_network(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        load_network(junk)
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="no 'mrisynth_network' metadata"):
        load_network(plain)
    # Weights that do not fit the stored config (e.g. a hand-edited header).
    G = build_generator(_cfg())
    tensors = network_tensors(G)
    meta = {"mrisynth_network": json.dumps(
        {"class": "Generator", "config": {**G.config.to_dict(), "img_channels": 3}})}
    wrong = tmp_path / "wrong.safetensors"
    safetensors.torch.save_file(tensors, str(wrong), metadata=meta)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_network(wrong)
