"""Assemble a run's report: figures, best-snapshot table, grids, panel, memorisation summary.

`build_report` returns every file as bytes/text; the CLI writes them (atomically) into one
folder, so the HTML page only ever points at files lying next to it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrisynth.report import classes as per_class
from mrisynth.report import downstream, figures, grids, memorisation, pairs
from mrisynth.report.diversity import DiversityTable, diversity_table
from mrisynth.report.panel import real_vs_generated_figure
from mrisynth.report.runfiles import MAX_FILE_BYTES, RunFiles, audit_order
from mrisynth.report.tables import (
    CATEGORIES,
    BestRow,
    Series,
    best_table,
    collect_series,
    pick_series,
)
from mrisynth.report.verdicts import Verdict, summary_box

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FigureEntry:
    """One image of the report: its file (next to the HTML), title and caption."""

    file: str
    title: str
    caption: str = ""
    section: str = "figures"  # figures | training | images | memorisation
    pixelated: bool = False  # an enlarged image grid: the browser must not smooth it


@dataclass(frozen=True)
class PanelImages:
    """Inputs of Figure 4: generated images and the training set they are compared with."""

    generated: np.ndarray  # uint8 [N, C, H, W]
    seeds: list[int]
    train: np.ndarray  # uint8 [M, C, H, W]
    snapshot: str
    kimg: int | None = None
    train_names: list[str] | None = None  # file names in the archive
    patient_keys: list[str] | None = None  # per training image (the archive's manifest)


@dataclass
class Report:
    """Everything the report consists of, before it is written."""

    run: RunFiles
    series: list[Series]
    best: list[BestRow]
    entries: list[FigureEntry] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes
    notes: list[str] = field(default_factory=list)
    memorisation: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    single: list[Series] = field(default_factory=list)  # metrics evaluated at one snapshot only
    verdicts: list[Verdict] = field(default_factory=list)  # the summary box, in display order
    diversity: DiversityTable | None = None
    downstream: dict[str, Any] | None = None  # report.downstream's checked study

    def add(self, entry: FigureEntry, data: bytes) -> None:
        """Keep a figure under a file name safe in a URL and unique in the report folder."""
        stem, _, ext = safe_file_name(entry.file).rpartition(".")
        name, n = f"{stem}.{ext}", 1
        while name in self.files:  # two run files that differ only in odd characters
            name, n = f"{stem}-{n}.{ext}", n + 1
        self.files[name] = data
        self.entries.append(dataclasses.replace(entry, file=name))


def safe_file_name(name: str) -> str:
    """Letters, digits, '.', '_' and '-' only (a run file name may hold '#', '?', spaces...)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return cleaned if "." in cleaned else f"{cleaned or 'figure'}.png"


def _ada_target(options: dict[str, Any] | None) -> float | None:
    if not options:
        return None
    scopes = [options] + ([options["user"]] if isinstance(options.get("user"), dict) else [])
    for scope in scopes:  # mrisynth nests what the user set under "user"
        for key in ("target", "ada_target", "augment_target"):
            value = scope.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return None


def _curve(series: list[Series], category: str) -> Series | None:
    """The category's series when it has values over kimg (a figure), else None (a table)."""
    s = pick_series(series, category)
    return s if s is not None and sum(k is not None for k in s.kimg) >= 1 else None


def _metric_figures(report: Report) -> None:
    series = report.series
    prec, rec = _curve(series, "precision"), _curve(series, "recall")
    used: set[tuple[str, str]] = set()
    if prec or rec:
        report.add(
            FigureEntry(
                "fig1-precision-recall.png",
                "Figure 1: precision and recall",
                "Higher is better. The study's best: precision 59.33 %, recall 15.70 %.",
            ),
            figures.precision_recall_figure(prec, rec),
        )
        used |= {(s.metric, s.key) for s in (prec, rec) if s}
    for cat, number, file, scale, ylabel, study in (
        ("fid", 2, "fig2-fid.png", 1.0, "FID (squared Inception-feature distance)", "18.14"),
        ("kid", 3, "fig3-kid.png", 1e3, "KID x 1e3 (squared MMD, unitless)", "7.17e-3"),
    ):
        s = _curve(series, cat)
        if s is None:
            continue
        label = CATEGORIES[cat][0]
        std = next(
            (
                o
                for o in series
                if o.metric == s.metric and o.key == s.key + "_std" and o.kimg == s.kimg
            ),
            None,
        )
        report.add(
            FigureEntry(
                file,
                f"Figure {number}: {label} ({s.key})",
                f"Lower is better. The study's best: {study}."
                + (" Band: +/- one std over KID subsets." if std else ""),
            ),
            figures.single_metric_figure(s, f"{label} vs kimg", ylabel, scale, std),
        )
        used |= {(s.metric, s.key)} | ({(std.metric, std.key)} if std else set())
    by_metric: dict[str, list[Series]] = {}
    for s in series:
        if (s.metric, s.key) not in used:
            by_metric.setdefault(s.metric, []).append(s)
    for metric, group in sorted(by_metric.items()):
        if metric.startswith("diversity") and all(len(s.values) < 2 for s in group):
            continue  # one evaluation: the diversity table shows it
        if all(len(s.values) < 2 for s in group):  # one evaluation: a table row, not a curve
            report.single.extend(s for s in group if s.category is None)  # not in Table 1
            continue
        report.add(
            FigureEntry(
                f"metric-{metric}.png",
                f"Metric {metric}",
                "; ".join(sorted({n for s in group for n in s.caveats()})),
            ),
            figures.metric_group_figure(metric, group),
        )


