"""`mrisynth metrics --images`: any generator's PNGs get the same metrics, records and checks."""

import hashlib
import json
import zipfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.errors import InputError
from mrisynth.metrics import outcomes, records
from mrisynth.metrics.evaluations import default_output_dir, evaluate_images
from mrisynth.metrics.extractor import standin_detector
from mrisynth.metrics.runner import EvalOptions


def _ellipse(i, size=16):
    img = np.zeros([size, size], np.uint8)
    c = size // 2
    cv2.ellipse(img, (c, c), (size // 4 + i % 3, size // 5 + i % 2), 0, 0, 360, 100 + 5 * i, -1)
    return img


def _write_train(folder, num=24, patients=4):
    folder.mkdir(parents=True)
    rows = ["file,patient_key"]
    for i in range(num):
        cv2.imwrite(str(folder / f"img{i:03d}.png"), _ellipse(i))
        rows.append(f"img{i:03d}.png,pt{i % patients}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


def _write_gen(folder, num=10, size=16, channels=1):
    folder.mkdir(parents=True)
    for i in range(num):
        img = _ellipse(i + 30, size)
        if channels == 3:
            img = np.repeat(img[:, :, None], 3, axis=2)
        cv2.imwrite(str(folder / f"sample_{i:02d}.png"), img)
    return folder


def _tree_hash(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(p.read_bytes() if p.is_file() else b"dir")
    return h.hexdigest()


@pytest.fixture
def data(tmp_path):
    return _write_train(tmp_path / "train")


def _run(*args):
    return CliRunner().invoke(cli, ["metrics", *map(str, args)])


def test_cli_images_folder_end_to_end(tmp_path, data):
    gen = _write_gen(tmp_path / "gen")
    before = _tree_hash(gen)
    metrics = "intensity_hist,pixfd,memorisation"
    out = _run("--images", gen, "--data", data, "--metrics", metrics, "--json", "-")
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)  # only JSON on standard output
    out_dir = tmp_path / "gen-metrics"
    assert payload["out_dir"] == str(out_dir) and payload["snapshot"] == "gen"
    # 10 images: every count is capped and the names say so
    assert set(payload["results"]) == {"intensity_hist10", "pixfd10", "memorisation10"}
    rec = payload["records"]["pixfd10"]
    assert rec["kimg"] is None and rec["num_gen"] == 10 and rec["num_real"] == 24
    assert rec["reference_exact"] is False and "not FID" in rec["caveats"][0]
    assert rec["source"] == {"kind": "images", "sha256": rec["source"]["sha256"]}
    on_disk = records.read_records(out_dir / "metric-pixfd10.jsonl")
    assert on_disk == [rec]
    names = sorted(r["gen_name"] for r in payload["memorisation"]["images"])
    assert names == [f"sample_{i:02d}.png" for i in range(10)]
    assert (out_dir / "memorisation-gen.json").is_file()
    assert (out_dir / "memorisation-gen.png").is_file()
    assert _tree_hash(gen) == before  # inputs are never modified
    # the same images again: nothing recomputed; --force recomputes
    again = _run("--images", gen, "--data", data, "--metrics", "pixfd")
    assert again.exit_code == 0 and "Already recorded" in again.output
    assert len(records.read_records(out_dir / "metric-pixfd10.jsonl")) == 1
    forced = _run("--images", gen, "--data", data, "--metrics", "pixfd", "--force")
    assert forced.exit_code == 0 and "pixfd10" in forced.output and "not FID" in forced.output
    assert "default: beside the images" in forced.output
    assert len(records.read_records(out_dir / "metric-pixfd10.jsonl")) == 2


def test_zip_equals_folder_and_changed_images_are_evaluated_anew(tmp_path, data):
    gen = _write_gen(tmp_path / "gen")
    with zipfile.ZipFile(tmp_path / "gen.zip", "w") as zf:
        for p in sorted(gen.iterdir()):
            zf.write(p, p.name)
    a = evaluate_images(gen, data, "pixfd,body_area", tmp_path / "o")
    b = evaluate_images(tmp_path / "gen.zip", data, "pixfd,body_area", tmp_path / "o")
    assert a.results == b.results and b.snapshot == "gen.zip"
    assert default_output_dir(tmp_path / "gen.zip") == tmp_path / "gen-metrics"
    cv2.imwrite(str(gen / "sample_00.png"), _ellipse(3))
    c = evaluate_images(gen, data, "pixfd", tmp_path / "o")
    assert c.skipped == [] and c.results["pixfd10"] != a.results["pixfd10"]


def test_detector_metrics_see_each_image_once_and_name_it(tmp_path, data):
    gen = _write_gen(tmp_path / "gen", num=12)
    ext = standin_detector("inception", width=1 / 16, resize_to=75)
    seen = []
    net = ext.net
    ext.net = lambda x, return_features=False: seen.append(x.shape[0]) or net(x, return_features)
    opts = EvalOptions(extractors={"standin-inception": ext}, batch_size=5, use_cache=False)
    ev = evaluate_images(gen, data, "standin_kd50k_full", tmp_path / "o", opts=opts)
    assert set(ev.results) == {"standin_kd12_full"}
    assert sum(seen) == 12 + 24  # each generated and each real image once
    rec = records.read_records(tmp_path / "o" / "metric-standin_kd12_full.jsonl")[0]
    assert rec["num_gen"] == 12 and rec["detector"]["name"].startswith("standin-inception")


def test_a_killed_evaluation_keeps_finished_metrics(tmp_path, data, monkeypatch):
    gen = _write_gen(tmp_path / "gen")
    real_compute = outcomes.compute_one

    def dies_on_pixfd(spec, *args, **kwargs):
        if spec.family == "pixfd":
            raise KeyboardInterrupt
        return real_compute(spec, *args, **kwargs)

    monkeypatch.setattr(outcomes, "compute_one", dies_on_pixfd)
    with pytest.raises(KeyboardInterrupt):
        evaluate_images(gen, data, "body_area,pixfd", tmp_path / "o")
    assert records.read_records(tmp_path / "o" / "metric-body_area10.jsonl")
    monkeypatch.setattr(outcomes, "compute_one", real_compute)
    ev = evaluate_images(gen, data, "body_area,pixfd", tmp_path / "o")
    assert ev.skipped == ["body_area10"] and set(ev.results) == {"pixfd10"}


def _png_claiming(width, height):
    """A PNG whose header claims a huge grey image (a decompression-bomb shape), no pixels."""
    import struct
    import zlib

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _bad_sets(tmp_path):
    """(name, folder or file, expected message part) for hostile --images inputs."""
    cases = [
        ("bigger", _write_gen(tmp_path / "bigger", size=32), "32x32 with 1 channel(s)"),
        ("rgb", _write_gen(tmp_path / "rgb", channels=3), "16x16 with 3 channel(s)"),
        ("empty", tmp_path / "empty", "contains no PNG images"),
        ("one", _write_gen(tmp_path / "one", num=1), "1 image(s)"),
    ]
    (tmp_path / "empty").mkdir()
    garbage = _write_gen(tmp_path / "garbage")
    (garbage / "sample_05.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    cases.append(("garbage", garbage, "sample_05.png"))
    truncated = _write_gen(tmp_path / "truncated")
    full = (truncated / "sample_07.png").read_bytes()
    (truncated / "sample_07.png").write_bytes(full[: len(full) // 2])
    cases.append(("truncated", truncated, "sample_07.png"))
    wide = _write_gen(tmp_path / "wide")
    cv2.imwrite(str(wide / "sample_00.png"), np.zeros([16, 20], np.uint8))  # sorted first
    cases.append(("non-square", wide, "not square"))
    deep = _write_gen(tmp_path / "deep")
    cv2.imwrite(str(deep / "sample_03.png"), np.zeros([16, 16], np.uint16))
    cases.append(("16-bit", deep, "sample_03.png"))
    rgba = _write_gen(tmp_path / "rgba")
    cv2.imwrite(str(rgba / "sample_04.png"), np.zeros([16, 16, 4], np.uint8))
    cases.append(("rgba", rgba, "sample_04.png"))
    huge = _write_gen(tmp_path / "huge")
    (huge / "sample_02.png").write_bytes(_png_claiming(100_000, 100_000))
    cases.append(("size claim", huge, "sample_02.png"))
    partial = _write_gen(tmp_path / "partial")
    (partial / "generation.partial.json").write_text("{}")
    cases.append(("unfinished generate", partial, "unfinished `mrisynth generate`"))
    notzip = tmp_path / "fake.zip"
    notzip.write_bytes(b"PK\x03\x04 not really")
    cases.append(("not a zip", notzip, "fake.zip"))
    return cases


def test_hostile_image_sets_are_one_error_line_and_write_nothing(tmp_path, data):
    for label, images, says in _bad_sets(tmp_path):
        before = _tree_hash(images) if images.is_dir() else images.read_bytes()
        out = _run("--images", images, "--data", data, "--metrics", "pixfd,memorisation")
        assert out.exit_code == 1, (label, out.output)
        assert out.output.startswith("Error: ") and out.output.count("\n") == 1, label
        assert says in out.output and "Traceback" not in out.output, (label, out.output)
        assert not default_output_dir(images).exists(), label
        after = _tree_hash(images) if images.is_dir() else images.read_bytes()
        assert after == before, label


def test_option_mistakes_are_one_error_line(tmp_path, data):
    gen = _write_gen(tmp_path / "gen")
    cases = [
        (["--images", gen, "--metrics", "pixfd"], "--images needs --data"),
        (["--images", gen, "--network", gen, "--data", data], "either --network"),
        (["--data", data], "either --network"),
        (["--images", gen, "--data", data, "-o", gen / "sub"], "inside the --images folder"),
        (["--images", gen, "--data", data, "-o", gen], "inside the --images folder"),
        (["--images", gen, "--data", data, "-o", data / "m"], "inside the --data folder"),
        (["--images", gen, "--data", data, "--trust-detector", "abc"], "not a sha256"),
        (["--images", gen, "--data", data, "--metrics", "fid2k_full,fid3k_full"], "ask for each"),
        (["--images", gen, "--data", data, "--metrics", "pr10_10_full"], "more than k=10"),
    ]
    for args, says in cases:
        out = _run(*args)
        assert out.exit_code == 1 and out.output.startswith("Error: "), (args, out.output)
        assert says in out.output and out.output.count("\n") == 1, (args, out.output)
    blocker = tmp_path / "file-out"
    blocker.write_text("x")
    out = _run("--images", gen, "--data", data, "-o", blocker, "--metrics", "pixfd")
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert sorted(p.name for p in gen.iterdir()) == [f"sample_{i:02d}.png" for i in range(10)]


def test_images_api_rejects_mismatch_with_training_data(tmp_path, data):
    gen = _write_gen(tmp_path / "gen", size=8)
    with pytest.raises(InputError, match=r"8x8 with 1 channel.*16x16 with 1"):
        evaluate_images(gen, data, "pixfd", tmp_path / "o")


def test_each_image_is_decoded_once_and_memory_fallback_agrees(tmp_path, data, monkeypatch):
    """Two image counts (two streams) over 10 files: each PNG is decoded once (the check
    before any work keeps them); with too little memory to keep them, the same numbers."""
    import mrisynth.data.archive as archive_mod

    gen = _write_gen(tmp_path / "gen")
    decodes = []
    real_decode = archive_mod.decode_png

    def counting(data_, name, *args, **kwargs):
        decodes.append(str(name).rsplit("/", 1)[-1])
        return real_decode(data_, name, *args, **kwargs)

    monkeypatch.setattr(archive_mod, "decode_png", counting)
    names = "intensity_hist5,body_area10,pixfd10"
    kept = evaluate_images(gen, data, names, tmp_path / "a", opts=EvalOptions(use_cache=False))
    per_file = {n: decodes.count(n) for n in set(decodes) if n.startswith("sample_")}
    assert len(per_file) == 10
    assert per_file.pop("sample_00.png") <= 2  # also read once to learn the archive's shape
    assert set(per_file.values()) == {1}
    monkeypatch.setattr(archive_mod, "_available_memory", lambda: 1024)  # nothing fits
    decodes.clear()
    streamed = evaluate_images(gen, data, names, tmp_path / "b", opts=EvalOptions(use_cache=False))
    assert streamed.results == kept.results
    assert decodes.count("sample_09.png") == 2  # check, then the 10-image stream
    assert decodes.count("sample_04.png") == 3  # and the 5-image stream


def test_links_where_records_would_go_are_one_error_line(tmp_path, data):
    """A planted metric-<name>.jsonl link in the output folder, or a default output folder
    (not named by the user) that is a link: one Error line, nothing written outside."""
    gen = _write_gen(tmp_path / "gen")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "metric-intensity_hist10.jsonl").symlink_to(outside)
    out = _run("--images", gen, "--data", data, "--metrics", "intensity_hist", "-o", tmp_path / "o")
    assert out.exit_code == 1 and out.output.count("Error:") == 1, out.output
    assert "metric-intensity_hist10.jsonl: not a plain file but a symbolic link" in out.output
    assert outside.read_text() == "keep me\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "gen-metrics").symlink_to(elsewhere, target_is_directory=True)
    out = _run("--images", gen, "--data", data, "--metrics", "intensity_hist")
    assert out.exit_code == 1 and "default output folder" in out.output and "pass -o" in out.output
    assert list(elsewhere.iterdir()) == []
