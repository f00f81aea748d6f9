"""The audit and the diversity metric through the runner: archive + held-out patients, records,
verdicts, warnings."""

import json

import cv2
import numpy as np
import pytest
import torch

from mrisynth.config import resolve_preset
from mrisynth.errors import InputError
from mrisynth.metrics import memorisation as mem
from mrisynth.metrics import records
from mrisynth.metrics.runner import EvalOptions, evaluate_and_record
from mrisynth.networks import build_generator, network_config_from_preset
from phantom_bodies import cohort


def _write(folder, images, keys, first=0):
    folder.mkdir(parents=True)
    rows = ["file,patient_key"]
    for i, (img, key) in enumerate(zip(images, keys, strict=True)):
        name = f"img{first + i:04d}.png"
        cv2.imwrite(str(folder / name), img[0])
        rows.append(f"{name},{key}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    train, keys = cohort(0, 6, num_slices=8, size=16)
    held, held_keys = cohort(6, 3, num_slices=8, size=16)
    data = _write(root / "data", train, keys)
    _write(root / "data-holdout", held, held_keys, first=1000)
    torch.manual_seed(0)
    G = build_generator(network_config_from_preset(resolve_preset("tiny", 16), 1, 0)).eval()
    return root, data, G


def test_runner_audits_against_the_holdout_and_records_verdicts(setup, tmp_path, caplog):
    _, data, G = setup
    out = evaluate_and_record(
        tmp_path, "network-snapshot-000004.safetensors", 4, G, str(data),
        "memorisation24,diversity24", opts=EvalOptions(batch_size=12),
    )  # fmt: skip
    res = out["memorisation24"]
    assert {"memorisation24_flagged_fraction", "memorisation24_zu", "memorisation24_zu_p"} <= set(
        res
    )
    s = json.loads((tmp_path / "memorisation-network-snapshot-000004.json").read_text())
    assert s["num_holdout"] == 24 and s["copy_test"]["holdout"] is True
    assert s["copy_test"]["value"] is not None and 0 <= s["copy_test"]["p_value"] <= 1
    assert [r["gen_name"] for r in s["images"]] == [f"seed{i}" for i in range(24)]
    assert all(r["patient_key"].startswith("pt") for r in s["images"])
    assert s["verdicts"] and not any(v["topic"] == "data" for v in s["verdicts"])
    line = records.read_records(tmp_path / "metric-memorisation24.jsonl")[-1]
    assert line["verdicts"] == s["verdicts"]
    div = out["diversity24"]
    assert {f"diversity24_{k}" for k in ("msssim_gen", "msssim_real", "coverage")} <= set(div)
    line = records.read_records(tmp_path / "metric-diversity24.jsonl")[-1]
    assert line["verdicts"][0]["topic"] == "diversity"


class _Collapsed(torch.nn.Module):
    """A 'generator' that draws one phantom slice for every seed, plus faint noise."""

    z_dim, c_dim, w_dim, img_channels, img_resolution = 8, 0, 8, 1, 16

    def __init__(self, image):
        super().__init__()
        self.register_buffer("base", torch.from_numpy(image / 127.5 - 1).float())

    def forward(self, z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const"):
        return self.base[None] + 0.02 * z[:, :1, None, None]


def test_mode_collapse_is_recorded_and_logged_as_a_warning(setup, tmp_path, caplog):
    _, data, _ = setup
    G = _Collapsed(cohort(0, 1, num_slices=8, size=16)[0][3].astype(np.float64))
    out = evaluate_and_record(tmp_path, "s.safetensors", 8, G, str(data), "diversity16")
    assert out["diversity16"]["diversity16_msssim_gen"] > 0.9
    (verdict,) = records.read_records(tmp_path / "metric-diversity16.jsonl")[-1]["verdicts"]
    assert verdict["level"] == "warning" and "Mode collapse" in verdict["title"]
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("Mode collapse" in r.getMessage() for r in warned)


def test_a_holdout_sharing_a_patient_is_refused(setup, tmp_path):
    root, data, G = setup
    import shutil

    bad = shutil.copytree(data, tmp_path / "data")
    held = shutil.copytree(root / "data-holdout", tmp_path / "data-holdout")
    manifest = held / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("pt006", "pt000"))
    with pytest.raises(InputError, match="also in the training archive"):
        evaluate_and_record(None, "s.safetensors", 0, G, str(bad), "memorisation4")


def test_images_from_a_folder_are_named_by_file():
    train, keys = cohort(0, 3, num_slices=6, size=16)
    inputs = mem.AuditInputs(
        gen=train[:2], train=train, train_names=list(map(str, range(18))),
        patient_keys=keys, gen_names=["a.png", "b.png"],
    )  # fmt: skip
    s = mem.audit(inputs).summary
    assert [(r["gen_name"], r["seed"]) for r in s["images"]] == [("a.png", None), ("b.png", None)]
    assert s["feature"] is None and "feature_distance" not in s["images"][0]
    rng = np.random.default_rng(0)
    inputs.train_features = rng.normal(size=(18, 5))
    inputs.gen_features = inputs.train_features[[4, 7]] + 0.5  # detector features: second view
    s = mem.audit(inputs).summary
    assert [r["feature_distance"] for r in s["images"]] == pytest.approx([0.5 * 5**0.5] * 2)
    assert s["feature"]["nearest_distance"]["max"] == pytest.approx(0.5 * 5**0.5)


def test_audit_file_names_keep_sub_kimg_snapshots_apart():
    assert mem.audit_stem("runs/x/network-snapshot-000000.008.safetensors") == (
        "memorisation-network-snapshot-000000.008"
    )
    assert mem.audit_stem("network-snapshot-000004.safetensors") == (
        "memorisation-network-snapshot-000004"
    )
    assert mem.audit_stem("gen.zip") == "memorisation-gen" and mem.audit_stem("gen") == (
        "memorisation-gen"
    )
