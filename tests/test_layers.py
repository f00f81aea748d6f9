"""Building blocks of the StyleGAN2 networks against independent references (numpy/scipy)."""

import math

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from mrisynth.errors import ConfigError
from mrisynth.networks.layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    MinibatchStdLayer,
    SynthesisLayer,
    bias_act,
    conv2d_resample,
    downsample2d,
    make_fir_filter,
    modulated_conv2d,
    normalize_2nd_moment,
    upsample2d,
)

TAPS = np.array([1.0, 3.0, 3.0, 1.0])


def _upfirdn_2d(x: np.ndarray, h: np.ndarray, up: int, down: int) -> np.ndarray:
    """Separable 2-D upfirdn with scipy (full output), x: [H, W]."""
    rows = np.stack([scipy.signal.upfirdn(h, r, up, down) for r in x])
    return np.stack([scipy.signal.upfirdn(h, col, up, down) for col in rows.T]).T


def test_fir_filter_is_normalised_outer_product():
    f = make_fir_filter()
    assert f.shape == (4, 4)
    assert torch.allclose(f.sum(), torch.tensor(1.0))
    assert torch.allclose(f, torch.outer(torch.tensor(TAPS), torch.tensor(TAPS)).float() / 64)


def test_upsample2d_matches_scipy_upfirdn():
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    ours = upsample2d(x, make_fir_filter().double())[0, 0].numpy()  # [12, 12]
    # 1-D taps normalised to sum 1, gain 2 per axis (4 in 2-D); full output cropped by 1.
    ref = _upfirdn_2d(x[0, 0].numpy(), TAPS / TAPS.sum() * 2, up=2, down=1)[1:13, 1:13]
    assert ours.shape == (12, 12)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_downsample2d_matches_scipy_upfirdn():
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    ours = downsample2d(x, make_fir_filter().double())[0, 0].numpy()  # [4, 4]
    full = _upfirdn_2d(x[0, 0].numpy(), TAPS / TAPS.sum(), up=1, down=1)
    np.testing.assert_allclose(ours, full[2::2, 2::2][:4, :4], atol=1e-12)


def test_upsampling_preserves_a_constant_image():
    x = torch.full((1, 2, 8, 8), 3.0)
    y = upsample2d(x, make_fir_filter())
    assert torch.allclose(y[..., 2:-2, 2:-2], torch.tensor(3.0))


@pytest.mark.parametrize("k", [1, 3])
def test_resampling_conv_equals_resample_then_conv_in_the_interior(k):
    """The fused transposed-conv / strided-conv paths are the plain compositions (up to borders)."""
    f = make_fir_filter().double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = torch.randn(5, 3, k, k, dtype=torch.float64)
    up = conv2d_resample(x, w, f, up=2)
    ref_up = F.conv2d(upsample2d(x, f), w, padding=k // 2)
    assert up.shape == (2, 5, 16, 16)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], ref_up[..., 2:-2, 2:-2])
    down = conv2d_resample(x, w, f, down=2)
    ref_down = downsample2d(F.conv2d(x, w, padding=k // 2), f)
    assert down.shape == (2, 5, 4, 4)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], ref_down[..., 1:-1, 1:-1])


def test_fully_connected_uses_equalised_learning_rate():
    torch.manual_seed(0)
    layer = FullyConnectedLayer(64, 32, lr_multiplier=0.01, bias_init=0.5)
    # Stored weights are N(0, 1)/lr_mul; the effective weights are N(0, 1/in).
    assert layer.weight.std().item() == pytest.approx(100.0, rel=0.1)
    x = torch.randn(5, 64)
    expected = x @ (layer.weight * 0.01 / math.sqrt(64)).T + layer.bias * 0.01
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer(torch.zeros(1, 64)), torch.full((1, 32), 0.5))


def test_conv_layer_scales_weights_by_fan_in_and_keeps_unit_variance():
    torch.manual_seed(0)
    layer = Conv2dLayer(16, 8, 3)
    x = torch.randn(4, 16, 12, 12)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight / math.sqrt(16 * 9), padding=1))
    assert layer(x)[..., 1:-1, 1:-1].std().item() == pytest.approx(1.0, rel=0.2)


def test_bias_act_lrelu_gain_and_clamp():
    x = torch.tensor([[-1.0, 2.0, 500.0]]).T.reshape(1, 3, 1, 1)
    b = torch.tensor([0.0, 1.0, 0.0])
    y = bias_act(x, b, "lrelu", gain=1.0, clamp=256.0).flatten()
    torch.testing.assert_close(y, torch.tensor([-0.2 * math.sqrt(2), 3 * math.sqrt(2), 256.0]))
    with pytest.raises(ConfigError):
        bias_act(x, None, "relu6")


