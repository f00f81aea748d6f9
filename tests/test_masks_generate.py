"""Paired image + mask models: training on a 2-channel archive, metrics on channel 0, and
`generate` writing image, label-map PNG and DICOM SEG per seed."""

import csv
import json

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch

from mrisynth.cli.generate import write_generation
from mrisynth.config import resolve_preset
from mrisynth.data.archive import ImageArchive
from mrisynth.data.masks import CHAOS_LABELS, MaskSpec, mask_levels, mask_spec
from mrisynth.data.pack import pack_archive
from mrisynth.data.phantom_dicom import write_phantom_tree
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions
from mrisynth.generate.masks import split_paired
from mrisynth.generate.sampling import SamplingOptions, sample_images
from mrisynth.imaging import make_grid
from mrisynth.metrics.sources import read_real_images, real_batches
from mrisynth.networks import build_generator, network_config_from_preset
from mrisynth.training.checkpoint import save_snapshot
from mrisynth.training.loop import train
from mrisynth.training.options import TrainOptions
from mrisynth.training.run_files import GRID_H, GRID_W

NAMES = ("background", "liver", "right_kidney", "left_kidney", "spleen")


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    write_phantom_tree(root / "tree", 2, seed=7, matrix_sizes=(32,), num_slices=(4, 5),
                       t2spir=False)
    opts = PrepareOptions(slice=SliceOptions(size=16), masks=CHAOS_LABELS)
    prepare([root / "tree"], root / "prep", opts)
    pack_archive(root / "prep", root / "data.zip", masks=True)
    return root / "data.zip"


@pytest.fixture(scope="module")
def run(tmp_path_factory, paired):
    """A run folder with a fresh 2-channel generator and the paired archive as its data."""
    folder = tmp_path_factory.mktemp("run") / "00000-paired"
    folder.mkdir()
    (folder / "training_options.json").write_text(json.dumps({"user": {"data": str(paired)}}))
    torch.manual_seed(1)
    G = build_generator(network_config_from_preset(resolve_preset("tiny", 16), 2, 0))
    save_snapshot(folder / "network-snapshot-000000.safetensors", G=G, D=None, G_ema=G,
                  state={"kimg": 0})
    return folder


