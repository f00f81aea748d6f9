"""Detector files: search order, error messages, fetch with checksums, loading and feeding."""

import hashlib
import io
import json
from typing import ClassVar

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fake_detectors import write_detector
from mrisynth.cli import cli
from mrisynth.errors import InputError, MissingDependencyError
from mrisynth.imaging import quantize_images
from mrisynth.metrics import detectors
from mrisynth.metrics.extractor import load_detector

INCEPTION = detectors.DETECTORS["inception"]
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Isolated mrisynth cache, dnnlib cache and explicit folder."""
    dirs = {k: tmp_path / k for k in ("cache", "dnnlib", "explicit")}
    monkeypatch.setenv("MRISYNTH_CACHE_DIR", str(dirs["cache"]))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(dirs["dnnlib"]))
    monkeypatch.delenv(detectors.DETECTOR_DIR_ENV, raising=False)
    return dirs


def _write_script(path, kind="inception"):
    return write_detector(path, kind)


def test_md5_names_match_nvidia_dnnlib_cache():
    assert INCEPTION.dnnlib_name.startswith("a866f8d678872dcf6fcf60ddd09807ab_")
    assert detectors.DETECTORS["vgg16"].dnnlib_name == ("5982b9427714baaab6e0a48ef3b1dbfd_vgg16.pt")


def test_search_order_explicit_then_cache_then_dnnlib(homes, monkeypatch):
    dnn = homes["dnnlib"] / "downloads" / INCEPTION.dnnlib_name
    cache = homes["cache"] / "detectors" / INCEPTION.filename
    explicit = homes["explicit"] / INCEPTION.filename
    for p in (dnn, cache, explicit):
        p.parent.mkdir(parents=True, exist_ok=True)
    assert detectors.find_detector("inception") is None
    dnn.write_bytes(b"d")
    assert detectors.find_detector("inception") == dnn
    cache.write_bytes(b"c")
    assert detectors.find_detector("inception") == cache
    explicit.write_bytes(b"e")
    assert detectors.find_detector("inception") == cache  # explicit folder not given
    assert detectors.find_detector("inception", homes["explicit"]) == explicit
    monkeypatch.setenv(detectors.DETECTOR_DIR_ENV, str(homes["explicit"]))
    assert detectors.find_detector("inception") == explicit


def test_missing_detector_message_names_file_places_and_fix(homes):
    with pytest.raises(MissingDependencyError) as e:
        load_detector("inception", detector_dir=homes["explicit"])
    msg = str(e.value)
    assert "\n" not in msg
    assert "inception-2015-12-05.pt" in msg and "mrisynth weights fetch inception" in msg
    assert str(homes["explicit"]) in msg and str(homes["cache"] / "detectors") in msg
    assert INCEPTION.dnnlib_name in msg


def test_fetch_from_file_url_records_sha256_and_loads(homes, tmp_path):
    src = _write_script(tmp_path / "mirror" / "inception-2015-12-05.pt")
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    result = detectors.fetch_detector("inception", url=src.as_uri(), progress=False)
    assert result.path == homes["cache"] / "detectors" / INCEPTION.filename
    assert result.sha256 == want and result.path.read_bytes() == src.read_bytes()
    record = json.loads((result.path.parent / "sha256.json").read_text())
    assert record[INCEPTION.filename]["sha256"] == want
    assert [p.name for p in result.path.parent.iterdir() if p.name.startswith(".")] == []

    ext = load_detector("inception")
    assert ext.reference_exact and ext.sha256 == want and ext.record()["name"] == "inception"
    assert not ext.trusted  # recorded at fetch is not confirmed
    gray = np.random.default_rng(0).integers(0, 256, [2, 1, 8, 8], dtype=np.uint8)
    feats = ext(gray)
    assert feats.shape == (2, 2048) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats, ext(np.repeat(gray, 3, axis=1)))  # 1 channel -> 3
    with pytest.raises(TypeError):
        ext(gray.astype(np.float32))
    status = {r.spec.name: r for r in detectors.detector_status()}
    assert status["inception"].verified.startswith("recorded at fetch, not confirmed")
    assert status["vgg16"].path is None


def test_changed_file_after_fetch_is_refused(homes, tmp_path):
    src = _write_script(tmp_path / "m" / "x.pt")
    result = detectors.fetch_detector("inception", url=src.as_uri(), progress=False)
    result.path.write_bytes(result.path.read_bytes() + b"tampered")
    with pytest.raises(InputError, match=r"differs from the .* recorded"):
        load_detector("inception")


def test_fetch_failure_is_one_line_and_leaves_nothing(homes):
    def broken(url):
        raise OSError("network unreachable")

    with pytest.raises(MissingDependencyError, match="copy the file"):
        detectors.fetch_detector("vgg16", opener=broken, progress=False)
    assert not (homes["cache"] / "detectors" / "vgg16.pt").exists()

    class Response(io.BytesIO):
        headers: ClassVar[dict] = {"Content-Length": "6"}

    res = detectors.fetch_detector("vgg16", opener=lambda url: Response(b"abcdef"), progress=False)
    assert res.size == 6 and res.sha256 == hashlib.sha256(b"abcdef").hexdigest()


def test_unreadable_detector_file_is_input_error(homes):
    bad = homes["explicit"] / INCEPTION.filename
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not torchscript")
    with pytest.raises(InputError, match="TorchScript"):
        load_detector("inception", detector_dir=homes["explicit"])


def test_quantisation_matches_reference_formula():
    x = torch.tensor([-2.0, -1.0, -0.004, 0.0, 0.5, 0.999, 1.0, 3.0])
    got = quantize_images(x).tolist()
    assert got == [0, 0, 127, 128, 191, 255, 255, 255]  # (x*127.5+128) truncated, clamped


def test_cli_weights_status_and_fetch(homes, tmp_path):
    src = _write_script(tmp_path / "m" / "v.pt", "vgg16")  # fetch probes what it downloaded
    runner = CliRunner()
    out = runner.invoke(cli, ["weights", "status"])
    assert out.exit_code == 0 and "vgg16: MISSING" in out.output
    assert "mrisynth weights fetch vgg16" in out.output
    out = runner.invoke(cli, ["weights", "fetch", "vgg16", "--url", src.as_uri()])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["weights", "status"])
    assert "recorded at fetch" in out.output and "inception: MISSING" in out.output
    out = runner.invoke(cli, ["weights", "fetch", "vgg16"])
    assert "already present" in out.output
    out = runner.invoke(cli, ["weights", "fetch", "--url", src.as_uri()])
    assert out.exit_code == 1 and "exactly one" in out.output
