"""`mrisynth phantom`: write a synthetic abdominal MRI study tree (CHAOS-like DICOM)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mrisynth.errors import ConfigError

SMALL_MATRICES = (64, 72, 80)
SMALL_SLICES = (8, 12)


MAX_MATRIX = 1024  # pixels per side; CHAOS is 256-320
MAX_SLICES = 512  # per patient
LAYOUT = "Train_Sets"  # the only entry of a phantom tree's root


def _matrix_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ConfigError(f"--matrix must be comma-separated integers, got '{text}'") from None
    if not sizes or not all(16 <= v <= MAX_MATRIX for v in sizes):
        raise ConfigError(f"--matrix {text}: each size must be in 16..{MAX_MATRIX}")
    return sizes


def _slice_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        rng = int(lo), int(hi or lo)
    except ValueError:
        raise ConfigError(f"--slices must be N or MIN-MAX, got '{text}'") from None
    if not 1 <= rng[0] <= rng[1] <= MAX_SLICES:
        raise ConfigError(f"--slices {text}: need 1 <= MIN <= MAX <= {MAX_SLICES}")
    return rng


def _check_output(output: Path) -> None:
    """A new or empty folder, or an earlier phantom tree (which --patients extends): files are
    never mixed into someone else's folder."""
    if output.is_dir() and any(p.name != LAYOUT for p in output.iterdir()):
        raise ConfigError(
            f"{output}: folder is not empty and is not a phantom tree (only {LAYOUT}/); "
            "choose a new folder"
        )


@click.command("phantom")
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--patients",
    default=8,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Number of patients (1-1000).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(0, 2**32 - 1),
    help="Random seed (same seed, same files).",
)
@click.option(
    "--matrix",
    default="256,288,320",
    show_default=True,
    help="Matrix sizes to draw from per patient (comma-separated).",
)
@click.option(
    "--slices", default="26-50", show_default=True, help="Slices per patient: N or MIN-MAX."
)
@click.option("--t2spir/--no-t2spir", default=True, show_default=True, help="Also write T2 SPIR.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes writing patients in parallel (same files as 1).",
)
@click.option(
    "--small",
    is_flag=True,
    help=f"Fast tiny tree for tests and quick demos: matrices {SMALL_MATRICES}, "
    f"{SMALL_SLICES[0]}-{SMALL_SLICES[1]} slices (overrides --matrix/--slices).",
)
def command(
    output: Path,
    patients: int,
    seed: int,
    matrix: str,
    slices: str,
    t2spir: bool,
    workers: int,
    small: bool,
) -> None:
    """Write a synthetic abdominal MRI phantom to OUTPUT as a CHAOS-like DICOM tree.

    OUTPUT/Train_Sets/MR/<id>/T1DUAL/DICOM_anon/{InPhase,OutPhase}/*.dcm with CHAOS-coded masks
    in T1DUAL/Ground (and T2SPIR/ when --t2spir). 12-bit MR images with real geometry tags; the
    identifiers are fake and the files are marked SyntheticData=YES. Deterministic per seed.
    """
    from mrisynth.data.phantom_dicom import write_phantom_tree

    sizes = SMALL_MATRICES if small else _matrix_sizes(matrix)
    num_slices = SMALL_SLICES if small else _slice_range(slices)
    _check_output(output)
    start = time.perf_counter()
    written = write_phantom_tree(
        output,
        patients,
        seed,
        matrix_sizes=sizes,
        num_slices=num_slices,
        t2spir=t2spir,
        workers=workers,
    )
    total = sum(p.num_slices for p in written)
    click.echo(
        f"wrote {len(written)} patients, {total} slices per echo "
        f"(matrices {sorted({p.matrix for p in written})}) to {output} "
        f"in {time.perf_counter() - start:.1f} s"
    )
