"""ADA augmentation pipeline: identity at p=0, every transform, geometry, gradients, RNG."""

from __future__ import annotations

import math

import pytest
import torch

from mrisynth.errors import ConfigError
from mrisynth.training import augment_ops as ops
from mrisynth.training import augment_warp as warp
from mrisynth.training.augment import (
    AUGMENT_PRESETS,
    COLOR,
    GEOM,
    TRANSFORMS,
    AugmentPipe,
    resolve_multipliers,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_images(n: int, channels: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Band-limited test images in ~[-0.8, 0.8] (random plane waves). # [N, C, H, W]"""
    g = gen(seed)
    coords = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    freq = torch.rand(n, channels, 3, generator=g) * 4
    out = torch.sin(freq[..., 0, None, None] * x + freq[..., 1, None, None] * y)
    return 0.1 + 0.6 * out * torch.cos(freq[..., 2, None, None] * y)


def one(name: str) -> dict[str, float]:
    return {name: 1.0}


# ---------------------------------------------------------------------------------------------
# Presets and construction


def test_presets_hold_the_published_groups():
    names = "blit geom color filter noise cutout bg bgc bgcf bgcfn bgcfnc"
    assert set(AUGMENT_PRESETS) == set(names.split())
    assert set(AUGMENT_PRESETS["bg"]) == {"xflip", "rotate90", "xint", *GEOM}
    assert set(AUGMENT_PRESETS["bgcfnc"]) == set(TRANSFORMS)
    # the MRI default changes no intensities
    assert not set(AUGMENT_PRESETS["bg"]) & {*COLOR, "imgfilter", "noise", "cutout"}
    assert resolve_multipliers({"xflip": 0.5})["xflip"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "bgcx"}, "unknown augmentation preset"),
        ({"preset": {"flip": 1.0}}, "unknown augmentation transform"),
        ({"preset": {"xflip": -1.0}}, "finite and >= 0"),
        ({"preset": "bgc", "num_channels": 2}, "1 or 3 channels"),
        ({"num_channels": 0}, "num_channels >= 1"),
    ],
)
def test_bad_configuration_is_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AugmentPipe(**kwargs)


def test_wrong_channel_count_is_rejected():
    with pytest.raises(ConfigError, match=r"expects images \[N, 1, H, W\]"):
        AugmentPipe("bg", num_channels=1, p=0.5)(torch.zeros(2, 3, 16, 16))


def test_p_is_a_saved_float_buffer():
    pipe = AugmentPipe("bg", num_channels=1, p=0.25)
    assert pipe.p.dtype == torch.float32 and pipe.p.ndim == 0
    state = pipe.state_dict()
    assert float(state["p"]) == 0.25
    other = AugmentPipe("bg", num_channels=1)
    other.load_state_dict(state)
    assert float(other.p) == 0.25


# ---------------------------------------------------------------------------------------------
# Identity and per-transform behaviour


@pytest.mark.parametrize("preset", list(AUGMENT_PRESETS))
def test_p_zero_is_exact_identity(preset):
    images = torch.randn(4, 3, 16, 16)
    out = AugmentPipe(preset, num_channels=3, p=0.0)(images, generator=gen())
    assert torch.equal(out, images)


def test_untransformed_images_are_untouched_at_small_p():
    images = torch.randn(64, 1, 16, 16)
    out = AugmentPipe("bg", num_channels=1, p=0.1)(images, generator=gen(1))
    same = (out == images).flatten(1).all(dim=1)
    assert 0 < int(same.sum()) < 64  # some images transformed, the others bit-identical


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_transform_changes_images_and_keeps_shape(name, channels):
    images = smooth_images(8, channels, size=16)
    pipe = AugmentPipe(one(name), num_channels=channels, p=1.0)
    out = pipe(images, generator=gen(2))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.isfinite(out).all()
    if channels == 1 and name in ("hue", "saturation"):
        assert torch.equal(out, images)  # documented no-op: grey has no chroma
    else:
        assert not torch.equal(out, images)


def test_float64_images_stay_float64():
    images = smooth_images(4, 3, size=16).double()
    out = AugmentPipe("bgcfnc", num_channels=3, p=1.0)(images, generator=gen())
    assert out.dtype == torch.float64


