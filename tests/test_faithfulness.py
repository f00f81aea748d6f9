"""Faithfulness metric on a toy set: a bright band whose height is the slice position.

Real slices: per patient, positions spread over the body; `dataset --labels position:4` bins
them. Generators: a faithful one draws a position inside the requested bin; a label-ignoring
one draws any position. The classifier is the metric's own (fitted on the real training set).
"""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.data.manifest import manifest_csv
from mrisynth.data.pack import pack_archive
from mrisynth.errors import ConfigError, InputError
from mrisynth.imaging import encode_png
from mrisynth.metrics import faithfulness
from mrisynth.metrics.label_probe import LinearProbe, image_features
from mrisynth.training.checkpoint import save_snapshot

SIDE, BINS = 16, 4


def render(fraction: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 [1, S, S]: a band at row fraction * (S - 1) (0 = top), blurred, noisy."""
    rows = np.arange(SIDE, dtype=np.float64)[:, None]
    centre = fraction * (SIDE - 1) + rng.normal(0, 0.8)
    img = 40 + 160 * np.exp(-0.5 * ((rows - centre) / 1.5) ** 2) + rng.normal(0, 25, (SIDE, SIDE))
    return np.clip(img, 0, 255).astype(np.uint8)[None]


def write_source(root, patients: int = 10, slices: int = 16):
    root.mkdir()
    rows = []
    rng = np.random.default_rng(1)
    for p in range(patients):
        top = rng.uniform(-50, 50)
        for k in range(slices):
            frac = k / (slices - 1)
            name = f"p{p:02d}_{k:03d}.png"
            (root / name).write_bytes(encode_png(render(frac, rng)))
            # prepare's convention: position grows towards the head, so the top slice is largest
            rows.append({"file": name, "patient_key": f"p{p:02d}", "sequence": "t1_in",
                         "position_mm": top - 7.5 * k})
    (root / "manifest.csv").write_text(manifest_csv(rows))
    return root


class ToyG(nn.Module):
    """Renders from z alone (seeded by it); `faithful` picks the position inside c's bin."""

    def __init__(self, faithful: bool, c_dim: int = BINS) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.faithful = 8, c_dim, faithful

    def forward(self, z, c, noise_mode="const", **_):
        out = []
        for zi, ci in zip(z, c, strict=True):
            rng = np.random.default_rng(abs(int(zi[0].item() * 1e6)))
            u = rng.uniform()
            frac = (int(ci.argmax()) + u) / self.c_dim if self.faithful else u
            out.append(render(frac, rng))
        return torch.from_numpy(np.stack(out)).float() / 127.5 - 1


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    src = write_source(root / "src")
    with_holdout = pack_archive(src, root / "data.zip", labels=f"position:{BINS}",
                                holdout_patients="3")
    plain = pack_archive(src, root / "plain.zip", labels=f"position:{BINS}")
    return ImageArchive(with_holdout.path), ImageArchive(plain.path)


@pytest.mark.parametrize("which", [0, 1])
def test_ignoring_generator_scores_at_chance_faithful_one_near_real(archives, which):
    archive = archives[which]  # with a holdout archive, and with the patient split
    good = faithfulness.evaluate(ToyG(True), archive, 400, prefix="f")
    bad = faithfulness.evaluate(ToyG(False), archive, 400, prefix="f")
    real = good.results["f_acc_real"]
    assert real == bad.results["f_acc_real"] and real > 0.6  # the probe is worth asking
    assert good.results["f_chance"] == 0.25 and good.num_gen == 400
    assert abs(good.results["f_acc_gen"] - real) < 0.12
    assert abs(bad.results["f_acc_gen"] - 0.25) < 0.1
    assert set(good.results) >= {"f_pos0.00-0.25_acc_gen", "f_pos0.75-1.00_body_area_w1",
                                 "f_pos0.25-0.50_intensity_jsd", "f_acc_ratio"}
    assert ("no holdout archive" in " ".join(good.caveats)) == (which == 1)
    assert good.num_real == (48 if which == 0 else 32)  # 3 held-out patients / 2 of 10


def test_probe_is_deterministic_and_learns_a_separable_set():
    rng = np.random.default_rng(0)
    fr = rng.uniform(0, 1, 200)
    imgs = np.stack([render(f, rng) for f in fr])
    y = np.minimum((fr * 2).astype(int), 1)
    a = LinearProbe(2).fit(image_features(imgs), y)
    b = LinearProbe(2).fit(image_features(imgs), y)
    assert np.array_equal(a.model[-1].coef_, b.model[-1].coef_)
    assert (a.predict(image_features(imgs)) == y).mean() > 0.9
    with pytest.raises(ValueError, match="two classes"):
        LinearProbe(2).fit(image_features(imgs), np.zeros(200, int))
    with pytest.raises(ValueError, match="uint8"):
        image_features(imgs.astype(np.float32))


def test_refusals(archives, tmp_path):
    archive = archives[0]
    with pytest.raises(ConfigError, match="conditional generator"):
        faithfulness.evaluate(ToyG(True, c_dim=0), archive, 20)
    with pytest.raises(ConfigError, match="conditional generator"):
        faithfulness.evaluate(ToyG(True, c_dim=3), archive, 20)
    folder = tmp_path / "floats"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.png").write_bytes(encode_png(render(i / 3, np.random.default_rng(i))))
    labels = {"labels": [[f"{i}.png", [0.5, 0.5]] for i in range(4)]}
    (folder / "dataset.json").write_text(json.dumps(labels))
    with pytest.raises(ConfigError, match="float labels"):
        faithfulness.evaluate(ToyG(True, c_dim=2), ImageArchive(folder), 20)
    (folder / "dataset.json").unlink()
    with pytest.raises(ConfigError, match="conditional generator"):
        faithfulness.evaluate(ToyG(True, c_dim=0), ImageArchive(folder), 20)
    # two classes declared, but the real slices hold only one
    labels = {"labels": [[f"{i}.png", 0] for i in range(4)], "mrisynth": {"num_classes": 2}}
    (folder / "dataset.json").write_text(json.dumps(labels))
    with pytest.raises(InputError, match="one class only"):
        faithfulness.evaluate(ToyG(True, c_dim=2), ImageArchive(folder), 20)


def test_metrics_cli_records_faithfulness(archives, tmp_path):
    """`mrisynth metrics --metrics faithfulness...` on a run: one record with both accuracies;
    `--images` (no class per image) is refused with one line."""
    from tests.test_generate import tiny_generator

    G = tiny_generator(c_dim=BINS)
    run = tmp_path / "00000-run"
    save_snapshot(run / "network-snapshot-000001.safetensors", G=G, D=None, G_ema=G,
                  state={"kimg": 1})
    archive = archives[0]
    res = CliRunner().invoke(cli, ["metrics", "--network", str(run), "--data", str(archive.path),
                                   "--metrics", "faithfulness64"])
    assert res.exit_code == 0, res.output
    rec = json.loads((run / "metric-faithfulness64.jsonl").read_text().splitlines()[-1])
    assert {"faithfulness64_acc_gen", "faithfulness64_acc_real"} <= set(rec["results"])
    assert rec["reference_exact"] is False and rec["caveats"]
    best = CliRunner().invoke(cli, ["metrics", "--network", str(run), "--best",
                                    "faithfulness64_acc_gen"])
    assert best.exit_code == 0 and "highest" in best.output, best.output
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(4):
        (images / f"{i}.png").write_bytes(encode_png(render(0.5, np.random.default_rng(i))))
    res = CliRunner().invoke(cli, ["metrics", "--images", str(images), "--data",
                                   str(archive.path), "--metrics", "faithfulness",
                                   "-o", str(tmp_path / "ev")])
    assert res.exit_code == 1 and res.output.startswith("Error: ")
    assert "needs a generator" in res.output


def test_per_class_fid_with_a_detector(archives):
    from mrisynth.metrics.extractor import standin_detector

    ext = standin_detector("inception", width=1 / 16, resize_to=75)
    res = faithfulness.evaluate(ToyG(True), archives[0], 40, extractor=ext, prefix="f")
    fids = [res.results[f"f_pos{lo}_fid"] for lo in ("0.00-0.25", "0.25-0.50", "0.50-0.75",
                                                     "0.75-1.00")]
    assert all(np.isfinite(f) and f >= 0 for f in fids)
    assert all(np.isfinite(res.results[f"f_{n}_kid"]) for n in ("pos0.00-0.25", "pos0.75-1.00"))


def _hand_balanced_accuracy(pred, true, k):
    """Independent of label_probe: a confusion matrix built cell by cell, recall per row."""
    conf = [[0] * k for _ in range(k)]
    for p, t in zip(pred.tolist(), true.tolist(), strict=True):
        conf[t][p] += 1
    recalls = [conf[t][t] / sum(conf[t]) for t in range(k) if sum(conf[t])]
    return sum(recalls) / len(recalls)


@pytest.mark.parametrize("which", [0, 1])
def test_probe_fit_on_training_patients_only_and_balanced_accuracy_by_hand(
    archives, which, monkeypatch
):
    """The classifier never sees a patient whose slices give the real accuracy, and acc_real is
    the class-balanced accuracy of exactly those slices' predictions."""
    archive = archives[which]
    seen: dict[str, list] = {"fit": [], "pred": []}

    class Spy(LinearProbe):
        def fit(self, features, classes):
            seen["fit"].append(np.asarray(features))
            return super().fit(features, classes)

        def predict(self, features):
            out = super().predict(features)
            seen["pred"].append((np.asarray(features), out))
            return out

    monkeypatch.setattr(faithfulness, "LinearProbe", Spy)
    res = faithfulness.evaluate(ToyG(True), archive, 40, prefix="f")
    feats = image_features(np.stack([archive[i] for i in range(len(archive))]))
    keys = archive.patient_keys

    def patients(rows):
        index = [int(np.flatnonzero((feats == r).all(1))[0]) for r in rows]
        return {keys[i] for i in index}

    (fit,) = seen["fit"]
    eval_feats, eval_pred = seen["pred"][0]  # the real evaluation comes before generation
    if which == 0:  # the holdout archive: fitted on the whole training archive
        held = faithfulness.find_holdout(archive)
        assert len(fit) == len(archive) and len(eval_feats) == len(held)
        true = faithfulness.training_classes(held)
    else:  # no holdout: a patient split inside the training archive
        assert len(fit) + len(eval_feats) == len(archive)
        assert not patients(fit) & patients(eval_feats) and len(patients(eval_feats)) == 2
        classes = faithfulness.training_classes(archive)
        true = np.array([classes[int(np.flatnonzero((feats == r).all(1))[0])]
                         for r in eval_feats])
    hand = _hand_balanced_accuracy(eval_pred, true, BINS)
    assert res.results["f_acc_real"] == pytest.approx(hand, abs=1e-12)


def test_holdout_with_other_class_names_is_refused(tmp_path):
    """A holdout of the same width but other classes (another --labels) would score real
    accuracy against the wrong classes."""
    src = write_source(tmp_path / "src", patients=6, slices=8)
    out = pack_archive(src, tmp_path / "d", labels=f"position:{BINS}", holdout_patients="2").path
    held = tmp_path / "d-holdout" / "dataset.json"
    obj = json.loads(held.read_text())
    obj["mrisynth"]["classes"] = ["t1_in", "t1_opp", "t2spir", "other"]
    held.write_text(json.dumps(obj))
    with pytest.raises(InputError, match="other classes"):
        faithfulness.evaluate(ToyG(True), ImageArchive(out), 8)


def test_generator_of_other_classes_is_refused(archives, tmp_path):
    """A position:4 archive and a snapshot trained on 4 sequence classes: same width, but class
    c of one is not class c of the other, so the scores would be meaningless."""
    from tests.test_generate import tiny_generator

    G = tiny_generator(c_dim=BINS)
    for names, ok in ((["t1_in", "t1_opp", "t2spir", "other"], False),
                      (["pos0.00-0.25", "pos0.25-0.50", "pos0.50-0.75", "pos0.75-1.00"], True)):
        run = tmp_path / f"run-{ok}"
        save_snapshot(run / "network-snapshot-000001.safetensors", G=G, D=None, G_ema=G,
                      state={"kimg": 1, "resolved": {"classes": names, "c_dim": BINS}})
        res = CliRunner().invoke(cli, ["metrics", "--network", str(run), "--data",
                                       str(archives[0].path), "--metrics", "faithfulness16"])
        assert (res.exit_code == 0) == ok, res.output
        if not ok:
            assert res.output.startswith("Error: faithfulness: network-snapshot-000001")
            assert "t1_in, t1_opp" in res.output and "pos0.00-0.25" in res.output
            assert not (run / "metric-faithfulness16.jsonl").exists()
