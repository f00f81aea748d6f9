"""`mrisynth demo`: the whole pipeline on built-in phantom data, one printed step at a time.

phantom DICOM -> prepare -> training archive -> StyleGAN2-ADA (tiny preset) -> metrics ->
PNG/DICOM samples -> report. Each step calls the stage's library function (no subprocesses).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from mrisynth.cli import demo_cond, demo_downstream
from mrisynth.cli.demo_console import demo_console
from mrisynth.cli.prepare import describe_skips
from mrisynth.errors import ConfigError


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run; on 2 CPU cores `FULL` takes ~8 min when quiet, `QUICK` under a
    minute (the demo prints a measured estimate before training)."""

    patients: int
    matrix_sizes: tuple[int, ...]  # phantom acquisition matrices
    slices: tuple[int, int]  # min/max slices per patient
    resolution: int  # training image size
    kimg: float  # training length
    tick: float  # kimg per tick
    snap: int  # ticks per snapshot (0 = start and end only)
    num_eval: int  # generated images per metric evaluation
    num_samples: int  # images written by the generate step
    holdout: int  # patients held out of training for the copy test (data-holdout.zip)


# The tiny preset trains at ~21 s/kimg at 32x32 on this project's 2-core CPU when it is quiet
# (benchmarks/train_speed.py); 20 kimg is ~7-8 minutes and gives body-like images. Their
# outlines collapse to one size between 6 and 10 kimg (every tiny variant measured does: the
# early phase of StyleGAN2 training); on this demo's data 30 kimg did not bring them back
# (body-area spread 0.0047 at 20 kimg, 0.0038 at 30, real 0.032: benchmarks/demo_diversity.py,
# README's demo section), so the plan stays at 20.
FULL = DemoPlan(
    patients=8,
    matrix_sizes=(64, 72, 80),
    slices=(12, 16),
    resolution=32,
    kimg=20.0,
    tick=1.0,
    snap=4,
    num_eval=256,
    num_samples=32,
    holdout=2,
)
QUICK = DemoPlan(
    patients=3,
    matrix_sizes=(32,),
    slices=(6, 8),
    resolution=16,
    kimg=0.16,
    tick=0.08,
    snap=0,
    num_eval=64,
    num_samples=8,
    holdout=1,
)


def detector_metrics(num: int) -> list[str]:
    """FID/KID/PR names for the detectors present here (none on an offline machine)."""
    from mrisynth.metrics.detectors import find_detector

    names = []
    if find_detector("inception") is not None:
        names += [f"fid{num}_full", f"kid{num}_full"]
    if find_detector("vgg16") is not None:
        names.append(f"pr{num}_3_full")
    return names


