"""`mrisynth export`: a generator as an ONNX or TorchScript file that runs without mrisynth."""

from __future__ import annotations

import math
from pathlib import Path

import click

from mrisynth.cli.params import NetworkPath
from mrisynth.errors import ConfigError


def parse_psi(text: str) -> float | None:
    """--truncation-psi: a number (fixed in the graph) or `input` (a graph input)."""
    if text.strip().lower() == "input":
        return None
    try:
        psi = float(text)
    except ValueError:
        raise ConfigError(f"--truncation-psi must be a number or 'input', got {text!r}") from None
    if not math.isfinite(psi) or abs(psi) > 100:
        raise ConfigError(f"--truncation-psi must be a finite number in [-100, 100], got {text!r}")
    return psi


def check_output(output: Path, force: bool) -> None:
    """Before any work: never replace a file unasked, and name a blocked folder plainly."""
    parent = output.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--output {output}: {parent} is a file, not a folder; "
                          "choose another output")
    if output.exists() and not force:
        raise ConfigError(f"--output {output}: exists; choose another name or add --force")


@click.command("export")
@click.option("--network", required=True, metavar="CHECKPOINT", type=NetworkPath(),
              help="Snapshot file (.safetensors) or run folder (its latest snapshot).")
@click.option("--format", "fmt", required=True, type=click.Choice(["onnx", "torchscript"]),
              help="onnx (runs with onnxruntime) or torchscript (runs with torch.jit.load).")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (e.g. generator.onnx or generator.pt).")
@click.option("--truncation-psi", "psi_text", default="1", show_default=True, metavar="PSI|input",
              help="Truncation fixed in the graph (1 = none), or 'input' for a psi [N] input.")
@click.option("--no-check", is_flag=True,
              help="Skip running the file against the PyTorch generator after writing it.")
@click.option("--force", is_flag=True, help="Replace an existing --output file.")
def command(network: Path, fmt: str, output: Path, psi_text: str, no_check: bool,
            force: bool) -> None:
    """Export the generator (mapping + truncation + synthesis, constant noise) as one file.

    Inputs: z float32 [N, z_dim] (z of a seed as `mrisynth generate` draws it:
    numpy RandomState(seed).randn), c float32 [N, c_dim] one-hot (conditional generators
    only), psi float32 [N] (with --truncation-psi input). Output: img float32 [N, C, H, W],
    roughly [-1, 1]; uint8 = clip(img * 127.5 + 128, 0, 255). Examples:

    \b
        mrisynth export --network runs/00000-tiny --format onnx --output g.onnx
        mrisynth export --network run.safetensors --format torchscript --output g.pt \\
            --truncation-psi input
    """
    from mrisynth.hashing import sha256_file
    from mrisynth.interop.export_model import check_export, export_generator
    from mrisynth.training.checkpoint import load_generator

    psi = parse_psi(psi_text)
    G, info = load_generator(network, device="cpu")
    snapshot = Path(info.path)
    if output.resolve() == snapshot.resolve():
        raise ConfigError(f"--output {output} is the snapshot itself; choose another file")
    check_output(output, force)
    meta = {"snapshot": snapshot.name, "snapshot_sha256": sha256_file(snapshot), "kimg": info.kimg}
    result = export_generator(G, output, fmt, psi, meta)
    inputs = ", ".join(result["inputs"])
    click.echo(f"Wrote {output} ({fmt}, {result['bytes'] / 2**20:.1f} MiB, inputs {inputs}, "
               f"output img) in {result['export_seconds']:.1f} s")  # fmt: skip
    if not no_check:
        check = check_export(G, output, fmt, psi)
        click.echo(f"Check against PyTorch on 4 latents: max |diff| {check['max_abs_diff']:.2g}, "
                   f"{check['ms_per_image']:.1f} ms/image ({check['ms_per_image_torch']:.1f} "
                   "ms/image in PyTorch)")  # fmt: skip
        if not check["max_abs_diff"] <= 1e-3:
            raise ConfigError(f"{output}: the exported model differs from the PyTorch generator "
                              f"by {check['max_abs_diff']:.3g}; please report this")  # fmt: skip
