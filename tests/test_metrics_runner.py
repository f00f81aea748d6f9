"""Metric runner: names, jsonl records (contract), run folders, best snapshot, the CLI."""

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from metric_runs import runner_setup, standin_extractors
from mrisynth.cli import cli
from mrisynth.errors import ConfigError, InputError
from mrisynth.metrics import records, sources
from mrisynth.metrics.evaluations import evaluate_snapshots
from mrisynth.metrics.registry import parse_metric_list
from mrisynth.metrics.runner import EvalOptions, evaluate_and_record
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
    "data",
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(root, archive, run folder with snapshots at 0 and 4 kimg, G)."""
    return runner_setup(tmp_path_factory.mktemp("runner"))


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
    opts = EvalOptions(extractors=standin_extractors(), batch_size=8)
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
    # against other real images nothing counts as evaluated yet: all three again
    other = shutil.copytree(archive, tmp_path / "other")
    (other / "img000.png").unlink()
    (other / "manifest.csv").write_text(
        "\n".join(x for x in (other / "manifest.csv").read_text().splitlines() if "img000" not in x)
    )
    assert len(evaluate_snapshots(run, str(other), "intensity_hist8")) == 3
    lines = records.read_records(run / "metric-intensity_hist8.jsonl")
    assert len({r["data"]["sha256"] for r in lines}) == 2


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


def test_best_snapshot_by_audit_keys_goes_the_right_way(tmp_path):
    suffixes = ("_distance_median", "_threshold")
    _fake_records(tmp_path, "memorisation64", [(0, 0.5), (4, 0.7), (8, 0.2)], suffixes)
    best = records.best_snapshot(tmp_path, "memorisation64_distance_median")
    assert (best.kimg, best.higher_is_better) == (4, True)  # the least copy-like snapshot
    with pytest.raises(InputError, match="describes the real data"):
        records.best_snapshot(tmp_path, "memorisation64_threshold")


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
