"""A `mrisynth generate` folder means the same images to every stage that reads it: metrics
--images, reader-study --synthetic and downstream --synthetic all take exactly the images its
manifest lists (generate/folder_files), never grid.png, a mask or a PNG added later."""

from __future__ import annotations

import numpy as np
import pytest

from mrisynth.data.archive import ImageArchive
from mrisynth.downstream.pairs import load_generated
from mrisynth.errors import InputError
from mrisynth.imaging import encode_png
from mrisynth.metrics.evaluations import open_images
from mrisynth.readerstudy.sources import _from_folder

SEEDS = {"seed000000.png": 40, "seed000001.png": 80, "seed000002.png": 120}
STRAY = 200  # seed000099.png: named like generate's, not in its manifest


def _png(path, value, size=16):
    path.write_bytes(encode_png(np.full((1, size, size), value, np.uint8)))


@pytest.fixture()
def gen(tmp_path):
    """A finished paired generate folder, a 48 px grid, and a stray pair copied in later."""
    folder = tmp_path / "gen"
    folder.mkdir()
    rows = ["file,format,seed,mask_file"]
    for i, (name, value) in enumerate(SEEDS.items()):
        _png(folder / name, value)
        _png(folder / name.replace(".png", "-mask.png"), i + 1)
        rows.append(f"{name},png,{i},{name.replace('.png', '-mask.png')}")
    _png(folder / "grid.png", 0, size=48)
    _png(folder / "seed000099.png", STRAY)
    _png(folder / "seed000099-mask.png", 1)
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    (folder / "generation.json").write_text("{}")
    return folder


def _values(images) -> set[int]:
    return {int(np.asarray(img).max()) for img in images}


def test_all_three_consumers_take_the_listed_images(gen, tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    _png(train / "a.png", 1)
    metrics = open_images(gen, ImageArchive(train))
    assert sorted(metrics.names) == sorted(SEEDS)
    shown = _from_folder(gen, 3, np.random.default_rng(0))
    assert sorted(s.source for s in shown) == sorted(SEEDS)  # was: seed000099.png too
    assert _values(s.pixels for s in shown) == set(SEEDS.values())
    pairs = load_generated(gen, 5)
    assert len(pairs) == 3 and pairs.skipped == ()
    assert _values(pairs.images) == set(SEEDS.values())


def test_reader_study_cannot_draw_an_unlisted_png(gen):
    with pytest.raises(InputError, match=r"--synthetic .*holds 3 PNG images, 4 requested"):
        _from_folder(gen, 4, np.random.default_rng(0))


def test_reader_study_refuses_a_stale_manifest(gen):
    (gen / "seed000001.png").unlink()
    with pytest.raises(InputError, match=r"^--synthetic .*lists seed000001.png, which is not in"):
        _from_folder(gen, 2, np.random.default_rng(0))


def test_downstream_takes_an_unpaired_generate_folder_by_its_manifest(gen):
    """A generate manifest without mask_file: the generator drew no masks, so the stray pair
    added later must not become the folder's one 'synthetic pair' (it did)."""
    names = ["file,format,seed", *(f"{n},png,{i}" for i, n in enumerate(SEEDS))]
    (gen / "manifest.csv").write_text("\n".join(names) + "\n")
    with pytest.raises(InputError, match=r"--synthetic .*no image \+ mask pairs"):
        load_generated(gen, 5)


def test_plain_folders_keep_their_own_listing(gen):
    """Without generation.json the folder is no generate output: reader study and downstream
    read it as before (downstream by file names, leaving grid.png out)."""
    (gen / "generation.json").unlink()
    (gen / "manifest.csv").unlink()
    pairs = load_generated(gen, 5)
    assert _values(pairs.images) == set(SEEDS.values()) | {STRAY}
    with pytest.raises(InputError, match="holds 9 PNG images, 10 requested"):  # every PNG
        _from_folder(gen, 10, np.random.default_rng(0))
