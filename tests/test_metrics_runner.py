"""Metric runner: names, jsonl records (contract), feature cache, run folders, best snapshot."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fake_detectors import write_detector
from mrisynth.cli import cli
from mrisynth.config import resolve_preset
from mrisynth.data.archive import ImageArchive
from mrisynth.errors import ConfigError, InputError, MissingDependencyError
from mrisynth.metrics import records, sources
from mrisynth.metrics.evaluations import evaluate_snapshots
from mrisynth.metrics.extractor import standin_detector
from mrisynth.metrics.registry import parse_metric_list
from mrisynth.metrics.runner import EvalOptions, evaluate_and_record
from mrisynth.networks import build_generator, network_config_from_preset
from mrisynth.training.checkpoint import save_snapshot

RECORD_KEYS = {
    "metric",
    "snapshot",
    "kimg",
    "results",
    "num_gen",
    "num_real",
    "detector",
    "reference_exact",
    "timestamp",
}


def _tiny_generator(seed=0):
    torch.manual_seed(seed)
    return build_generator(network_config_from_preset(resolve_preset("tiny", 16), 1, 0)).eval()


def _write_archive(folder, num=24, patients=4):
    folder.mkdir(parents=True)
    rows = ["file,patient_key"]
    for i in range(num):
        img = np.zeros([16, 16], np.uint8)
        cv2.ellipse(img, (8, 8), (4 + i % 3, 3 + i % 2), 0, 0, 360, 100 + 5 * i, -1)
        cv2.imwrite(str(folder / f"img{i:03d}.png"), img)
        rows.append(f"img{i:03d}.png,pt{i % patients}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


class _Counting(torch.nn.Module):
    """Wraps a stand-in network and counts the images it sees."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, 0

    def forward(self, x, return_features=False):
        self.seen += x.shape[0]
        return self.net(x, return_features=return_features)


def _extractors():
    inc = standin_detector("inception", width=1 / 16, resize_to=75)
    inc.net = _Counting(inc.net)
    return {
        "standin-inception": inc,
        "standin-vgg16": standin_detector("vgg16", width=1 / 16, resize_to=32),
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    archive = _write_archive(root / "archive")
    run = root / "00000-tiny"
    G = _tiny_generator()
    for kimg in (0, 4):
        save_snapshot(
            run / f"network-snapshot-{kimg:06d}.safetensors",
            G=G,
            D=None,
            G_ema=G,
            state={"kimg": kimg},
        )
    return root, archive, run, G


def test_metric_names_are_checked_and_say_their_image_count():
    names = [s.name for s in parse_metric_list("fid50k_full, kid50k_full,pr50k3_full")]
    assert names == ["fid50k_full", "kid50k_full", "pr50k3_full"]
    names = [s.name for s in parse_metric_list(["fid50k_full", "pr50k3_full", "body_area"], 2000)]
    assert names == ["fid2k_full", "pr2k3_full", "body_area2k"]
    assert parse_metric_list("pr50k3_full", 500)[0].name == "pr500_3_full"
    assert parse_metric_list("memorisation")[0].num_gen == 1000
    assert not parse_metric_list("standin_fd2k_full")[0].reference_exact
    with pytest.raises(ConfigError, match="unknown metric 'is50k'"):
        parse_metric_list("is50k")
    with pytest.raises(ConfigError, match="_full"):
        parse_metric_list("fid50k")
    with pytest.raises(ConfigError, match="twice"):
        parse_metric_list("fid2k_full,fid2k_full")


def test_evaluate_and_record_writes_contract_lines(setup, tmp_path):
    _, archive, _, G = setup
    run = tmp_path / "run"
    opts = EvalOptions(extractors=_extractors(), batch_size=8)
    names = "standin_fd16_full,standin_kd16_full,standin_pr16_3_full,intensity_hist16,body_area16"
    out = evaluate_and_record(
        run, "network-snapshot-000004.safetensors", 4, G, str(archive), names, "cpu", opts=opts
    )
    assert set(out) == set(names.split(","))
    assert set(out["standin_kd16_full"]) == {"standin_kd16_full", "standin_kd16_full_std"}
    assert set(out["standin_pr16_3_full"]) == {
        f"standin_pr16_3_full_{k}" for k in ("precision", "recall", "density", "coverage")
    }
    assert "intensity_hist16_w1" in out["intensity_hist16"]
    for name in names.split(","):
        (line,) = (run / f"metric-{name}.jsonl").read_text().splitlines()
        rec = json.loads(line)
        assert set(rec) == RECORD_KEYS and rec["metric"] == name
        assert rec["snapshot"] == "network-snapshot-000004.safetensors" and rec["kimg"] == 4
        assert rec["num_gen"] == 16 and rec["num_real"] == 24
        assert rec["reference_exact"] is False
        assert rec["results"] == out[name]
        assert all(isinstance(v, float) for v in rec["results"].values())
        if name.startswith("standin"):
            assert rec["detector"]["name"].startswith("standin-")
            assert len(rec["detector"]["sha256"]) == 64
        else:
            assert rec["detector"] is None


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
    ext = _extractors()
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


def test_run_folder_is_evaluated_incrementally(setup, tmp_path):
    _, archive, run0, G = setup
    run = shutil.copytree(run0, tmp_path / "run")
    done = evaluate_snapshots(run, str(archive), "intensity_hist8", opts=EvalOptions(batch_size=8))
    assert [d[0] for d in done] == [
        "network-snapshot-000000.safetensors",
        "network-snapshot-000004.safetensors",
    ]
    assert evaluate_snapshots(run, str(archive), "intensity_hist8") == []
    save_snapshot(
        run / "network-snapshot-000008.safetensors", G=G, D=None, G_ema=G, state={"kimg": 8}
    )
    done = evaluate_snapshots(run, str(archive), ["intensity_hist8", "body_area8"])
    assert [(d[0], sorted(d[1])) for d in done] == [
        ("network-snapshot-000000.safetensors", ["body_area8"]),
        ("network-snapshot-000004.safetensors", ["body_area8"]),
        ("network-snapshot-000008.safetensors", ["body_area8", "intensity_hist8"]),
    ]
    lines = records.read_records(run / "metric-intensity_hist8.jsonl")
    assert [r["kimg"] for r in lines] == [0, 4, 8]


def _fake_records(run, name, values, key_suffixes=("",)):
    for kimg, value in values:
        results = {f"{name}{s}": value + i for i, s in enumerate(key_suffixes)}
        records.append_record(
            run,
            records.make_record(
                name,
                f"network-snapshot-{kimg:06d}.safetensors",
                kimg,
                results,
                50000,
                1300,
                {"name": "x", "sha256": "y"},
                True,
            ),
        )


def test_best_snapshot_by_precision_and_by_lowest_fid(tmp_path):
    _fake_records(
        tmp_path, "pr50k3_full", [(0, 0.2), (40, 0.59), (80, 0.5)], ("_precision", "_recall")
    )
    _fake_records(tmp_path, "fid50k_full", [(0, 90.0), (40, 18.1), (80, 18.14)])
    best = records.best_snapshot(tmp_path, "pr50k3_full")
    assert (best.key, best.kimg, best.higher_is_better) == ("pr50k3_full_precision", 40, True)
    assert records.best_snapshot(tmp_path, "pr50k3_full_recall").value == pytest.approx(1.59)
    best = records.best_snapshot(tmp_path, "fid50k_full")
    assert (best.kimg, best.value, best.higher_is_better) == (40, 18.1, False)
    with pytest.raises(InputError, match="mrisynth metrics --network"):
        records.best_snapshot(tmp_path, "kid50k_full")
    out = CliRunner().invoke(cli, ["metrics", "--network", str(tmp_path), "--best", "pr50k3_full"])
    assert out.exit_code == 0 and "network-snapshot-000040" in out.output


def test_memorisation_flags_a_generated_image_planted_in_the_training_set(setup, tmp_path):
    _, archive, _, G = setup
    data = shutil.copytree(archive, tmp_path / "data")
    batches = sources.generate_batches(G, 12, batch_size=6, noise_mode="const")
    gen = np.concatenate([b.numpy() for _, b in batches])
    cv2.imwrite(str(data / "img007.png"), gen[3, 0])  # the generator's image 3 is "training"
    out = evaluate_and_record(
        tmp_path,
        "network-snapshot-000004.safetensors",
        4,
        G,
        str(data),
        "memorisation12",
        opts=EvalOptions(batch_size=6),
    )
    assert out["memorisation12"]["memorisation12_flagged_fraction"] == pytest.approx(1 / 12)
    summary = json.loads((tmp_path / "memorisation-network-snapshot-000004.json").read_text())
    copy = summary["copy_test"]
    assert copy["num_flagged"] == 1 and summary["snapshot"].endswith("000004.safetensors")
    assert len(summary["images"]) == 12  # every generated image has a record
    (flag,) = [r for r in summary["images"] if r["flagged"]]
    assert (flag["gen_index"], flag["seed"], flag["train_name"]) == (3, 3, "img007.png")
    assert flag["gen_name"] == "seed3" and flag["distance"] == pytest.approx(0, abs=1e-5)
    assert copy["holdout"] is False  # no data-holdout archive beside it: no statistic
    assert summary["feature"] is None  # no detector downloaded: pixel space only
    pic = cv2.imread(str(tmp_path / summary["picture"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(pic[:16, :16], gen[3, 0])
    # the flagged seed is reproducible with `mrisynth generate` (same latents, constant noise)
    from mrisynth.generate.sampling import sample_images

    ((_, again),) = list(sample_images(G, [flag["seed"]]))
    np.testing.assert_array_equal(again, gen[3])


def test_cli_metrics_on_a_run_folder(setup, tmp_path):
    _, archive, run0, _ = setup
    run = shutil.copytree(run0, tmp_path / "run")
    (run / "training_options.json").write_text(json.dumps({"user": {"data": str(archive)}}))
    runner = CliRunner()
    args = [
        "metrics",
        "--network",
        str(run),
        "--metrics",
        "intensity_hist8",
        "--batch",
        "8",
        "--device",
        "cpu",
        "--json",
        str(tmp_path / "out.json"),
    ]
    out = runner.invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert "intensity_hist8_w1" in out.output and "network-snapshot-000004" in out.output
    payload = json.loads((tmp_path / "out.json").read_text())
    assert [p["snapshot"] for p in payload] == [
        "network-snapshot-000000.safetensors",
        "network-snapshot-000004.safetensors",
    ]
    out = runner.invoke(cli, args)
    assert out.exit_code == 0 and "Nothing to do" in out.output
    out = runner.invoke(cli, [*args[:3], "--metrics", "memorisation8", "--json", "-"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)  # nothing but JSON on standard output
    assert payload[0]["results"]["memorisation8"]["memorisation8_flagged_fraction"] == 0
    out = runner.invoke(cli, [*args[:3], "--metrics", "memorisation8", "--force"])
    assert "memorisation audit of network-snapshot-000004.safetensors" in out.output
    out = runner.invoke(cli, ["metrics", "--network", str(run), "--best", "intensity_hist8"])
    assert out.exit_code == 0 and "intensity_hist8_w1" in out.output
    out = runner.invoke(cli, ["metrics", "--network", str(run), "--metrics", "fid9k"])
    assert out.exit_code == 1 and "Error: unknown metric 'fid9k'" in out.output


def test_a_plain_network_file_is_evaluated_too(setup, tmp_path):
    from mrisynth.networks import save_network

    _, archive, _, G = setup
    save_network(tmp_path / "G.safetensors", G)
    ((name, results),) = evaluate_snapshots(
        tmp_path / "G.safetensors", str(archive), "body_area8", opts=EvalOptions(batch_size=8)
    )
    assert name == "G.safetensors" and 0 <= results["body_area8"]["body_area8_gen_mean"] <= 1
    assert records.recorded_snapshots(tmp_path, "body_area8") == {"G.safetensors"}


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
    (cached,) = (tmp_path / "cache" / "features").glob("*pixfd-v1.npz")
    np.testing.assert_array_equal(sources.real_pixel_features(arch), want)
    cached.write_bytes(b"not an npz")
    np.testing.assert_array_equal(sources.real_pixel_features(arch), want)
    np.savez(cached, features=np.full([3, 2], np.nan))  # wrong shape: rebuilt
    np.testing.assert_array_equal(sources.real_pixel_features(arch), want)