def _tile_px(run: RunFiles) -> int | None:
    """Width of one grid tile: the run's resolution (training_options.json)."""
    options = run.options or {}
    value = options.get("resolution")
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 8192:
        return value
    return None


def _read(path: Path) -> bytes | None:
    """An image file's bytes; None (logged) when unreadable or larger than a run file can be."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            log.warning("%s: larger than %d bytes; left out", path, MAX_FILE_BYTES)
            return None
        return path.read_bytes()
    except OSError as e:
        log.warning("%s: unreadable (%s)", path, e)
        return None


def _add_grid(report: Report, path: Path, title: str, caption: str) -> None:
    """A grid enlarged for the screen; an unreadable file becomes a note, not a crash."""
    shown = grids.display_grid(_read(path) or b"", _tile_px(report.run))
    if shown is None:
        report.notes.append(f"{path.name} is not a readable PNG image of sane size; left out.")
        return
    png, factor = shown
    if factor > 1:
        caption = f"{caption} Enlarged {factor}x with nearest-neighbour pixels.".strip()
    entry = FigureEntry(path.name, title, caption, section="images", pixelated=True)
    report.add(entry, png)


def _images(report: Report) -> None:
    run = report.run
    if run.reals is not None:
        _add_grid(report, run.reals, "Training images (reals.png)", "")
    picks = run.fakes[:1] + run.fakes[-1:] if len(run.fakes) > 1 else run.fakes
    for kimg, path in picks:
        _add_grid(
            report,
            path,
            f"Generated at {kimg:g} kimg ({path.name})",
            "Fixed latents, so grids are comparable over training.",
        )


def _memorisation(report: Report) -> None:
    """The audit of the latest audited snapshot (earlier audits are listed in a note)."""
    audits = sorted(report.run.memorisation, key=audit_order)  # the summary box's order too
    if not audits:
        return
    path, obj = audits[-1]
    if len(audits) > 1:
        report.notes.append(
            f"{len(audits)} memorisation audits in the run; the report shows the "
            f"latest ({path.name})."
        )
    report.memorisation.append((path.name, obj))
    hist = memorisation.histogram_figure(obj)
    if hist is not None:
        report.add(
            FigureEntry(
                f"{path.stem}-histogram.png",
                f"Nearest-image distances ({path.name})",
                "Distance of each image to its nearest training image (lower = more alike). "
                "Generated images left of the dashed threshold count as copies.",
                section="memorisation",
            ),
            hist,
        )
    _closest_pairs(report, obj, path)


def _closest_pairs(report: Report, obj: dict[str, Any], path: Path) -> None:
    """The audit picture, labelled per row from the audit's records when they fit together."""
    picture = _audit_picture(report.run, obj, path)
    if picture is None:
        return
    data = _read(picture) or b""
    image = grids.decode_png(data)
    if image is None:
        report.notes.append(f"{picture.name} is not a readable PNG image; left out.")
        return
    title = f"Closest pairs ({picture.name})"
    labelled = pairs.closest_pairs_figure(image, obj)
    if labelled is not None:
        caption = (
            "The generated images closest to a training image, closest first: generated, its "
            "nearest training image, the absolute difference of the pixels; each row names "
            "the generated image, the training image and its patient, the distance and its "
            "percentile among real between-patient distances (flagged rows in red)."
        )
        entry = FigureEntry(f"{picture.stem}-pairs.png", title, caption, section="memorisation")
        report.add(entry, labelled)
        return
    cut = pairs.tiles(image)
    shown = grids.display_grid(data, cut[0][0].shape[1] if cut else _tile_px(report.run))
    if shown is not None:
        caption = "Rows: generated | nearest training image | absolute difference, closest first."
        if shown[1] > 1:
            caption += f" Enlarged {shown[1]}x with nearest-neighbour pixels."
        entry = FigureEntry(picture.name, title, caption, "memorisation", pixelated=True)
        report.add(entry, shown[0])


