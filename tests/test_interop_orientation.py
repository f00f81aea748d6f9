"""Which NVIDIA kernels need flipping, checked against NVIDIA's semantics written out as plain
loops (not against our own layers, nor the float64 reference in `nvidia_format`, which this
file checks too).

What stylegan2-ada-pytorch does (training/networks.py, torch_utils/ops/conv2d_resample.py):
- every layer passes `flip_weight = (self.up == 1)` to conv2d_resample;
- up=2 (only the generator's `conv0` of each block after 4x4): conv_transpose2d with the stored
  weight, transposed to [in, out, k, k] and not flipped (`flip_weight=not False`), stride 2, no
  padding; then upfirdn2d with the [1,3,3,1] filter, gain 4, padding 1 on each side;
- everything else (G's conv1 and ToRGB; D's fromrgb, conv0, conv1 down, skip down, epilogue
  conv) is conv2d, i.e. correlation, with down-sampling as upfirdn2d (padding 2 for 3x3, 1 for
  1x1) followed by a stride-2 conv2d.
So only the up-sampling kernels differ from ours: transposed convolution scatters the kernel as
stored, which is a true convolution of the zero-stuffed input; we correlate.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nvidia_format as nf
from mrisynth.networks.layers import conv2d_resample, make_fir_filter

F4 = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0


def _upfirdn(x: np.ndarray, pad: tuple[int, int], gain: float, down: int = 1) -> np.ndarray:
    """upfirdn2d without up-sampling: zero padding (before, after), true convolution with the
    4x4 filter times `gain`, then every `down`-th sample. x: [C, H, W]."""
    c, h, w = x.shape
    xp = np.zeros((c, h + sum(pad), w + sum(pad)))
    xp[:, pad[0]:pad[0] + h, pad[0]:pad[0] + w] = x
    f = F4[::-1, ::-1] * gain  # convolution = correlation with the flipped filter
    out = np.zeros((c, xp.shape[1] - 3, xp.shape[2] - 3))
    for p in range(out.shape[1]):
        for q in range(out.shape[2]):
            out[:, p, q] = (xp[:, p:p + 4, q:q + 4] * f).sum(axis=(1, 2))
    return out[:, ::down, ::down]


def _correlate(x: np.ndarray, w: np.ndarray, stride: int = 1, pad: int = 0) -> np.ndarray:
    """conv2d as torch defines it: out[o, i, j] = sum w[o, c, u, v] x[c, s*i + u, s*j + v]."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    n = (x.shape[1] - k) // stride + 1
    out = np.zeros((w.shape[0], n, n))
    for i in range(n):
        for j in range(n):
            patch = x[:, stride * i:stride * i + k, stride * j:stride * j + k]
            out[:, i, j] = np.einsum("ocuv,cuv->o", w, patch)
    return out


def nvidia_up_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """NVIDIA's up=2 path: conv_transpose2d(x, w.transpose(0, 1), stride=2) by its definition
    (each input sample adds the kernel as stored, scaled, at 2*(i, j)), then upfirdn2d."""
    h = x.shape[1]
    o, _, k, _ = w.shape
    out = np.zeros((o, 2 * h + k - 2, 2 * h + k - 2))
    for i in range(h):
        for j in range(h):
            out[:, 2 * i:2 * i + k, 2 * j:2 * j + k] += np.einsum("ocuv,c->ouv", w, x[:, i, j])
    return _upfirdn(out, (1, 1), gain=4.0)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    w[:, :, 0, :] += 3.0  # strongly asymmetric: a wrong orientation cannot pass
    w[:, :, :, 2] -= 2.0
    return x, w


def test_up_sampling_kernels_must_be_flipped(data):
    x, w = data
    ref = nvidia_up_conv(x, w)
    assert ref.shape == (3, 10, 10)
    f = make_fir_filter().double()
    ours_flipped = conv2d_resample(_t(x)[None], _t(w).flip([2, 3]), f, up=2)[0]
    np.testing.assert_allclose(ours_flipped.numpy(), ref, atol=1e-10)
    ours_plain = conv2d_resample(_t(x)[None], _t(w), f, up=2)[0]
    assert np.abs(ours_plain.numpy() - ref).max() > 1.0  # a plain copy is wrong


