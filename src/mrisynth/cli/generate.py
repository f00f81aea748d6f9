"""`mrisynth generate`: synthetic images from a trained generator as PNG, DICOM and a grid."""

from __future__ import annotations

from pathlib import Path

import click

from mrisynth.cli.params import NetworkPath
from mrisynth.errors import ConfigError


def write_generation(
    network: str | Path,
    outdir: str | Path,
    seeds: list[int],
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    class_idx: int | None = None,
    batch_size: int = 16,
    class_request: tuple[float | None, str | None] = (None, None),
    formats: tuple[str, ...] = ("png",),
    grid: bool = False,
    grid_cols: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """Load the generator, sample the seeds and write files, generation.json and manifest.csv.

    The folder gets a plan first and the manifest last (see generate/output_folder.py), so a
    run stopped by a kill or a full disk is resumed by the same command. Returns the generation
    record (what generation.json holds). Used by the CLI and the demo.
    """
    from tqdm import tqdm

    from mrisynth.devices import resolve_device
    from mrisynth.generate.classes import class_name, requested_class, require_class
    from mrisynth.generate.dicom import SeriesInfo
    from mrisynth.generate.export import (
        GRID_NAME,
        ExportPlan,
        generation_info,
        grid_file,
        image_files,
        manifest_csv,
        manifest_rows,
    )
    from mrisynth.generate.folder_files import run_link
    from mrisynth.generate.masks import generator_mask_spec
    from mrisynth.generate.output_folder import OutputFolder
    from mrisynth.generate.sampling import SamplingOptions, sample_images
    from mrisynth.generate.seeds import format_seeds
    from mrisynth.hashing import sha256_file
    from mrisynth.training.checkpoint import load_generator

    opts = SamplingOptions(
        truncation_psi=truncation_psi,
        truncation_cutoff=truncation_cutoff,
        noise_mode=noise_mode,
        class_idx=class_idx,
        batch_size=batch_size,
    )
    opts.check_values()
    dev = resolve_device(device)
    G, info = load_generator(network, device=str(dev))
    if class_request != (None, None):  # --position / --label: by the names training recorded
        opts = requested_class(opts, class_request, info.path, int(G.c_dim))
        class_idx = opts.class_idx
    require_class(opts.class_idx, Path(info.path), int(G.c_dim))
    opts.check(int(G.c_dim))
    snapshot = Path(info.path)
    sha = sha256_file(snapshot)
    seeds_text = format_seeds(seeds)
    series = SeriesInfo(
        model_sha256=sha,
        snapshot_name=snapshot.name,
        kimg=info.kimg,
        truncation_psi=truncation_psi,
        noise_mode=noise_mode,
        class_idx=class_idx,
        seeds_text=seeds_text,
    )
    plan = ExportPlan(
        formats=formats,
        grid=grid,
        grid_cols=grid_cols,
        series=series if "dicom" in formats else None,
        mask=generator_mask_spec(info.run_dir, int(G.img_channels)),  # paired image + mask
    )
    plan.check()
    record = generation_info(
        str(network), snapshot.name, sha, info.kimg, seeds_text, len(seeds), opts, plan
    )
    record["class_name"] = class_name(snapshot, int(G.c_dim), opts.class_idx)
    record.update(run_link(network, outdir))  # downstream finds the run (its training data)
    rows_of = {seed: manifest_rows(seed, plan, opts) for seed in seeds}
    rows = [row for seed in seeds for row in rows_of[seed]]
    files = [f for r in rows for f in (r["file"], r.get("mask_file")) if f]
    folder = OutputFolder(outdir, record, files + ([GRID_NAME] * grid))
    done = folder.start()
    grid_images = []
    with tqdm(total=len(seeds), desc="generate", unit="img", disable=not progress) as bar:
        for start in range(0, len(seeds), batch_size):  # batch-aligned, as a full run samples
            batch = seeds[start : start + batch_size]
            names = {f for seed in batch for r in rows_of[seed] for f in (r["file"],
                                                                          r.get("mask_file")) if f}
            if not grid and names <= done:
                bar.update(len(batch))  # written by the interrupted run
                continue
            for offset, (seed, img) in enumerate(sample_images(G, batch, opts, dev)):
                for item in image_files(seed, img, start + offset + 1, plan, opts):
                    folder.write(item.name, item.data)
                if grid:
                    grid_images.append(img)
            bar.update(len(batch))
    if grid:
        item = grid_file(grid_images, grid_cols)
        folder.write(item.name, item.data)
    folder.finish(manifest_csv(rows))
    return record


@click.command("generate")
@click.option(
    "--network",
    "network",
    required=True,
    type=NetworkPath(),
    metavar="CHECKPOINT",
    help="Snapshot file (.safetensors) or run folder (its latest snapshot).",
)
@click.option(
    "--outdir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the images, manifest.csv and generation.json.",
)
@click.option("--seeds", help="Seeds, lists and inclusive ranges: 0-99 or 1,5,7-9. One image each.")
@click.option("--num", type=int, help="Alternative to --seeds: N images from seeds 0..N-1.")
@click.option(
    "--trunc",
    "truncation_psi",
    type=float,
    default=1.0,
    show_default=True,
    help="Truncation psi (1 = none; 0 = the average image for every seed).",
)
@click.option(
    "--trunc-cutoff",
    "truncation_cutoff",
    type=int,
    default=None,
    help="Truncate only the first N ws layers (default: all).",
)
@click.option(
    "--noise-mode",
    type=click.Choice(["const", "random", "none"]),
    default="const",
    show_default=True,
    help="Noise inputs; const keeps each seed's image reproducible.",
)
@click.option(
    "--class", "class_idx", type=int, default=None, help="Class index for conditional generators."
)
@click.option(
    "--position",
    type=float,
    default=None,
    help="Slice level for position-conditional models: 0 (top) .. 1 (bottom of the abdomen).",
)
@click.option(
    "--label",
    default=None,
    help="Class or sequence name for models trained on `dataset --labels` (e.g. t1-opp).",
)
@click.option(
    "--batch",
    "batch_size",
    type=int,
    default=16,
    show_default=True,
    help="Images per forward pass.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA if present), cpu, cuda, cuda:1, ...",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["png", "dicom"]),
    multiple=True,
    help="Output format, repeatable (default png): DICOM = Secondary Capture marked synthetic.",
)
@click.option("--grid", is_flag=True, help="Also write all images as one grid.png.")
@click.option("--grid-cols", type=int, default=None, help="Columns of the grid (default: square).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def command(
    network: str,
    outdir: str,
    seeds: str | None,
    num: int | None,
    truncation_psi: float,
    truncation_cutoff: int | None,
    noise_mode: str,
    class_idx: int | None,
    position: float | None,
    label: str | None,
    batch_size: int,
    device: str,
    formats: tuple[str, ...],
    grid: bool,
    grid_cols: int | None,
    no_progress: bool,
) -> None:
    """Generate synthetic images from a trained generator.

    Each seed gives one latent z (numpy RandomState(seed)), so the same seed gives the same
    image on every machine. Examples:

    \b
        mrisynth generate --network runs/00000-tiny --outdir out --seeds 0-31 --grid
        mrisynth generate --network run.safetensors --outdir out --num 100 --format dicom
    """
    from mrisynth.generate.seeds import parse_seeds, seeds_for_count

    if (seeds is None) == (num is None):
        raise ConfigError("give exactly one of --seeds (e.g. 0-99) or --num (e.g. 100)")
    seed_list = parse_seeds(seeds) if seeds is not None else seeds_for_count(num or 0)
    record = write_generation(
        network,
        outdir,
        seed_list,
        truncation_psi=truncation_psi,
        truncation_cutoff=truncation_cutoff,
        noise_mode=noise_mode,
        class_idx=class_idx,
        batch_size=batch_size,
        class_request=(position, label),
        formats=formats or ("png",),
        grid=grid,
        grid_cols=grid_cols,
        device=device,
        progress=not no_progress,
    )
    from mrisynth.generate.masks import masks_written
    from mrisynth.training.checkpoint import snapshot_nimg

    what = " + ".join(record["formats"]) + (" + grid" if grid else "")
    nimg = snapshot_nimg(record["snapshot"])  # the name keeps sub-kimg: 0.2, not 0
    kimg = f"{nimg / 1000:g}" if nimg is not None else record["kimg"]
    click.echo(
        f"Wrote {record['num_images']} synthetic images ({what}){masks_written(record)} from "
        f"{record['snapshot']} (kimg {kimg}) to {outdir}"
        + (f", class {record['sampling']['class_idx']} ({record['class_name']})"
           if record.get("class_name") else "")
    )
