"""`mrisynth import-nvidia`: an NVIDIA stylegan2-ada-pytorch pickle -> a mrisynth snapshot."""

from __future__ import annotations

from pathlib import Path

import click

from mrisynth.cli.params import RegularFile
from mrisynth.errors import ConfigError


def _check_output(output: Path, snapshot: Path, force: bool) -> None:
    if output.suffix != ".safetensors":
        raise ConfigError(f"--output {output}: name it *.safetensors (a mrisynth snapshot)")
    for written in (output, output.with_suffix(".json")):  # the snapshot and its JSON copy
        if written.resolve() == snapshot.resolve():
            raise ConfigError(f"--output {output}: would overwrite the input {snapshot}; "
                              "choose another name")
    if output.is_dir():
        raise ConfigError(f"--output {output}: is a folder; give a file name")
    if output.exists() and not force:
        raise ConfigError(f"--output {output}: exists; choose another name or add --force")


@click.command("import-nvidia")
@click.argument("snapshot", type=RegularFile())
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Snapshot to write (*.safetensors, plus a .json copy of its state).",
)
@click.option("--force", is_flag=True, help="Replace an existing --output file.")
def command(snapshot: Path, output: Path, force: bool) -> None:
    """Convert NVIDIA's network-snapshot-*.pkl (or a bare generator pickle) without running
    any code from it; the result works with generate, metrics and train --resume."""
    from mrisynth import atomic
    from mrisynth.interop.nvidia_import import import_pickle, save_imported

    _check_output(output, snapshot, force)
    imported = import_pickle(snapshot)
    with atomic.output_errors(output, "--output"):
        written = save_imported(imported, output)
    cfg = imported.G.config
    nets = ", ".join(imported.source["networks"])
    click.echo(
        f"{written}: {cfg.img_resolution}px, {cfg.img_channels} channel(s), c_dim {cfg.c_dim}, "
        f"kimg {imported.kimg}; imported {nets}"
        + ("" if imported.augment_p is None else f" (augment p {imported.augment_p:.3f})")
    )
