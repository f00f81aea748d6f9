"""`mrisynth prepare`: DICOM studies -> PNG training images, manifest and report."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

import click

from mrisynth.cli.params import RegularFile
from mrisynth.errors import ConfigError

SEQUENCES = ("t1-in", "t1-opp", "t2spir", "any")
NORMS = ("minmax", "percentile", "volume-minmax", "volume-percentile")
FITS = ("pad", "stretch", "crop")
# dicom_scan's reasons for image files (CHAOS ships its masks as PNG beside the DICOM)
_IMAGE_REASONS = frozenset(f"not a DICOM file ({s})" for s in (".png", ".jpg", ".jpeg"))


def _percentiles(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--percentiles must be LOW,HIGH (e.g. 0.5,99.5), got '{text}'") from None
    return lo, hi


@click.command("prepare")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder (new, or a previous prepare output; never inside an input).",
)
@click.option(
    "--sequence",
    type=click.Choice(SEQUENCES),
    default="t1-in",
    show_default=True,
    help="Which sequence to keep, chosen from headers (T1 in-phase as in the study).",
)
@click.option(
    "--size", default=256, show_default=True, help="Output side in pixels (e.g. 16-64 for tests)."
)
@click.option(
    "--norm",
    type=click.Choice(NORMS),
    default="minmax",
    show_default=True,
    help="Intensity normalisation: per-slice min-max (the study), per-slice "
    "percentile clipping, or the same over the whole series (volume-*).",
)
@click.option(
    "--percentiles",
    default="0.5,99.5",
    show_default=True,
    help="LOW,HIGH percentiles for the *percentile norms.",
)
@click.option(
    "--fit",
    type=click.Choice(FITS),
    default="pad",
    show_default=True,
    help="Non-square images: pad to square (keeps the whole field of view), stretch, "
    "or crop the centre.",
)
@click.option(
    "--bit-depth",
    type=click.Choice(["8", "16"]),
    default="8",
    show_default=True,
    help="PNG bit depth (training archives need 8).",
)
@click.option(
    "--isotropic/--no-isotropic",
    default=True,
    show_default=True,
    help="Resample non-square pixels (PixelSpacing) to square before fitting.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Processes decoding series in parallel (at most one per series).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 if any DICOM file was skipped (non-DICOM and hidden files excepted).",
)
@click.option(
    "--keep-source-paths",
    is_flag=True,
    help="Write input file and folder names into manifest.csv and report.json (off by "
    "default: hospital exports often name folders after patients).",
)
@click.option(
    "--hide-source-paths",
    is_flag=True,
    hidden=True,
    help="Deprecated: hiding source paths is now the default; this flag does nothing.",
)
@click.option(
    "--patient-key-secret",
    type=RegularFile(),
    default=None,
    help="File holding the secret (>= 16 bytes) that keys patient_key (HMAC-SHA256). Default: "
    "a random secret kept in OUTPUT/.mrisynth-secret. Give the same file to several prepares "
    "to give one patient the same key in all of them.",
)
@click.option(
    "--masks",
    is_flag=True,
    help="Also write each slice's organ mask (CHAOS Ground PNGs) as OUTPUT/masks/<image name> "
    "with labels 0 background, 1 liver, 2 right kidney, 3 left kidney, 4 spleen, through the "
    "image's own geometry (nearest neighbour); manifest column mask_file.",
)
@click.option(
    "--mask-labels",
    default=None,
    metavar="SPEC",
    help="With --masks: grey values of the source masks, in label order, instead of CHAOS's "
    "(63/126/189/252 with ranges): 'liver=63,spleen=240-255' or JSON '{\"liver\": 63}'.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars on stderr (default: when stderr is a terminal).",
)
def command(
    inputs: tuple[Path, ...],
    output: Path,
    sequence: str,
    size: int,
    norm: str,
    percentiles: str,
    fit: str,
    bit_depth: str,
    isotropic: bool,
    workers: int,
    strict: bool,
    keep_source_paths: bool,
    hide_source_paths: bool,
    patient_key_secret: Path | None,
    masks: bool,
    mask_labels: str | None,
    progress: bool | None,
) -> None:
    """Turn DICOM studies in INPUTS (CHAOS root, Train_Sets/Test_Sets, any DICOM tree) into
    square PNG training images in --output, with manifest.csv and report.json.

    Each slice: rescale slope/intercept, MONOCHROME1 inversion, normalisation, pad to square,
    resize (INTER_AREA down, linear up), lossless PNG. Unusable files are skipped with a reason
    in the report; the run fails only if no image came out (or with --strict). Re-running with
    the same inputs and options rewrites nothing; a run killed or stopped by a full disk is
    finished by running the same command again.

    Privacy: no input file or folder name reaches manifest.csv or report.json unless
    --keep-source-paths (OUTPUT/.mrisynth-sources.csv maps the report's ids to paths, for this
    machine only); patient_key is an HMAC under a secret that stays in OUTPUT/.mrisynth-secret.
    """
    from mrisynth.data.masks import CHAOS_LABELS, parse_label_map
    from mrisynth.data.prepare import PrepareOptions, prepare
    from mrisynth.data.slice_pipeline import SliceOptions

    if mask_labels is not None and not masks:
        raise ConfigError("--mask-labels needs --masks")
    label_map = None
    if masks:
        label_map = CHAOS_LABELS if mask_labels is None else parse_label_map(mask_labels)

    opts = PrepareOptions(
        sequence=sequence,
        slice=SliceOptions(
            size=size,
            norm=norm,
            percentiles=_percentiles(percentiles),
            fit=fit,
            bit_depth=int(bit_depth),
            isotropic=isotropic,
        ),
        workers=workers,
        strict=strict,
        source_paths=keep_source_paths,
        secret_file=patient_key_secret,
        masks=label_map,
    )
    if hide_source_paths and keep_source_paths:
        raise ConfigError("--hide-source-paths and --keep-source-paths contradict each other")
    if hide_source_paths:
        click.echo("note: --hide-source-paths is the default now; the flag is ignored", err=True)
    if 8 <= size <= 4096 and size & (size - 1):  # (other sizes: one Error line below)
        click.echo(
            f"note: --size {size} is not a power of two; `mrisynth dataset` and training "
            "need one (e.g. 64, 128, 256)",
            err=True,
        )
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        # pydicom logs a traceback for every undecodable file; the report has one line each
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    show = sys.stderr.isatty() if progress is None else progress
    res = prepare(list(inputs), output, opts, progress=show)
    click.echo(
        f"prepared {res.num_images} images of {res.num_patients} patients into {res.output} "
        f"({res.num_written} written, {res.num_unchanged} unchanged"
        + (f", {res.num_removed} stale removed" if res.num_removed else "")
        + ")"
    )
    for line in describe_skips(res.skipped, masks=bool(masks), sequence=sequence):
        click.echo(line)
    if "masks" in res.report:
        m = res.report["masks"]
        click.echo(
            f"masks: {m['written']} in {res.output}/masks ({res.num_masks_written} written, "
            f"{res.num_masks_unchanged} unchanged), "
            f"{len(m['images_without_mask'])} images without a mask, {len(m['skipped'])} skipped"
        )
    for w in res.warnings[:5]:
        click.echo(f"warning: {w}", err=True)
    if len(res.warnings) > 5:
        click.echo(f"... {len(res.warnings) - 5} more warnings in report.json", err=True)


def describe_skips(skipped: list, masks: bool, sequence: str) -> list[str]:
    """What prepare left aside, in words a newcomer reads calmly: mask PNGs of a CHAOS-like
    tree are expected (with --masks they are counted on the masks line instead), other
    sequences are a choice, and only the rest are problems (counted by reason)."""
    lines: list[str] = []
    images = sum(k.reason in _IMAGE_REASONS for k in skipped)
    if images and not masks:
        lines.append(f"ignored {images} PNG/JPEG images (e.g. CHAOS masks), not DICOM")
    kinds = Counter(
        k.reason.split(" (")[0]
        for k in skipped
        if k.reason not in _IMAGE_REASONS and not k.reason.startswith("not selected")
    ).most_common()
    if kinds:
        bad = sum(n for _, n in kinds)
        top = "; ".join(f"{n} x {r}" for r, n in kinds[:4]) + ("; ..." if len(kinds) > 4 else "")
        lines.append(f"skipped {bad} files: {top} (details in report.json)")
    other = sum(k.reason.startswith("not selected") for k in skipped)
    if other:
        lines.append(f"{other} slices of other sequences not selected (--sequence {sequence})")
    return lines
