"""`reader-study create`: a study folder, built beside its destination and renamed into place.

STUDY/
  study.sqlite   images (truth, source), readers (hashed tokens), per-reader items, answers
  images/        <random hex>.png, one per image, identically encoded
  links.txt      the secret link path of every reader and of the organiser (mode 0600):
                 hand each reader their own, then keep or delete this file
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mrisynth import atomic
from mrisynth.errors import ConfigError
from mrisynth.readerstudy import store
from mrisynth.readerstudy.provenance import check_sources
from mrisynth.readerstudy.sources import (
    MAX_IMAGES,
    SourceImage,
    as_shown,
    check_same_shape,
    encode,
    real_images,
    synthetic_images,
)
from mrisynth.readerstudy.tells import describe, find_tells

LINKS_NAME = "links.txt"
IMAGE_NAME = re.compile(r"[0-9a-f]{32}\.png")  # what _store_images names a study image
IMAGES_DIR = "images"
MAX_READERS = 100


@dataclass(frozen=True)
class StudyPlan:
    real: Path
    synthetic: Path
    n_real: int
    n_synthetic: int
    readers: int
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        for name, n in (("--n-real", self.n_real), ("--n-synthetic", self.n_synthetic)):
            if not 1 <= n <= MAX_IMAGES:
                raise ConfigError(f"{name} {n}: must be in 1..{MAX_IMAGES}")
        if not 1 <= self.readers <= MAX_READERS:
            raise ConfigError(f"--readers {self.readers}: must be in 1..{MAX_READERS}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed {self.seed}: must be in 0..2^32-1")


@dataclass(frozen=True)
class Links:
    readers: dict[str, str]  # reader name -> link path (/r/TOKEN)
    organiser: str  # /o/TOKEN
    tells: tuple[str, ...] = ()  # pixel statistics that separate the classes (tells.py)


def check_outdir(outdir: Path, inputs: list[Path]) -> None:
    """A new study goes into a new or empty folder, never into or over an input."""
    out = outdir.resolve()
    for p in inputs:
        rp = p.resolve()
        if out == rp or out.is_relative_to(rp) or rp.is_relative_to(out):
            raise ConfigError(f"--outdir {outdir}: overlaps the input {p}; choose another folder")
    if outdir.is_symlink():  # the study would land wherever the link points
        raise ConfigError(f"--outdir {outdir}: a link; give a real folder path")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--outdir {outdir}: exists and is not a folder; choose another")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"--outdir {outdir}: not empty (a study is never overwritten: its answers would be "
            "lost); choose a new folder"
        )


def create_study(plan: StudyPlan, outdir: Path) -> Links:
    """Sample, encode and store the study; returns the secret links (shown once)."""
    plan.check()
    if plan.real.resolve() == plan.synthetic.resolve():
        raise ConfigError(f"--real and --synthetic are both {plan.real}; give two sources")
    check_outdir(outdir, [plan.real, plan.synthetic])
    check_sources(plan.real, plan.synthetic)
    rng = np.random.default_rng(plan.seed)
    images = real_images(plan.real, plan.n_real, rng)
    images += synthetic_images(plan.synthetic, plan.n_synthetic, rng, plan.device)
    images = as_shown(images)
    shape = check_same_shape(images)
    found = find_tells(
        [im.pixels for im in images if im.truth == "real"],
        [im.pixels for im in images if im.truth == "synthetic"],
    )
    outdir.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(outdir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".tmp", dir=outdir.parent))
    try:
        links = _write(tmp, images, plan, shape, found)
        if outdir.is_dir():
            outdir.rmdir()  # empty (checked); rename needs it gone
        os.replace(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return links


def _remove_leftovers(outdir: Path) -> None:
    """A create that was killed leaves its hidden build folder beside `outdir`; remove those
    that hold nothing but what `_write` puts there (anything else is not ours to delete)."""
    ours = {IMAGES_DIR, store.DB_NAME, f"{store.DB_NAME}-wal", f"{store.DB_NAME}-shm", LINKS_NAME}
    for old in outdir.parent.glob(f".{outdir.name}.*.tmp"):
        names = {p.name for p in old.iterdir()} if old.is_dir() and not old.is_symlink() else None
        images = old / IMAGES_DIR
        if names is None or not names <= ours or images.is_symlink():
            continue
        if images.is_dir() and any(not IMAGE_NAME.fullmatch(p.name) for p in images.iterdir()):
            continue
        shutil.rmtree(old, ignore_errors=True)


def _write(
    folder: Path,
    images: list[SourceImage],
    plan: StudyPlan,
    shape: tuple[int, int, int],
    found: list[dict],
) -> Links:
    # --seed is public (default 0, code open): it reproduces which images are drawn, but the
    # orders readers see and the order images are stored (ids, file dates) come from a secret
    # seed, kept in the database for the organiser, or a reader could recompute them.
    order_seed = secrets.randbits(128)
    rng = np.random.default_rng(order_seed)
    images = [images[i] for i in rng.permutation(len(images))]
    (folder / IMAGES_DIR).mkdir()
    con = store.connect(folder / store.DB_NAME)
    try:
        con.executescript(store.SCHEMA)
        con.execute("BEGIN")
        meta = {
            "schema": store.SCHEMA_VERSION,
            "created": str(time.time()),
            "shape": json.dumps(list(shape)),
            "seed": str(plan.seed),
            "order_seed": str(order_seed),
            "tells": json.dumps(found),
            "n_real": str(plan.n_real),
            "n_synthetic": str(plan.n_synthetic),
        }
        con.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        ids = _store_images(con, folder / IMAGES_DIR, images)
        links = _store_readers(con, ids, plan.readers, rng)
        links = replace(links, tells=tuple(describe(t) for t in found))
        con.execute("COMMIT")
    finally:
        con.close()
    text = "".join(f"{name} {path}\n" for name, path in links.readers.items())
    atomic.write_text(folder / LINKS_NAME, text + f"organiser {links.organiser}\n")
    os.chmod(folder / LINKS_NAME, 0o600)
    return links


def _store_images(con, folder: Path, images: list[SourceImage]) -> list[int]:
    ids = []
    for im in images:
        blob = encode(im.pixels)
        name = f"{secrets.token_hex(16)}.png"  # random: says nothing about truth or source
        atomic.write_bytes(folder / name, blob)
        cur = con.execute(
            "INSERT INTO images (file, truth, source, patient_key, sha256) VALUES (?,?,?,?,?)",
            (name, im.truth, im.source, im.patient_key, hashlib.sha256(blob).hexdigest()),
        )
        ids.append(int(cur.lastrowid))
    return ids


def _store_readers(con, ids: list[int], n: int, rng: np.random.Generator) -> Links:
    """Each reader: a secret token, a seeded order of all images, random opaque ids."""
    readers = {}
    for r in range(1, n + 1):
        token = secrets.token_urlsafe(32)
        cur = con.execute(
            "INSERT INTO readers (name, token_hash, csrf, role) VALUES (?, ?, ?, 'reader')",
            (f"reader{r}", store.token_hash(token), secrets.token_urlsafe(32)),
        )
        rows = [
            (cur.lastrowid, pos, ids[i], secrets.token_urlsafe(12))
            for pos, i in enumerate(rng.permutation(len(ids)))
        ]
        con.executemany(
            "INSERT INTO items (reader_id, position, image_id, opaque) VALUES (?,?,?,?)", rows
        )
        readers[f"reader{r}"] = f"/r/{token}"
    token = secrets.token_urlsafe(32)
    con.execute(
        "INSERT INTO readers (name, token_hash, csrf, role) VALUES ('organiser', ?, ?, "
        "'organiser')",
        (store.token_hash(token), secrets.token_urlsafe(32)),
    )
    return Links(readers, f"/o/{token}")
