"""`dataset --masks`: paired 2-channel archives, the mask encoding, and hostile sources."""

import csv
import io
import json
import shutil
import zipfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.data.holdout import find_holdout
from mrisynth.data.masks import (
    CHAOS_LABELS,
    MaskSpec,
    decode_mask,
    encode_mask,
    mask_levels,
    mask_spec,
)
from mrisynth.data.pack import pack_archive
from mrisynth.data.phantom_dicom import write_phantom_tree
from mrisynth.data.png import decode_png, encode_grey_alpha
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions
from mrisynth.errors import InputError

CHAOS_NAMES = ["background", "liver", "right_kidney", "left_kidney", "spleen"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("masks")
    write_phantom_tree(root / "tree", 3, seed=5, matrix_sizes=(32,), num_slices=(3, 4),
                       t2spir=False)
    opts = PrepareOptions(slice=SliceOptions(size=16), masks=CHAOS_LABELS)
    prepare([root / "tree"], root / "prep", opts)
    return root / "prep"


def _copy(prepared, tmp_path):
    return shutil.copytree(prepared, tmp_path / "prep")


def _manifest(folder):
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _write_manifest(folder, rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (folder / "manifest.csv").write_text(buf.getvalue())


def test_levels_are_the_contract():
    assert mask_levels(5) == [0, 64, 128, 191, 255]
    assert mask_levels(2) == [0, 255]
    assert len(set(mask_levels(256))) == 256


@pytest.mark.parametrize("k", [2, 3, 5, 9, 256])
def test_decode_is_nearest_level(k):
    labels = np.arange(k, dtype=np.uint8)
    levels = encode_mask(labels, k)
    assert decode_mask(levels, k).tolist() == labels.tolist()
    # a generator's output near a level decodes to it: independent nearest search
    values = np.arange(256)
    expect = np.abs(values[:, None] - np.array(mask_levels(k))[None]).argmin(1)
    got = decode_mask(values.astype(np.uint8), k)
    ties = np.isin(values * 2, np.add.outer(mask_levels(k), mask_levels(k)))
    assert (got[~ties] == expect[~ties]).all()
    lv = np.array(mask_levels(k))
    mid = (lv[:-1] + lv[1:]) / 2  # exactly midway (README: goes to the higher label)
    upper = np.flatnonzero(mid == np.floor(mid)) + 1  # the label above each whole midpoint
    assert decode_mask(lv[upper - 1] + (lv[upper] - lv[upper - 1]) // 2, k).tolist() == \
        upper.tolist()


def test_encode_refuses_labels_out_of_range():
    with pytest.raises(ValueError):
        encode_mask(np.array([5], np.uint8), 5)


def test_paired_archive_round_trips_image_and_mask(prepared, tmp_path):
    res = pack_archive(prepared, tmp_path / "d.zip", masks=True)
    arc = ImageArchive(tmp_path / "d.zip")
    rows = {r["file"]: r for r in _manifest(prepared)}
    assert arc.num_channels == 2 and res.num_images == len(rows) == len(arc)
    assert res.left_out == ()
    spec = mask_spec(arc)
    assert spec == MaskSpec(tuple(CHAOS_NAMES))
    assert arc.dataset_json()["mrisynth"]["mask"] == {
        "labels": CHAOS_NAMES, "levels": [0, 64, 128, 191, 255]}
    for i, name in enumerate(arc.names):
        pair = arc[i]
        image = cv2.imread(str(prepared / name), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(prepared / rows[name]["mask_file"]), cv2.IMREAD_UNCHANGED)
        assert (pair[0] == image).all()
        assert set(np.unique(pair[1])) <= set(spec.levels)
        assert (decode_mask(pair[1], spec.num_labels) == mask).all()
    again = pack_archive(prepared, tmp_path / "again.zip", masks=True)
    assert again.content_hash == res.content_hash  # deterministic encoding
    copy = pack_archive(tmp_path / "d.zip", tmp_path / "copy")  # re-packed: still paired
    assert copy.content_hash == res.content_hash and mask_spec(ImageArchive(copy.path)) == spec


def test_paired_holdout_and_masks_never_packed_as_images(prepared, tmp_path):
    res = pack_archive(prepared, tmp_path / "d.zip", masks=True, holdout_patients=1)
    held = find_holdout(ImageArchive(tmp_path / "d.zip"))
    assert held.num_channels == 2 and mask_spec(held) is not None
    assert res.num_images + res.holdout.num_images == len(_manifest(prepared))
    plain = pack_archive(prepared, tmp_path / "plain.zip")
    assert plain.num_channels == 1 and plain.num_images == len(_manifest(prepared))
    with zipfile.ZipFile(tmp_path / "plain.zip") as zf:
        assert not [n for n in zf.namelist() if n.startswith("masks/")]


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("outside", "missing, or outside it"),
        ("missing", "missing, or outside it"),
        ("empty", "no mask"),
        ("wrong size", "8x16 pixels, the image is 16x16"),
        ("label 7", "label 7 but only 5 labels"),
        ("16-bit", "16-bit PNG"),
        ("rgb", "3 channels; a label mask has one"),
        ("garbage", "not a PNG file"),
    ],
)
def test_bad_masks_are_left_out_with_a_reason(prepared, tmp_path, damage, reason):
    src = _copy(prepared, tmp_path)
    rows = _manifest(src)
    mask = src / rows[0]["mask_file"]
    (tmp_path / "secret.png").write_bytes(mask.read_bytes())
    if damage == "outside":
        rows[0]["mask_file"] = "../secret.png"
    elif damage == "missing":
        rows[0]["mask_file"] = "masks/nothing.png"
        (src / "masks" / "nothing.png").write_bytes(b"")
        (src / "masks" / "nothing.png").unlink()
    elif damage == "empty":
        rows[0]["mask_file"] = ""
    elif damage == "wrong size":
        cv2.imwrite(str(mask), np.zeros((16, 8), np.uint8))
    elif damage == "label 7":
        cv2.imwrite(str(mask), np.full((16, 16), 7, np.uint8))
    elif damage == "16-bit":
        cv2.imwrite(str(mask), np.zeros((16, 16), np.uint16))
    elif damage == "rgb":
        cv2.imwrite(str(mask), np.dstack([np.zeros((16, 16), np.uint8) + k for k in range(3)]))
    elif damage == "garbage":
        mask.write_bytes(b"GIF89a not a png")
    _write_manifest(src, rows)
    res = pack_archive(src, tmp_path / "d.zip", masks=True)
    assert len(res.left_out) == 1 and reason in res.left_out[0], res.left_out
    assert res.num_images == len(rows) - 1
    assert str(tmp_path / "secret.png") not in "".join(res.left_out)


def test_sources_without_masks_are_refused(prepared, tmp_path):
    plain = tmp_path / "plain"
    prepare([prepared.parent / "tree"], plain, PrepareOptions(slice=SliceOptions(size=16)))
    rows = _manifest(plain)
    for r in rows:
        del r["mask_file"]
    _write_manifest(plain, rows)
    with pytest.raises(InputError, match=r"without masks.*`mrisynth prepare --masks` first"):
        pack_archive(plain, tmp_path / "d.zip", masks=True)
    (plain / "manifest.csv").unlink()
    with pytest.raises(InputError, match=r"needs manifest\.csv"):
        pack_archive(plain, tmp_path / "d.zip", masks=True)
    src = _copy(prepared, tmp_path)
    rows = _manifest(src)
    for r in rows:
        r["mask_file"] = ""
    _write_manifest(src, rows)
    with pytest.raises(InputError, match="prepared without masks"):  # prepare without --masks
        pack_archive(src, tmp_path / "e.zip", masks=True)


@pytest.mark.parametrize(
    "text", ["{", '{"labels": "liver"}', '{"labels": ["background"]}', '{"labels": [1, 2]}',
             '{"labels": ["a", "a"]}', "[]"],
)
def test_hostile_labels_json(prepared, tmp_path, text):
    src = _copy(prepared, tmp_path)
    (src / "masks" / "labels.json").write_text(text)
    with pytest.raises(InputError, match=r"labels\.json"):
        pack_archive(src, tmp_path / "d.zip", masks=True)


def _archive_with(tmp_path, image, record):
    folder = tmp_path / "arc"
    folder.mkdir()
    data = encode_grey_alpha(image) if image.shape[0] == 2 else cv2.imencode(".png", image[0])[1]
    (folder / "a.png").write_bytes(bytes(data))
    obj = {"labels": None, **({"mrisynth": {"mask": record}} if record is not None else {})}
    (folder / "dataset.json").write_text(json.dumps(obj))
    return ImageArchive(folder)


@pytest.mark.parametrize(
    "record, channels, match",
    [
        ({"labels": CHAOS_NAMES, "levels": [0, 1, 2, 3, 4]}, 2, "differ from"),
        ({"labels": "x", "levels": []}, 2, "distinct short names"),
        ({"labels": ["a"] * 3, "levels": [0, 128, 255]}, 2, "distinct short names"),
        # names reach generation.json, DICOM SEG segment labels and the downstream report
        ({"labels": ["background", "<b>liver"], "levels": [0, 255]}, 2, "label names"),
        ({"labels": ["background", "liver\x1b[2J"], "levels": [0, 255]}, 2, "label names"),
        ({"labels": ["background", "../x"], "levels": [0, 255]}, 2, "label names"),
        ({"labels": ["liver", "background"], "levels": [0, 255]}, 2, "'background' first"),
        ([1, 2], 2, "must be an object"),
        ({"labels": CHAOS_NAMES, "levels": [0, 64, 128, 191, 255]}, 1, "not 2"),
    ],
)
def test_hostile_mask_records(tmp_path, record, channels, match):
    arc = _archive_with(tmp_path, np.zeros((channels, 8, 8), np.uint8), record)
    with pytest.raises(InputError, match=match):
        mask_spec(arc)


def test_two_channels_without_record_is_unpaired(tmp_path):
    assert mask_spec(_archive_with(tmp_path, np.zeros((2, 8, 8), np.uint8), None)) is None


def test_png_channel_rules():
    la = encode_grey_alpha(np.arange(128, dtype=np.uint8).reshape(2, 8, 8))
    assert decode_png(la).shape == (2, 8, 8)
    rgba = cv2.imencode(".png", np.zeros((8, 8, 4), np.uint8))[1].tobytes()
    with pytest.raises(InputError, match="4 channels"):
        decode_png(rgba, "x.png")
    with pytest.raises(ValueError):
        encode_grey_alpha(np.zeros((3, 8, 8), np.uint8))


def test_cli_dataset_masks(prepared, tmp_path):
    res = CliRunner().invoke(cli, ["dataset", str(prepared), "-o", str(tmp_path / "d.zip"),
                                   "--masks"])
    assert res.exit_code == 0, res.output
    assert "2 channel(s)" in res.output and "paired" in res.output
    plain = tmp_path / "plain"
    prepare([prepared.parent / "tree"], plain, PrepareOptions(slice=SliceOptions(size=16)))
    (plain / "manifest.csv").unlink()
    res = CliRunner().invoke(cli, ["dataset", str(plain), "-o", str(tmp_path / "e.zip"),
                                   "--masks"])
    assert res.exit_code == 1 and res.output.startswith("Error: ")
    assert len(res.output.strip().splitlines()) == 1


def test_many_mask_labels_pack_at_their_levels_with_a_warning(prepared, tmp_path, caplog):
    """K = 12 labels (--mask-labels): levels round(l * 255 / 11), 23 apart, every label kept
    exactly through the archive, and a warning that a generator's output decodes less surely."""
    src = _copy(prepared, tmp_path)
    names = ["background", *(f"organ{i}" for i in range(1, 12))]
    (src / "masks" / "labels.json").write_text(json.dumps({"labels": names}))
    rows = [r for r in _manifest(src) if r["mask_file"]]
    side = cv2.imread(str(src / rows[0]["mask_file"]), cv2.IMREAD_UNCHANGED).shape[0]
    mask = (np.arange(side * side) % 12).astype(np.uint8).reshape(side, side)
    cv2.imwrite(str(src / rows[0]["mask_file"]), mask)
    with caplog.at_level("WARNING"):
        out = pack_archive(src, tmp_path / "k.zip", masks=True).path
    assert any("23 grey levels apart" in r.getMessage() for r in caplog.records)
    arc = ImageArchive(out)
    spec = mask_spec(arc)
    assert spec.levels == [round(lab * 255 / 11 + 1e-9) for lab in range(12)]
    img = arc[arc.names.index(rows[0]["file"])]
    assert np.array_equal(decode_mask(img[1], 12), mask)
    assert np.array_equal(img[1], np.array(spec.levels, np.uint8)[mask])
