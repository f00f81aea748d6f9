"""`mrisynth demo --downstream`: the demo on paired image + mask data, ending with the
train-on-synthetic / test-on-real segmentation study (`mrisynth downstream`).

What it changes: prepare also writes the phantom's CHAOS masks, the archive and its holdout are
paired (image + mask channel), so the generator learns both; after the samples, one more step
generates image + mask pairs and runs the study into `RUN/downstream`, where the report finds
it. Opt-in: on this project's 2-core CPU the study step took 5.5 minutes at load 5-7 (9 U-Nets
of 150 steps, 18-116 s each; `benchmarks/downstream_budget.py` times one), above the ~3 minutes
the issue allows a default-on step, and paired training changes the whole demo's model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DownstreamPlan:
    """Sizes of the demo's study: every arm gets `steps` x `batch_size` slices per seed."""

    num_pairs: int  # generated image + mask pairs (the synthetic arm's training set)
    seeds: tuple[int, ...]
    steps: int
    batch_size: int


FULL = DownstreamPlan(num_pairs=512, seeds=(0, 1, 2), steps=150, batch_size=16)
QUICK = DownstreamPlan(num_pairs=32, seeds=(0,), steps=4, batch_size=4)


def mask_labels(on: bool) -> Any:
    """`PrepareOptions(masks=...)`: CHAOS's grey values -> labels when on."""
    if not on:
        return None
    from mrisynth.data.masks import CHAOS_LABELS

    return CHAOS_LABELS


def check_ready(on: bool) -> None:
    """The paired samples' masks are written as DICOM SEG (step 6), which needs highdicom, an
    optional extra that `scripts/install.sh` does not install: say so before training."""
    import importlib.util

    if on and importlib.util.find_spec("highdicom") is None:
        from mrisynth.errors import MissingDependencyError

        raise MissingDependencyError(
            "demo --downstream writes each sample's organ mask as a DICOM SEG, which needs "
            "highdicom: pip install 'mrisynth[dicom-seg]' (or run the demo without --downstream)"
        )


def describe(on: bool) -> str:
    """Added to the packing step's line."""
    return "; paired: image + organ mask per training image" if on else ""


def run_step(
    run_dir: Path,
    out: Path,
    plan: DownstreamPlan,
    device: str,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """Generate the pairs and run the three-arm study into `run_dir/downstream`."""
    from mrisynth.cli.downstream import run_downstream
    from mrisynth.cli.generate import write_generation
    from mrisynth.downstream.options import DownstreamOptions
    from mrisynth.generate.seeds import seeds_for_count

    pairs = out / "synthetic-pairs"
    write_generation(run_dir, pairs, seeds_for_count(plan.num_pairs), device=device,
                     progress=False)  # fmt: skip
    opts = DownstreamOptions(seeds=plan.seeds, steps=plan.steps, batch_size=plan.batch_size)
    return run_downstream(
        out / "data.zip",
        pairs,
        out / "data-holdout.zip",
        run_dir / "downstream",
        opts,
        device,
        echo=lambda line: echo("      " + line),
    )
