"""Where a study's images come from, and the one encoding every image gets.

Real images: a training archive or prepared folder (ZIP or folder of PNGs), sampled
patient-balanced with the manifest's patient keys (round-robin over patients in random order,
so no patient dominates). Synthetic images: a folder of PNGs (e.g. `mrisynth generate`'s) or a
snapshot / run folder, from which they are generated. Every image is decoded through the checked
PNG path and re-encoded by `mrisynth.imaging.encode_png`: same encoder, 8-bit, no metadata
chunks (IHDR, IDAT, IEND only), so the file says nothing about where it came from.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrisynth.errors import ConfigError, InputError
from mrisynth.generate.output_folder import INFO_NAME, PLAN_NAME

log = logging.getLogger(__name__)

GENERATED_NAME = re.compile(r"seed\d+\.png")  # `mrisynth generate`'s images (not grid.png)
MAX_IMAGES = 10_000  # per class: a reader could not answer more anyway


@dataclass(frozen=True)
class SourceImage:
    """One image of the study before encoding: pixels and where it came from (organiser only)."""

    pixels: np.ndarray  # uint8 [C, H, W]
    truth: str  # real | synthetic
    source: str  # archive member name or `seed<N>`
    patient_key: str | None = None


def balanced_indices(keys: list[str], n: int, rng: np.random.Generator) -> list[int]:
    """`n` distinct indices spread evenly over patients (`keys[i]` = image i's patient).

    Each round takes one not-yet-used image from every patient that still has one, patients
    in a fresh random order, so counts per patient differ by at most one.
    """
    if n > len(keys):
        raise InputError(f"only {len(keys)} real images available, {n} requested")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    pools = [[int(i) for i in rng.permutation(g)] for g in groups.values()]
    chosen: list[int] = []
    while len(chosen) < n:
        for p in rng.permutation(len(pools)):
            if pools[p] and len(chosen) < n:
                chosen.append(pools[p].pop())
    return chosen


def real_images(path: Path, n: int, rng: np.random.Generator) -> list[SourceImage]:
    """`n` real images from an archive/folder, patient-balanced when it has patient keys."""
    from mrisynth.data.archive import ImageArchive

    archive = ImageArchive(path)
    if n > len(archive):
        raise InputError(f"--real {path}: holds {len(archive)} images, {n} requested")
    keys = archive.patient_keys
    if keys is None:
        log.warning("%s: no patient keys (manifest.csv); real images sampled per image", path)
    picked = balanced_indices(keys or [str(i) for i in range(len(archive))], n, rng)
    return [
        SourceImage(archive[i], "real", archive.names[i], keys[i] if keys else None) for i in picked
    ]


def synthetic_images(
    path: Path, n: int, rng: np.random.Generator, device: str
) -> list[SourceImage]:
    """`n` synthetic images: read from a folder of PNGs, or generated from a snapshot/run."""
    if path.is_dir() and not _is_run(path):
        return _from_folder(path, n, rng)
    if not path.is_dir() and not path.is_file():  # a FIFO would block the snapshot reader
        raise InputError(f"--synthetic {path}: neither a folder nor a snapshot file")
    return _from_snapshot(path, n, rng, device)


def _is_run(path: Path) -> bool:
    return any(path.glob("network-snapshot-*.safetensors"))


def _from_folder(path: Path, n: int, rng: np.random.Generator) -> list[SourceImage]:
    from mrisynth.data.archive import list_image_names
    from mrisynth.data.source_kind import describe
    from mrisynth.generate.folder_files import listed_images
    from mrisynth.generate.images import read_png

    _refuse_nvidia_run(path)
    what = describe(path)  # a DICOM tree or a folder of runs: their PNGs are masks, grids
    if what is not None:
        raise InputError(f"--synthetic {path}: {what.split(';')[0]}; give generated PNGs "
                         "(`mrisynth generate`), a snapshot or a run folder holding "
                         "network-snapshot-*.safetensors")  # fmt: skip
    if (path / PLAN_NAME).exists():
        raise InputError(
            f"--synthetic {path}: an unfinished `mrisynth generate` output ({PLAN_NAME}); "
            "finish it by running the same generate command again"
        )
    listed = listed_images(path, "--synthetic")  # generate's folder: what its manifest lists
    if listed is not None:
        names = listed
    else:
        names = _without_masks(path, list_image_names(path))
        if (path / INFO_NAME).is_file():  # generate's, manifest lost: grid is no sample
            names = [m for m in names if GENERATED_NAME.fullmatch(m)]
    if n > len(names):
        raise InputError(f"--synthetic {path}: holds {len(names)} PNG images, {n} requested")
    picked = sorted(int(j) for j in rng.choice(len(names), size=n, replace=False))
    return [SourceImage(read_png(path / names[j]), "synthetic", names[j]) for j in picked]


def _refuse_nvidia_run(path: Path) -> None:
    """NVIDIA's stylegan2-ada-pytorch run folder (network-snapshot-*.pkl): its pickles must be
    converted before anything here can sample them, so say how instead of 'a run folder'."""
    pickles = sorted(path.glob("network-snapshot-*.pkl"))
    if not pickles:
        return
    name = pickles[-1].name if pickles[-1].name.isprintable() else "network-snapshot-NNNNNN.pkl"
    raise InputError(
        f"--synthetic {path}: looks like an NVIDIA stylegan2-ada-pytorch run folder "
        f"({len(pickles)} network-snapshot-*.pkl); convert a snapshot first: mrisynth "
        f"import-nvidia {path / name} -o SNAPSHOT.safetensors, then give --synthetic "
        "SNAPSHOT.safetensors (or generate images with `mrisynth generate` and give that folder)"
    )


def _without_masks(path: Path, names: list[str]) -> list[str]:
    """Label masks are no study images: those a manifest.csv names in its mask_file column
    (paired generate output, copied without its generation.json) and a prepare-style masks/."""
    from mrisynth.generate.folder_files import read_manifest  # generate's one reader: bounded

    if (path / "masks" / "labels.json").is_file():
        names = [n for n in names if not n.startswith("masks/")]
    manifest = read_manifest(path, "--synthetic")  # unreadable: an Error, not masks shown
    masks = manifest.mask_names() if manifest is not None else set()
    return [n for n in names if n not in masks]


def _from_snapshot(path: Path, n: int, rng: np.random.Generator, device: str) -> list[SourceImage]:
    from mrisynth.devices import resolve_device
    from mrisynth.generate.sampling import SamplingOptions, sample_images
    from mrisynth.training.checkpoint import load_generator

    dev = resolve_device(device)
    G, info = load_generator(path, device=str(dev))
    if int(G.c_dim) > 0:  # which classes, in what mix, is the organiser's choice, not ours
        raise ConfigError(
            f"--synthetic {path}: a conditional generator ({int(G.c_dim)} classes); generate "
            "the images first with `mrisynth generate --class K` (classes mixed as in the real "
            "images) and give that folder as --synthetic"
        )
    seeds = sorted(int(s) for s in rng.choice(2**31 - 1, size=n, replace=False))
    log.info("generating %d images from %s", n, info.path)
    return [
        SourceImage(img, "synthetic", f"seed{seed}")
        for seed, img in sample_images(G, seeds, SamplingOptions(), dev)
    ]


def as_shown(images: list[SourceImage]) -> list[SourceImage]:
    """What a reader sees of each image: a paired image + mask (2 channels, `dataset --masks`
    or a paired generator) is shown as its image channel only; the mask would otherwise be the
    PNG's alpha. Every study image passes here before it is checked and encoded."""
    return [
        dataclasses.replace(im, pixels=im.pixels[:1]) if im.pixels.shape[0] == 2 else im
        for im in images
    ]


def check_same_shape(images: list[SourceImage]) -> tuple[int, int, int]:
    """Real and synthetic images must share channels and size: a reader must not be able to
    tell them apart by format. Rescaling one side would blur it, so a mismatch is refused."""
    shapes = {(im.truth, im.pixels.shape) for im in images}
    by_shape = {s for _, s in shapes}
    if len(by_shape) != 1:
        described = ", ".join(f"{t} {'x'.join(map(str, s))}" for t, s in sorted(shapes))
        raise InputError(
            f"images differ in shape (CxHxW: {described}); give real and synthetic images of "
            "the same size and channels (e.g. `mrisynth generate` from a model trained on them)"
        )
    return next(iter(by_shape))


def encode(pixels: np.ndarray) -> bytes:
    """The one encoding of every study image (lossless 8-bit PNG, no metadata), stored without
    compression: a compressed file's length follows the image's noise (the demo's generated
    images compressed to 850-903 bytes, its real ones to 693-801), a tell any reader sees in
    the browser's network panel without judging the image. Uncompressed, every image of one
    shape has the same length."""
    from mrisynth.imaging import encode_png

    return encode_png(np.ascontiguousarray(pixels, dtype=np.uint8), compression=0)
