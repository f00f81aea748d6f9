"""mrisynth project: the projector's pieces against references, and the batch/CLI behaviour."""

from __future__ import annotations

import itertools
import json
import math
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import mannwhitneyu

from mrisynth.cli import cli
from mrisynth.config import resolve_preset
from mrisynth.errors import ConfigError
from mrisynth.generate.images import read_png
from mrisynth.imaging import encode_png, quantize_images
from mrisynth.metrics.msssim import ms_ssim as ms_ssim_reference
from mrisynth.networks import build_generator, network_config_from_preset
from mrisynth.projection.compare import compare_errors
from mrisynth.projection.losses import ms_ssim, noise_regularization
from mrisynth.projection.outputs import load_latent
from mrisynth.projection.projector import (
    ProjectionOptions,
    latent_stats,
    learning_rate,
    project,
    synthesize,
    w_noise_scale,
)
from mrisynth.training.checkpoint import save_snapshot


def tiny_generator(res: int = 16, channels: int = 1, c_dim: int = 0, noise: float = 0.0):
    torch.manual_seed(0)
    cfg = network_config_from_preset(resolve_preset("tiny", res), channels, c_dim)
    G = build_generator(cfg).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(noise)
    return G


def generated(G, seed: int) -> np.ndarray:
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
        return quantize_images(G(z, None, noise_mode="const"))[0].numpy()  # uint8 [C, H, W]


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


@pytest.fixture(scope="module")
def files(tmp_path_factory, G):
    """A snapshot, a folder of targets (training), a folder of held-out images, one RGB PNG."""
    root = tmp_path_factory.mktemp("proj")
    snap = save_snapshot(root / "run" / "network-snapshot-000004.safetensors", G=G, D=None,
                         G_ema=G, state={"kimg": 4})  # fmt: skip
    for folder, seeds in (("train", range(3)), ("held", range(10, 12))):
        (root / folder).mkdir()
        for s in seeds:
            (root / folder / f"img{s:03d}.png").write_bytes(encode_png(generated(G, s)))
    return {"root": root, "snap": snap, "train": root / "train", "held": root / "held"}


