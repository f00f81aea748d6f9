"""`mrisynth downstream`: does synthetic data help a segmenter? Train-on-synthetic, test-on-real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mrisynth.errors import ConfigError


def run_downstream(
    real: str | Path,
    synthetic: str | Path,
    test: str | Path | None,
    outdir: str | Path,
    opts: Any,
    device: str = "auto",
    echo: Any = click.echo,
) -> dict[str, Any]:
    """Load the three sets, run the study into `outdir`, print its table; returns the JSON."""
    from mrisynth.data.holdout import holdout_path
    from mrisynth.devices import resolve_device
    from mrisynth.downstream.leakage import check_generator
    from mrisynth.downstream.pairs import load_archive, load_generated
    from mrisynth.downstream.study import RESULT_NAME, run_study

    opts.check()
    dev = resolve_device(device)
    given = test
    test = holdout_path(real) if test is None else test
    _no_pattern(Path(outdir))  # where results go is checked before any input is read
    _outside_inputs(Path(outdir), {"--real": real, "--synthetic": synthetic, "--test": test})
    real_set = load_archive(real, "--real")  # a wrong --real is named before its holdout is
    if given is None and not Path(test).exists():
        raise ConfigError(
            f"--test not given and {test} (the holdout of --real) does not exist; pack with "
            "`mrisynth dataset --masks --holdout-patients N` or pass --test"
        )
    test_set = load_archive(test, "--test")
    num_labels = len(real_set.label_names or ())
    synthetic_set = load_generated(synthetic, num_labels)
    generator = check_generator(Path(synthetic), Path(real), Path(test), test_set)
    echo(f"generator's training data: {generator.detail}" if generator.checked
         else f"Warning: {generator.detail}")  # fmt: skip
    echo(
        f"real {len(real_set)} slices, synthetic {len(synthetic_set)} "
        f"({len(synthetic_set.skipped)} skipped{_where(synthetic_set)}), test "
        f"{len(test_set)} slices; {opts.steps} steps x {opts.batch_size} slices per unit on {dev}"
    )
    doc = run_study(outdir, real_set, synthetic_set, test_set, opts, dev, echo=echo,
                    generator=generator.record())  # fmt: skip
    for line in table_lines(doc):
        echo(line)
    echo(f"Results: {Path(outdir) / RESULT_NAME}")
    return doc


def _where(synthetic_set) -> str:
    """Where the reasons of skipped pairs are listed (none: nothing to say)."""
    from mrisynth.downstream.study import RESULT_NAME

    return f", reasons in {RESULT_NAME} data.synthetic.skipped" if synthetic_set.skipped else ""


def _no_pattern(outdir: Path) -> None:
    """`--outdir runs/00000-*/downstream` before that folder exists reaches us unexpanded and
    would create a folder named with a '*' (which `mrisynth report runs/00000-*` then trips on)."""
    if not outdir.exists() and any(c in str(outdir) for c in "*?["):
        raise ConfigError(
            f"--outdir {outdir}: holds a shell pattern ('*', '?' or '[') that matched no folder; "
            "give the run folder's full name, e.g. RUN=$(ls -d runs/00000-paired-*)"
        )


def _outside_inputs(outdir: Path, inputs: dict[str, Any]) -> None:
    """Inputs are never modified: the results may not land in an input folder."""
    for option, path in inputs.items():
        if Path(path).is_dir() and outdir.resolve().is_relative_to(Path(path).resolve()):
            raise ConfigError(
                f"--outdir {outdir} lies inside {option} {path}; write the results elsewhere"
            )


def table_lines(doc: dict[str, Any]) -> list[str]:
    """The Dice table, the paired test and the HD95 table (when measured) as plain text."""
    from mrisynth.report.downstream import check_document, dice_rows, hd95_rows, test_sentence

    checked = check_document(doc)
    lines = [*_aligned(*dice_rows(checked)), test_sentence(checked)]
    hd95 = hd95_rows(checked)
    return lines if hd95 is None else [*lines, *_aligned(*hd95)]


def _aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]


@click.command("downstream")
@click.option(
    "--real",
    required=True,
    type=click.Path(exists=True),
    help="Paired training archive (`mrisynth dataset --masks`).",
)
@click.option(
    "--synthetic",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of generated image + mask pairs (`mrisynth generate` on a paired model).",
)
@click.option(
    "--test",
    type=click.Path(exists=True),
    default=None,
    help="Paired archive of held-out real patients (default: the holdout beside --real).",
)
@click.option(
    "--outdir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for downstream.json, downstream.png and per-unit results (a re-run resumes).",
)
@click.option(
    "--seeds",
    default="0-2",
    show_default=True,
    help="Training seeds: 0-2 or 0,5,7 (one network per arm and seed).",
)
@click.option(
    "--steps",
    type=int,
    default=300,
    show_default=True,
    help="Optimiser steps per network (the same for every arm).",
)
@click.option(
    "--batch-size",
    type=int,
    default=16,
    show_default=True,
    help="Slices per step (the same for every arm).",
)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option(
    "--ratio",
    type=float,
    default=1.0,
    show_default=True,
    help="Synthetic slices per real slice in each batch of the real+synthetic arm.",
)
@click.option(
    "--real-fractions",
    default=None,
    help="Also train real and real+synthetic on shares of the real slices: 0.1,0.25,0.5,1.",
)
@click.option(
    "--hd95/--no-hd95",
    default=True,
    show_default=True,
    help="Also the 95 % Hausdorff distance (pixels).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def command(
    real: str,
    synthetic: str,
    test: str | None,
    outdir: str,
    seeds: str,
    steps: int,
    batch_size: int,
    lr: float,
    ratio: float,
    real_fractions: str | None,
    hd95: bool,
    device: str,
) -> None:
    """Train the same MONAI U-Net on real, synthetic and real + synthetic slices (identical
    budgets, several seeds) and score per-organ Dice on held-out real patients.

    No arm may see a held-out patient: --test shares no patient with --real, no training slice
    equals a --test slice, and the generator's own training archive (found through its run's
    records) holds none of them; when that archive cannot be found, a Warning says so.

    \b
        mrisynth downstream --real data.zip --synthetic synth --test data-holdout.zip --outdir ds
        mrisynth downstream --real data.zip --synthetic synth --outdir ds --seeds 0-4
        mrisynth downstream ... --real-fractions 0.1,0.25,0.5,1   # the replacement curve
    """
    from mrisynth.downstream.options import MAX_SEEDS, DownstreamOptions, parse_fractions
    from mrisynth.generate.seeds import parse_seeds

    seed_list = parse_seeds(seeds, MAX_SEEDS, "seeds (one network per arm and seed)")
    opts = DownstreamOptions(
        seeds=tuple(seed_list),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        ratio=ratio,
        real_fractions=parse_fractions(real_fractions) if real_fractions else (),
        hd95=hd95,
    )
    run_downstream(real, synthetic, test, outdir, opts, device)
