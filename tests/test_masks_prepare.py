"""`prepare --masks`: mask discovery, CHAOS grey -> labels, the image's geometry, hostile masks."""

import csv
import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.data.masks import CHAOS_LABELS, grey_to_labels, parse_label_map
from mrisynth.data.phantom_dicom import _dataset, _save, write_phantom_tree
from mrisynth.data.prepare import PrepareOptions, prepare
from mrisynth.data.slice_pipeline import SliceOptions
from mrisynth.errors import ConfigError

MASK_OPTS = PrepareOptions(slice=SliceOptions(size=16), masks=CHAOS_LABELS)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_tree(root, 2, seed=3, matrix_sizes=(32,), num_slices=(4, 5), t2spir=False)
    return root


def _rows(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _copy(tree, dest):
    """A private copy of the phantom tree that a test may damage."""
    for dirpath, _, files in os.walk(tree):
        for name in files:
            src = os.path.join(dirpath, name)
            dst = dest / os.path.relpath(src, tree)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(Path(src).read_bytes())
    return dest


def _ground(root, pid=1):
    return root / "Train_Sets" / "MR" / str(pid) / "T1DUAL" / "Ground"


def test_phantom_masks_are_chaos_coded_and_map_to_labels(tree, tmp_path):
    greys = set()
    for pid in (1, 2):
        for p in _ground(tree, pid).iterdir():
            greys |= set(np.unique(cv2.imread(str(p), cv2.IMREAD_UNCHANGED)).tolist())
    assert greys == {0, 63, 126, 189, 252}  # CHAOS layout and values
    res = prepare([tree], tmp_path / "out", MASK_OPTS)
    rows = _rows(tmp_path / "out")
    assert all(r["mask_file"] == f"masks/{r['file']}" for r in rows)
    labels = set()
    for r in rows:
        m = cv2.imread(str(tmp_path / "out" / r["mask_file"]), cv2.IMREAD_UNCHANGED)
        assert m.dtype == np.uint8 and m.shape == (16, 16)
        labels |= set(np.unique(m).tolist())
    assert labels == {0, 1, 2, 3, 4}
    assert res.report["masks"]["written"] == len(rows)
    info = json.loads((tmp_path / "out" / "masks" / "labels.json").read_text())
    assert info["labels"] == ["background", "liver", "right_kidney", "left_kidney", "spleen"]


def test_opposed_phase_pairs_the_shared_ground_by_order(tree, tmp_path):
    """Ground PNGs carry the in-phase names; out-phase slices pair by sorted order."""
    prepare([tree], tmp_path / "in", MASK_OPTS)
    opts = PrepareOptions(sequence="t1-opp", slice=SliceOptions(size=16), masks=CHAOS_LABELS)
    prepare([tree], tmp_path / "opp", opts)

    def by_position(out):
        return {
            (r["position_mm"], r["slice_count"]): cv2.imread(str(out / r["mask_file"]), 0)
            for r in _rows(out)
        }

    a, b = by_position(tmp_path / "in"), by_position(tmp_path / "opp")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def _geo_slice(root, rows, cols, spacing):
    """One slice with two bright rectangles (values 2000, 4000) and a mask of the same shapes."""
    img = np.full((rows, cols), 100, np.uint16)
    mask = np.zeros((rows, cols), np.uint8)
    for (r0, r1, c0, c1), value, grey in (((4, 14, 2, 9), 2000, 63), ((22, 33, 12, 20), 4000, 252)):
        img[r0:r1, c0:c1] = value
        mask[r0:r1, c0:c1] = grey
    geo = {"ipp": (0.0, 0.0, 0.0), "spacing": 1.0, "slice_spacing": 5.0}
    ds = _dataset(1, 0, "in", 0, 1, img, geo)
    ds.PixelSpacing = list(spacing)
    _save(ds, root / "s" / "DICOM_anon" / "IMG-1.dcm")
    (root / "s" / "Ground").mkdir(parents=True)
    cv2.imwrite(str(root / "s" / "Ground" / "IMG-1.png"), mask)


@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
def test_mask_lands_on_the_image_pixels(tmp_path, fit):
    """A mask drawn on a known non-square, anisotropic slice survives isotropic resampling,
    pad/crop/stretch and resizing at the same pixels as the organ it outlines."""
    _geo_slice(tmp_path / "in", rows=40, cols=24, spacing=(1.0, 2.0))  # 40 x 48 mm
    opts = PrepareOptions(sequence="any", slice=SliceOptions(size=32, fit=fit), masks=CHAOS_LABELS)
    prepare([tmp_path / "in"], tmp_path / "out", opts)
    (row,) = _rows(tmp_path / "out")
    img = cv2.imread(str(tmp_path / "out" / row["file"]), cv2.IMREAD_UNCHANGED).astype(float)
    mask = cv2.imread(str(tmp_path / "out" / row["mask_file"]), cv2.IMREAD_UNCHANGED)
    lo, hi = float(row["norm_lo"]), float(row["norm_hi"])
    values = img / 255 * (hi - lo) + lo  # back to the DICOM values
    _, parts = cv2.connectedComponents((values > 1050).astype(np.uint8))  # half of 2000
    for label in (1, 4):
        drawn = mask == label
        organ = parts == np.bincount(parts[drawn]).argmax()  # the organ under this label
        assert drawn.sum() > 4
        iou = (organ & drawn).sum() / (organ | drawn).sum()
        assert iou > 0.75, (fit, label, iou)
        c_img = np.argwhere(organ).mean(0)
        c_mask = np.argwhere(drawn).mean(0)
        assert np.abs(c_img - c_mask).max() <= 0.6, (fit, label, c_img, c_mask)
    assert set(np.unique(mask)) <= {0, 1, 4}  # nearest neighbour: no blended labels


def _damage(tmp_path, tree, how):
    root = _copy(tree, tmp_path / "in")
    ground = _ground(root)
    first = sorted(ground.iterdir())[0]
    if how == "wrong size":
        cv2.imwrite(str(first), np.zeros((20, 32), np.uint8))
    elif how == "not a png":
        first.write_text("this is not a PNG")
    elif how == "unknown grey":
        m = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
        m[0, 0] = 100
        cv2.imwrite(str(first), m)
    elif how == "16-bit":
        cv2.imwrite(str(first), np.zeros((32, 32), np.uint16))
    elif how == "truncated":
        first.write_bytes(first.read_bytes()[:60])
    elif how == "huge claim":  # a valid IHDR claiming 100000 x 100000 pixels
        ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
        crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + crc
        first.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    elif how == "fifo":
        first.unlink()
        os.mkfifo(first)
    return root


@pytest.mark.parametrize(
    "how, reason",
    [
        ("wrong size", "mask is 32x20 pixels but its slice is 32x32"),
        ("not a png", "not a PNG file"),
        ("unknown grey", "grey values 100 (1 pixels) match no label"),
        ("16-bit", "16-bit PNG"),
        ("truncated", "truncated PNG"),
        ("fifo", "not a regular file"),
        ("huge claim", "the limit is 64 MiB"),
    ],
)
def test_bad_mask_is_skipped_with_a_reason_and_the_rest_kept(tree, tmp_path, how, reason):
    root = _damage(tmp_path, tree, how)
    res = prepare([root], tmp_path / "out", MASK_OPTS)
    m = res.report["masks"]
    assert len(m["skipped"]) == 1 and reason in m["skipped"][0]["reason"]
    assert m["skipped"][0]["source"].startswith("src-")  # no input path in the report
    rows = _rows(tmp_path / "out")
    assert sum(r["mask_file"] == "" for r in rows) == 1  # the image is kept, without a mask
    assert m["written"] == len(rows) - 1
    assert any("masks skipped" in w for w in res.warnings)


def test_count_mismatch_skips_the_series_masks(tree, tmp_path):
    root = _copy(tree, tmp_path / "in")
    ground = _ground(root)
    for i, p in enumerate(sorted(ground.iterdir())):  # names no longer match the slices
        p.rename(ground / f"mask_{i:03d}.png")
    (ground / "mask_000.png").unlink()
    res = prepare([root], tmp_path / "out", MASK_OPTS)
    (skip,) = res.report["masks"]["skipped"]
    assert "mask PNGs for" in skip["reason"] and "counts agree" in skip["reason"]
    rows = _rows(tmp_path / "out")
    series = {r["series_key"] for r in rows if r["mask_file"] == ""}
    assert len(series) == 1  # the other patient's masks are untouched
    missing = res.report["masks"]["images_without_mask"]
    assert len(missing) == sum(r["series_key"] in series for r in rows)
    assert any(r["mask_file"] for r in rows)


def test_slice_without_mask_is_reported(tree, tmp_path):
    root = _copy(tree, tmp_path / "in")
    sorted(_ground(root).iterdir())[0].unlink()
    res = prepare([root], tmp_path / "out", MASK_OPTS)
    assert len(res.report["masks"]["images_without_mask"]) == 1
    assert any("have no mask" in w for w in res.warnings)


def test_label_coded_masks_with_mask_labels(tree, tmp_path):
    root = _copy(tree, tmp_path / "in")
    for p in [*_ground(root, 1).iterdir(), *_ground(root, 2).iterdir()]:  # recode as 0..4
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(p), (m // 63).astype(np.uint8))
    res = prepare([root], tmp_path / "bad", MASK_OPTS)
    assert res.report["masks"]["skipped"]  # CHAOS ranges refuse 1..4 instead of zeroing them
    labels = parse_label_map("liver=1,right_kidney=2,left_kidney=3,spleen=4")
    opts = PrepareOptions(slice=SliceOptions(size=16), masks=labels)
    ok = prepare([root], tmp_path / "ok", opts)
    assert ok.report["masks"]["skipped"] == [] and ok.report["masks"]["written"] > 0


def test_rerun_without_masks_removes_them(tree, tmp_path):
    prepare([tree], tmp_path / "out", MASK_OPTS)
    prepare([tree], tmp_path / "out", PrepareOptions(slice=SliceOptions(size=16)))
    assert not (tmp_path / "out" / "masks").exists()
    assert all(r["mask_file"] == "" for r in _rows(tmp_path / "out"))


def test_grey_mapping_follows_chaos_ranges():
    grey = np.array([[0, 56, 70, 111, 135, 176, 200, 241, 255]], np.uint8)
    assert grey_to_labels(grey, CHAOS_LABELS).tolist() == [[0, 1, 1, 2, 2, 3, 3, 4, 4]]


@pytest.mark.parametrize(
    "text",
    [
        "liver",
        "liver=0",
        "liver=256",
        "liver=nan",
        "liver=1e3",
        "liver=-5",
        "liver=70-60",
        "liver=60-70,spleen=65",
        "liver=1,liver=2",
        "Liver=1",
        "background=1",
        '{"liver": NaN}',
        '{"liver": true}',
        '{"liver": [1, 2, 3]}',
        "[1, 2]",
        "{" * 5000,
        ",".join(f"l{i}=1" for i in range(300)),
    ],
)
def test_hostile_mask_labels_are_config_errors(text):
    with pytest.raises(ConfigError, match="--mask-labels"):
        parse_label_map(text)


def test_mask_labels_json_and_ranges():
    lm = parse_label_map('{"liver": 63, "spleen": [240, 255]}')
    assert lm.names == ("liver", "spleen") and lm.ranges == ((63, 63), (240, 255))


def test_cli_mask_labels_needs_masks(tree, tmp_path):
    res = CliRunner().invoke(cli, ["prepare", str(tree), "-o", str(tmp_path / "o"),
                                   "--mask-labels", "liver=1"])
    assert res.exit_code == 1 and res.output.strip() == "Error: --mask-labels needs --masks"
    res = CliRunner().invoke(cli, ["prepare", str(tree), "-o", str(tmp_path / "o"), "--masks",
                                   "--size", "16", "--mask-labels", "liver=0"])
    assert res.exit_code == 1 and res.output.startswith("Error: --mask-labels 'liver=0'")
    res = CliRunner().invoke(cli, ["prepare", str(tree), "-o", str(tmp_path / "o"), "--masks",
                                   "--size", "16"])
    assert res.exit_code == 0, res.output
    assert "masks: " in res.output


def _seg_from_ground(root, pid=1, names=("Liver", "Right kidney", "Left kidney", "Spleen")):
    """A DICOM SEG (highdicom) of the patient's in-phase series, drawn from its Ground PNGs;
    the Ground folder is removed, so the SEG is the only mask source."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    t1 = _ground(root, pid).parent
    files = sorted((t1 / "DICOM_anon" / "InPhase").glob("*.dcm"))
    sources = [pydicom.dcmread(f) for f in files]
    grey = np.stack([cv2.imread(str(t1 / "Ground" / f"{f.stem}.png"), 0) for f in files])
    labels = grey_to_labels(grey.reshape(len(files), -1), CHAOS_LABELS).reshape(grey.shape)
    descs = [
        hd.seg.SegmentDescription(
            segment_number=i, segment_label=name, segmented_property_category=codes.SCT.Organ,
            segmented_property_type=codes.SCT.Organ,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i, name in enumerate(names, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descs,
        series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1",
    )
    for p in _ground(root, pid).iterdir():
        p.unlink()
    _ground(root, pid).rmdir()
    seg.save_as(t1 / "seg.dcm")
    return t1 / "seg.dcm"


def test_dicom_seg_masks_equal_the_ground_pngs(tree, tmp_path):
    prepare([tree], tmp_path / "png", MASK_OPTS)
    root = _copy(tree, tmp_path / "in")
    _seg_from_ground(root)
    res = prepare([root], tmp_path / "seg", MASK_OPTS)
    assert res.report["masks"]["skipped"] == [] and res.report["masks"]["images_without_mask"] == []
    assert not [k for k in res.skipped if "Segmentation" in k.reason]  # used, not skipped

    def by_position(out):
        return {(r["position_mm"], r["slice_count"]): cv2.imread(str(out / r["mask_file"]), 0)
                for r in _rows(out)}

    a, b = by_position(tmp_path / "png"), by_position(tmp_path / "seg")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_dicom_seg_without_known_segments_or_unreadable(tree, tmp_path):
    root = _copy(tree, tmp_path / "in")
    _seg_from_ground(root, names=("tumour", "cyst", "vessel", "bone"))
    res = prepare([root], tmp_path / "out", MASK_OPTS)
    reasons = {k["reason"] for k in res.report["masks"]["skipped"]}
    assert reasons and all("no segment of this SEG names a label" in r for r in reasons)
    seg = root / "Train_Sets" / "MR" / "1" / "T1DUAL" / "seg.dcm"
    seg.write_bytes(seg.read_bytes()[:-500])  # pixel data cut short
    res = prepare([root], tmp_path / "out2", MASK_OPTS)
    bad = [k for k in res.report["masks"]["skipped"] if "DICOM SEG mask" in k["reason"]]
    assert bad and res.num_images == len(_rows(tmp_path / "out2"))  # images all written


def test_summary_counts_images_and_masks_apart(tree, tmp_path):
    """'N written' once counted mask PNGs as images (86 images showed as 172 written)."""
    args = ["prepare", str(tree), "-o", str(tmp_path / "o"), "--masks", "--size", "16"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    n = len(_rows(tmp_path / "o"))
    assert f"prepared {n} images" in first.output and f"({n} written, 0 unchanged" in first.output
    assert f"masks: {n} in " in first.output and f"({n} written, 0 unchanged)" in first.output
    again = CliRunner().invoke(cli, args)
    assert f"({n} written" not in again.output and f"(0 written, {n} unchanged" in again.output
    res = prepare([tree], tmp_path / "o", MASK_OPTS)
    assert (res.num_written, res.num_unchanged) == (0, res.num_images)
    assert (res.num_masks_written, res.num_masks_unchanged) == (0, res.num_images)


def _pil_png(image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_palette_and_transparent_masks():
    """A grey palette reads by grey value; transparency (tRNS, LA, RGBA) is refused, not read
    as if opaque; a colour palette is refused naming palettes."""
    from PIL import Image

    from mrisynth.data.masks import MaskError, read_source_mask

    index = np.zeros((8, 8), np.uint8)
    index[2:4, 2:4], index[5:7, 5:7] = 1, 2
    grey = np.array([0, 63, 252], np.uint8)[index]
    pal = Image.fromarray(index, "L").convert("P")
    pal.putpalette([0, 0, 0, 63, 63, 63, 252, 252, 252] + [0] * 759)
    got = read_source_mask(_pil_png(pal), "m.png", (8, 8), CHAOS_LABELS)
    assert np.array_equal(got, np.array([0, 1, 4], np.uint8)[index])
    hidden = pal.copy()
    hidden.info["transparency"] = bytes([255, 0, 255] + [255] * 253)  # the liver transparent
    colour = pal.copy()
    colour.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    cases = {
        "transparent": [_pil_png(hidden),
                        _pil_png(Image.fromarray(np.stack([grey, grey // 2], -1), "LA")),
                        _pil_png(Image.fromarray(np.dstack([grey] * 3 + [grey | 1]), "RGBA"))],
        "palette": [_pil_png(colour)],
    }
    for reason, pngs in cases.items():
        for data in pngs:
            with pytest.raises(MaskError, match=reason):
                read_source_mask(data, "m.png", (8, 8), CHAOS_LABELS)
    opaque = np.dstack([grey] * 3 + [np.full_like(grey, 255)])
    got = read_source_mask(_pil_png(Image.fromarray(opaque, "RGBA")), "m.png", (8, 8),
                           CHAOS_LABELS)
    assert np.array_equal(got, np.array([0, 1, 4], np.uint8)[index])


class _FakeSeg:
    """What `mask_seg._labels` reads of a highdicom Segmentation: segments and their pixels."""

    def __init__(self, names, pixels):
        from pydicom.dataset import Dataset

        self.SegmentSequence = []
        for i, name in enumerate(names, start=1):
            item = Dataset()
            item.SegmentNumber, item.SegmentLabel = i, name
            self.SegmentSequence.append(item)
        self.pixels = pixels  # [1, H, W, S]

    def get(self, key, default=None):
        return getattr(self, key, default)

    def get_pixels_by_source_instance(self, source_sop_instance_uids, segment_numbers,
                                      combine_segments):
        return self.pixels[..., [n - 1 for n in segment_numbers]]


def test_seg_overlapping_segments_and_fractional_frames():
    """Two organs claiming one pixel is no label map: the slice gets no mask, with a reason
    (it once took the later segment silently). Fractional frames count from 0.5 up."""
    from mrisynth.data.mask_seg import _labels
    from mrisynth.data.masks import MaskError

    px = np.zeros((1, 6, 6, 2), np.uint8)
    px[0, 1:3, 1:3, 0] = 1  # liver
    px[0, 3:5, 3:5, 1] = 1  # spleen
    got = _labels(_FakeSeg(["Liver", "Spleen"], px), "1.2", (6, 6), CHAOS_LABELS)
    assert got.sum() == 4 * 1 + 4 * 4 and got[1, 1] == 1 and got[4, 4] == 4
    px[0, 2, 2, 1] = 1  # one spleen pixel on the liver
    with pytest.raises(MaskError, match=r"overlap at 1 pixel\(s\)"):
        _labels(_FakeSeg(["Liver", "Spleen"], px), "1.2", (6, 6), CHAOS_LABELS)
    frac = np.zeros((1, 6, 6, 1), np.float32)
    frac[0, 0, :3, 0] = [0.2, 0.5, 0.9]
    got = _labels(_FakeSeg(["Liver"], frac), "1.2", (6, 6), CHAOS_LABELS)
    assert got[0, :3].tolist() == [0, 1, 1] and got.sum() == 2


def test_seg_referencing_unknown_slices_gives_no_mask(tree, tmp_path):
    import pydicom

    root = _copy(tree, tmp_path / "in")
    path = _seg_from_ground(root)
    ds = pydicom.dcmread(path)
    for item in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence:
        item.ReferencedSOPInstanceUID = "1.2.3." + item.ReferencedSOPInstanceUID[-20:]
    for frame in ds.PerFrameFunctionalGroupsSequence:
        for src in frame.DerivationImageSequence[0].SourceImageSequence:
            src.ReferencedSOPInstanceUID = "1.2.3." + src.ReferencedSOPInstanceUID[-20:]
    ds.save_as(path)
    res = prepare([root], tmp_path / "out", MASK_OPTS)
    rows = _rows(tmp_path / "out")
    without = {r["file"] for r in rows if not r["mask_file"]}
    assert without and len(res.report["masks"]["images_without_mask"]) == len(without)
    assert res.num_images == len(rows)  # every image still written