def test_bg_never_changes_intensities_of_a_constant_image():
    images = torch.full((16, 1, 16, 16), 0.3)
    out = AugmentPipe("bg", num_channels=1, p=1.0)(images, generator=gen(3))
    assert torch.allclose(out, images, atol=1e-5)


@pytest.mark.parametrize("preset", ["blit", "geom", "bg"])
def test_geometric_transforms_preserve_mean_intensity(preset):
    images = smooth_images(32, 1, size=32, seed=4) + 0.5
    out = AugmentPipe(preset, num_channels=1, p=1.0)(images, generator=gen(5))
    assert out.mean().item() == pytest.approx(images.mean().item(), rel=0.02)


def test_probability_is_multiplier_times_p_per_image():
    images = torch.randn(4000, 1, 4, 4)
    # xflip fires with p = 0.5 and then flips half of the time: 25 % changed.
    out = AugmentPipe(one("xflip"), num_channels=1, p=0.5)(images, generator=gen(6))
    changed = (out != images).flatten(1).any(dim=1).float().mean().item()
    assert changed == pytest.approx(0.25, abs=0.03)
    # a multiplier scales the probability
    out = AugmentPipe({"xflip": 0.5}, num_channels=1, p=0.8)(images, generator=gen(6))
    changed = (out != images).flatten(1).any(dim=1).float().mean().item()
    assert changed == pytest.approx(0.2, abs=0.03)


def test_rotation_is_split_in_two_with_total_probability_p():
    images = torch.randn(4000, 1, 4, 4)
    out = AugmentPipe(one("rotate"), num_channels=1, p=0.3)(images, generator=gen(7))
    changed = (out != images).flatten(1).any(dim=1).float().mean().item()
    assert changed == pytest.approx(0.3, abs=0.03)


