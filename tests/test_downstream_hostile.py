"""`mrisynth downstream` inputs: paired archives and generation folders as the other stages write
them, and every way they can be wrong (no masks, sizes, empty or unfinished folders, bad pairs,
shared patients, NaN and other hostile options)."""

from __future__ import annotations

import json
import os
import zipfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from downstream_data import LABELS, la_png, phantom_set, write_generated, write_paired_zip
from mrisynth.cli import cli
from mrisynth.downstream.options import DownstreamOptions, parse_fractions
from mrisynth.downstream.pairs import check_compatible, load_archive, load_generated
from mrisynth.errors import ConfigError, InputError
from mrisynth.report.downstream import check_document, dice_rows, hd95_rows
from mrisynth.untrusted import BadValue


@pytest.fixture(scope="module")
def sets():
    return phantom_set(range(1, 3), 16, 4, "real"), phantom_set(range(5, 6), 16, 4, "test")


@pytest.fixture()
def files(sets, tmp_path):
    real, test = sets
    write_paired_zip(tmp_path / "data.zip", real)
    write_paired_zip(tmp_path / "data-holdout.zip", test)
    write_generated(tmp_path / "synth", phantom_set(range(8, 9), 16, 4))
    return tmp_path


def test_paired_archive_round_trip(sets, files):
    real, _ = sets
    got = load_archive(files / "data.zip", "--real")
    assert np.array_equal(got.images, real.images) and np.array_equal(got.labels, real.labels)
    assert got.groups == real.groups and got.label_names == LABELS


def test_archive_without_masks(sets, tmp_path):
    real, _ = sets
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as zf:
        for i in range(2):
            zf.writestr(f"{i}.png", cv2.imencode(".png", real.images[i])[1].tobytes())
    with pytest.raises(InputError, match=r"--real .*plain.zip: has no masks.*--masks"):
        load_archive(tmp_path / "plain.zip", "--real")


def test_generated_folder_with_manifest_and_two_channel_pngs(sets, files, tmp_path):
    got = load_generated(files / "synth", 5)
    assert len(got) == 4 and got.skipped == () and got.label_names is None
    folder = tmp_path / "la"
    folder.mkdir()
    real, _ = sets
    levels = np.asarray([0, 64, 128, 191, 255], dtype=np.uint8)
    for i in range(3):
        (folder / f"seed{i:06d}.png").write_bytes(la_png(real.images[i], levels[real.labels[i]]))
    two = load_generated(folder, 5)
    assert np.array_equal(two.labels, real.labels[:3])


def test_empty_and_unfinished_synthetic_folders(tmp_path, files):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image \\+ mask pairs"):
        load_generated(tmp_path / "empty", 5)
    (files / "synth" / "generation.partial.json").write_text("{}")
    with pytest.raises(InputError, match="unfinished generation"):
        load_generated(files / "synth", 5)


def test_bad_pairs_are_skipped_with_reasons(files):
    folder = files / "synth"
    cv2.imwrite(str(folder / "seed000001-mask.png"), np.zeros((8, 8), np.uint8))  # wrong size
    cv2.imwrite(str(folder / "seed000002-mask.png"), np.full((16, 16), 7, np.uint8))  # label 7
    cv2.imwrite(str(folder / "seed000003.png"), np.zeros((16, 16), np.uint16))  # 16-bit
    rows = (folder / "manifest.csv").read_text().splitlines()
    os.mkfifo(folder / "seed000005.png")  # named in the manifest: must not block the read
    rows += ["../data.zip,png,9,seed000000-mask.png", "seed000009.png,png,9,",
             "seed000005.png,png,5,seed000000-mask.png"]  # fmt: skip
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    got = load_generated(folder, 5)
    assert len(got) == 1
    reasons = dict(got.skipped)
    assert "8x8" in reasons["seed000001.png"] and "label 7" in reasons["seed000002.png"]
    assert "8-bit" in reasons["seed000003.png"] and "not a PNG" in reasons["../data.zip"]
    assert "cannot be read" in reasons["seed000009.png"]
    assert "not a regular file" in reasons["seed000005.png"]
    assert not (files / "data.zip").read_bytes().startswith(b"\x89PNG")  # inputs untouched


def test_sizes_labels_and_patients_must_agree(sets, files):
    real, test = sets
    small = phantom_set(range(8, 9), 16, 2)
    big = phantom_set(range(8, 9), 32, 2)
    with pytest.raises(InputError, match=r"--synthetic .*32x32 px but --real"):
        check_compatible(real, big, test)
    check_compatible(real, small, test)
    with pytest.raises(InputError, match="shares 2 patient"):
        check_compatible(real, small, real)
    relabelled = type(test)(test.source, test.images, test.labels, test.groups, LABELS[:4])
    with pytest.raises(InputError, match="labels"):
        check_compatible(real, small, relabelled)