def run_demo(
    outdir: str | Path,
    plan: DemoPlan = FULL,
    *,
    device: str = "auto",
    echo: Callable[[str], None] = click.echo,
    cond: bool = False,
    downstream: bool = False,
) -> Path:
    """Run every stage into `outdir`; returns the report's HTML page."""
    from mrisynth.cli.generate import write_generation
    from mrisynth.cli.report import write_report
    from mrisynth.data.pack import pack_archive
    from mrisynth.data.phantom_dicom import write_phantom_tree
    from mrisynth.data.prepare import PrepareOptions, prepare
    from mrisynth.data.slice_pipeline import SliceOptions
    from mrisynth.devices import resolve_device
    from mrisynth.generate.seeds import seeds_for_count
    from mrisynth.metrics.runner import evaluate_and_record
    from mrisynth.training.checkpoint import load_generator
    from mrisynth.training.loop import train
    from mrisynth.training.options import TrainOptions

    device = resolve_device(device).type  # auto -> cuda or cpu, named in the step lines
    out = Path(outdir)
    _claim_outdir(out)
    # The demo's own folders: a smaller re-run leaves no extras, a killed one no warm-up run.
    for own in ("phantom", "samples", "warmup"):
        if (out / own).is_dir():
            shutil.rmtree(out / own)
    t_start = time.time()
    total = 8 if downstream else 7  # --downstream: the segmentation study before the report

    def step(n: int, text: str) -> float:
        echo(f"[{n}/{total}] {text}")
        return time.time()

    def done(t0: float, text: str) -> None:
        echo(f"      {text} ({time.time() - t0:.1f} s)")

    t = step(
        1,
        f"Writing a phantom abdominal MRI study: {plan.patients} patients, CHAOS-like "
        f"DICOM tree -> {out / 'phantom'}",
    )
    patients = write_phantom_tree(
        out / "phantom",
        plan.patients,
        seed=0,
        matrix_sizes=plan.matrix_sizes,
        num_slices=plan.slices,
        t2spir=False,
    )
    done(t, f"{sum(p.num_slices for p in patients)} slices per echo")

    t = step(
        2,
        f"Preparing T1 in-phase slices as {plan.resolution}x{plan.resolution} PNGs "
        f"(per-slice min-max, as the study) -> {out / 'prepared'}",
    )
    prepared = prepare(
        [out / "phantom"],
        out / "prepared",
        PrepareOptions(
            slice=SliceOptions(size=plan.resolution),
            masks=demo_downstream.mask_labels(downstream),
            secret_file=_fixed_patient_keys(out),
        ),
    )
    skips = describe_skips(prepared.skipped, masks=downstream, sequence="t1-in")
    done(t, f"{prepared.num_images} images from {prepared.num_patients} patients; "
         + ("; ".join(skips) or "nothing skipped"))

    t = step(
        3,
        f"Packing the training archive -> {out / 'data.zip'}, {plan.holdout} patient(s) held "
        "out for the copy test -> data-holdout.zip" + demo_cond.describe(cond)
        + demo_downstream.describe(downstream),
    )
    packed = pack_archive(out / "prepared", out / "data.zip", holdout_patients=str(plan.holdout),
                          labels=demo_cond.pack_labels(cond), masks=downstream)
    done(t, f"{packed.num_images} images, hash {packed.content_hash[:12]}")

    metrics = [
        f"intensity_hist{plan.num_eval}",
        f"body_area{plan.num_eval}",
        *detector_metrics(plan.num_eval),
    ]
    t = step(
        4,
        f"Training StyleGAN2-ADA (tiny preset, ADA bg) for {plan.kimg:g} kimg on "
        f"{device}; metrics at every snapshot: {', '.join(metrics)}",
    )
    if not detector_metrics(plan.num_eval):
        echo(
            "      (no Inception/VGG16 detector found: FID/KID/precision/recall skipped; "
            "`mrisynth weights status` says where to put them)"
        )
    opts = TrainOptions(
        data=str(out / "data.zip"),
        outdir=str(out / "runs"),
        cfg="tiny",
        mirror=not downstream,  # paired: an x-flip would swap the kidneys' labels
        kimg=plan.kimg,
        tick=plan.tick,
        snap=plan.snap,
        metrics=tuple(metrics),
        workers=0,
        device=device,
        seed=0,
        cond=cond,
        desc="demo-cond" if cond else "demo",
    )
    expected = _echo_estimate(opts, out / "warmup", echo)
    t_train = time.time()
    loop_log = logging.getLogger("mrisynth.training.loop")
    ticks = _TickEcho()
    loop_log.addHandler(ticks)  # one progress line per tick: training is most of the demo
    try:
        run_dir = train(opts)
    finally:
        loop_log.removeHandler(ticks)
    echo(f"      training took {_minutes(time.time() - t_train)} (estimate {_minutes(expected)})")
    done(t, f"run folder {run_dir}")

    final = [f"memorisation{plan.num_eval}", f"diversity{plan.num_eval}", f"pixfd{plan.num_eval}"]
    final += demo_cond.final_metrics(cond, plan.num_eval)  # --cond: faithfulness
    t = step(
        5,
        "Copy test, diversity and pixel Fréchet distance of the last snapshot: " + ", ".join(final),
    )
    G, info = load_generator(run_dir, device="cpu")
    results = evaluate_and_record(run_dir, info.path, info.kimg, G, out / "data.zip", final, "cpu")
    shown = [f"{k} {v:.3g}" for res in results.values() for k, v in list(res.items())[:2]]
    done(t, ", ".join(shown) or "done")

    t = step(
        6,
        f"Generating {plan.num_samples} synthetic images as PNG + DICOM (marked "
        f"synthetic) -> {out / 'samples'}",
    )
    record = write_generation(
        run_dir,
        out / "samples",
        seeds_for_count(plan.num_samples),
        formats=("png", "dicom"),
        grid=True,
        class_request=demo_cond.sample_request(cond),
        device=device,
        progress=False,
    )
    done(t, f"{record['num_images']} images from {record['snapshot']}")

    if downstream:
        quick = dataclasses.replace(plan, kimg=QUICK.kimg) == QUICK
        ds_plan = demo_downstream.QUICK if quick else demo_downstream.FULL
        t = step(
            7,
            f"Does synthetic data help? {ds_plan.num_pairs} generated image + mask pairs; "
            f"U-Nets on real / synthetic / real + synthetic slices, {len(ds_plan.seeds)} "
            f"seed(s), {ds_plan.steps} steps each -> {run_dir / 'downstream'}",
        )
        demo_downstream.run_step(run_dir, out, ds_plan, device, echo)
        done(t, "Dice per organ on the held-out patients above")

    t = step(total, f"Writing the report -> {run_dir / 'report'}")
    page = write_report(
        run_dir,
        run_dir / "report",
        data=out / "data.zip",
        panel_images=min(8, plan.num_samples),
        device=device,
    )
    done(t, "figures, tables and the real-vs-generated panel")
    echo(f"Demo finished in {time.time() - t_start:.0f} s.")
    echo(f"Report: {page}")
    return page