def test_seeded_generator_is_deterministic():
    images = smooth_images(8, 3, size=16)
    pipe = AugmentPipe("bgcfnc", num_channels=3, p=0.7)
    a = pipe(images, generator=gen(11))
    b = pipe(images, generator=gen(11))
    c = pipe(images, generator=gen(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(5)
    d = pipe(images)
    torch.manual_seed(5)
    assert torch.equal(d, pipe(images))  # global RNG when no generator is given


# ---------------------------------------------------------------------------------------------
# Geometry of the resampler


def test_rotate90_four_times_is_identity():
    images = smooth_images(2, 1, size=16)
    quarter = ops.rotate90_2d(torch.ones(2))
    out = images
    for _ in range(4):
        out = warp.warp_pixel_exact(out, quarter)
    assert torch.equal(out, images)
    # the filtered resampler, forced on the same matrix, agrees away from the borders
    out = images
    for _ in range(4):
        out = warp.resample_affine(out, quarter)
    assert torch.allclose(out[..., 4:-4, 4:-4], images[..., 4:-4, 4:-4], atol=1e-2)


def test_quarter_turn_matches_torch_rot90_on_both_paths():
    images = smooth_images(2, 1, size=16)
    g_inv = ops.rotate90_2d(-torch.ones(2))  # inverse of one forward quarter turn
    expected = torch.rot90(images, 1, dims=(3, 2))
    assert torch.equal(warp.warp_pixel_exact(images, g_inv), expected)
    resampled = warp.resample_affine(images, g_inv)
    assert torch.allclose(resampled[..., 4:-4, 4:-4], expected[..., 4:-4, 4:-4], atol=3e-3)


def test_resampler_identity_and_integer_shift_are_lossless():
    images = torch.randn(2, 1, 16, 16)  # white noise: any blur or misalignment would show
    eye = torch.eye(3).repeat(2, 1, 1)
    assert torch.allclose(warp.resample_affine(images, eye), images, atol=1e-5)
    shift = ops.translate2d(torch.full((2,), -3.0), torch.full((2,), 2.0))  # right 3, up 2
    out = warp.resample_affine(images, shift)
    assert torch.allclose(out[:, :, :-2, 3:], images[:, :, 2:, :-3], atol=1e-5)
    assert torch.equal(warp.warp_pixel_exact(images, shift)[:, :, :-2, 3:], images[:, :, 2:, :-3])


def test_rotation_then_inverse_rotation_recovers_the_image():
    images = smooth_images(2, 1, size=32)
    theta = torch.tensor([0.4, -2.0])
    once = warp.resample_affine(images, ops.rotate2d(-theta))
    back = warp.resample_affine(once, ops.rotate2d(theta))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert torch.allclose(back[inner], images[inner], atol=2e-2)


def test_mirror_padding_wider_than_the_image():
    x = torch.arange(4.0).reshape(1, 1, 1, 4)
    padded = ops.mirror_pad(x, 5, 5, 0, 0)
    assert padded.flatten().tolist() == [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]


def test_filter_bank_is_zero_phase_and_sums_to_an_impulse():
    bank = ops.band_filter_bank(torch.zeros((), dtype=torch.float64))
    assert bank.shape == (4, 43)
    assert torch.allclose(bank, bank.flip(1), atol=1e-12)
    impulse = torch.zeros(43, dtype=torch.float64)
    impulse[21] = 1
    assert torch.allclose(bank.sum(0), impulse, atol=1e-12)
    assert bank[0].sum().item() == pytest.approx(1.0)  # only the lowest band passes DC
    assert torch.allclose(bank[1:].sum(1), torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_cutout_mask_zeroes_a_centred_half_size_square():
    mask = ops.cutout_mask(torch.tensor([[0.5, 0.5]]), torch.tensor([0.5]), 16, 16)
    assert int((mask == 0).sum()) == 64
    assert torch.equal(mask[0, 0, 4:12, 4:12], torch.zeros(8, 8))


def test_luma_flip_of_grey_negates_it():
    images = smooth_images(1, 1, size=8)
    flip = ops.luma_flip3d(torch.ones(1))
    assert torch.allclose(ops.apply_color_matrix(images, flip), -images, atol=1e-6)
    rgb = images.repeat(1, 3, 1, 1)
    assert torch.allclose(ops.apply_color_matrix(rgb, flip), -rgb, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Gradients (G trains through the pipe; R1 differentiates through it twice)


@pytest.mark.parametrize(("preset", "channels"), [("bg", 1), ("bgcfnc", 1), ("bgcfnc", 3)])
def test_double_backward_through_the_pipe(preset, channels):
    pipe = AugmentPipe(preset, num_channels=channels, p=1.0)
    images = smooth_images(4, channels, size=16).requires_grad_(True)
    out = pipe(images, generator=gen(8))
    (grad,) = torch.autograd.grad(out.square().sum(), images, create_graph=True)
    penalty = grad.square().sum()  # R1-style
    penalty.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


def test_gradients_match_finite_differences():
    pipe = AugmentPipe("bgcfnc", num_channels=3, p=1.0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)

    def fn(t: torch.Tensor) -> torch.Tensor:
        return pipe(t, generator=gen(9))

    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_resampler_second_derivative_matches_finite_differences():
    g_inv = ops.rotate2d(torch.tensor([0.7], dtype=torch.float64)) @ ops.scale2d(
        torch.tensor([0.8], dtype=torch.float64), torch.tensor([1.2], dtype=torch.float64)
    )
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda t: warp.resample_affine(t, g_inv).square(), (x,), fast_mode=True
    )


@pytest.mark.parametrize("size", [16, 40])  # one group / several groups of similar margins
def test_mixed_batch_matches_warping_each_image_alone(size):
    images = torch.randn(8, 2, size, size)
    ones = torch.ones(1)
    mats = [
        torch.eye(3)[None],
        ops.scale2d(-ones, ones),  # x-flip
        ops.rotate2d(torch.tensor([0.3])),
        torch.eye(3)[None],
        ops.rotate90_2d(ones) @ ops.translate2d(torch.tensor([2.0]), torch.tensor([-1.0])),
        ops.scale2d(torch.tensor([2.2]), torch.tensor([1.9])),  # strong zoom-out: wide margin
        ops.translate2d(torch.tensor([0.5]), torch.tensor([0.25])),
        ops.rotate2d(torch.tensor([-2.5])) @ ops.scale2d(torch.tensor([0.7]), torch.tensor([1.1])),
    ]
    out = warp.warp_geometric(images, torch.cat(mats))
    for i, g in enumerate(mats):
        alone = warp.warp_geometric(images[i : i + 1], g)
        assert torch.allclose(out[i : i + 1], alone, atol=1e-5), i
    assert torch.equal(out[0], images[0]) and torch.equal(out[3], images[3])
    assert torch.equal(out[1], images[1].flip(-1))


# ---------------------------------------------------------------------------------------------
# Published constants, measured on what the pipe draws


def test_geometric_draws_follow_the_published_distributions():
    images = torch.zeros(4000, 1, 64, 64)

    def sample(name: str) -> torch.Tensor:
        return AugmentPipe(one(name), num_channels=1, p=1.0).sample_geometric(images, gen(13))

    g = sample("scale")  # inverse of 2^N(0, 0.2)
    assert (-torch.log2(g[:, 0, 0])).std().item() == pytest.approx(0.2, rel=0.05)
    assert torch.equal(g[:, 0, 0], g[:, 1, 1])
    g = sample("aniso")  # (s, 1/s)
    assert torch.allclose(g[:, 0, 0] * g[:, 1, 1], torch.ones(4000), atol=1e-5)
    assert torch.log2(g[:, 0, 0]).std().item() == pytest.approx(0.2, rel=0.05)
    g = sample("xfrac")  # N(0, 0.125) of the size
    assert (g[:, :2, 2] / 64).std(dim=0).tolist() == pytest.approx([0.125, 0.125], rel=0.05)
    g = sample("xint")  # whole pixels, uniform up to 0.125 of the size
    shift = g[:, :2, 2]
    assert torch.equal(shift, shift.round()) and shift.abs().max().item() == 8
    g = sample("rotate")  # two rotations, each uniform in (-pi, pi)
    angle = torch.atan2(g[:, 1, 0], g[:, 0, 0])
    counts = torch.histc(angle, bins=4, min=-math.pi, max=math.pi)
    assert (counts / 4000).tolist() == pytest.approx([0.25] * 4, abs=0.03)
    g = sample("rotate90")
    assert set(torch.unique(g[:, :2, :2].round()).tolist()) == {-1.0, 0.0, 1.0}


def test_intensity_draws_follow_the_published_distributions():
    n = 4000
    zeros, ones = torch.zeros(n, 1, 8, 8), torch.ones(n, 1, 8, 8)

    def run(name: str, images: torch.Tensor) -> torch.Tensor:
        return AugmentPipe(one(name), num_channels=1, p=1.0)(images, generator=gen(14))

    assert run("brightness", zeros)[:, 0, 0, 0].std().item() == pytest.approx(0.2, rel=0.05)
    contrast = torch.log2(run("contrast", ones)[:, 0, 0, 0])
    assert contrast.std().item() == pytest.approx(0.5, rel=0.05)
    assert (run("lumaflip", ones) < 0).flatten(1).all(1).float().mean().item() == pytest.approx(
        0.5, abs=0.03
    )
    sigma = run("noise", zeros).flatten(1).std(dim=1)  # |N(0, 1)| * 0.1 per image
    assert sigma.mean().item() == pytest.approx(0.1 * math.sqrt(2 / math.pi), rel=0.1)
    # a half-size square at a uniform centre covers (0.5 - 1/16)^2 of the image on average
    cut = (run("cutout", torch.ones(n, 1, 16, 16)) == 0).float().mean()
    assert cut.item() == pytest.approx(0.4375**2, rel=0.05)


@pytest.mark.parametrize("name", ["hue", "saturation"])
def test_hue_and_saturation_change_colour_but_keep_luma(name):
    images = smooth_images(16, 3, size=8)
    out = AugmentPipe(one(name), num_channels=3, p=1.0)(images, generator=gen(15))
    assert torch.allclose(out.mean(dim=1), images.mean(dim=1), atol=1e-5)
    assert (out - images).abs().amax().item() > 0.05
