"""The demo's duration estimate: a timed warm-up of the real training loop (issue 12, item 10)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from tests.test_train import write_archive

from mrisynth.cli.demo import _echo_estimate
from mrisynth.errors import InputError
from mrisynth.training.duration import DurationEstimate, measure, snapshot_count
from mrisynth.training.loop import train
from mrisynth.training.options import TrainOptions


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("data") / "discs", n=16)


def options(archive, outdir, **kw) -> TrainOptions:
    base = dict(
        data=str(archive), outdir=str(outdir), cfg="tiny", batch=8, kimg=0.04, tick=0.016,
        snap=1, workers=0, device="cpu", seed=1, cpu_threads=1,
    )  # fmt: skip
    return TrainOptions(**{**base, **kw})


@pytest.mark.parametrize("kimg, tick, snap", [(0.032, 0.008, 2), (0.024, 0.008, 0)])
def test_snapshot_count_matches_what_the_loop_writes(archive, tmp_path, kimg, tick, snap):
    run = train(options(archive, tmp_path, kimg=kimg, tick=tick, snap=snap))
    snapshots = list(run.glob("network-snapshot-*.safetensors"))
    assert len(snapshots) == snapshot_count(kimg, tick, snap, batch=8)


def test_snapshot_count_of_the_full_demo_plan():
    from mrisynth.cli.demo import FULL

    assert snapshot_count(FULL.kimg, FULL.tick, FULL.snap, 8) == 6  # ticks 0, 4, 8, ..., 20
    assert snapshot_count(20, 1, 3, 8) == 1 + 6 + 1  # the end (tick 20) is not a multiple of 3
    assert snapshot_count(0.1, 0.3, 5, 8) == 2  # shorter than one tick
    assert snapshot_count(0.008, 1, 4, 8) == 1  # one step: done at tick 0


@pytest.mark.parametrize(
    "kimg, tick, batch", [(20, 0, 8), (20, -1, 8), (math.nan, 1, 8), (math.inf, 1, 8), (20, 1, 0)]
)
def test_snapshot_count_refuses_impossible_lengths(kimg, tick, batch):
    with pytest.raises(ValueError):
        snapshot_count(kimg, tick, 4, batch)


def test_training_sec_adds_steps_and_snapshots():
    est = DurationEstimate(
        sec_per_kimg=20.0, sec_per_snapshot=3.0, warmup_sec=9.0, steps=16, batch=8
    )
    assert est.training_sec(20, 1, 4) == pytest.approx(20 * 20 + 6 * 3)


def test_measure_times_a_warmup_and_removes_it(archive, tmp_path):
    opts = options(archive, tmp_path / "runs", kimg=20, metrics=("body_area16",))
    est = measure(opts, tmp_path / "warmup", steps=3)
    assert est.steps == 3 and math.isfinite(est.sec_per_kimg) and est.sec_per_kimg > 0
    assert 0 < est.sec_per_snapshot < est.warmup_sec
    assert not (tmp_path / "warmup").exists()  # scratch run removed
    assert not (tmp_path / "runs").exists()  # the real run's folder is left alone


def test_measure_refuses_zero_steps_and_reports_bad_options_first(archive, tmp_path):
    with pytest.raises(ValueError, match="steps"):
        measure(options(archive, tmp_path), tmp_path / "w", steps=0)
    with pytest.raises(InputError):
        measure(options(tmp_path / "missing.zip", tmp_path), tmp_path / "w", steps=2)
    assert not (tmp_path / "w").exists()


def test_demo_prints_the_estimate_with_the_machine_load(archive, tmp_path):
    lines: list[str] = []
    opts = dataclasses.replace(options(archive, tmp_path / "runs"), kimg=20.0, tick=1.0, snap=4)
    expected = _echo_estimate(opts, tmp_path / "warmup", lines.append)
    assert len(lines) == 1 and lines[0].startswith("      estimate: ")
    assert "s/kimg" in lines[0] and "load " in lines[0] and "cores" in lines[0]
    assert expected > 20 * 0.01  # 20 kimg cannot take less than 10 ms per kimg
