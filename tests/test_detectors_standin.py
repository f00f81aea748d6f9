"""Stand-in detectors: same architecture and input handling as NVIDIA's, never called FID."""

import numpy as np
import pytest
import torch

from mrisynth.metrics.extractor import standin_detector
from mrisynth.metrics.standin import build_standin, module_sha256, tf1_bilinear_resize


def _tf1_resize_loop(img: np.ndarray, size: int) -> np.ndarray:
    """Literal TF-1 resize_bilinear (align_corners=False, half_pixel_centers=False)."""
    h, w = img.shape
    out = np.zeros([size, size])
    for oy in range(size):
        sy = oy * h / size
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, h - 1)
        fy = sy - y0
        for ox in range(size):
            sx = ox * w / size
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, w - 1)
            fx = sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[oy, ox] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize(("src", "dst"), [(8, 13), (16, 7), (5, 5)])
def test_tf1_bilinear_matches_literal_definition(src, dst):
    img = np.random.default_rng(src).uniform(0, 255, [src, src])
    got = tf1_bilinear_resize(torch.from_numpy(img)[None, None], dst)[0, 0].numpy()
    np.testing.assert_allclose(got, _tf1_resize_loop(img, dst), atol=1e-9)


def test_tf1_resize_has_no_half_pixel_offset():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    up = tf1_bilinear_resize(x, 8)[0, 0, 0]
    assert up.tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3]  # last source pixel repeated


def test_full_inception_standin_interface():
    net = build_standin("inception")
    assert net.feature_dim == 2048
    x = torch.randint(0, 256, [2, 3, 40, 40], dtype=torch.uint8)
    feats = net(x, return_features=True)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and feats.std() > 0
    assert net(x).shape == (2, 1008)
    n_params = sum(p.numel() for p in net.parameters())
    assert 23.5e6 < n_params < 24.2e6  # TF graph's Inception-v3 (no aux head, 1008 classes)


def test_inception_standin_normalises_and_resizes_uint8():
    net = build_standin("inception", width=1 / 16, resize_to=75)
    seen = {}
    net.stem.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    x = torch.full([1, 3, 20, 20], 255, dtype=torch.uint8)
    net(x, return_features=True)
    assert seen["x"].shape == (1, 3, 75, 75)
    assert torch.allclose(seen["x"], torch.full_like(seen["x"], 127 / 128))


def test_vgg16_standin_shapes():
    net = build_standin("vgg16", width=1 / 16, resize_to=32)
    x = torch.randint(0, 256, [3, 3, 20, 20], dtype=torch.uint8)
    assert net(x, return_features=True).shape == (3, net.feature_dim) == (3, 256)
    assert net(x).shape == (3, 1000)
    full_layers = [
        m
        for m in build_standin("vgg16", width=1 / 64).modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    assert len(full_layers) == 16  # 13 convolutions + 3 fully connected


def test_standin_is_seeded_and_labelled_not_reference():
    a = build_standin("vgg16", width=1 / 16, resize_to=32)
    b = build_standin("vgg16", width=1 / 16, resize_to=32)
    c = build_standin("vgg16", width=1 / 16, resize_to=32, seed=1)
    assert module_sha256(a) == module_sha256(b) != module_sha256(c)
    ext = standin_detector("vgg16", width=1 / 16, resize_to=32)
    assert not ext.reference_exact and ext.name.startswith("standin-")
    gray = np.random.default_rng(0).integers(0, 256, [2, 1, 16, 16], dtype=np.uint8)
    np.testing.assert_array_equal(ext(gray), ext(np.repeat(gray, 3, axis=1)))
