"""Metric runner: which detector a metric may use (reference files, stand-ins, none for pixfd),
checked before any generation, and the cached real-side features."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fake_detectors import write_detector
from metric_runs import runner_setup, standin_extractors
from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.errors import ConfigError, InputError, MissingDependencyError
from mrisynth.metrics import records, sources
from mrisynth.metrics.extractor import standin_detector
from mrisynth.metrics.registry import parse_metric_list
from mrisynth.metrics.runner import EvalOptions, evaluate_and_record


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(root, archive, run folder with snapshots at 0 and 4 kimg, G)."""
    return runner_setup(tmp_path_factory.mktemp("runner"))


def test_standin_is_never_used_for_fid_and_missing_detector_fails_early(
    setup, monkeypatch, tmp_path
):
    _, archive, _, G = setup
    monkeypatch.setenv("MRISYNTH_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "empty-dnnlib"))
    wrong = EvalOptions(extractors={"inception": standin_detector("inception", width=1 / 16)})
    with pytest.raises(ConfigError, match="stand-ins are only for standin_"):
        evaluate_and_record(None, "s", 0, G, str(archive), "fid16_full", opts=wrong)

    class Exploding(torch.nn.Module):
        z_dim, c_dim = 4, 0

        def forward(self, *args, **kwargs):
            raise AssertionError("generated before checking the detector")

    with pytest.raises(MissingDependencyError, match="mrisynth weights fetch inception"):
        evaluate_and_record(None, "s", 0, Exploding(), str(archive), "kid16_full")


def test_real_features_cached_and_invalidated_when_dataset_changes(setup, tmp_path, monkeypatch):
    _, archive, _, G = setup
    monkeypatch.setenv("MRISYNTH_CACHE_DIR", str(tmp_path / "cache"))
    data = shutil.copytree(archive, tmp_path / "data")
    ext = standin_extractors()
    opts = EvalOptions(extractors=ext, batch_size=8)
    counter = ext["standin-inception"].net
    first = evaluate_and_record(None, "s", 0, G, str(data), "standin_fd8_full", opts=opts)
    assert counter.seen == 24 + 8
    again = evaluate_and_record(None, "s", 0, G, str(data), "standin_fd8_full", opts=opts)
    assert counter.seen == 24 + 8 + 8  # reals from the cache
    assert again == first
    img = cv2.imread(str(data / "img005.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(data / "img005.png"), 255 - img)
    changed = evaluate_and_record(None, "s", 0, G, str(data), "standin_fd8_full", opts=opts)
    assert counter.seen == 24 + 8 + 8 + 24 + 8  # new content hash: reals recomputed
    assert changed != first
    (cached,) = [
        p
        for p in (tmp_path / "cache" / "features").iterdir()
        if p.name.startswith(ImageArchive(data).content_hash()[:20])
    ]
    cached.write_bytes(b"torn")
    assert (
        evaluate_and_record(None, "s", 0, G, str(data), "standin_fd8_full", opts=opts) == changed
    )  # a corrupt cache is rebuilt
    assert counter.seen == 24 + 8 + 8 + 24 + 8 + 24 + 8


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_reference_names_run_with_detector_files(setup, tmp_path, monkeypatch):
    import hashlib

    _, archive, _, G = setup
    monkeypatch.setenv("MRISYNTH_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "detectors"
    for kind, name in (("inception", "inception-2015-12-05.pt"), ("vgg16", "vgg16.pt")):
        write_detector(folder / name, kind)
    sha = hashlib.sha256((folder / "vgg16.pt").read_bytes()).hexdigest()
    opts = EvalOptions(detector_dir=folder, batch_size=8)
    names = "kid16_full,pr16_3_full"  # (FID: 2048x2048 eigh, seconds; wiring as KID's)
    out = evaluate_and_record(tmp_path, "s.safetensors", 0, G, str(archive), names, opts=opts)
    assert "kid16_full_std" in out["kid16_full"]
    rec = json.loads((tmp_path / "metric-pr16_3_full.jsonl").read_text())
    # an unconfirmed file: NVIDIA's computation and name, but not recorded as exact
    assert rec["reference_exact"] is False and rec["detector"] == {"name": "vgg16", "sha256": sha}
    assert any("not confirmed" in c for c in rec["caveats"])
    assert any("density and coverage" in c for c in rec["caveats"])
    opts.trusted_sha256 = (sha,)
    evaluate_and_record(tmp_path, "t.safetensors", 0, G, str(archive), "pr16_3_full", opts=opts)
    last = records.read_records(tmp_path / "metric-pr16_3_full.jsonl")[-1]
    assert last["snapshot"] == "t.safetensors" and last["reference_exact"] is True
    assert not any("not confirmed" in c for c in last["caveats"])
    kid = records.read_records(tmp_path / "metric-kid16_full.jsonl")[-1]
    assert kid["reference_exact"] is False  # the inception file is still unconfirmed
    opts.pr_fp16 = False  # faster on CPU, but not the reference's float16 rounding
    evaluate_and_record(tmp_path, "u.safetensors", 0, G, str(archive), "pr16_3_full", opts=opts)
    last = records.read_records(tmp_path / "metric-pr16_3_full.jsonl")[-1]
    assert last["snapshot"] == "u.safetensors" and last["reference_exact"] is False


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_a_wrong_detector_file_is_one_error_line_before_any_generation(setup, tmp_path):
    _, archive, run, _ = setup
    folder = tmp_path / "detectors"
    write_detector(folder / "inception-2015-12-05.pt", "inception:wrong_dim")
    args = ["metrics", "--network", str(run / "network-snapshot-000000.safetensors")]
    args += ["--data", str(archive), "--metrics", "fid16_full", "--detector-dir", str(folder)]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 1 and out.output.startswith("Error: ")
    assert out.output.count("\n") == 1 and "inception-2015-12-05.pt" in out.output
    assert "float [N, 2048]" in out.output and "Traceback" not in out.output


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_check_metric_names_also_finds_missing_detectors_before_training(tmp_path, monkeypatch):
    from mrisynth.metrics.runner import check_metric_names

    monkeypatch.setenv("MRISYNTH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    check_metric_names(["intensity_hist", "memorisation", "standin_fd2k_full"])
    with pytest.raises(ConfigError):
        check_metric_names(["fid50k_full", "nope"])
    with pytest.raises(MissingDependencyError, match=r"vgg16\.pt"):
        check_metric_names(["pr50k3_full"])
    check_metric_names(["pr50k3_full"], requirements=False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "vgg16.pt").write_bytes(b"x")  # present, but not a detector
    with pytest.raises(InputError, match="TorchScript"):
        check_metric_names(["pr50k3_full"], detector_dir=tmp_path / "d")
    write_detector(tmp_path / "d" / "vgg16.pt", "vgg16")
    check_metric_names(["pr50k3_full"], detector_dir=tmp_path / "d")


def test_pixfd_runs_without_any_detector_and_is_never_exact(setup, tmp_path, monkeypatch):
    assert parse_metric_list("pixfd")[0].name == "pixfd1k"  # the name always says the count
    _, archive, _, G = setup
    monkeypatch.setenv("MRISYNTH_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "empty-dnnlib"))
    opts = EvalOptions(batch_size=8)
    out = evaluate_and_record(tmp_path, "s.safetensors", 4, G, str(archive), "pixfd32", opts=opts)
    assert set(out) == {"pixfd32"} and out["pixfd32"]["pixfd32"] > 0
    rec = records.read_records(tmp_path / "metric-pixfd32.jsonl")[0]
    assert rec["reference_exact"] is False and rec["detector"] is None
    assert rec["num_gen"] == 32 and rec["num_real"] == 24 and "not FID" in rec["caveats"][0]


def test_real_pixfd_features_are_cached_by_content_and_a_bad_cache_is_rebuilt(
    setup, tmp_path, monkeypatch
):
    from mrisynth.metrics.pixfd import pixel_features

    _, archive, _, _ = setup
    monkeypatch.setenv("MRISYNTH_CACHE_DIR", str(tmp_path / "cache"))
    arch = ImageArchive(archive)
    want = pixel_features(arch.read_all())
    first = sources.real_pixel_features(arch)
    np.testing.assert_array_equal(first, want)
    (cached,) = (tmp_path / "cache" / "features").glob("*pixfd-v2.npz")
    np.testing.assert_array_equal(sources.real_pixel_features(arch), want)
    cached.write_bytes(b"not an npz")
    np.testing.assert_array_equal(sources.real_pixel_features(arch), want)
    np.savez(cached, features=np.full([3, 2], np.nan))  # wrong shape: rebuilt
    np.testing.assert_array_equal(sources.real_pixel_features(arch), want)