def test_training_runs_on_a_paired_archive_with_metrics(paired, tmp_path):
    opts = TrainOptions(data=str(paired), outdir=str(tmp_path), cfg="tiny", batch=8, kimg=0.016,
                        tick=0.008, snap=2, workers=0, device="cpu", seed=3,
                        metrics=["pixfd50"])
    train(opts)
    (run_dir,) = tmp_path.iterdir()
    cfg = json.loads((run_dir / "training_options.json").read_text())
    assert cfg["img_channels"] == 2 and cfg["mask_labels"] == list(NAMES)  # for generate
    reals = cv2.imread(str(run_dir / "reals.png"), cv2.IMREAD_UNCHANGED)
    assert reals.shape == (16 * GRID_H, 32 * GRID_W)  # grey tiles: image | mask
    assert set(np.unique(reals[:16, 16:32])) <= set(mask_levels(5))  # the first tile's mask
    record = json.loads((run_dir / "metric-pixfd50.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["results"]["pixfd50"])


def test_metrics_see_the_image_channel_only(paired):
    arc = ImageArchive(paired)
    (batch,) = list(real_batches(arc, batch_size=64))
    assert batch.shape[1] == 1 and (batch[:, 0] == arc.read_all()[:, 0]).all()
    assert read_real_images(arc, [0, 1]).shape[1] == 1


def test_grid_puts_mask_beside_image():
    imgs = np.stack([np.stack([np.full((4, 4), 10 * i), np.full((4, 4), 200)]) for i in range(3)])
    grid = make_grid(imgs.astype(np.uint8), cols=3)
    assert grid.shape == (1, 4, 24)
    assert (grid[0, :, 8:12] == 10).all() and (grid[0, :, 12:16] == 200).all()


def _manifest(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_generate_paired_png_and_seg(run, paired, tmp_path):
    seeds = [0, 1, 2]
    record = write_generation(run, tmp_path / "gen", seeds, formats=("png", "dicom"),
                              progress=False)
    spec = mask_spec(ImageArchive(paired))
    assert record["mask"] == spec.record() == {"labels": list(NAMES),
                                               "levels": [0, 64, 128, 191, 255]}
    rows = _manifest(tmp_path / "gen")
    assert [r["mask_file"] for r in rows] == [
        f"seed{s:06d}{x}" for s in seeds for x in ("-mask.png", "-seg.dcm")]
    from mrisynth.training.checkpoint import load_generator

    G, _ = load_generator(run)
    raw = dict(sample_images(G, seeds, SamplingOptions(noise_mode="const"), torch.device("cpu")))
    levels = np.array(mask_levels(5))
    for seed in seeds:
        out = tmp_path / "gen"
        image = cv2.imread(str(out / f"seed{seed:06d}.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(out / f"seed{seed:06d}-mask.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == mask.shape == (16, 16) and mask.dtype == np.uint8
        assert (image == raw[seed][0]).all()
        dist = np.abs(raw[seed][1][..., None].astype(int) - levels)  # reference: brute force,
        nearest = 4 - dist[..., ::-1].argmin(-1)  # ties (e.g. 32) to the upper label
        assert (mask == nearest).all() and mask.max() < 5
        img_ds = pydicom.dcmread(out / f"seed{seed:06d}.dcm")
        seg = pydicom.dcmread(out / f"seed{seed:06d}-seg.dcm")
        assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SyntheticData == "YES"
        assert "SYNTHETIC" in seg.SeriesDescription and seg.PatientID == img_ds.PatientID
        ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        assert ref.ReferencedSOPInstanceUID == img_ds.SOPInstanceUID
        assert [s.SegmentLabel for s in seg.SegmentSequence] == list(NAMES[1:])
        frames = hd.seg.segread(out / f"seed{seed:06d}-seg.dcm").pixel_array  # [4, H, W]
        for k in range(4):
            assert (frames[k].astype(bool) == (mask == k + 1)).all()
    gen = ImageArchive(tmp_path / "gen")  # what metrics --images and downstream read
    assert gen.names == [f"seed{s:06d}.png" for s in seeds] and gen.num_channels == 1
    again = write_generation(run, tmp_path / "gen2", seeds, formats=("png", "dicom"),
                             progress=False)
    assert again["mask"] == record["mask"]
    for name in ("seed000001-seg.dcm", "seed000001-mask.png"):  # byte-identical re-runs
        assert (tmp_path / "gen" / name).read_bytes() == (tmp_path / "gen2" / name).read_bytes()


def test_metrics_of_generated_images_against_a_paired_archive(run, paired, tmp_path):
    from mrisynth.metrics.evaluations import evaluate_images

    write_generation(run, tmp_path / "gen", list(range(8)), progress=False)
    res = evaluate_images(tmp_path / "gen", paired, ["pixfd8"], out_dir=tmp_path / "m")
    assert res is not None
    line = json.loads((tmp_path / "m" / "metric-pixfd8.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(line["results"]["pixfd8"]) and line["num_gen"] == 8


def test_generate_without_the_archive_falls_back_to_chaos_labels(run, tmp_path, caplog):
    moved = tmp_path / "run"
    moved.mkdir()
    for p in run.iterdir():
        (moved / p.name).write_bytes(p.read_bytes())
    (moved / "training_options.json").write_text('{"user": {"data": "/nonexistent/x.zip"}}')
    record = write_generation(moved, tmp_path / "gen", [0], progress=False)
    assert record["mask"]["labels"] == list(NAMES)
    assert "CHAOS labels" in caplog.text


def test_split_paired_checks_its_input():
    with pytest.raises(ValueError):
        split_paired(np.zeros((1, 4, 4), np.uint8), MaskSpec(NAMES))
    image, labels = split_paired(np.stack([np.zeros((2, 2)), [[0, 100], [200, 255]]]).astype(
        np.uint8), MaskSpec(NAMES))
    assert image.shape == (1, 2, 2) and labels.tolist() == [[0, 2], [3, 4]]


def test_mirror_is_refused_for_sided_masks(paired, tmp_path):
    from mrisynth.errors import ConfigError

    opts = TrainOptions(data=str(paired), outdir=str(tmp_path), cfg="tiny", batch=8, kimg=0.008,
                        workers=0, device="cpu", mirror=True)
    with pytest.raises(ConfigError, match="--mirror: the archive's masks have sided labels"):
        train(opts)
    assert not list(tmp_path.iterdir())


def test_mask_labels_come_from_the_run_record_when_the_archive_moved(tmp_path, caplog):
    """A run trained on 7 labels, its (relative) archive path not found from here: generate
    decoded the mask channel at CHAOS's 5 levels, wrong labels everywhere."""
    from mrisynth.generate.masks import generator_mask_spec

    labels = ["background", "liver", "right_kidney", "left_kidney", "spleen", "a", "b"]
    (tmp_path / "training_options.json").write_text(json.dumps(
        {"user": {"data": "elsewhere/paired.zip"}, "mask_labels": labels}))
    spec = generator_mask_spec(tmp_path, 2)
    assert list(spec.labels) == labels and spec.levels == mask_levels(7)
    for bad in (["liver", "background"], ["background", "<b>"], "background", [1, 2]):
        (tmp_path / "training_options.json").write_text(json.dumps(
            {"user": {"data": "elsewhere/paired.zip"}, "mask_labels": bad}))
        with caplog.at_level("WARNING"):
            assert list(generator_mask_spec(tmp_path, 2).labels) == list(NAMES)
        assert "mask_labels" in caplog.text


def test_seg_without_highdicom_fails_before_writing(run, tmp_path, monkeypatch):
    """highdicom is an optional extra: --format dicom on a paired model says what to install
    before it writes a plan or an image (not at the first SEG, leaving a half-written folder)."""
    import importlib.util

    from mrisynth.errors import MissingDependencyError

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "highdicom" else real_find(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install 'mrisynth\[dicom-seg\]'"):
        write_generation(run, tmp_path / "gen", [0], formats=("png", "dicom"), progress=False)
    assert not (tmp_path / "gen").exists()
    write_generation(run, tmp_path / "png", [0], formats=("png",), progress=False)  # no SEG
