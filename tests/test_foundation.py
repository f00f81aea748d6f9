"""Presets, atomic output and the CLI's error handling."""

import json

import pytest
from click.testing import CliRunner

from mrisynth import atomic
from mrisynth.cli import cli
from mrisynth.config import PRESETS, resolve_preset
from mrisynth.errors import ConfigError


def test_paper256_resolves_to_published_constants():
    p = resolve_preset("paper256", 256, num_gpus=2)
    assert (p.batch, p.batch_gpu, p.mbstd_group, p.map_depth) == (64, 8, 8, 8)
    assert p.lr == 0.0025 and p.gamma == 1.0 and p.ema_kimg == 20.0 and p.ema_rampup is None
    assert [p.channels_at(r) for r in (4, 32, 64, 128, 256)] == [512, 512, 256, 128, 64]


def test_auto_follows_the_original_formulas():
    p = resolve_preset("auto", 256, num_gpus=1)
    assert p.batch == 16 and p.mbstd_group == 4
    assert p.gamma == pytest.approx(0.0002 * 256**2 / 16)
    assert p.ema_kimg == pytest.approx(16 * 10 / 32) and p.ema_rampup == 0.05
    assert resolve_preset("auto", 1024, 8).lr == 0.002


def test_cifar_disables_pl_and_mixing():
    p = resolve_preset("cifar", 32)
    assert p.pl_weight == 0 and p.style_mixing_prob == 0 and p.d_architecture == "orig"


@pytest.mark.parametrize("bad", [(255, 1), (2, 1), (256, 0)])
def test_bad_resolution_or_gpus(bad):
    with pytest.raises(ConfigError):
        resolve_preset("paper256", *bad)


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError, match="paper256"):
        resolve_preset("nope", 256)
    assert set(PRESETS) >= {"auto", "stylegan2", "paper256", "paper512", "paper1024", "cifar"}


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "a.json"
    atomic.write_json(target, {"x": 1})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_cli_lists_every_stage():
    out = CliRunner().invoke(cli, ["--help"]).output
    for name in ("phantom", "prepare", "dataset", "train", "metrics", "generate", "report", "demo"):
        assert name in out


def test_atomic_files_get_the_usual_permissions(tmp_path):
    atomic.write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK
