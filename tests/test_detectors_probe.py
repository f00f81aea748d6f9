"""Detector files are probed when loaded, and only confirmed hashes make records exact."""

import hashlib
import json

import pytest
from click.testing import CliRunner

from fake_detectors import write_detector
from mrisynth.cli import cli
from mrisynth.errors import InputError
from mrisynth.metrics import detectors
from mrisynth.metrics.extractor import load_detector, load_detector_file

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv("MRISYNTH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    monkeypatch.delenv(detectors.DETECTOR_DIR_ENV, raising=False)
    return tmp_path


@pytest.mark.parametrize("kind", ["inception", "vgg16"])
def test_right_interface_loads_with_its_feature_size(homes, kind):
    spec = detectors.DETECTORS[kind]
    write_detector(homes / "d" / spec.filename, kind)
    ext = load_detector(kind, detector_dir=homes / "d")
    assert ext.feature_dim == spec.feature_dim and ext.reference_exact and not ext.trusted


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("no_arg", "the call failed"),
        ("tuple", "not a tensor"),
        ("nan", "NaN"),
        ("wrong_dim", "[2, 3]"),
        ("wrong_layers", "no a 3x3 convolution from 3 to"),
        ("pool", "[2, 48]"),
    ],
)
@pytest.mark.parametrize("kind", ["inception", "vgg16"])
def test_wrong_interfaces_are_one_error_line_naming_file_and_expectation(homes, kind, fault, says):
    spec = detectors.DETECTORS[kind]
    path = write_detector(homes / "d" / spec.filename, f"{kind}:{fault}")
    with pytest.raises(InputError) as e:
        load_detector(kind, detector_dir=homes / "d")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and says in msg
    assert f"float [N, {spec.feature_dim}]" in msg and "weights fetch" in msg


def test_a_vgg_file_given_as_inception_is_refused(homes):
    write_detector(homes / "d" / "inception-2015-12-05.pt", "vgg16")
    with pytest.raises(InputError, match=r"\[2, 4096\] for 2 images"):
        load_detector("inception", detector_dir=homes / "d")


def test_trust_sources_published_user_confirmed_and_per_run(homes, monkeypatch):
    path = write_detector(homes / "d" / "inception-2015-12-05.pt", "inception")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert not load_detector_file(path, "inception").trusted
    assert load_detector_file(path, "inception", confirmed_sha256=(sha.upper(),)).trusted
    monkeypatch.setattr(detectors, "PUBLISHED_SHA256", {"inception": sha})
    assert load_detector_file(path, "inception").trusted
    monkeypatch.setattr(detectors, "PUBLISHED_SHA256", {"inception": "0" * 64})
    with pytest.raises(InputError, match="differs from the published"):
        load_detector_file(path, "inception")
    monkeypatch.setattr(detectors, "PUBLISHED_SHA256", {})
    detectors.trust_file("inception", path)
    assert load_detector_file(path, "inception").trusted
    table = homes / "cache" / "detectors" / detectors.TRUSTED_RECORD
    table.write_text(json.dumps({sha: "inception"}))  # hand-edited: not an entry
    assert not load_detector_file(path, "inception").trusted
    table.write_text(json.dumps({sha: {"detector": "vgg16"}}))  # confirmed for another kind
    assert not load_detector_file(path, "inception").trusted
    (homes / "d" / "sha256.json").write_text(json.dumps({path.name: "junk"}))
    with pytest.raises(InputError, match="malformed entry"):
        load_detector_file(path, "inception")
    (homes / "d" / "sha256.json").write_text("[]")
    with pytest.raises(InputError, match="not a JSON object"):
        load_detector_file(path, "inception")
    (homes / "d" / "sha256.json").unlink()
    (homes / "cache" / "detectors" / detectors.TRUSTED_RECORD).write_text("[1, 2]")
    with pytest.raises(InputError, match=r"trusted\.json"):
        load_detector_file(path, "inception")


def test_cli_weights_trust_probes_then_records(homes):
    runner = CliRunner()
    good = write_detector(homes / "x" / "my-inception.pt", "inception")
    out = runner.invoke(cli, ["weights", "trust", str(good)])
    assert out.exit_code == 1 and "--as inception|vgg16" in out.output
    out = runner.invoke(cli, ["weights", "trust", str(good), "--as", "inception"])
    assert out.exit_code == 0, out.output
    assert hashlib.sha256(good.read_bytes()).hexdigest() in out.output
    bad = write_detector(homes / "x" / "vgg16.pt", "vgg16:wrong_dim")
    out = runner.invoke(cli, ["weights", "trust", str(bad)])
    assert out.exit_code == 1 and out.output.count("\n") == 1 and "Error:" in out.output
    assert hashlib.sha256(bad.read_bytes()).hexdigest() not in detectors.trusted_hashes()