def run(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


# -- the pieces, against references ----------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 64])
def test_torch_ms_ssim_matches_the_numpy_reference(size):
    rng = np.random.default_rng(size)
    a = rng.uniform(0, 255, (3, 2, size, size))
    b = np.clip(a + rng.normal(0, 40, a.shape), 0, 255)  # correlated: no negative terms
    ours = ms_ssim(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ref = np.stack([ms_ssim_reference(a[:, c], b[:, c]) for c in range(2)], axis=1).mean(axis=1)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    x = torch.from_numpy(a).float().requires_grad_(True)
    ms_ssim(x, torch.from_numpy(b).float()).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_noise_regularization_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    maps = [rng.normal(size=(4, 4)), rng.normal(size=(16, 16))]
    want = 0.0
    for m in maps:
        while True:
            want += np.mean(m * np.roll(m, 1, axis=1)) ** 2
            want += np.mean(m * np.roll(m, 1, axis=0)) ** 2
            if m.shape[0] <= 8:
                break
            m = m.reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2).mean(axis=(1, 3))
    got = noise_regularization([torch.from_numpy(m) for m in maps])
    assert float(got) == pytest.approx(want, rel=1e-10)
    smooth = noise_regularization([torch.ones(16, 16)])
    white = noise_regularization([torch.from_numpy(rng.normal(size=(64, 64)))])
    assert float(smooth) > 100 * float(white)


def test_schedules_are_the_papers():
    o = ProjectionOptions()
    assert learning_rate(0.0, o) == 0.0
    assert learning_rate(0.05, o) == pytest.approx(0.1)
    assert learning_rate(0.5, o) == pytest.approx(0.1)
    assert learning_rate(0.875, o) == pytest.approx(0.05)  # half-way down the cosine
    assert learning_rate(1.0, o) == pytest.approx(0.0, abs=1e-12)
    assert w_noise_scale(0.0, 2.0, o) == pytest.approx(0.1)
    assert w_noise_scale(0.375, 2.0, o) == pytest.approx(0.025)
    assert w_noise_scale(0.75, 2.0, o) == 0.0


def test_comparison_matches_pair_counting_and_an_exact_permutation_test():
    train, held = [1.0, 2.5, 3.0], [2.0, 4.0, 5.0, 6.0]
    out = compare_errors(train, held)
    pairs = [(a < b) + 0.5 * (a == b) for a in train for b in held]
    assert out["mann_whitney"]["prob_train_lower"] == pytest.approx(np.mean(pairs))
    values = train + held  # exact one-sided p: share of splits with U_train <= observed
    u = lambda xs, ys: sum((a > b) + 0.5 * (a == b) for a in xs for b in ys)  # noqa: E731
    observed = u(train, held)
    splits = list(itertools.combinations(range(7), 3))
    p = sum(u([values[i] for i in s], [values[i] for i in range(7) if i not in s]) <= observed
            for s in splits) / len(splits)  # fmt: skip
    assert out["mann_whitney"]["p_value_less"] == pytest.approx(p)
    assert out["mann_whitney"]["p_value_less"] == pytest.approx(
        mannwhitneyu(train, held, alternative="less").pvalue
    )
    assert "no evidence" in out["verdict"]
    with pytest.raises(ConfigError):
        compare_errors([], held)
    with pytest.raises(ConfigError):
        compare_errors([1.0, math.nan], held)


@pytest.mark.parametrize(
    "change",
    [{"num_steps": 0}, {"num_steps": -3}, {"num_steps": 2.5}, {"num_steps": True},
     {"initial_lr": math.nan}, {"initial_lr": math.inf}, {"noise_reg_weight": -1.0},
     {"seed": -1}, {"w_avg_samples": 1}, {"initial_lr": "0.1"}],
)  # fmt: skip
def test_impossible_options_are_refused(change):
    with pytest.raises(ConfigError):
        ProjectionOptions(**change).check()


def test_projection_reproduces_a_generated_image_and_its_latent_rerenders(G):
    stats = latent_stats(G, 500, None, torch.device("cpu"))
    target = torch.from_numpy(generated(G, 3))
    start = quantize_images(G.synthesis(stats.w_avg[None].expand(1, G.num_ws, -1)))[0]
    opts = ProjectionOptions(num_steps=60, w_avg_samples=500)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    result = project(G, target, stats, opts)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # G untouched
    got = quantize_images(result.image)[0]
    err = (got.float() - target.float()).square().mean().sqrt()
    err0 = (start.float() - target.float()).square().mean().sqrt()
    assert err < 0.5 * err0, (float(err), float(err0))
    assert result.curve[-1]["pixel"] < result.curve[0]["pixel"]
    again = project(G, target, stats, opts)  # deterministic for a seed
    assert torch.equal(again.ws, result.ws)
    assert torch.equal(synthesize(G, result.ws, result.noise), result.image)


# -- the command -----------------------------------------------------------------------------


def test_project_compare_writes_everything_and_resumes(files, tmp_path):
    out = tmp_path / "out"
    args = ["project", "--network", str(files["snap"]), "--target", str(files["train"]),
            "--holdout", str(files["held"]), "--outdir", str(out), "--steps", "3",
            "--no-progress", "--loss", "pixel"]  # fmt: skip
    res = run(args)
    assert res.exit_code == 0, res.output
    assert "held-out median" in res.output
    record = json.loads((out / "projection.json").read_text())
    assert [r["group"] for r in record["targets"]] == ["train"] * 3 + ["holdout"] * 2
    assert record["comparison"]["train"]["n"] == 3 and record["loss"] == "pixel"
    one = out / "train" / "0000-img000"
    for name in ("target.png", "projected.png", "latent.safetensors", "loss.csv", "loss.png",
                 "summary.json"):  # fmt: skip
        assert (one / name).is_file(), name
    assert len((one / "loss.csv").read_text().splitlines()) == 1 + 3
    assert (out / "comparison.png").stat().st_size > 1000
    G, _ = __import__("mrisynth.training.checkpoint", fromlist=["x"]).load_generator(files["snap"])
    ws, noise, w_plus = load_latent(one / "latent.safetensors")
    img = quantize_images(synthesize(G, ws, noise))[0].numpy()
    assert np.array_equal(img, read_png(one / "projected.png")) and not w_plus
    stamp = (one / "summary.json").stat().st_mtime_ns
    res = run(args)  # resume: nothing projected again
    assert res.exit_code == 0, res.output
    assert (one / "summary.json").stat().st_mtime_ns == stamp
    assert all(r.get("resumed") for r in json.loads((out / "projection.json").read_text())
               ["targets"])  # fmt: skip
    res = run([*args[:-4], "4", "--no-progress", "--loss", "pixel"])  # other settings
    assert res.exit_code == 1 and "other settings" in res.output


def test_bad_targets_are_skipped_and_reported(files, tmp_path, G):
    src = tmp_path / "mixed"
    src.mkdir()
    (src / "a_good.png").write_bytes(encode_png(generated(G, 0)))
    (src / "b_big.png").write_bytes(encode_png(np.zeros((1, 32, 32), np.uint8)))
    colour = np.zeros((3, 16, 16), np.uint8)
    colour[0] = 50  # not grey (R = G = B would be read as grey)
    (src / "c_rgb.png").write_bytes(encode_png(colour))
    (src / "d_cut.png").write_bytes(encode_png(generated(G, 1))[:40])
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # claims 10 GB of pixels
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (src / "e_huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    rgb = tmp_path / "single_rgb.png"
    rgb.write_bytes(encode_png(colour))
    out = tmp_path / "out"
    res = run(["project", "--network", str(files["snap"]), "--target", str(src), "--target",
               str(rgb), "--outdir", str(out), "--steps", "2", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((out / "projection.json").read_text())
    assert [r["key"] for r in record["targets"]] == ["0000-a_good"]
    problems = {r["key"]: r["problem"] for r in record["skipped"]}
    assert "32x32" in problems["0001-b_big"] and "16x16" in problems["0001-b_big"]
    assert "3 channel" in problems["0002-c_rgb"] and "3 channel" in problems["0005-single_rgb"]
    assert "100000" in problems["0004-e_huge"]
    assert "corrupt" in problems["0003-d_cut"] or "truncated" in problems["0003-d_cut"]
    assert "skipped 5" in res.output
    csv_text = (out / "projection.csv").read_text()
    assert "b_big" in csv_text and "a_good" in csv_text


def _error_line(res, *expected: str) -> None:
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    for text in expected:
        assert text in lines[-1], (text, lines[-1])


def test_hostile_command_lines_are_one_error_line(files, tmp_path, G):
    snap, train = str(files["snap"]), str(files["train"])
    base = ["project", "--network", snap, "--no-progress"]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    _error_line(run([*base, "--target", str(bad), "--outdir", str(tmp_path / "o1")]),
                "no target could be projected")  # fmt: skip
    _error_line(run([*base, "--target", train, "--outdir", str(tmp_path / "o2"), "--steps",
                     "0"]), "--steps")  # fmt: skip
    _error_line(run([*base, "--target", train, "--outdir", str(tmp_path / "o3"), "--steps",
                     "nan"]), "--steps")  # fmt: skip
    _error_line(run([*base, "--target", train, "--outdir", str(files["train"] / "inside")]),
                "inside the target folder")  # fmt: skip
    _error_line(run([*base, "--target", train, "--outdir", str(tmp_path / "o9"), "--num", "0"]),
                "--num")  # fmt: skip
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _error_line(run([*base, "--target", train, "--outdir", str(foreign)]), "not empty")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _error_line(run([*base, "--target", train, "--outdir", str(a_file)]), "not a folder")
    _error_line(run([*base, "--target", train, "--outdir", str(tmp_path / "o4"), "--compare"]),
                "--compare")  # fmt: skip
    _error_line(run([*base, "--target", str(tmp_path / "missing.png"), "--outdir",
                     str(tmp_path / "o5")]), "missing.png")  # fmt: skip
    _error_line(run([*base, "--target", "/dev/null", "--outdir", str(tmp_path / "o11")]),
                "/dev/null: not a PNG file, folder or ZIP archive")  # fmt: skip
    _error_line(run(["project", "--network", str(tmp_path / "nope.safetensors"), "--target",
                     train, "--outdir", str(tmp_path / "o6")]), "nope")  # fmt: skip
    _error_line(run([*base, "--target", train, "--outdir", str(tmp_path / "o7"), "--class",
                     "0"]), "--class")  # fmt: skip
    _error_line(run([*base, "--target", train, "--outdir", str(tmp_path / "o8"), "--loss", "vgg",
                     "--detector-dir", str(tmp_path / "nodetectors")]), "vgg16.pt")  # fmt: skip
    assert not (foreign / "projection.json").exists() and (foreign / "notes.txt").exists()
    broken = tiny_generator()
    with torch.no_grad():
        broken.mapping.fc0.weight.fill_(math.nan)
    nan_snap = save_snapshot(tmp_path / "nan" / "network-snapshot-000001.safetensors", G=broken,
                             D=None, G_ema=broken, state={"kimg": 1})  # fmt: skip
    _error_line(run(["project", "--network", str(nan_snap), "--target", train, "--outdir",
                     str(tmp_path / "o10"), "--no-progress"]), "NaN")  # fmt: skip
    assert not (tmp_path / "o10").exists()


class FakeLpipsVgg(torch.nn.Module):
    """NVIDIA's VGG16 call interface (features and LPIPS features), tiny and random."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 64, 3, padding=1)
        self.fc = torch.nn.Linear(64, 4096)

    def forward(self, x: torch.Tensor, resize_images: bool = True, return_features: bool = False,
                return_lpips: bool = False) -> torch.Tensor:  # fmt: skip
        h = torch.relu(self.conv(x.float() / 128 - 1))  # [N, 64, H, W]
        if return_lpips:
            f = h.flatten(1)
            return f / f.square().sum(dim=1, keepdim=True).sqrt()
        return self.fc(h.mean(dim=(2, 3)))


def test_vgg_features_are_used_when_the_detector_file_is_present(files, tmp_path):
    detectors = tmp_path / "det"
    detectors.mkdir()
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is NVIDIA's format
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(FakeLpipsVgg()), str(detectors / "vgg16.pt"))
    out = tmp_path / "out"
    res = run(["project", "--network", str(files["snap"]), "--target", str(files["held"]),
               "--outdir", str(out), "--steps", "3", "--no-progress", "--detector-dir",
               str(detectors)])  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((out / "projection.json").read_text())
    assert record["loss"] == "vgg" and record["vgg16_sha256"]
    curve = out / "targets" / "0000-img010" / "loss.csv"
    assert curve.read_text().splitlines()[0].startswith("step,loss,lr,pixel,msssim,vgg")
    assert float(curve.read_text().splitlines()[1].split(",")[5]) > 0  # the vgg column


def test_a_vgg16_file_without_lpips_features_is_one_error_line(files, tmp_path):
    from tests.fake_detectors import write_detector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        write_detector(tmp_path / "det" / "vgg16.pt", "vgg16")  # features only, no LPIPS call
    out = tmp_path / "out"
    res = run(["project", "--network", str(files["snap"]), "--target", str(files["held"]),
               "--outdir", str(out), "--steps", "2", "--no-progress", "--detector-dir",
               str(tmp_path / "det")])  # fmt: skip
    _error_line(res, "return_lpips", "--loss pixel")
    assert not out.exists()  # refused before anything was written


def test_conditional_generator_w_plus(tmp_path):
    G = tiny_generator(c_dim=2)
    snap = save_snapshot(tmp_path / "run" / "network-snapshot-000001.safetensors", G=G, D=None,
                         G_ema=G, state={"kimg": 1})  # fmt: skip
    with torch.no_grad():
        c = torch.tensor([[0.0, 1.0]])
        img = quantize_images(G(torch.randn(1, G.z_dim), c, noise_mode="const"))[0].numpy()
    (tmp_path / "t.png").write_bytes(encode_png(img))
    base = ["project", "--network", str(snap), "--target", str(tmp_path / "t.png"), "--steps",
            "3", "--no-progress", "--w-plus"]  # fmt: skip
    _error_line(run([*base, "--outdir", str(tmp_path / "o1")]), "--class")
    res = run([*base, "--outdir", str(tmp_path / "o2"), "--class", "1"])
    assert res.exit_code == 0, res.output
    ws, noise, w_plus = load_latent(tmp_path / "o2" / "targets" / "0000-t" / "latent.safetensors")
    assert w_plus and ws.shape == (G.num_ws, G.w_dim)
    assert not torch.equal(ws[0], ws[-1])  # one w per layer, optimised apart
    layers = {n.removesuffix(".noise_const") for n, _ in G.synthesis.named_buffers()
              if n.endswith(".noise_const")}  # fmt: skip
    assert set(noise) == layers and len(layers) == 2 * 3 - 1  # 16 px: b4.conv1, b8/b16 conv0+1



def test_grey_stored_as_colour_or_with_alpha_is_a_grey_target(files, tmp_path, G):
    """Grey + alpha, grey palette and R = G = B PNGs decode to 3 channels; they were skipped as
    'has 3 channel(s)' for a grayscale generator. 16-bit grey is scaled to 8 bits."""
    from PIL import Image

    grey = generated(G, 0)[0]
    src = tmp_path / "grey"
    src.mkdir()
    Image.fromarray(grey).convert("LA").save(src / "a_la.png")
    Image.fromarray(grey).convert("P").save(src / "b_palette.png")
    (src / "c_rgb_grey.png").write_bytes(encode_png(np.repeat(grey[None], 3, axis=0)))
    Image.fromarray(grey.astype(np.uint16) * 257).save(src / "d_16bit.png")
    res = run(["project", "--network", str(files["snap"]), "--target", str(src), "--outdir",
               str(tmp_path / "out"), "--steps", "2", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "out" / "projection.json").read_text())
    assert len(record["targets"]) == 4 and not record["skipped"]
    for key in ("0000-a_la", "0001-b_palette", "0002-c_rgb_grey", "0003-d_16bit"):
        assert np.array_equal(read_png(tmp_path / "out" / "targets" / key / "target.png")[0], grey)
    colour = tmp_path / "colour.png"
    rgba = np.stack([grey, grey // 2, grey, np.full_like(grey, 255)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(colour)
    res = run(["project", "--network", str(files["snap"]), "--target", str(colour), "--outdir",
               str(tmp_path / "out2"), "--steps", "2", "--no-progress"])  # fmt: skip
    _error_line(res, "colour.png: has 3 channel(s)", "grayscale")
