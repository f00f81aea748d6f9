"""Training archive contract: folder/ZIP reading, NVIDIA dataset.json labels, packing, hashing."""

import json
import multiprocessing
import pickle
import zipfile

import cv2
import numpy as np
import pytest

from mrisynth.data.archive import ImageArchive
from mrisynth.data.manifest import MANIFEST_COLUMNS, manifest_csv
from mrisynth.data.pack import pack_archive
from mrisynth.errors import ConfigError, InputError


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _grey_folder(root, n=5, size=16, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    imgs = {}
    for i in range(n):
        img = rng.integers(0, 256, (size, size), dtype=np.uint8)
        name = f"img{i:03d}.png"
        (root / name).write_bytes(_png(img))
        imgs[name] = img
    return imgs


def _manifest(names, patients):
    rows = [
        {
            "file": n,
            "patient_key": p,
            "series_key": "s" + p,
            "sequence": "t1_in",
            "slice_index": i,
            "slice_count": len(names),
            "position_mm": 10.0 * i,
        }
        for i, (n, p) in enumerate(zip(names, patients, strict=True))
    ]
    return manifest_csv(rows)


def test_folder_and_zip_round_trip_with_equal_hash(tmp_path):
    imgs = _grey_folder(tmp_path / "src", n=6)
    (tmp_path / "src" / ".hidden.png").write_bytes(b"junk")  # temp files are ignored
    res = pack_archive(tmp_path / "src", tmp_path / "ds.zip")
    assert (res.num_images, res.resolution, res.num_channels, res.label_dim) == (6, 16, 1, 0)
    folder, zipped = ImageArchive(tmp_path / "src"), ImageArchive(tmp_path / "ds.zip")
    assert zipped.names == sorted(imgs) == folder.names
    for i, name in enumerate(zipped.names):
        assert zipped[i].dtype == np.uint8 and zipped[i].shape == (1, 16, 16)
        np.testing.assert_array_equal(zipped[i][0], imgs[name])
    assert zipped.content_hash() == folder.content_hash() == res.content_hash
    assert zipped.labels.shape == (6, 0) and zipped.labels.dtype == np.float32
    all_imgs = zipped.read_all()
    assert all_imgs.shape == (6, 1, 16, 16)
    np.testing.assert_array_equal(all_imgs[2, 0], imgs["img002.png"])
    with zipfile.ZipFile(tmp_path / "ds.zip") as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        assert json.loads(zf.read("dataset.json")) == {"labels": None}


def test_threaded_read_all_matches_item_access(tmp_path):
    imgs = _grey_folder(tmp_path / "src", n=70, size=8)  # >= 64 images: decoded in threads
    pack_archive(tmp_path / "src", tmp_path / "ds.zip")
    arc = ImageArchive(tmp_path / "ds.zip")
    batch = arc.read_all(num_threads=4)  # [N, 1, 8, 8]
    np.testing.assert_array_equal(batch[:, 0], np.stack([imgs[n] for n in arc.names]))


def test_hash_changes_with_content(tmp_path):
    _grey_folder(tmp_path / "a", seed=0)
    _grey_folder(tmp_path / "b", seed=1)
    a, b = ImageArchive(tmp_path / "a"), ImageArchive(tmp_path / "b")
    assert a.content_hash() != b.content_hash()


def test_packing_twice_gives_identical_bytes(tmp_path):
    _grey_folder(tmp_path / "src")
    pack_archive(tmp_path / "src", tmp_path / "one.zip")
    pack_archive(tmp_path / "src", tmp_path / "two.zip")
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()


def test_nvidia_style_zip_with_class_labels_and_rgb(tmp_path):
    """dataset_tool.py layout: nested 00000/imgXXXXXXXX.png, RGB, int labels -> one-hot."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)  # [N, H, W, RGB]
    names = [f"00000/img{i:08d}.png" for i in range(4)]
    with zipfile.ZipFile(tmp_path / "nv.zip", "w") as zf:
        for name, img in zip(names, rgb, strict=True):
            zf.writestr(name, _png(img[:, :, ::-1]))  # cv2 writes BGR
        labels = [[n, i % 3] for i, n in enumerate(names)]
        zf.writestr("dataset.json", json.dumps({"labels": labels}))
    arc = ImageArchive(tmp_path / "nv.zip")
    assert arc.num_channels == 3 and arc.resolution == 8 and arc.names == names
    np.testing.assert_array_equal(arc[1], rgb[1].transpose(2, 0, 1))  # RGB order kept
    expected = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    np.testing.assert_array_equal(arc.labels, expected)
    assert arc.label_dim == 3
    # re-packing keeps the labels
    pack_archive(tmp_path / "nv.zip", tmp_path / "out")
    np.testing.assert_array_equal(ImageArchive(tmp_path / "out").labels, expected)


def test_float_labels_and_missing_label(tmp_path):
    imgs = _grey_folder(tmp_path / "src", n=3)
    labels = [[n, [0.5 * i, 1.0]] for i, n in enumerate(sorted(imgs))]
    (tmp_path / "src" / "dataset.json").write_text(json.dumps({"labels": labels}))
    arc = ImageArchive(tmp_path / "src")
    assert arc.labels.shape == (3, 2) and arc.labels[2, 0] == pytest.approx(1.0)
    (tmp_path / "src" / "dataset.json").write_text(json.dumps({"labels": labels[:2]}))
    with pytest.raises(InputError, match=r"no label for img002\.png"):
        ImageArchive(tmp_path / "src")


def test_labels_from_manifest(tmp_path):
    imgs = _grey_folder(tmp_path / "src", n=4)
    names = sorted(imgs)
    (tmp_path / "src" / "manifest.csv").write_text(_manifest(names, ["pb", "pb", "pa", "pa"]))
    res = pack_archive(tmp_path / "src", tmp_path / "frac.zip", label="slice-fraction")
    arc = ImageArchive(tmp_path / "frac.zip")
    assert res.has_manifest and arc.manifest_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    np.testing.assert_allclose(arc.labels[:, 0], [0, 1 / 3, 2 / 3, 1])
    arc = ImageArchive(pack_archive(tmp_path / "src", tmp_path / "pat.zip", label="patient").path)
    np.testing.assert_array_equal(arc.labels.argmax(1), [1, 1, 0, 0])  # classes by sorted key
    with pytest.raises(ConfigError, match="unknown label"):
        pack_archive(tmp_path / "src", tmp_path / "x.zip", label="colour")


def test_manifest_label_without_manifest_is_refused(tmp_path):
    _grey_folder(tmp_path / "src")
    with pytest.raises(InputError, match=r"need manifest\.csv"):
        pack_archive(tmp_path / "src", tmp_path / "x.zip", label="slice-fraction")


@pytest.mark.parametrize(
    ("shapes", "dtype", "message"),
    [
        ([(16, 12)], np.uint8, "not square"),
        ([(12, 12)], np.uint8, "not a power of two"),
        ([(16, 16), (8, 8)], np.uint8, "differs from the archive"),
        ([(16, 16)], np.uint16, "8-bit"),
        ([(16, 16, 4)], np.uint8, "4 channels"),
    ],
)
def test_bad_images_are_refused_with_the_file_named(tmp_path, shapes, dtype, message):
    src = tmp_path / "src"
    src.mkdir()
    for i, shape in enumerate(shapes):
        (src / f"im{i}.png").write_bytes(_png(np.zeros(shape, dtype=dtype)))
    with pytest.raises(InputError, match=message) as err:
        pack_archive(src, tmp_path / "x.zip")
    assert "im" in str(err.value) and not (tmp_path / "x.zip").exists()


def test_empty_and_missing_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no PNG"):
        ImageArchive(tmp_path / "empty")
    with pytest.raises(InputError, match="no such"):
        ImageArchive(tmp_path / "nope")
    (tmp_path / "f.zip").write_text("not a zip")
    with pytest.raises(InputError, match="neither"):
        ImageArchive(tmp_path / "f.zip")


def test_destination_checks(tmp_path):
    _grey_folder(tmp_path / "src")
    with pytest.raises(ConfigError, match="inside the source"):
        pack_archive(tmp_path / "src", tmp_path / "src" / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a previous archive"):
        pack_archive(tmp_path / "src", tmp_path / "busy")
    # a previous archive folder is replaced as a whole
    pack_archive(tmp_path / "src", tmp_path / "out")
    (tmp_path / "src" / "img000.png").unlink()
    assert pack_archive(tmp_path / "src", tmp_path / "out").num_images == 4
    assert not (tmp_path / "out" / "img000.png").exists()


def _read_in_child(arc):
    return int(arc[1].sum()), arc.content_hash()


def test_archive_is_picklable_and_fork_safe(tmp_path):
    _grey_folder(tmp_path / "src")
    pack_archive(tmp_path / "src", tmp_path / "ds.zip")
    arc = ImageArchive(tmp_path / "ds.zip")
    expected = (int(arc[1].sum()), arc.content_hash())  # opens the zip in the parent first
    clone = pickle.loads(pickle.dumps(arc))
    assert _read_in_child(clone) == expected
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_read_in_child, (arc,)) == expected
