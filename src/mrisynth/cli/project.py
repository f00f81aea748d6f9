"""`mrisynth project`: find the latent that reproduces real images (StyleGAN2's projector)."""

from __future__ import annotations

from pathlib import Path

import click

from mrisynth.cli.params import NetworkPath


@click.command("project")
@click.option("--network", required=True, metavar="CHECKPOINT", type=NetworkPath(),
              help="Snapshot file (.safetensors) or run folder (its latest snapshot).")
@click.option("--target", "targets", required=True, multiple=True, metavar="PNG|FOLDER|ZIP",
              type=click.Path(exists=True, path_type=Path),
              help="Images to project, repeatable: PNG files, folders or training archives.")
@click.option("--outdir", required=True, type=click.Path(path_type=Path),
              help="Folder for the results (new, empty or an earlier projection to resume).")
@click.option("--holdout", "holdout", multiple=True, metavar="PNG|FOLDER|ZIP",
              type=click.Path(exists=True, path_type=Path),
              help="Held-out images: compare their projection errors with the targets'.")
@click.option("--compare", is_flag=True,
              help="Compare with the held-out archive beside the target (data-holdout.zip).")
@click.option("--num", type=int, default=None,
              help="At most N images per source, spread evenly (default: all).")
@click.option("--steps", type=int, default=1000, show_default=True, help="Optimisation steps.")
@click.option("--w-plus", is_flag=True, help="Optimise one w per layer (w+) instead of one w.")
@click.option("--loss", type=click.Choice(["auto", "pixel", "vgg"]), default="auto",
              show_default=True,
              help="vgg: NVIDIA's VGG16 LPIPS features; pixel: MSE + (1 - MS-SSIM); auto: vgg "
                   "when the detector file is present.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise inits.")
@click.option("--class", "class_idx", type=int, default=None,
              help="Class index for conditional generators.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--detector-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding vgg16.pt (default: the search order of `mrisynth weights`).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def command(network: Path, targets: tuple[Path, ...], outdir: Path, holdout: tuple[Path, ...],
            compare: bool, num: int | None, steps: int, w_plus: bool, loss: str, seed: int,
            class_idx: int | None, device: str, detector_dir: str | None,
            no_progress: bool) -> None:  # fmt: skip
    """Project real images into a generator's latent space (w or w+ and noise maps).

    Per image: projected.png, latent.safetensors, the loss curve (loss.csv, loss.png) and
    summary.json; for all: projection.csv and projection.json. With --holdout or --compare,
    the training and held-out errors are compared (Mann-Whitney U): training images that
    project much more closely than unseen ones are a sign of memorisation. Examples:

    \b
        mrisynth project --network runs/00000-tiny --target slice.png --outdir proj
        mrisynth project --network runs/00000-tiny --target data.zip --compare --num 50 \\
            --outdir proj-compare
    """
    from mrisynth.projection.batch import ProjectJob, run_projection
    from mrisynth.projection.projector import ProjectionOptions

    job = ProjectJob(network=network, outdir=outdir, targets=targets, holdout=holdout,
                     compare=compare, num=num, options=ProjectionOptions(num_steps=steps,
                     w_plus=w_plus, seed=seed), loss=loss, class_idx=class_idx, device=device,
                     detector_dir=detector_dir)  # fmt: skip
    record = run_projection(job, progress=not no_progress)
    done, skipped = record["targets"], record["skipped"]
    if not done:
        from mrisynth.errors import InputError

        first = _named(skipped[0]) if skipped else "no images found"
        raise InputError(f"no target could be projected ({len(skipped)} skipped; first: "
                         f"{first}); see {outdir / 'projection.csv'}")  # fmt: skip
    click.echo(f"Projected {len(done)} image(s) with the {record['loss']} loss into {outdir}"
               + (f"; skipped {len(skipped)} (see projection.csv)" if skipped else ""))
    for row in skipped[:5]:
        click.echo(f"  skipped {row['target']}: {row['problem']}", err=True)
    cmp = record.get("comparison")
    if cmp:
        tr, ho = cmp["train"], cmp["holdout"]
        click.echo(f"RMSE (grey levels) training median {tr['median']:.2f} (n={tr['n']}), "
                   f"held-out median {ho['median']:.2f} (n={ho['n']}): {cmp['verdict']}")


def _named(row: dict) -> str:
    """A skipped target's reason, naming the image (read errors name it already)."""
    name, problem = str(row["target"]), str(row["problem"])
    return problem if problem.startswith(name.split(":")[0]) else f"{name}: {problem}"