@pytest.mark.parametrize(
    "field, value",
    [("lr", float("nan")), ("lr", 0.0), ("ratio", float("inf")), ("ratio", float("nan")),
     ("steps", 0), ("steps", 2.5), ("batch_size", True), ("real_fractions", (float("nan"),)),
     ("ratio", 100.0), ("seeds", ()), ("seeds", (-1,)), ("seeds", (2**40,)), ("seeds", ("0",)),
     ("channels", (8,))],
)  # fmt: skip
def test_hostile_options(field, value):
    with pytest.raises(ConfigError):
        DownstreamOptions(**{field: value}).check()


@pytest.mark.parametrize("text", ["nan", "0", "1.5", "a", ",", "-0.1", "inf"])
def test_hostile_fractions(text):
    with pytest.raises(ConfigError, match="--real-fractions"):
        parse_fractions(text)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr", "nan"], "--lr"),
        (["--ratio", "nan"], "--ratio"),
        (["--real-fractions", "0.1,nan"], "--real-fractions"),
        (["--seeds", "x"], "--seeds"),
        (["--steps", "-1"], "--steps"),
        (["--batch-size", "1e9"], "batch-size"),
        (["--device", "tpu"], "--device"),
        (["--ratio", "-1"], "--ratio"),
        (["--ratio", "1e9"], "--ratio"),
        (["--real-fractions", "0,2,nan"], "--real-fractions"),
        (["--seeds", "0-100000"], "more than 100 seeds"),  # refused before a list is built
        (["--seeds", "0-4294967295"], "more than 100 seeds"),
    ],
)
def test_cli_hostile_options_one_line(files, extra, message):
    args = ["downstream", "--real", str(files / "data.zip"), "--synthetic", str(files / "synth"),
            "--outdir", str(files / "out"), *extra]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and res.output.startswith("Error: ") and message in res.output
    assert res.output.count("\n") == 1 and not (files / "out").exists()


def test_an_unexpanded_pattern_is_not_made_a_folder(files):
    args = ["downstream", "--real", str(files / "data.zip"), "--synthetic", str(files / "synth"),
            "--outdir", str(files / "runs" / "00000-*" / "downstream")]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and "shell pattern" in res.output and res.output.count("\n") == 1
    assert not (files / "runs").exists()


def test_cli_never_writes_into_an_input(files):
    before = sorted(p.name for p in (files / "synth").iterdir())
    for outdir in (files / "synth", files / "synth" / "ds"):
        args = ["downstream", "--real", str(files / "data.zip"), "--synthetic",
                str(files / "synth"), "--outdir", str(outdir)]  # fmt: skip
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 1 and "inside --synthetic" in res.output
    assert sorted(p.name for p in (files / "synth").iterdir()) == before