def _audit_picture(run: RunFiles, obj: dict[str, Any], path: Path) -> Path | None:
    """The audit's picture: a bare .png file name in the run folder (no paths out of it)."""
    name = obj.get("picture")
    name = name if isinstance(name, str) and name else f"{path.stem}.png"
    if Path(name).name != name or not name.endswith(".png") or name.startswith("."):
        log.warning("%s: picture %r is not a file name in the run folder; ignored", path, name)
        return None
    picture = run.run_dir / name
    return picture if picture.is_file() else None


def _downstream(report: Report) -> None:
    """`mrisynth downstream --outdir RUN/downstream`: its table, test and figure."""
    found = downstream.load_section(report.run.run_dir)
    if found is None:
        return
    report.downstream, figure = found
    if figure is not None:
        entry = FigureEntry(
            "downstream.png", "Dice per organ and arm", downstream.CAPTION, section="downstream"
        )
        report.add(entry, figure)


def build_report(
    run: RunFiles, panel: PanelImages | None = None, classes: per_class.ClassGrids | None = None
) -> Report:
    """Everything of the report except the HTML/Markdown text (see `render`)."""
    series = collect_series(run.metrics)
    report = Report(run=run, series=series, best=best_table(series))
    report.verdicts = summary_box(run)
    report.diversity = diversity_table(run)
    _metric_figures(report)
    if not run.metrics:
        report.notes.append(
            "No metric-*.jsonl files in the run folder: train with --metrics or "
            "run `mrisynth metrics --network RUN_DIR --data ARCHIVE`."
        )
    if run.is_evaluation:
        report.notes.append(
            "An evaluation of a folder of images (`mrisynth metrics --images`): there is no "
            "training run, so training curves, grids and Figure 4 are left out."
        )
    for note in sorted({n for s in series if s.category is None for n in s.caveats()}):
        report.notes.append(f"{note}.")  # Table 1's own caveats stand under the table
    curves = figures.training_figure(run.stats, _ada_target(run.options))
    if curves is not None:
        report.add(
            FigureEntry(
                "training-curves.png",
                "Training curves",
                "G/D losses, R1 and path-length penalties, ADA's r_t "
                "(Loss/signs/real) against its target, and augment p.",
                section="training",
            ),
            curves,
        )
    elif not run.stats and not run.is_evaluation:
        report.notes.append("No stats.jsonl yet: training curves are left out.")
    _images(report)
    if classes is not None:  # a conditional run: one row per class (report/classes.py)
        entry = FigureEntry("classes.png", "Generated images per class",
                            per_class.caption(classes), section="images")
        report.add(entry, per_class.class_figure(classes))
        report.files.update(per_class.class_grid_files(classes))
    if panel is not None:
        kimg = "" if panel.kimg is None else f" at {panel.kimg} kimg"
        report.add(
            FigureEntry(
                "fig4-real-vs-generated.png",
                "Figure 4: generated images and their most similar training images",
                f"Snapshot {panel.snapshot}{kimg}. Each generated image above the training "
                "image most similar to it by whole-image pixel correlation (NCC, 1.0 = the same "
                "image up to brightness and contrast), searched over the whole training set. A "
                "quick visual check; the calibrated copy test is the memorisation audit.",
                section="images",
            ),
            real_vs_generated_figure(
                panel.generated, panel.train, panel.seeds, panel.train_names, panel.patient_keys
            ),
        )
    _memorisation(report)
    _downstream(report)
    log.info("report of %s: %d figures", run.run_dir, len(report.entries))
    return report


def panel_snapshot(report_or_run: Report | RunFiles) -> Path | None:
    """Snapshot for Figure 4: the best by precision (the study's choice), else the latest."""
    run = report_or_run.run if isinstance(report_or_run, Report) else report_or_run
    series = collect_series(run.metrics)
    for row in best_table(series):
        if row.category == "precision" and (run.run_dir / row.snapshot).is_file():
            return run.run_dir / row.snapshot
    return run.snapshots[-1][1] if run.snapshots else None
