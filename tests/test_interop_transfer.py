"""Transfer learning from an imported (or any) snapshot: `train --resume FILE` as a new run with
the snapshot's architecture, and `--resume-channels average` adapting RGB <-> grey exactly as
documented in `training.transfer`."""

from __future__ import annotations

import logging

import pytest
import torch
from click.testing import CliRunner

import nvidia_format as nf
from mrisynth.cli import cli
from mrisynth.errors import CheckpointError, ConfigError
from mrisynth.networks import NetworkConfig, build_discriminator, build_generator
from mrisynth.training import checkpoint, transfer
from mrisynth.training.loop import prepare, train
from test_train import tiny, write_archive


def _networks(channels: int, seed: int = 0):
    cfg = NetworkConfig(img_resolution=16, img_channels=channels, z_dim=32, w_dim=32,
                        map_depth=2, channel_base=256, channel_max=32)
    torch.manual_seed(seed)
    G, D = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("torgb.bias", "noise_strength")):
                p.normal_(0, 0.3)  # nonzero, so that averaging them is tested too
    return G, D


def _adapted(tmp_path, channels_from: int, channels_to: int):
    G, D = _networks(channels_from)
    path = checkpoint.save_snapshot(tmp_path / f"s{channels_from}.safetensors", G=G, D=D,
                                    G_ema=G, state={"kimg": 0})
    snap = transfer.adapt_channels(checkpoint.load_snapshot(path), channels_to, "average", False)
    G2 = build_generator(NetworkConfig.from_dict(snap.configs["G"])).eval()
    D2 = build_discriminator(NetworkConfig.from_dict(snap.configs["D"])).eval()
    transfer.load_weights(G2, D2, snap, full=False)
    return G, D, G2, D2


def test_rgb_to_grey_is_the_channel_mean_and_d_sees_grey_as_rgb(tmp_path):
    G, D, G1, D1 = _adapted(tmp_path, 3, 1)
    z = torch.randn(4, 32)
    with torch.no_grad():
        rgb, grey = G(z, None, noise_mode="const"), G1(z, None, noise_mode="const")
        assert grey.shape == (4, 1, 16, 16) and rgb.std() > 0.1
        torch.testing.assert_close(grey, rgb.mean(1, keepdim=True), atol=1e-5, rtol=1e-5)
        x = torch.randn(4, 1, 16, 16)
        torch.testing.assert_close(D1(x, None), D(x.repeat(1, 3, 1, 1), None), atol=1e-4,
                                   rtol=1e-4)


def test_grey_to_rgb_repeats_and_d_sees_the_mean(tmp_path):
    G, D, G3, D3 = _adapted(tmp_path, 1, 3)
    z = torch.randn(4, 32)
    with torch.no_grad():
        torch.testing.assert_close(G3(z, None, noise_mode="const"),
                                   G(z, None, noise_mode="const").repeat(1, 3, 1, 1))
        x = torch.randn(4, 3, 16, 16)
        torch.testing.assert_close(D3(x, None), D(x.mean(1, keepdim=True), None), atol=1e-4,
                                   rtol=1e-4)


