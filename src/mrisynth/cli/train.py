"""`mrisynth train`: StyleGAN2-ADA training on a prepared archive (CPU, one GPU, or torchrun)."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from mrisynth.cli.params import NetworkPath
from mrisynth.errors import MrisynthError


def _default_workers() -> int:
    """NVIDIA's 3, but no more than the CPUs this process may use (PyTorch warns beyond)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(3, cpus or 1)


def _check_outdir_outside_data(outdir: str | None, data: str) -> None:
    """Run folders hold PNG grids: inside a data folder they would be read as training images."""
    from pathlib import Path

    if outdir is None or not Path(data).is_dir():
        return
    out, src = Path(outdir).resolve(), Path(data).resolve()
    if out.is_relative_to(src):
        raise MrisynthError(
            f"--outdir {outdir}: inside the --data folder {data}; choose a folder outside it"
        )


def _data_option(data: str | None, resume: str | None) -> str:
    """--data as typed; with --resume and no --data, the archive the run recorded."""
    if data is not None:
        return data
    if resume is None:
        raise MrisynthError(
            "--data is required: the training archive made by `mrisynth dataset` "
            "(or --resume RUN to continue a run on its own data)"
        )
    from mrisynth.training.run_record import recorded_data

    data = recorded_data(resume)
    click.echo(f"--data {data} (recorded by the run)", err=True)
    return data


@click.command("train")
@click.option(
    "--data",
    type=click.Path(),
    help="Training archive (folder or ZIP) [with --resume: the one the run recorded].",
)
@click.option("--outdir", type=click.Path(), help="Parent folder of run folders.")
@click.option(
    "--cfg",
    default="auto",
    show_default=True,
    help="Preset: auto, stylegan2, paper256, paper512, paper1024, cifar, tiny.",
)
@click.option(
    "--gpus",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Processes/GPUs; >1 relaunches itself under torchrun.",
)
@click.option("--batch", type=click.IntRange(min=1), help="Total batch size [preset].")
@click.option("--batch-gpu", type=click.IntRange(min=1), help="Per-GPU micro-batch [preset].")
@click.option("--gamma", type=click.FloatRange(min=0), help="R1 weight [preset].")
@click.option("--mirror", is_flag=True, help="Add x-flipped copies of the reals.")
@click.option("--cond", is_flag=True, help="Condition on the archive's labels.")
@click.option(
    "--aug",
    default="ada",
    show_default=True,
    type=click.Choice(["ada", "fixed", "noaug"]),
    help="Augmentation mode.",
)
@click.option("--p", type=click.FloatRange(0, 1), help="Initial (ada) / constant (fixed) p.")
@click.option("--target", default=0.6, show_default=True, type=float, help="ADA target r_t.")
@click.option("--augpipe", default="bg", show_default=True, help="Augmentation pipeline preset.")
@click.option("--ada-kimg", type=float, help="ADA speed in kimg [500; 100 when resuming].")
@click.option("--p-max", type=click.FloatRange(min=0), help="Upper bound on p [none].")
@click.option("--kimg", default=25000.0, show_default=True, type=float, help="Training length.")
@click.option("--tick", default=4.0, show_default=True, type=float, help="kimg per tick.")
@click.option(
    "--snap",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="Ticks per snapshot (0: start and end only).",
)
@click.option("--metrics", default="", help="Comma-separated metrics at each snapshot.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--resume", type=NetworkPath(), help="Run folder or snapshot to resume from.")
@click.option(
    "--resume-mode",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "full", "weights"]),
    help="full: continue the run exactly; weights: new run from its weights; "
    "auto: full if the dataset is the same.",
)
@click.option(
    "--resume-channels",
    default="same",
    show_default=True,
    type=click.Choice(["same", "average"]),
    help="average: start a grey run from an RGB snapshot (or RGB from grey) by adapting G's "
    "ToRGB and D's FromRGB (README: Bring your NVIDIA models).",
)
@click.option(
    "--workers",
    default=_default_workers,
    show_default="3, at most the CPU count",
    type=click.IntRange(min=0),
    help="Data-loading processes per GPU.",
)
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
@click.option(
    "--cpu-threads",
    type=click.IntRange(min=1),
    help="Torch threads for CPU training [OMP_NUM_THREADS, else half the cores].",
)
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
    help="Dtype of the highest-resolution blocks on GPU (auto = fp16, as the original).",
)
@click.option("--cbase", type=click.IntRange(min=1), help="Channel base [preset].")
@click.option("--cmax", type=click.IntRange(min=1), help="Max channels [preset].")
@click.option("--map-depth", type=click.IntRange(min=1), help="Mapping layers [preset].")
@click.option("--glr", type=click.FloatRange(min=0, min_open=True), help="G learning rate.")
@click.option("--dlr", type=click.FloatRange(min=0, min_open=True), help="D learning rate.")
@click.option("--mbstd-group", type=click.IntRange(min=1), help="Minibatch-std group size.")
@click.option("--desc", help="Run folder suffix [derived from data and options].")
@click.option(
    "--max-bad-steps",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Stop after this many consecutive steps with non-finite losses.",
)
@click.option("--min-free-gb", type=float, help="Free disk needed [2 snapshots' size].")
@click.option(
    "--stop-after-kimg",
    type=float,
    help="End at the first tick at or past this kimg, without a final snapshot.",
)
@click.option(
    "--modconv",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "fused", "nonfused"]),
    help="Modulated-conv form in training (auto: the faster one measured per device).",
)
@click.option(
    "--compile", is_flag=True, help="torch.compile the main G/D phases (slow start, faster steps)."
)
@click.option("--dry-run", is_flag=True, help="Print resolved options and parameter counts.")
def command(**kw) -> None:
    """Train StyleGAN2-ADA on a prepared archive.

    Reproduce the study: --cfg paper256 --gamma 1.5 --mirror --aug ada --augpipe bg --snap 10.
    """
    from mrisynth.training import distributed
    from mrisynth.training.options import TrainOptions

    dry_run = kw.pop("dry_run")
    kw["resume"] = None if kw["resume"] is None else str(kw["resume"])  # as typed, for JSON
    kw["data"] = _data_option(kw["data"], kw["resume"])
    _check_outdir_outside_data(kw["outdir"], kw["data"])
    kw["metrics"] = tuple(m.strip() for m in kw["metrics"].split(",") if m.strip())
    opts = TrainOptions(**kw)
    if dry_run:
        from mrisynth.training.loop import describe

        info = describe(opts)
        click.echo(json.dumps(info, indent=2))
        n = info["num_params"]
        click.echo(f"G: {n['G']:,} parameters, D: {n['D']:,} parameters", err=True)
        return
    if opts.gpus > 1 and not distributed.is_launched():
        from mrisynth.training.loop import check

        check(opts)  # fail here, in one process, before launching any
        rc = distributed.launch(opts.gpus, sys.argv[1:])
        if rc != 0:
            raise MrisynthError(f"torchrun with {opts.gpus} processes failed (exit status {rc})")
        return
    from mrisynth.training.loop import train

    # Progress lines by default, from rank 0 only (torchrun sets RANK in every process).
    rank0 = os.environ.get("RANK", "0") == "0"
    logging.getLogger("mrisynth.training").setLevel(logging.INFO if rank0 else logging.WARNING)
    try:
        run_dir = train(opts)
        main = distributed.is_main()
    finally:
        distributed.shutdown()  # leave the process group cleanly (a no-op in one process)
    if main:
        click.echo(str(run_dir))
    distributed.exit_worker()  # a torchrun rank ends here, before teardown can abort it
