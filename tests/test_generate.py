"""mrisynth generate: seeds, truncation, PNG/DICOM export, manifest and the CLI."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from click.testing import CliRunner
from pydicom import config as dicom_config

from mrisynth.cli import cli
from mrisynth.config import resolve_preset
from mrisynth.errors import ConfigError
from mrisynth.generate.images import read_png
from mrisynth.generate.sampling import SamplingOptions, sample_images
from mrisynth.generate.seeds import format_seeds, latents_from_seeds, parse_seeds
from mrisynth.imaging import make_grid
from mrisynth.networks import build_generator, network_config_from_preset
from mrisynth.training.checkpoint import save_snapshot

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


def tiny_generator(channels: int = 1, c_dim: int = 0, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = network_config_from_preset(resolve_preset("tiny", 16), channels, c_dim)
    G = build_generator(cfg).eval()
    with torch.no_grad():  # as after training: truncation and noise inputs matter
        G.mapping.w_avg.normal_()
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    G = tiny_generator()
    return save_snapshot(
        run / "network-snapshot-000012.safetensors", G=G, D=None, G_ema=G, state={"kimg": 12}
    )


@pytest.fixture
def strict_dicom():
    """pydicom raises on any invalid value, when the files are written and read back."""
    settings = dicom_config.settings
    old = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = settings.writing_validation_mode = dicom_config.RAISE
    yield
    settings.reading_validation_mode, settings.writing_validation_mode = old


def test_parse_seeds_ranges_lists_and_errors():
    assert parse_seeds("0-3,7,5-6") == [0, 1, 2, 3, 7, 5, 6]
    assert parse_seeds("2, 2,1-2") == [2, 1]
    assert format_seeds([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10"
    for bad in ("", "a-3", "5-2", "-1", "1-99999999999"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_latents_match_numpy_randomstate():
    z = latents_from_seeds([5, 123], 8)
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z[1], np.random.RandomState(123).randn(8).astype(np.float32))


@pytest.mark.parametrize("channels", [1, 3])
def test_seeds_reproduce_images_across_batch_sizes(channels):
    G = tiny_generator(channels)
    a = dict(sample_images(G, [3, 1, 4, 1000], SamplingOptions(batch_size=4)))
    b = dict(sample_images(G, [4, 3], SamplingOptions(batch_size=1)))
    assert a[3].shape == (channels, 16, 16) and a[3].dtype == np.uint8
    # Batched convolutions may round differently: equal within one grey level (float tolerance).
    for seed in (3, 4):
        assert np.abs(a[seed].astype(int) - b[seed]).max() <= 1
        assert (a[seed] == b[seed]).mean() > 0.99
    np.testing.assert_array_equal(a[3], dict(sample_images(G, [3, 1, 4, 1000]))[3])
    assert np.abs(a[3].astype(int) - a[4]).mean() > 5


def test_truncation_zero_gives_one_image_for_all_seeds():
    G = tiny_generator()
    imgs = [img for _, img in sample_images(G, [0, 1, 2, 99], SamplingOptions(truncation_psi=0))]
    for img in imgs[1:]:
        np.testing.assert_array_equal(img, imgs[0])
    free = [img for _, img in sample_images(G, [0, 1], SamplingOptions(truncation_psi=1))]
    assert not np.array_equal(free[0], free[1])


def test_random_noise_is_seeded_per_batch_and_leaves_the_global_rng_alone():
    G = tiny_generator()
    opts = SamplingOptions(noise_mode="random", batch_size=2)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = dict(sample_images(G, [5, 6], opts))
    assert torch.equal(torch.random.get_rng_state(), before)
    b = dict(sample_images(G, [5, 6], opts))
    np.testing.assert_array_equal(a[5], b[5])
    const = dict(sample_images(G, [5], SamplingOptions()))
    assert not np.array_equal(a[5], const[5])  # the noise inputs matter


def test_conditional_generator_needs_a_valid_class():
    G = tiny_generator(c_dim=3)
    with pytest.raises(ConfigError, match="--class"):
        list(sample_images(G, [0], SamplingOptions()))
    with pytest.raises(ConfigError, match="out of range"):
        list(sample_images(G, [0], SamplingOptions(class_idx=3)))
    a = dict(sample_images(G, [0], SamplingOptions(class_idx=0)))[0]
    b = dict(sample_images(G, [0], SamplingOptions(class_idx=2)))[0]
    assert not np.array_equal(a, b)


def test_make_grid_layout():
    imgs = np.arange(3, dtype=np.uint8)[:, None, None, None] * np.ones((3, 1, 2, 2), np.uint8)
    grid = make_grid(imgs, cols=2)
    assert grid.shape == (1, 4, 4)
    assert grid[0, 0, 2] == 1 and grid[0, 2, 0] == 2 and grid[0, 3, 3] == 0


def _run_generate(args: list[str]):
    result = CliRunner().invoke(cli, ["generate", *args, "--no-progress"])
    assert result.exit_code == 0, result.output
    return result


def test_cli_png_dicom_grid_and_manifest(snapshot, tmp_path, strict_dicom):
    out = tmp_path / "out"
    _run_generate(
        [
            "--network",
            str(snapshot),
            "--outdir",
            str(out),
            "--seeds",
            "0-2,9",
            "--trunc",
            "0.7",
            "--format",
            "png",
            "--format",
            "dicom",
            "--grid",
        ]
    )
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [(r["file"], r["seed"]) for r in rows if r["format"] == "png"] == [
        ("seed000000.png", "0"),
        ("seed000001.png", "1"),
        ("seed000002.png", "2"),
        ("seed000009.png", "9"),
    ]
    assert {r["truncation_psi"] for r in rows} == {"0.7"}
    assert read_png(out / "grid.png").shape == (1, 32, 32)
    info = json.loads((out / "generation.json").read_text())
    assert info["kimg"] == 12 and info["seeds"] == "0-2,9" and info["synthetic"] is True

    datasets = [pydicom.dcmread(out / r["file"]) for r in rows if r["format"] == "dicom"]
    assert len(datasets) == 4
    for ds, seed in zip(datasets, [0, 1, 2, 9], strict=True):
        assert ds.SOPClassUID == SC_STORAGE == ds.file_meta.MediaStorageSOPClassUID
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.ConversionType == "SYN" and ds.SyntheticData == "YES"
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.BurnedInAnnotation == "NO"
        assert f"seed {seed}" in ds.DerivationDescription
        assert "network-snapshot-000012" in ds.DerivationDescription
        assert "psi 0.7" in ds.DerivationDescription
        assert "SYNTHETIC" in str(ds.PatientName)
        np.testing.assert_array_equal(ds.pixel_array, read_png(out / f"seed{seed:06d}.png")[0])
    assert len({ds.SOPInstanceUID for ds in datasets}) == 4
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert {r["sop_instance_uid"] for r in rows if r["format"] == "dicom"} == {
        ds.SOPInstanceUID for ds in datasets
    }


def test_rerun_is_byte_identical_and_options_change_uids(snapshot, tmp_path):
    args = ["--network", str(snapshot), "--seeds", "4-5", "--format", "dicom", "--format", "png"]
    _run_generate([*args, "--outdir", str(tmp_path / "a")])
    _run_generate([*args, "--outdir", str(tmp_path / "b")])
    _run_generate([*args, "--outdir", str(tmp_path / "c"), "--trunc", "0.5"])
    for name in ("seed000004.dcm", "seed000005.png", "manifest.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    a = pydicom.dcmread(tmp_path / "a" / "seed000004.dcm")
    c = pydicom.dcmread(tmp_path / "c" / "seed000004.dcm")
    assert a.SOPInstanceUID != c.SOPInstanceUID and a.SeriesInstanceUID != c.SeriesInstanceUID
    assert a.StudyInstanceUID == c.StudyInstanceUID  # same model, same study


def test_rgb_dicom_round_trip(tmp_path, strict_dicom):
    G = tiny_generator(channels=3)
    snap = save_snapshot(
        tmp_path / "network-snapshot-000000.safetensors", G=G, D=None, G_ema=G, state={"kimg": 0}
    )
    _run_generate(
        [
            "--network",
            str(tmp_path),
            "--outdir",
            str(tmp_path / "o"),
            "--num",
            "2",
            "--format",
            "dicom",
        ]
    )
    ds = pydicom.dcmread(tmp_path / "o" / "seed000001.dcm")
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    expected = dict(sample_images(G, [1], SamplingOptions()))[1]
    np.testing.assert_array_equal(ds.pixel_array, expected.transpose(1, 2, 0))
    assert snap.name in ds.DerivationDescription


def test_cli_errors_are_one_line(snapshot, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["generate", "--network", str(snapshot), "--outdir", str(tmp_path)])
    assert res.exit_code == 1 and "exactly one of --seeds" in res.output
    res = runner.invoke(
        cli,
        [
            "generate",
            "--network",
            str(tmp_path / "missing.safetensors"),
            "--outdir",
            str(tmp_path),
            "--num",
            "1",
        ],
    )
    assert res.exit_code == 1 and "not found" in res.output
    res = runner.invoke(
        cli,
        [
            "generate",
            "--network",
            str(snapshot),
            "--outdir",
            str(tmp_path),
            "--num",
            "1",
            "--class",
            "1",
        ],
    )
    assert res.exit_code == 1 and "unconditional" in res.output


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="optional validator dciodvfy (Debian package dicom3tools) is not installed",
)
@pytest.mark.parametrize("channels", [1, 3])
def test_dciodvfy_finds_no_iod_errors(tmp_path, channels):
    from mrisynth.generate.dicom import SeriesInfo, dataset_bytes, synthetic_dataset

    series = SeriesInfo(
        "ab" * 32, "network-snapshot-000001.safetensors", 1, 0.7, "const", None, "0-3"
    )
    image = np.random.default_rng(0).integers(0, 256, (channels, 16, 16), dtype=np.uint8)
    path = tmp_path / "x.dcm"
    path.write_bytes(dataset_bytes(synthetic_dataset(image, 3, 1, series)))
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (out.stdout + out.stderr).splitlines()
    assert "SCImage" in lines
    # SyntheticData (0008,001C) is newer than some dicom3tools dictionaries; nothing else errs.
    errors = [line for line in lines if line.startswith("Error") and "0x001c" not in line]
    assert errors == []
