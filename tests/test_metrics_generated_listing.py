"""metrics --images on a `mrisynth generate` folder takes the images its manifest lists (not
grid.png, masks or stray PNGs), through generate's one folder reader; a plain folder keeps
taking every PNG, and a hostile manifest ends in one reason naming --images."""

from __future__ import annotations

import numpy as np
import pytest

from mrisynth.data.archive import ImageArchive
from mrisynth.errors import InputError
from mrisynth.generate.folder_files import listed_images
from mrisynth.imaging import encode_png


def _png(path, size=16, value=0):
    path.write_bytes(encode_png(np.full((1, size, size), value, np.uint8)))


@pytest.fixture()
def gen(tmp_path):
    """A finished generate folder: 3 seeds, one mask, a DICOM row, a 48 px grid."""
    folder = tmp_path / "gen"
    folder.mkdir()
    for i in range(3):
        _png(folder / f"seed{i:06d}.png", value=40 * i)
    _png(folder / "seed000000-mask.png")
    _png(folder / "grid.png", size=48)
    (folder / "generation.json").write_text("{}")
    (folder / "manifest.csv").write_text(
        "file,format,mask_file\nseed000000.png,png,seed000000-mask.png\n"
        "seed000001.png,png,\nseed000002.png,png,\nseed000002.dcm,dicom,\n"
    )
    return folder


def test_generate_folder_gives_the_listed_images_only(gen):
    _png(gen / "stray.png")
    names = listed_images(gen, "--images")
    assert names == ["seed000000.png", "seed000001.png", "seed000002.png"]
    arch = ImageArchive(gen, only=names)
    assert arch.names == names and arch.image_shape == (1, 16, 16)


def test_other_folders_keep_every_png(gen, tmp_path):
    assert listed_images(tmp_path / "nowhere", "--images") is None
    (gen / "generation.json").unlink()  # a plain folder of PNGs
    assert listed_images(gen, "--images") is None
    (gen / "generation.json").write_text("{}")
    (gen / "manifest.csv").write_text("name,score\nx.png,1\n")  # another tool's manifest
    assert listed_images(gen, "--images") is None
    (gen / "manifest.csv").unlink()
    assert listed_images(gen, "--images") is None


@pytest.mark.parametrize(
    ("name", "said"),
    [("../outside.png", "not a PNG name"), ("/etc/x.png", "not a PNG name"),
     ("sub/seed.png", "not a PNG name"), (".hidden.png", "not a PNG name"),
     ("seed\x1b[2J.png", "not a PNG name"), ("seed.txt", "not a PNG name"),
     ("gone.png", "not in the folder")],
)  # fmt: skip
def test_hostile_or_stale_manifest_is_one_reason(gen, tmp_path, name, said):
    _png(tmp_path / "outside.png")
    with (gen / "manifest.csv").open("a") as f:
        f.write(f'"{name}",png,\n')
    with pytest.raises(InputError) as e:
        listed_images(gen, "--images")
    msg = str(e.value)
    assert msg.startswith("--images ") and said in msg and "\n" not in msg
    assert "\x1b" not in msg


def test_unreadable_manifest_names_the_option(gen):
    (gen / "manifest.csv").write_bytes(b"file,format\n\xff\xfe.png,png\n")
    with pytest.raises(InputError, match=r"^--images .*not UTF-8"):
        listed_images(gen, "--images")