def _imported(tmp_path, channels: int, bare: bool = False):
    tmp_path.mkdir(exist_ok=True)
    G_kw, D_kw = nf.small_kwargs(channels=channels)
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    obj = nf.tree("Generator", G_kw, g) if bare else nf.snapshot_dict(G_kw, D_kw, g, d)
    pkl = tmp_path / "nvidia.pkl"
    pkl.write_bytes(nf.dumps(obj))
    out = tmp_path / "imported.safetensors"
    res = CliRunner().invoke(cli, ["import-nvidia", str(pkl), "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_train_from_an_imported_rgb_model_on_grey_data(tmp_path):
    grey = write_archive(tmp_path / "grey", n=16)
    imported = _imported(tmp_path, 3)
    res = CliRunner().invoke(cli, ["train", "--data", str(grey), "--outdir", str(tmp_path / "r"),
                                   "--cfg", "tiny", "--resume", str(imported), "--kimg", "0.016",
                                   "--workers", "0", "--device", "cpu"])
    assert res.exit_code == 1 and "--resume-channels average" in res.output, res.output
    opts = tiny(grey, tmp_path / "runs", resume=str(imported), resume_channels="average",
                kimg=0.016, tick=0.008, snap=1)
    setup = prepare(opts)  # the networks the run starts from
    cfg, sd = setup.G.config, setup.G.state_dict()
    assert not setup.full_resume
    assert cfg.img_channels == 1 and cfg.z_dim == 32 and cfg.channel_max == 32  # not tiny's
    src = checkpoint.load_snapshot(imported)
    assert torch.equal(sd["mapping.fc0.weight"], src.tensors["G.mapping.fc0.weight"])
    torch.testing.assert_close(sd["synthesis.b16.torgb.weight"],
                               src.tensors["G.synthesis.b16.torgb.weight"].mean(0, keepdim=True))
    run = train(opts)
    snaps = [checkpoint.load_snapshot(p) for p in checkpoint.list_snapshots(run)]
    assert [s.state["nimg"] for s in snaps] == [8, 16]  # a new run, counted from 0
    assert snaps[-1].configs["G"]["img_channels"] == 1
    assert not torch.equal(snaps[-1].tensors["G.mapping.fc0.weight"],
                           src.tensors["G.mapping.fc0.weight"])  # it trained


def test_a_bare_generator_starts_with_a_fresh_discriminator(tmp_path, caplog):
    grey = write_archive(tmp_path / "grey", n=16)
    imported = _imported(tmp_path, 1, bare=True)
    with caplog.at_level(logging.WARNING, logger="mrisynth.training.transfer"):
        run = train(tiny(grey, tmp_path / "runs", resume=str(imported), kimg=0.008, tick=0.008))
    assert "holds no discriminator" in caplog.text
    assert checkpoint.list_snapshots(run)


def test_refusals(tmp_path):
    grey = write_archive(tmp_path / "grey", n=16)
    rgb_snapshot = _imported(tmp_path, 3)
    with pytest.raises(ConfigError, match="full resume"):
        train(tiny(grey, tmp_path / "runs", resume=str(rgb_snapshot), resume_channels="average",
                   resume_mode="full"))
    with pytest.raises(CheckpointError, match="label dimensions"):
        labelled = tmp_path / "lab"
        write_archive(labelled, n=16)
        (labelled / "dataset.json").write_text(
            '{"labels": [' + ",".join(f'["{i:04d}.png", {i % 2}]' for i in range(16)) + "]}")
        train(tiny(labelled, tmp_path / "runs", resume=str(_imported(tmp_path / "g", 1)),
                   cond=True))
    with pytest.raises(ConfigError, match=r"--cbase 512: the weights of .* need channel_base 256"):
        train(tiny(grey, tmp_path / "runs", resume=str(rgb_snapshot), resume_channels="average",
                   cbase=512))
    res = CliRunner().invoke(cli, ["train", "--data", str(grey), "--outdir", str(tmp_path),
                                   "--resume-channels", "sum"])
    assert res.exit_code != 0 and "Error:" in res.output and "sum" in res.output


def test_newcomer_path_on_the_command_line(tmp_path, caplog):
    """A bare RGB generator from NVIDIA -> import-nvidia -> train on grey data, as the README
    shows it: the first try names --resume-channels average, the second trains a new grey run
    and says what was adapted and that D starts fresh."""
    grey = write_archive(tmp_path / "grey", n=16)
    imported = _imported(tmp_path, 3, bare=True)
    args = ["train", "--data", str(grey), "--outdir", str(tmp_path / "runs"), "--cfg", "tiny",
            "--batch", "8", "--resume", str(imported), "--kimg", "0.008", "--tick", "0.008",
            "--workers", "0", "--device", "cpu"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "trained on 3-channel images" in res.output and "--resume-channels average" in res.output
    with caplog.at_level(logging.INFO, logger="mrisynth.training"):
        res = CliRunner().invoke(cli, [*args, "--resume-channels", "average"])
    assert res.exit_code == 0, res.output
    assert "image layers adapted from 3 to 1 channels" in caplog.text
    assert "holds no discriminator: D starts from a fresh initialisation" in caplog.text
    assert "resuming from" in caplog.text and "(weights only)" in caplog.text
    (run,) = (tmp_path / "runs").iterdir()
    (snap,) = checkpoint.list_snapshots(run)
    loaded = checkpoint.load_snapshot(snap)
    assert loaded.configs["G"]["img_channels"] == 1 and loaded.state["nimg"] == 8