def test_normalize_2nd_moment_gives_unit_mean_square():
    z = torch.randn(7, 33) * 5
    assert torch.allclose(normalize_2nd_moment(z).square().mean(dim=1), torch.ones(7), atol=1e-5)


def _reference_modconv(x, weight, styles, demodulate, up):
    """Loop over samples: modulate, demodulate, then plain (resampling) conv per image."""
    f = make_fir_filter().double()
    out = []
    for i in range(x.shape[0]):
        w = weight * styles[i][None, :, None, None]  # [O, I, k, k]
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        out.append(conv2d_resample(x[i : i + 1], w, f, up=up))
    return torch.cat(out)


@pytest.mark.parametrize("up,k,demodulate", [(1, 3, True), (2, 3, True), (1, 1, False)])
def test_fused_and_non_fused_modulated_conv_agree_with_reference(up, k, demodulate):
    torch.manual_seed(1)
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64)
    weight = torch.randn(4, 6, k, k, dtype=torch.float64)
    styles = torch.randn(3, 6, dtype=torch.float64) + 1
    f = make_fir_filter().double()
    ref = _reference_modconv(x, weight, styles, demodulate, up)
    for fused in (True, False):
        y = modulated_conv2d(x, weight, styles, up=up, demodulate=demodulate,
                             resample_filter=f, fused=fused)
        torch.testing.assert_close(y, ref)


def test_demodulation_normalises_each_output_channel():
    """With demodulation the output does not depend on the style scale and has unit variance."""
    torch.manual_seed(2)
    x = torch.randn(2, 32, 24, 24)
    weight = torch.randn(8, 32, 3, 3) * 3.0
    styles = torch.rand(2, 32) + 0.5
    y1 = modulated_conv2d(x, weight, styles)
    y2 = modulated_conv2d(x, weight, styles * 10.0)
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-4)
    var = y1[..., 1:-1, 1:-1].var(dim=[2, 3])  # [N, O]
    assert torch.allclose(var, torch.ones_like(var), rtol=0.25)
    no_demod = modulated_conv2d(x, weight, styles, demodulate=False)
    assert no_demod.std() > 3 * y1.std()


def test_reduced_precision_modulated_conv_is_close_to_fp32():
    torch.manual_seed(3)
    x = torch.randn(2, 8, 8, 8)
    weight = torch.randn(4, 8, 3, 3) * 100.0
    styles = torch.rand(2, 8) * 50.0
    ref = modulated_conv2d(x, weight, styles)
    y = modulated_conv2d(x.bfloat16(), weight, styles)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, atol=0.05, rtol=0.05)


def test_noise_modes():
    torch.manual_seed(4)
    layer = SynthesisLayer(4, 4, w_dim=8, resolution=8)
    with torch.no_grad():
        layer.noise_strength.fill_(0.5)
    x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 8)
    const = layer(x, w, noise_mode="const")
    torch.testing.assert_close(const, layer(x, w, noise_mode="const"))
    assert not torch.allclose(layer(x, w, noise_mode="random"), layer(x, w, noise_mode="random"))
    assert not torch.allclose(layer(x, w, noise_mode="none"), const)
    with pytest.raises(ConfigError):
        layer(x, w, noise_mode="fixed")


def test_minibatch_std_matches_numpy():
    torch.manual_seed(5)
    x = torch.randn(8, 6, 4, 4, dtype=torch.float64)
    y = MinibatchStdLayer(group_size=4)(x)
    assert y.shape == (8, 7, 4, 4)
    torch.testing.assert_close(y[:, :6], x)
    xs = x.numpy().reshape(4, 2, 6, 4, 4)  # groups: samples i, i+2, i+4, i+6
    stat = np.sqrt(xs.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))  # [2]
    expected = np.tile(stat, 4)  # sample n belongs to group n % 2
    np.testing.assert_allclose(y[:, 6, 0, 0].numpy(), expected, rtol=1e-6)
    assert torch.all(y[:, 6] == y[:, 6, :1, :1])


def test_minibatch_std_group_larger_than_batch_and_indivisible_batch():
    layer = MinibatchStdLayer(group_size=4)
    assert layer(torch.randn(3, 2, 4, 4)).shape == (3, 3, 4, 4)
    with pytest.raises(ConfigError, match="does not divide"):
        layer(torch.randn(6, 2, 4, 4))
