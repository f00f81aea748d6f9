"""The training loop on CPU with the tiny preset at 16x16: outputs, exact resume, bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mrisynth.cli import cli
from mrisynth.errors import CheckpointError, ConfigError, InputError
from mrisynth.training import checkpoint, losses
from mrisynth.training.loop import TrainingDiverged, train
from mrisynth.training.options import TrainOptions


def write_archive(folder, n: int = 24, res: int = 16, channels: int = 1, seed: int = 0):
    """Bright discs on a dark background: something a GAN can learn at 16x16."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:res, 0:res]
    for i in range(n):
        cx, cy = res / 2 + rng.normal(0, 1, 2)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (res * 0.3) ** 2
        img = (disc * 170 + rng.integers(0, 40, (res, res))).astype(np.uint8)
        if channels == 3:
            Image.fromarray(np.stack([img] * 3, axis=-1), "RGB").save(folder / f"{i:04d}.png")
        else:
            Image.fromarray(img, "L").save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("data") / "discs")


def tiny(archive, outdir, **kw) -> TrainOptions:
    base = dict(
        data=str(archive),
        outdir=str(outdir),
        cfg="tiny",
        batch=8,
        kimg=0.04,
        tick=0.016,
        snap=1,
        workers=0,
        device="cpu",
        seed=3,
    )
    base.update(kw)
    return TrainOptions(**base)


