"""`mrisynth dataset`: pack PNGs (prepare's output or an NVIDIA archive) into a training archive."""

from __future__ import annotations

from pathlib import Path

import click

LABELS = (
    "keep",
    "none",
    "slice-fraction",
    "position",
    "echo-time",
    "patient",
    "series",
    "sequence",
)


@click.command("dataset")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Archive to write: NAME.zip (uncompressed ZIP) or a folder.",
)
@click.option(
    "--label",
    default="keep",
    show_default=True,
    metavar="LABEL",
    help="Labels for conditional training: keep (the source's dataset.json, if any), "
    "none, slice-fraction, position, echo-time (floats from the manifest), patient, "
    "series, sequence (classes), or column:NAME (any manifest column).",
)
@click.option(
    "--labels",
    "named",
    default=None,
    metavar="position:K|sequence|position:K,sequence",
    help="Named classes from prepare's manifest: K bins of the slice's anatomical position "
    "(normalised per patient, 0 = top; axial slices only), the sequence (prepare --sequence "
    "any), or one class per "
    "pair. dataset.json records the class names (for `generate --position/--label`).",
)
@click.option(
    "--holdout-patients",
    default=None,
    metavar="N|FRACTION",
    help="Hold out whole patients (a count like 2, or a fraction like 0.2) into a second "
    "archive next to the output (data.zip -> data-holdout.zip) that training never sees. "
    "Needs prepare's manifest.csv (patient keys).",
)
@click.option(
    "--holdout-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for choosing the held-out patients (recorded in dataset.json).",
)
@click.option(
    "--masks",
    is_flag=True,
    help="Pair each image with its mask from `mrisynth prepare --masks`: one 2-channel PNG "
    "(grey + alpha: the image, then label l at grey level round(l*255/(K-1))); images "
    "without a usable mask are left out and listed.",
)
def command(
    source: Path,
    output: Path,
    label: str,
    named: str | None,
    holdout_patients: str | None,
    holdout_seed: int,
    masks: bool,
) -> None:
    """Pack SOURCE (a folder of PNGs, normally `mrisynth prepare`'s output, or an archive made
    by NVIDIA's dataset_tool.py) into a training archive at --output.

    The archive holds the PNGs byte for byte, dataset.json with labels in NVIDIA's convention
    ({"labels": [[name, label], ...]} or null) and prepare's manifest.csv. Every image is
    checked: 8-bit, 1 or 3 channels, square, power-of-two side, all the same size. Archives
    are untrusted input: unsafe member names (absolute, '..', links, duplicates), oversize
    members and malformed dataset.json are refused with a reason.
    """
    from mrisynth.data.pack import pack_archive

    if label not in LABELS and not label.startswith("column:"):
        named_hint = (f"; for named classes use --labels {label}"  # one letter apart
                      if label.split(":")[0] in ("position", "sequence")
                      and label.replace(":", "").replace(",", "").isalnum() else "")
        raise click.BadParameter(
            f"choose one of {', '.join(LABELS)} or column:NAME{named_hint}", param_hint="--label"
        )
    res = pack_archive(
        source, output, label=label, holdout_patients=holdout_patients, holdout_seed=holdout_seed,
        labels=named, masks=masks,
    )
    patients = "" if res.num_patients is None else f", {res.num_patients} patient(s)"
    click.echo(
        f"packed {res.num_images} images ({res.resolution}x{res.resolution}, "
        f"{res.num_channels} channel(s), {res.labels}{patients}) into {res.path}\n"
        f"content hash {res.content_hash}"
        + ("" if res.has_manifest else " (no manifest.csv in the source)")
    )
    if masks:
        click.echo("paired: channel 0 image, channel 1 mask (labels and levels in dataset.json)")
    if res.left_out:
        click.echo(
            f"left out {len(res.left_out)} image(s) without a usable mask, e.g. {res.left_out[0]}",
            err=True,
        )
    if res.holdout is not None:
        click.echo(
            f"held out {res.holdout.num_patients} patient(s), {res.holdout.num_images} images "
            f"(seed {holdout_seed}) into {res.holdout.path}: training never sees them"
        )