def test_the_float64_reference_follows_nvidia_not_us(data):
    """nvidia_format's modulated conv (style 1, no demodulation) is NVIDIA's up path."""
    x, w = data
    ref = nf._modconv(_t(x)[None], _t(w), torch.ones(1, 2, dtype=torch.float64), False, True)
    np.testing.assert_allclose(ref[0].numpy(), nvidia_up_conv(x, w), atol=1e-10)
    same = nf._modconv(_t(x)[None], _t(w), torch.ones(1, 2, dtype=torch.float64), False, False)
    np.testing.assert_allclose(same[0].numpy(), _correlate(x, w, pad=1), atol=1e-10)


def test_layers_without_up_sampling_are_copied_as_stored(data):
    """G's conv1/ToRGB and all of D's layers correlate in NVIDIA's code, as ours do."""
    x, w = data
    f = make_fir_filter().double()
    xt = _t(x)[None]
    np.testing.assert_allclose(conv2d_resample(xt, _t(w), f)[0].numpy(),
                               _correlate(x, w, pad=1), atol=1e-10)  # 3x3, same size
    x6 = np.random.default_rng(1).standard_normal((2, 6, 6))
    down3 = _correlate(_upfirdn(x6, (2, 2), gain=1.0), w, stride=2)  # D's conv1 (down)
    np.testing.assert_allclose(conv2d_resample(_t(x6)[None], _t(w), f, down=2)[0].numpy(),
                               down3, atol=1e-10)
    w1 = w[:, :, :1, :1]
    down1 = _correlate(_upfirdn(x6, (1, 1), gain=1.0, down=2), w1)  # D's skip (1x1, down)
    np.testing.assert_allclose(conv2d_resample(_t(x6)[None], _t(w1), f, down=2)[0].numpy(),
                               down1, atol=1e-10)


def test_reference_discriminator_down_paths_follow_nvidia():
    """nvidia_format's D reference (used for the imported-D equality test) against the loops."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 6))
    w3, w1 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((3, 2, 1, 1))
    t = {"a.weight": _t(w3), "b.weight": _t(w1)}
    gain3, gain1 = 1 / np.sqrt(2 * 9), 1 / np.sqrt(2)
    got3 = nf._conv(_t(x)[None], t, "a", act=False, down=True)[0].numpy()
    np.testing.assert_allclose(got3, _correlate(_upfirdn(x, (2, 2), 1.0), w3 * gain3, stride=2),
                               atol=1e-10)
    got1 = nf._conv(_t(x)[None], t, "b", act=False, down=True)[0].numpy()
    np.testing.assert_allclose(got1, _correlate(_upfirdn(x, (1, 1), 1.0, down=2), w1 * gain1),
                               atol=1e-10)


def test_image_up_sampling_between_blocks_follows_nvidia():
    """upfirdn2d.upsample2d: each sample followed by a zero, padding 2 before and 1 after, the
    filter times 4. An off-by-one in that padding would shift every image by a pixel."""
    from mrisynth.networks.layers import upsample2d

    x = np.random.default_rng(3).standard_normal((2, 4, 4))
    stuffed = np.zeros((2, 8, 8))
    stuffed[:, ::2, ::2] = x
    ref = _upfirdn(stuffed, (2, 1), gain=4.0)
    assert ref.shape == (2, 8, 8)
    ours = upsample2d(_t(x)[None], make_fir_filter().double())[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    fixture = nf._fir(nf._zero_insert(_t(x)[None], 8), (2, 1, 2, 1))[0].numpy()
    np.testing.assert_allclose(fixture, ref, atol=1e-10)
    shifted = _upfirdn(stuffed, (1, 2), gain=4.0)
    assert np.abs(shifted - ref).max() > 0.1  # the check can tell the padding apart
