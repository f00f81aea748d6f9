"""Fréchet Radiomics Distance integration (optional extra `mrisynth[frd]`)."""

import sys

import cv2
import numpy as np
import pytest

from mrisynth.errors import MissingDependencyError
from mrisynth.metrics import frd
from mrisynth.metrics.runner import evaluate_and_record


def _bodies(n, brightness, seed, size=32):
    rng = np.random.default_rng(seed)
    out = np.zeros([n, 1, size, size], np.uint8)
    for i in range(n):
        img = np.zeros([size, size])
        axes = (size // 3 + int(rng.integers(0, 3)), size // 4)
        cv2.ellipse(img, (size // 2, size // 2), axes, 0, 0, 360, brightness, -1)
        out[i, 0] = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    return out


def test_missing_extra_is_a_one_line_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "frd_score", None)  # makes `import frd_score` fail
    assert not frd.frd_available()
    with pytest.raises(MissingDependencyError, match=r"pip install 'mrisynth\[frd\]'") as e:
        frd.frechet_radiomics_distance(_bodies(2, 100, 0), _bodies(2, 100, 1))
    assert "\n" not in str(e.value)

    class G:  # never called: the runner checks the extra before generating
        z_dim, c_dim = 4, 0

    with pytest.raises(MissingDependencyError, match="frd"):
        evaluate_and_record(None, "s", 0, G(), object(), "frd8")


@pytest.mark.slow
@pytest.mark.skipif(
    not frd.frd_available(),
    reason="optional extra mrisynth[frd] (frd-score, pyradiomics-bhklab) not "
    "installed; CI installs only .[codecs,test]",
)
def test_frd_is_smaller_for_the_same_distribution():
    real = _bodies(4, 120, 0)  # ~0.3 s per image and set: keep it small
    same = frd.frechet_radiomics_distance(real, _bodies(4, 120, 1))
    other = frd.frechet_radiomics_distance(real, _bodies(4, 200, 2))
    assert np.isfinite(same) and np.isfinite(other) and same < other


@pytest.mark.slow
@pytest.mark.skipif(not frd.frd_available(), reason="optional extra mrisynth[frd] not installed")
def test_frd_through_the_runner(tmp_path):
    import torch

    from mrisynth.config import resolve_preset
    from mrisynth.networks import build_generator, network_config_from_preset

    for i, img in enumerate(_bodies(6, 150, 3, size=16)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), img[0])
    torch.manual_seed(0)
    G = build_generator(network_config_from_preset(resolve_preset("tiny", 16), 1, 0)).eval()
    out = evaluate_and_record(
        tmp_path / "run", "network-snapshot-000000.safetensors", 0, G, str(tmp_path), "frd4"
    )
    assert np.isfinite(out["frd4"]["frd4"])
    record = (tmp_path / "run" / "metric-frd4.jsonl").read_text()
    assert '"num_real": 4' in record and '"reference_exact": false' in record
