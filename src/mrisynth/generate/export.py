"""Turn sampled images into output files (PNG, DICOM, grid) and the manifest describing them.

The library returns `(name, bytes)` items; the CLI writes them atomically. Nothing here depends
on the clock, so the same network and options give byte-identical outputs on every run.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field

import numpy as np

from mrisynth import __version__
from mrisynth.data.masks import MaskSpec, encode_label_png
from mrisynth.errors import ConfigError
from mrisynth.generate.dicom import SeriesInfo, dataset_bytes, synthetic_dataset
from mrisynth.generate.masks import (
    mask_name,
    require_seg_writer,
    seg_bytes,
    seg_dataset,
    seg_name,
    split_paired,
)
from mrisynth.generate.sampling import SamplingOptions
from mrisynth.imaging import encode_png, make_grid

FORMATS = ("png", "dicom")
GRID_NAME = "grid.png"
MANIFEST_COLUMNS = (
    "file",
    "format",
    "seed",
    "truncation_psi",
    "noise_mode",
    "class",
    "sop_instance_uid",
    "mask_file",  # paired (image + mask) models: the seed's label map (PNG) or DICOM SEG
)


def png_name(seed: int) -> str:
    """File name of a seed's PNG; zero-padded so names sort in seed order."""
    return f"seed{seed:06d}.png"


def dicom_name(seed: int) -> str:
    return f"seed{seed:06d}.dcm"


@dataclass(frozen=True)
class OutputFile:
    """One file to write, relative to the output folder, with its manifest row."""

    name: str
    data: bytes
    row: dict[str, str] | None = None  # None: not listed in manifest.csv (e.g. the grid)


@dataclass
class ExportPlan:
    """What to write for one generation run."""

    formats: tuple[str, ...] = ("png",)
    grid: bool = False
    grid_cols: int | None = None
    series: SeriesInfo | None = None  # required when "dicom" is in formats
    mask: MaskSpec | None = None  # a paired (2-channel) model: its mask channel's labels
    rows: list[dict[str, str]] = field(default_factory=list)  # filled while exporting

    def check(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ConfigError(f"--format {unknown[0]!r} unknown; choose from {', '.join(FORMATS)}")
        if not self.formats and not self.grid:
            raise ConfigError("nothing to write: give --format png/dicom or --grid")
        if "dicom" in self.formats and self.series is None:
            raise ValueError("DICOM export needs ExportPlan.series")
        if "dicom" in self.formats and self.mask is not None:
            require_seg_writer()  # before the plan and the first image, not at the first SEG


def manifest_rows(seed: int, plan: ExportPlan, opts: SamplingOptions) -> list[dict[str, str]]:
    """The manifest rows of one seed's files; they depend on the options, not on the pixels."""
    common = {
        "seed": str(seed),
        "truncation_psi": f"{opts.truncation_psi:g}",
        "noise_mode": opts.noise_mode,
        "class": "" if opts.class_idx is None else str(opts.class_idx),
    }
    rows = []
    paired = plan.mask is not None
    if "png" in plan.formats:
        rows.append({"file": png_name(seed), "format": "png", **common, "sop_instance_uid": "",
                     "mask_file": mask_name(seed) if paired else ""})
    if "dicom" in plan.formats:
        assert plan.series is not None
        uid = plan.series.sop_uid(seed)
        rows.append({"file": dicom_name(seed), "format": "dicom", **common,
                     "sop_instance_uid": uid, "mask_file": seg_name(seed) if paired else ""})
    return rows


def image_files(
    seed: int, img: np.ndarray, instance: int, plan: ExportPlan, opts: SamplingOptions
) -> list[OutputFile]:
    """The files of one image `uint8 [C, H, W]` (`instance` = its 1-based place in the run);
    a paired image [2, H, W] gives the image and, per format, its mask (see generate/masks)."""
    files = []
    labels = None
    if plan.mask is not None:
        img, labels = split_paired(img, plan.mask)
    for row in manifest_rows(seed, plan, opts):
        if row["format"] == "png":
            files.append(OutputFile(row["file"], encode_png(img), row))
            if labels is not None:
                files.append(OutputFile(row["mask_file"], encode_label_png(labels)))
        else:
            assert plan.series is not None
            ds = synthetic_dataset(img, seed, instance, plan.series)
            files.append(OutputFile(row["file"], dataset_bytes(ds), row))
            if labels is not None:
                seg = seg_dataset(ds, labels, plan.mask, seed)
                files.append(OutputFile(row["mask_file"], seg_bytes(seg)))
    return files


def grid_file(images: list[np.ndarray], cols: int | None) -> OutputFile:
    return OutputFile(GRID_NAME, encode_png(make_grid(np.stack(images), cols)))


def manifest_csv(rows: list[dict[str, str]]) -> str:
    """The manifest as CSV text, one row per written image file."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def generation_info(
    network: str,
    snapshot_name: str,
    model_sha256: str,
    kimg: int | None,
    seeds_text: str,
    num_images: int,
    opts: SamplingOptions,
    plan: ExportPlan,
) -> dict:
    """JSON-able record of the run (no timestamps, so re-runs are identical)."""
    return {
        "generator": f"mrisynth {__version__}",
        "synthetic": True,
        "network": network,
        "snapshot": snapshot_name,
        "model_sha256": model_sha256,
        "kimg": kimg,
        "seeds": seeds_text,
        "num_images": num_images,
        "sampling": asdict(opts),
        "formats": list(plan.formats),
        "grid": GRID_NAME if plan.grid else None,
        "dicom_series_uid": plan.series.series_uid if plan.series else None,
        "dicom_study_uid": plan.series.study_uid if plan.series else None,
        "mask": plan.mask.record() if plan.mask else None,
    }