def read_stats(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def test_short_run_writes_stats_grids_and_a_loadable_snapshot(archive, tmp_path):
    run_dir = train(tiny(archive, tmp_path, mirror=True))
    assert run_dir.parent == tmp_path and run_dir.name.startswith("00000-discs-tiny-gpus1-batch8")
    ticks = read_stats(run_dir)
    assert [t["Progress/tick"]["mean"] for t in ticks] == [0, 1, 2]
    assert ticks[-1]["Progress/kimg"]["mean"] == pytest.approx(0.040)
    for key in ("Loss/G/loss", "Loss/D/loss", "Loss/signs/real", "Timing/sec_per_kimg"):
        assert all(np.isfinite(t[key]["mean"]) and t[key]["num"] > 0 for t in ticks), key
    assert {"num", "mean", "std"} == set(ticks[0]["Loss/G/loss"])
    assert "Loss/r1_penalty" in ticks[0] and "Loss/pl_penalty" in ticks[0]  # step 0 regularises
    opts = json.loads((run_dir / "training_options.json").read_text())
    assert opts["batch"] == 8 and opts["user"]["mirror"] is True and opts["gamma"] == 0.5
    assert "tick 2" in (run_dir / "log.txt").read_text()
    assert list(run_dir.glob("events.out.tfevents.*"))  # TensorBoard
    with Image.open(run_dir / "reals.png") as im:
        assert im.mode == "L" and im.size == (8 * 16, 4 * 16)
    with Image.open(run_dir / "fakes-000000.008.png") as im:  # sub-kimg ticks: own names
        assert im.mode == "L" and im.size == (8 * 16, 4 * 16)
    G, info = checkpoint.load_generator(run_dir)
    assert info.kimg == 0.04 and info.run_dir == run_dir and len(info.dataset_hash) == 64
    img = G(torch.randn(2, G.z_dim), torch.zeros(2, 0))
    assert img.shape == (2, 1, 16, 16) and torch.isfinite(img).all()
    snap = checkpoint.load_snapshot(run_dir)
    assert snap.state["nimg"] == 40 and snap.state["loop"]["data_batches"] == 5
    assert any(k.startswith("opt_D.") for k in snap.tensors)


def _final_state(run_dir):
    snap = checkpoint.load_snapshot(run_dir)  # the latest
    return snap, read_stats(run_dir)[-1]


def test_kill_and_resume_continues_exactly_like_an_uninterrupted_run(archive, tmp_path):
    kw = dict(kimg=0.064, p=0.2, ada_kimg=1.0, target=0.3)  # ADA active and moving p
    straight = train(tiny(archive, tmp_path / "a", **kw))
    stopped = train(tiny(archive, tmp_path / "b", stop_after_kimg=0.024, **kw))
    half, _ = _final_state(stopped)
    assert half.state["nimg"] == 24 and half.state["loop"]["tick"] == 2
    # A newer snapshot corrupted by a crash mid-write must be skipped in favour of this one.
    data = (stopped / "network-snapshot-000000.024.safetensors").read_bytes()
    (stopped / "network-snapshot-000000.032.safetensors").write_bytes(data[: len(data) // 3])

    resumed = train(tiny(archive, tmp_path / "unused", resume=str(stopped), **kw))
    assert resumed == stopped  # a full resume continues in the same run folder
    a, stats_a = _final_state(straight)
    b, stats_b = _final_state(resumed)
    assert b.state["nimg"] == a.state["nimg"] == 64
    assert b.state["loop"] == a.state["loop"]
    assert b.state["augment_p"] == pytest.approx(a.state["augment_p"], abs=1e-7)
    assert a.state["augment_p"] != pytest.approx(0.2)  # p did move
    assert b.state["pl_mean"] == pytest.approx(a.state["pl_mean"], rel=1e-5)
    assert b.state["ada"] == a.state["ada"]
    assert set(a.tensors) == set(b.tensors)
    for key in a.tensors:
        if key.startswith("rng."):
            continue
        torch.testing.assert_close(b.tensors[key], a.tensors[key], rtol=1e-5, atol=1e-6, msg=key)
    for key in ("Loss/G/loss", "Loss/D/loss", "Progress/augment"):
        assert stats_b[key]["mean"] == pytest.approx(stats_a[key]["mean"], rel=1e-5, abs=1e-7)
    assert len(read_stats(resumed)) == len(read_stats(straight))


def test_weights_only_resume_starts_a_new_run_at_kimg_zero(archive, tmp_path):
    first = train(tiny(archive, tmp_path, kimg=0.008))
    other = write_archive(tmp_path / "other", n=8, seed=1)
    second = train(tiny(other, tmp_path, kimg=0.04, resume=str(first), aug="fixed", p=0.3))
    assert second != first and second.name.startswith("00001-")
    assert read_stats(second)[0]["Progress/kimg"]["mean"] == pytest.approx(0.008)
    assert [t["Progress/augment"]["mean"] for t in read_stats(second)] == pytest.approx([0.3] * 3)
    assert "weights only" in (second / "log.txt").read_text()


def test_non_finite_losses_stop_cleanly_and_keep_the_last_good_snapshot(
    archive, tmp_path, monkeypatch
):
    real = losses.StyleGAN2Loss.accumulate_gradients
    calls = {"n": 0}

    def poisoned(self, phase, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= 4:  # the first step (4 phases) is healthy
            return real(self, phase, *args, **kwargs)
        return {"Loss/G/loss": torch.full([8, 1], float("nan"))}

    monkeypatch.setattr(losses.StyleGAN2Loss, "accumulate_gradients", poisoned)
    with pytest.raises(TrainingDiverged, match="3 consecutive steps with non-finite losses"):
        train(tiny(archive, tmp_path, max_bad_steps=3))
    (run_dir,) = tmp_path.iterdir()
    assert [p.name for p in checkpoint.list_snapshots(run_dir)] == [
        "network-snapshot-000000.008.safetensors"
    ]
    snap = checkpoint.load_snapshot(run_dir)  # verifies: the good tick-0 snapshot
    assert snap.state["nimg"] == 8
    assert all(torch.isfinite(t).all() for k, t in snap.tensors.items() if k.startswith("G."))


def test_bad_inputs_fail_before_any_work(archive, tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        train(tiny(tmp_path / "missing", tmp_path))
    with pytest.raises(ConfigError, match="not divisible by the number of GPUs"):
        train(tiny(archive, tmp_path, gpus=3, batch=16))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not writable"):
        train(tiny(archive, blocker / "runs"))
    with pytest.raises(ConfigError, match="GB free"):
        train(tiny(archive, tmp_path / "full", min_free_gb=1e9))
    assert not any((tmp_path / "full").iterdir())  # no run folder was made
    # A snapshot trained at another resolution cannot be resumed on this archive.
    big = write_archive(tmp_path / "big", n=2, res=32)
    from mrisynth.config import resolve_preset
    from mrisynth.networks import build_generator, network_config_from_preset

    G = build_generator(network_config_from_preset(resolve_preset("tiny", 32), 1))
    snap = checkpoint.save_snapshot(
        tmp_path / "old" / "network-snapshot-000004", G=G, D=None, G_ema=G, state={"kimg": 4}
    )
    with pytest.raises(CheckpointError, match="trained at 32px"):
        train(tiny(archive, tmp_path, resume=str(snap)))
    assert big.exists()


def test_cli_dry_run_shows_the_study_configuration(tmp_path):
    data = write_archive(tmp_path / "rgb256", n=2, res=256, channels=3)
    args = ["train", "--data", str(data), "--outdir", str(tmp_path / "runs"), "--cfg", "paper256",
            "--gamma", "1.5", "--mirror", "--aug", "ada", "--augpipe", "bg", "--snap", "10",
            "--gpus", "2", "--dry-run"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    o = info["options"]
    assert (o["batch"], o["batch_gpu"], o["num_accum"], o["gamma"]) == (64, 8, 4, 1.5)
    assert o["preset"]["ema_kimg"] == 20 and o["preset"]["mbstd_group"] == 8
    assert o["user"]["mirror"] and o["user"]["augpipe"] == "bg" and o["user"]["snap"] == 10
    assert info["num_params"] == {"G": 24_767_458, "D": 24_001_089}  # the published counts
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_cli_reports_bad_input_as_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "nope"), "--outdir",
                                      str(tmp_path)])  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "Error:" in result.output


def test_options_are_frozen_and_presets_fill_only_unset_values(archive):
    from mrisynth.training.options import resolve_options

    opts = tiny(archive, "x", batch=None, gamma=2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.kimg = 1  # type: ignore[misc]
    r = resolve_options(opts, resolution=16, img_channels=1, label_dim=0, num_images=24,
                        dataset_hash="h")  # fmt: skip
    assert r.gamma == 2.0 and r.batch == 8 and r.glr == r.preset.lr
    assert r.ada_kimg == 20  # the tiny preset moves p fast
    resumed = resolve_options(
        tiny(archive, "x", cfg="paper256"),
        resolution=256,
        img_channels=1,
        label_dim=0,
        num_images=24,
        dataset_hash="h",
        resuming=True,
    )
    assert resumed.ada_kimg == 100  # weights-only resume: p restarts, ADA moves faster


def test_metrics_are_checked_first_and_recorded_at_each_snapshot(archive, tmp_path):
    with pytest.raises(ConfigError, match="unknown metric"):
        train(tiny(archive, tmp_path / "x", metrics=("fid_typo",)))
    assert not (tmp_path / "x").exists()
    run_dir = train(tiny(archive, tmp_path, kimg=0.008, metrics=("intensity_hist50",)))
    (line,) = (run_dir / "metric-intensity_hist50.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["snapshot"] == "network-snapshot-000000.008.safetensors"
    assert record["kimg"] == 0.008
    assert record["results"] and all(np.isfinite(v) for v in record["results"].values())


def test_a_corrupt_image_anywhere_in_the_archive_stops_before_training(archive, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(archive, data)
    (data / "0017.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(InputError, match=r"0017\.png"):
        train(tiny(data, tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_conditional_training_without_augmentation(tmp_path):
    data = write_archive(tmp_path / "labelled", n=8)
    labels = [[f"{i:04d}.png", i % 3] for i in range(8)]
    (data / "dataset.json").write_text(json.dumps({"labels": labels}))
    run_dir = train(tiny(data, tmp_path / "runs", cond=True, aug="noaug", kimg=0.016))
    G, _ = checkpoint.load_generator(run_dir)
    assert G.c_dim == 3
    img = G(torch.randn(3, G.z_dim), torch.eye(3))
    assert img.shape == (3, 1, 16, 16) and torch.isfinite(img).all()
    assert read_stats(run_dir)[-1]["Progress/augment"]["mean"] == 0
    with pytest.raises(ConfigError, match="no labels"):
        train(tiny(write_archive(tmp_path / "plain", n=4), tmp_path / "runs", cond=True))
