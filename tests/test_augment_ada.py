"""ADA's p controller: direction, speed, bounds, cadence, multi-rank sums and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mrisynth.errors import CheckpointError, ConfigError
from mrisynth.training.augment import AdaController, AugmentPipe


def run(ctrl: AdaController, pipe: AugmentPipe, logits: list[torch.Tensor], batch: int):
    """Drive the controller like the training loop: one accumulate per D step."""
    results = []
    for step, x in enumerate(logits, start=1):
        ctrl.accumulate(x)
        results.append(ctrl.maybe_update(pipe, batch, step))
    return results


def test_p_rises_when_d_is_overconfident_on_reals():
    pipe, ctrl = AugmentPipe(p=0.0), AdaController(target=0.6, interval=4, speed_kimg=500)
    results = run(ctrl, pipe, [torch.full((16, 1), 2.0)] * 40, batch=16)
    # r_t = 1 > 0.6 at each of the 10 updates; each adds 16 * 4 / 500k
    assert [r for r in results if r is not None] == [1.0] * 10
    assert float(pipe.p) == pytest.approx(10 * 16 * 4 / 500_000)


def test_p_falls_when_below_target_and_stops_at_zero():
    pipe, ctrl = AugmentPipe(p=0.01), AdaController(target=0.6, interval=2, speed_kimg=1)
    logits = torch.tensor([[1.0], [-1.0], [0.5], [-3.0]])  # r_t = 0 < 0.6
    run(ctrl, pipe, [logits] * 2, batch=4)
    assert float(pipe.p) == pytest.approx(0.01 - 4 * 2 / 1000)
    run(ctrl, pipe, [logits] * 2, batch=4)
    assert float(pipe.p) == 0.0  # clamped at zero, never negative


def test_p_respects_the_upper_bound():
    pipe, ctrl = AugmentPipe(p=0.0), AdaController(interval=1, speed_kimg=0.01, p_max=0.7)
    run(ctrl, pipe, [torch.ones(8, 1)] * 5, batch=8)
    assert float(pipe.p) == pytest.approx(0.7)
    unbounded = AugmentPipe(p=0.0)
    run(AdaController(interval=1, speed_kimg=0.01), unbounded, [torch.ones(8, 1)] * 5, batch=8)
    assert float(unbounded.p) > 1.0  # the original behaviour when no bound is given


def test_update_only_every_interval_steps_over_all_outputs_since_the_last():
    pipe, ctrl = AugmentPipe(p=0.5), AdaController(target=0.0, interval=3, speed_kimg=1)
    logits = [torch.ones(2, 1), -torch.ones(2, 1), -torch.ones(2, 1)]
    results = run(ctrl, pipe, logits, batch=2)
    assert results[:2] == [None, None]
    assert results[2] == pytest.approx(-1 / 3)
    assert float(pipe.p) == pytest.approx(0.5 - 2 * 3 / 1000)
    assert ctrl.state_dict() == {"sum_signs": 0.0, "count": 0.0}  # reset after the update


def test_r_t_equal_to_target_leaves_p_alone():
    pipe, ctrl = AugmentPipe(p=0.3), AdaController(target=0.0, interval=1)
    ctrl.accumulate(torch.tensor([1.0, -1.0]))
    assert ctrl.maybe_update(pipe, 2, 1) == 0.0
    assert float(pipe.p) == pytest.approx(0.3)


def test_nothing_accumulated_means_no_update():
    pipe, ctrl = AugmentPipe(p=0.3), AdaController(interval=1)
    assert ctrl.maybe_update(pipe, 8, 1) is None
    assert float(pipe.p) == pytest.approx(0.3)


def test_all_reduce_hook_sums_over_ranks():
    """Two ranks see +1 and -1 outputs; the reduced r_t is their joint mean."""
    rank_sums = {"other": torch.tensor([-6.0, 8.0], dtype=torch.float64)}  # r = -0.75 there
    seen = []

    def all_reduce(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return t + rank_sums["other"]

    pipe, ctrl = AugmentPipe(p=0.2), AdaController(target=0.0, interval=1, speed_kimg=1)
    ctrl.accumulate(torch.ones(8))
    r_t = ctrl.maybe_update(pipe, 16, 1, all_reduce=all_reduce)
    assert seen[0].tolist() == [8.0, 8.0] and seen[0].dtype == torch.float64
    assert r_t == pytest.approx(2 / 16)
    assert float(pipe.p) == pytest.approx(0.2 + 16 / 1000)


def test_state_round_trips_through_json_for_exact_resume():
    logits = [torch.randn(8, 1, generator=torch.Generator().manual_seed(i)) for i in range(12)]
    pipe_a, ctrl_a = AugmentPipe(p=0.1), AdaController(interval=4, speed_kimg=2)
    run(ctrl_a, pipe_a, logits, batch=8)

    pipe_b, ctrl_b = AugmentPipe(p=0.1), AdaController(interval=4, speed_kimg=2)
    run(ctrl_b, pipe_b, logits[:6], batch=8)  # stop mid-interval
    saved = json.loads(json.dumps({"ada": ctrl_b.state_dict(), "p": float(pipe_b.p)}))
    pipe_c, ctrl_c = AugmentPipe(p=saved["p"]), AdaController(interval=4, speed_kimg=2)
    ctrl_c.load_state_dict(saved["ada"])
    for step, x in enumerate(logits[6:], start=7):
        ctrl_c.accumulate(x)
        ctrl_c.maybe_update(pipe_c, 8, step)
    assert float(pipe_c.p) == float(pipe_a.p)
    assert ctrl_c.last_r_t == ctrl_a.last_r_t


def test_bad_state_and_options_are_rejected():
    with pytest.raises(CheckpointError, match="sum_signs"):
        AdaController().load_state_dict({"count": 3})
    with pytest.raises(ConfigError, match="interval"):
        AdaController(interval=0)
    with pytest.raises(ConfigError, match="p_max"):
        AdaController(p_max=-0.1)
    with pytest.raises(ConfigError, match="target"):
        AdaController(target=1.5)
    with pytest.raises(ConfigError, match="speed"):
        AdaController(speed_kimg=0)


def _rank_worker(rank: int, init_file: str, results: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:

        def all_reduce(t: torch.Tensor) -> torch.Tensor:
            dist.all_reduce(t)
            return t

        pipe, ctrl = AugmentPipe(p=0.5), AdaController(target=0.0, interval=2, speed_kimg=1)
        # rank 0 sees 3 positive outputs per step, rank 1 sees 1 negative: r_t = 0.5 jointly
        logits = torch.ones(3) if rank == 0 else -torch.ones(1)
        r_t = None
        for step in (1, 2):
            ctrl.accumulate(logits)
            r_t = ctrl.maybe_update(pipe, 8, step, all_reduce)
        Path(f"{results}.{rank}").write_text(json.dumps({"r_t": r_t, "p": float(pipe.p)}))
    finally:
        dist.destroy_process_group()


def test_two_ranks_agree_on_r_t_and_p_through_gloo(tmp_path):
    import torch.multiprocessing as mp

    results = str(tmp_path / "result")
    mp.spawn(_rank_worker, args=(str(tmp_path / "init"), results), nprocs=2, join=True)
    got = [json.loads(Path(f"{results}.{rank}").read_text()) for rank in (0, 1)]
    assert got[0] == got[1]
    assert got[0]["r_t"] == pytest.approx((6 - 2) / 8)
    assert got[0]["p"] == pytest.approx(0.5 + 8 * 2 / 1000)
