"""`mrisynth report RUN_DIR`: the study's figures, Table 1 and a real-vs-generated panel."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from mrisynth.cli.params import NetworkPath

log = logging.getLogger(__name__)

MAX_PANEL = 64  # pairs in Figure 4: more would not be readable on a page


def data_path_from_options(options: dict[str, Any] | None, run_dir: Path) -> Path | None:
    """The training archive named in training_options.json, if it still exists."""
    from mrisynth.training.run_record import find_recorded_data

    return find_recorded_data(options, run_dir)


def _panel(run: Any, data: Path | None, num: int, device: str) -> Any:
    """Figure 4's inputs, or None (with the reason logged) when something is missing."""
    import numpy as np

    from mrisynth.data.archive import ImageArchive
    from mrisynth.devices import resolve_device
    from mrisynth.errors import InputError
    from mrisynth.report.build import PanelImages, panel_snapshot
    from mrisynth.report.classes import panel_samples
    from mrisynth.training.checkpoint import load_generator

    snapshot = panel_snapshot(run)
    data = data or data_path_from_options(run.options, run.run_dir)
    if snapshot is None or data is None:
        why = "no snapshot in the run" if snapshot is None else "no training data (use --data)"
        log.warning("real-vs-generated panel left out: %s", why)
        return None
    dev = resolve_device(device)
    G, info = load_generator(snapshot, device=str(dev))
    seeds = list(range(num))
    generated = panel_samples(G, seeds, dev)  # a conditional G: one class per seed
    archive = ImageArchive(data)
    train = archive.read_all()  # [M, C, H, W]
    if train.shape[1:] != generated[0].shape:
        raise InputError(
            f"{data}: images are {train.shape[1]}x{train.shape[2]}x{train.shape[3]} (CxHxW) but "
            f"{snapshot.name} generates {'x'.join(map(str, generated[0].shape))}; pass the "
            "run's training archive with --data, or --panel 0"
        )
    return PanelImages(
        generated=np.stack(generated),
        seeds=seeds,
        train=train,
        snapshot=info.path.name,
        kimg=info.kimg,
        train_names=list(archive.names),
        patient_keys=getattr(archive, "patient_keys", None),  # None: archive without manifest
    )


def _check_run(run: Any) -> None:
    """A folder with none of a run's files is a mistyped path, not an empty report."""
    from mrisynth.errors import InputError

    patterns = ("training_options.json", "stats.jsonl", "reals.png", "fakes-*.png",
                "metric-*.jsonl", "network-snapshot-*", "memorisation-*.json")  # fmt: skip
    if any(next(run.run_dir.glob(p), None) for p in patterns):
        return
    runs = sorted(p.name for p in run.run_dir.iterdir() if (p / "training_options.json").is_file())
    hint = (
        f"it holds runs: give one of them, e.g. {run.run_dir / runs[-1]}"
        if runs
        else "give a folder made by `mrisynth train` or by `mrisynth metrics --images ... -o OUT`"
    )
    raise InputError(
        f"{run.run_dir}: no run files in it (training_options.json, stats.jsonl, "
        f"metric-*.jsonl, snapshots); {hint}"
    )


def _check_outdir(outdir: Path, run_dir: Path, data: str | Path | None) -> None:
    """The report never writes over its inputs: its enlarged grids are named like the run's
    own reals.png and fakes-*.png, and PNGs in a data folder would be packed as training
    images. An existing folder must be empty or an earlier report."""
    from mrisynth.errors import ConfigError

    out = outdir.resolve()
    inputs = [run_dir.resolve()] + ([Path(data).resolve()] if data else [])
    if any(out.is_relative_to(p) for p in inputs if p.is_dir()) and out != (
        run_dir.resolve() / "report"
    ):
        raise ConfigError(f"--outdir {outdir}: inside an input folder; choose another folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise ConfigError(
            f"--outdir {outdir}: folder is not empty and is not an earlier report (no "
            "summary.json); choose a new folder"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--outdir {outdir}: exists and is not a folder; choose another")
    try:  # now, not after Figure 4 has been computed
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--outdir {outdir}: cannot be created ({e.strerror or e})") from None


def write_report(
    run_dir: str | Path,
    outdir: str | Path | None = None,
    *,
    data: str | Path | None = None,
    panel_images: int = 8,
    device: str = "auto",
    reader_study: str | Path | None = None,
) -> Path:
    """Build the report of a run folder and write it; returns the HTML page's path."""
    from mrisynth import atomic
    from mrisynth.report.build import build_report
    from mrisynth.report.classes import run_class_grids
    from mrisynth.report.render import (
        HTML_NAME,
        MARKDOWN_NAME,
        SUMMARY_NAME,
        render_html,
        render_markdown,
        render_summary,
    )
    from mrisynth.report.runfiles import read_run

    run = read_run(run_dir)
    _check_run(run)
    outdir = Path(outdir) if outdir is not None else run.run_dir / "report"
    if reader_study is not None:  # a wrong folder is an error before any work
        from mrisynth.readerstudy.store import open_study

        open_study(Path(reader_study), readonly=True).close()
    _check_outdir(outdir, run.run_dir, data)
    wanted = panel_images > 0 and not run.is_evaluation  # an evaluation has no generator
    panel = _panel(run, Path(data) if data else None, panel_images, device) if wanted else None
    classes = run_class_grids(run, device) if wanted else None  # conditional runs only
    report = build_report(run, panel, classes)
    if panel is None and wanted:
        report.notes.append(
            "Figure 4 (real vs generated) left out: it needs a snapshot and the "
            "training archive (pass --data ARCHIVE)."
        )
    if reader_study is not None:
        from mrisynth.report.readerstudy import add_to_report

        add_to_report(report, Path(reader_study))
    for name, blob in report.files.items():
        atomic.write_bytes(outdir / name, blob)
    atomic.write_text(outdir / MARKDOWN_NAME, render_markdown(report))
    atomic.write_json(outdir / SUMMARY_NAME, render_summary(report))
    atomic.write_text(outdir / HTML_NAME, render_html(report))
    return outdir / HTML_NAME


@click.command("report")
@click.argument("run_dir", type=NetworkPath(folder_only=True))
@click.option(
    "--outdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write the report (default: RUN_DIR/report).",
)
@click.option(
    "--data",
    type=click.Path(exists=True),
    default=None,
    help="Training archive for Figure 4 (default: the one in training_options.json).",
)
@click.option(
    "--panel",
    "panel_images",
    type=click.IntRange(0, MAX_PANEL),
    default=8,
    show_default=True,
    help=f"Generated images in the real-vs-generated panel (0: none, at most {MAX_PANEL}).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--reader-study",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Add the results of a `mrisynth reader-study` folder as a section.",
)
def command(
    run_dir: str,
    outdir: str | None,
    data: str | None,
    panel_images: int,
    device: str,
    reader_study: str | None,
) -> None:
    """Figures, best-snapshot table and summary of a training run as HTML + Markdown.

    Reads training_options.json, stats.jsonl, metric-*.jsonl, fakes*.png and memorisation-*.json
    from RUN_DIR; every file is optional. Example:

    \b
        mrisynth report runs/00000-tiny     # -> runs/00000-tiny/report/index.html
    """
    from mrisynth.devices import resolve_device

    resolve_device(device)  # a bad --device is an error even when Figure 4 is left out
    page = write_report(
        run_dir,
        outdir,
        data=data,
        panel_images=panel_images,
        device=device,
        reader_study=reader_study,
    )
    click.echo(f"Report: {page}")