def _echo_estimate(opts, workdir: Path, echo: Callable[[str], None]) -> float:
    """Time a short warm-up run of `opts` and say how long training will take; returns the
    estimate in seconds."""
    from mrisynth.training.duration import measure

    # 16 steps hold R1 and path-length steps in a long run's proportion; a smoke run of a few
    # dozen steps gets 2, so that measuring does not double it.
    est = measure(opts, workdir, steps=16 if opts.kimg >= 2 else 2)
    expected = est.training_sec(opts.kimg, opts.tick, opts.snap)
    echo(
        f"      estimate: {_minutes(expected)} of training ({est.sec_per_kimg:.1f} s/kimg and "
        f"{est.sec_per_snapshot:.1f} s per snapshot in a {est.steps}-step warm-up of "
        f"{est.warmup_sec:.0f} s; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); "
        "slower if the machine gets busier"
    )
    return expected


def _minutes(sec: float) -> str:
    return f"{sec:.0f} s" if sec < 90 else f"{sec / 60:.1f} min"


# Patient keys decide which patients `dataset --holdout-patients` holds out. With prepare's
# random per-folder secret every new demo folder trained on another 6 of the 8 phantom patients
# (real body-area spread 0.020 or 0.041 depending on the draw); the phantom is synthetic, so a
# fixed, public key is harmless and makes the demo's data the same everywhere.
DEMO_PATIENT_KEY = "mrisynth-demo-phantom-patient-key-v1"


def _fixed_patient_keys(out: Path) -> Path:
    from mrisynth import atomic

    path = out / ".mrisynth-demo-patient-key"
    atomic.write_text(path, DEMO_PATIENT_KEY + "\n")
    return path


MARKER = ".mrisynth-demo"


def _claim_outdir(out: Path) -> None:
    """The demo rewrites its folders (phantom/ and samples/ are deleted first), so it only
    runs in a new or empty folder or an earlier demo's (its marker, or prepare's in
    prepared/ for demos from before the marker)."""
    from mrisynth import atomic

    if out.is_dir() and any(out.iterdir()) and not _earlier_demo(out):
        raise ConfigError(
            f"--outdir {out}: folder is not empty and is not an earlier demo's (the demo "
            "replaces its phantom/ and samples/ folders); choose a new folder"
        )
    atomic.write_text(out / MARKER, "mrisynth demo output: re-runs rewrite this folder\n")


# Everything a demo writes into --outdir: a folder from before the marker is an earlier demo's
# only if it holds nothing else (the quick start's data/ holds phantom/ and prepared/ too).
_DEMO_NAMES = {"phantom", "prepared", "data.zip", "data-holdout.zip", "runs", "samples", "warmup",
               "synthetic-pairs", MARKER, ".mrisynth-demo-patient-key"}  # fmt: skip


def _earlier_demo(out: Path) -> bool:
    if (out / MARKER).is_file():
        return True
    names = {p.name for p in out.iterdir()}
    return (out / "prepared" / ".mrisynth-prepare").is_file() and names <= _DEMO_NAMES


class _TickEcho(logging.Handler):
    """Echo the training loop's per-tick lines (tick, kimg, sec/kimg, augment p) compactly."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("tick "):
            click.echo("      " + " ".join(msg.split()))


@click.command("demo")
@click.option(
    "--outdir",
    type=click.Path(file_okay=False),
    default="demo-out",
    show_default=True,
    help="Folder for every output of the demo.",
)
@click.option("--quick", is_flag=True, help="A smoke run of under a minute (16 px, 0.16 kimg).")
@click.option(
    "--kimg",
    type=float,
    default=None,
    help="Train longer or shorter than the plan (full: 20 kimg, quick: 0.16).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--cond",
    is_flag=True,
    help="Train a position-conditional model (4 slice-level bins, top to bottom) and show "
    "generated slices per level and the faithfulness metric.",
)
@click.option(
    "--downstream",
    is_flag=True,
    help="Train on image + organ-mask pairs and end with `mrisynth downstream`: U-Nets on "
    "real / synthetic / real + synthetic slices scored on the held-out patients (~5 min more).",
)
def command(
    outdir: str, quick: bool, kimg: float | None, device: str, cond: bool, downstream: bool
) -> None:
    """Run the whole pipeline on built-in phantom data and write a report.

    Phantom DICOM -> prepare -> archive -> train (tiny preset) -> metrics (weight-free always;
    FID/KID/PR when the detectors are present) -> PNG + DICOM samples -> report. About 10
    minutes on a 2-core CPU (it prints an estimate before training); --quick under a minute.
    The last line names the report.
    """
    plan = QUICK if quick else FULL
    if kimg is not None and not (math.isfinite(kimg) and 0 < kimg <= 1e6):
        raise ConfigError(f"--kimg must be a number in (0, 1000000], got {kimg}")
    if kimg is not None:
        plan = dataclasses.replace(plan, kimg=kimg)
    if cond and downstream:
        raise ConfigError("--cond and --downstream: choose one (no conditional paired demo)")
    demo_downstream.check_ready(downstream)  # before minutes of training, not after
    with demo_console():  # warnings read like the step lines; log files keep their format
        run_demo(outdir, plan, device=device, cond=cond, downstream=downstream)