def test_cli_runs_and_finds_the_holdout(files):
    args = ["downstream", "--real", str(files / "data.zip"), "--synthetic", str(files / "synth"),
            "--outdir", str(files / "out"), "--steps", "2", "--batch-size", "4", "--seeds", "0",
            "--no-hd95", "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "real+synthetic" in res.output and "Wilcoxon" in res.output
    assert "HD95" not in res.output  # --no-hd95: no table of n/a
    doc = json.loads((files / "out" / "downstream.json").read_text())
    assert doc["data"]["test"]["num_patients"] == 1 and doc["data"]["real"]["num_patients"] == 2
    missing = CliRunner().invoke(cli, [*args[:-2], "--outdir", str(files / "o2"),
                                       "--real", str(files / "data-holdout.zip")])  # fmt: skip
    assert missing.exit_code == 1 and "data-holdout-holdout.zip" in missing.output


def test_report_reader_refuses_hostile_documents(files):
    args = ["downstream", "--real", str(files / "data.zip"), "--synthetic", str(files / "synth"),
            "--outdir", str(files / "o"), "--steps", "1", "--batch-size", "4", "--seeds", "0"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((files / "o" / "downstream.json").read_text())
    header, rows = dice_rows(check_document(doc))
    assert header[1] == "liver" and [r[0] for r in rows][:3] == ["real", "synthetic",
                                                                 "real+synthetic"]  # fmt: skip
    hd95_header, hd95_table = hd95_rows(check_document(doc))  # measured: shown, in pixels
    assert hd95_header[1] == "liver HD95 (px)" and len(hd95_table) == 3
    assert "HD95 (px)" in res.output
    for path, value in [(("format",), "x"), (("organs",), "liver"), (("organs",), [1]),
                        (("results", "dice", "means", "real", "liver", "mean"), 1e308),
                        (("results", "dice", "means", "real", "liver", "mean"), "0.5"),
                        (("budget", "steps"), -1), (("chance_dice",), [float("nan")]),
                        (("results", "hd95", "means", "real", "liver", "mean"), 1e308),
                        (("results", "hd95", "means", "real", "liver", "std"), -1),
                        (("results", "hd95"), [])]:  # fmt: skip
        bad = json.loads(json.dumps(doc))
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(BadValue):
            check_document(bad)


def test_report_shows_the_study_of_the_run(files, tmp_path):
    from fake_runs import make_run
    from mrisynth.cli.report import write_report

    run = make_run(tmp_path / "runs", with_metrics=False)
    args = ["downstream", "--real", str(files / "data.zip"), "--synthetic", str(files / "synth"),
            "--outdir", str(run / "downstream"), "--steps", "1", "--batch-size", "4", "--seeds",
            "0,1"]  # fmt: skip
    assert CliRunner().invoke(cli, args).exit_code == 0
    page = write_report(run, tmp_path / "report", panel_images=0, device="cpu").read_text()
    assert "Downstream segmentation" in page and "real+synthetic" in page
    assert "Wilcoxon" in page and 'src="downstream.png"' in page
    assert "<th>liver HD95 (px)</th>" in page and "95th-percentile Hausdorff" in page
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| arm | liver |" in md and "| arm | liver HD95 (px) |" in md
    (run / "downstream" / "downstream.png").write_bytes(b"\x89PNG not really")
    (run / "downstream" / "downstream.json").write_text('{"format": "mrisynth-downstream"}')
    page = write_report(run, tmp_path / "report2", panel_images=0, device="cpu").read_text()
    assert "Downstream segmentation" not in page  # a tampered study is left out, not a crash


@pytest.mark.slow
def test_demo_quick_downstream(tmp_path):
    """`mrisynth demo --quick --downstream`: paired data through every stage, the study in the
    run folder, its section in the report."""
    out = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["demo", "--quick", "--downstream", "--outdir", str(out),
                                   "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "[7/8] Does synthetic data help?" in res.output and "[8/8] Writing" in res.output
    run_dir = next((out / "runs").iterdir())
    doc = json.loads((run_dir / "downstream" / "downstream.json").read_text())
    assert doc["data"]["synthetic"]["num_images"] == 32 and doc["data"]["test"]["num_patients"] == 1
    assert "Downstream segmentation" in (run_dir / "report" / "index.html").read_text()
    both = CliRunner().invoke(cli, ["demo", "--cond", "--downstream", "--outdir", str(out)])
    assert both.exit_code == 1 and "choose one" in both.output


def test_a_folder_of_junk_is_counted_not_flooded(files, monkeypatch, caplog):
    """Thousands of bad pairs: a few warnings and a bounded listing, every one counted."""
    from mrisynth.downstream import pairs

    monkeypatch.setattr(pairs, "MAX_LOGGED", 2)
    monkeypatch.setattr(pairs, "MAX_LISTED", 3)
    folder = files / "synth"
    (folder / "manifest.csv").unlink()
    for i in range(10, 30):
        (folder / f"seed{i:06d}.png").write_bytes(b"junk")
    got = load_generated(folder, 5)
    assert len(got) == 4 and len(got.skipped) == 20
    warned = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warned) == 3 and "18 more pairs skipped" in warned[-1].getMessage()
    described = got.describe()
    assert described["skipped_count"] == 20 and len(described["skipped"]) == 3


def test_no_arm_trains_on_a_test_patient(sets, files, tmp_path):
    """The holdout copied in as --synthetic, or into an archive without patient keys, and a
    generator whose run trained on the --test archive: one Error line each, nothing trained."""
    from mrisynth.data.archive import ImageArchive
    from mrisynth.hashing import sha256_file

    real, test = sets
    write_generated(tmp_path / "leak", test)
    base = ["downstream", "--real", str(files / "data.zip"), "--test",
            str(files / "data-holdout.zip"), "--steps", "1", "--batch-size", "4"]  # fmt: skip
    res = CliRunner().invoke(cli, [*base, "--synthetic", str(tmp_path / "leak"),
                                   "--outdir", str(tmp_path / "o1")])  # fmt: skip
    assert res.exit_code == 1 and "--synthetic" in res.output and "identical" in res.output
    assert not (tmp_path / "o1").exists()
    anonymous = type(real)("r", np.concatenate([real.images, test.images[:1]]),
                           np.concatenate([real.labels, test.labels[:1]]),
                           ("",) * (len(real) + 1), LABELS)  # fmt: skip
    from mrisynth.downstream.leakage import check_no_test_slices

    with pytest.raises(InputError, match=r"--real .*1 slice"):
        check_no_test_slices(anonymous, real, test)
    run = tmp_path / "runs" / "00000-paired"
    run.mkdir(parents=True)
    archive = ImageArchive(files / "data-holdout.zip")
    (run / "training_options.json").write_text(json.dumps({"dataset_hash": archive.content_hash()}))
    archive.close()
    snap = run / "network-snapshot-000000.200.safetensors"
    snap.write_bytes(b"weights")
    (files / "synth" / "generation.json").write_text(json.dumps(
        {"network": str(run), "snapshot": snap.name, "model_sha256": sha256_file(snap)}))
    res = CliRunner().invoke(cli, [*base, "--synthetic", str(files / "synth"),
                                   "--outdir", str(tmp_path / "o2")])  # fmt: skip
    assert res.exit_code == 1 and "trained on --test" in res.output
    (run / "training_options.json").write_text(json.dumps({"dataset_hash": "0" * 64}))
    res = CliRunner().invoke(cli, [*base, "--synthetic", str(files / "synth"), "--no-hd95",
                                   "--seeds", "0", "--outdir", str(tmp_path / "o3")])  # fmt: skip
    assert res.exit_code == 0 and "Warning: " in res.output and "cannot be checked" in res.output
