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
def command(source: Path, output: Path, label: str) -> None:
    """Pack SOURCE (a folder of PNGs, normally `mrisynth prepare`'s output, or an archive made
    by NVIDIA's dataset_tool.py) into a training archive at --output.

    The archive holds the PNGs byte for byte, dataset.json with labels in NVIDIA's convention
    ({"labels": [[name, label], ...]} or null) and prepare's manifest.csv. Every image is
    checked: 8-bit, 1 or 3 channels, square, power-of-two side, all the same size.
    """
    from mrisynth.data.pack import pack_archive

    if label not in LABELS and not label.startswith("column:"):
        raise click.BadParameter(
            f"choose one of {', '.join(LABELS)} or column:NAME", param_hint="--label"
        )
    res = pack_archive(source, output, label=label)
    click.echo(
        f"packed {res.num_images} images ({res.resolution}x{res.resolution}, "
        f"{res.num_channels} channel(s), {res.labels}) into {res.path}\n"
        f"content hash {res.content_hash}"
        + ("" if res.has_manifest else " (no manifest.csv in the source)")
    )
