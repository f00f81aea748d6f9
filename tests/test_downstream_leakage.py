"""The generator's training data, as its run recorded it, holds no --test patient: found from
generation.json through the run folder (snapshot checked by sha256) to training_options.json
and the archive itself (patient keys and slices), from any current folder; when it cannot be
found, the study says so plainly (and records it) instead of passing silently."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from downstream_data import phantom_set, write_generated, write_paired_zip
from mrisynth.cli import cli
from mrisynth.data.archive import ImageArchive
from mrisynth.downstream.leakage import check_generator
from mrisynth.downstream.pairs import load_archive
from mrisynth.errors import InputError
from mrisynth.generate.folder_files import generator_run, run_link
from mrisynth.report import downstream as report_ds
from mrisynth.untrusted import BadValue


@pytest.fixture(scope="module")
def sets():
    return (phantom_set(range(1, 3), 16, 3, "real"), phantom_set(range(5, 6), 16, 3, "test"),
            phantom_set(range(8, 9), 16, 3))  # fmt: skip


@pytest.fixture()
def study(sets, tmp_path):
    real, test, synthetic = sets
    write_paired_zip(tmp_path / "data.zip", real)
    write_paired_zip(tmp_path / "data-holdout.zip", test)
    write_generated(tmp_path / "synth", synthetic)
    return tmp_path


def _hash(path) -> str:
    archive = ImageArchive(path)
    try:
        return archive.content_hash()
    finally:
        archive.close()


def make_run(root, synth, data, record_hash=True, link=True):
    """A run folder that trained on `data` and the generation.json generate writes for it."""
    run = root / "runs" / "00000-paired"
    run.mkdir(parents=True)
    snap = run / "network-snapshot-000000.200.safetensors"
    snap.write_bytes(b"weights of the generator")
    opts = {"user": {"data": str(data)}, "data_resolved": str(data.resolve())}
    if record_hash:
        opts["dataset_hash"] = _hash(data)
    (run / "training_options.json").write_text(json.dumps(opts))
    info = {"network": "runs/00000-paired", "snapshot": snap.name,
            "model_sha256": hashlib.sha256(snap.read_bytes()).hexdigest(),
            **(run_link(run, synth) if link else {})}  # fmt: skip
    (synth / "generation.json").write_text(json.dumps(info))
    return run


def _check(root, test_set):
    return check_generator(root / "synth", root / "data.zip", root / "data-holdout.zip", test_set)


def test_trained_on_real_is_checked_from_any_folder(study, sets, monkeypatch):
    run = make_run(study, study / "synth", study / "data.zip")
    assert generator_run(study / "synth").run_dir is not None
    monkeypatch.chdir(study.parent)  # 'runs/00000-paired' as typed no longer resolves
    got = _check(study, sets[1])
    assert got.checked and "trained on --real" in got.detail and str(run.name) in got.detail


def test_another_archive_with_a_test_patient_or_slice_is_refused(study, sets):
    real, test, _ = sets
    leaky = type(real)("x", np.concatenate([real.images, test.images[:1]]),
                       np.concatenate([real.labels, test.labels[:1]]),
                       real.groups + test.groups[:1], real.label_names)  # fmt: skip
    write_paired_zip(study / "other.zip", leaky)
    make_run(study, study / "synth", study / "other.zip")
    with pytest.raises(InputError, match=r"other\.zip, which holds 1 --test patient.*1 --test sl"):
        _check(study, test)
    anon = type(real)("x", leaky.images, leaky.labels, ("",) * len(leaky), real.label_names)
    write_paired_zip(study / "other.zip", anon)  # no patient keys: the slice still tells
    (study / "runs" / "00000-paired" / "training_options.json").write_text(
        json.dumps({"data": str(study / "other.zip"), "dataset_hash": _hash(study / "other.zip")}))
    with pytest.raises(InputError, match=r"0 --test patient\(s\) and 1 --test slice"):
        _check(study, test)


def test_another_clean_archive_is_checked(study, sets):
    real, test, _ = sets
    write_paired_zip(study / "other.zip", real)
    os.rename(study / "data.zip", study / "data2.zip")  # --real is another file
    write_paired_zip(study / "data.zip", phantom_set(range(3, 4), 16, 3, "r2"))
    make_run(study, study / "synth", study / "other.zip")
    got = _check(study, test)
    assert got.checked and "other.zip (6 slices): no --test patient key or slice" in got.detail


@pytest.mark.parametrize("how", ["no-info", "moved", "other-weights", "no-archive", "changed",
                                 "hostile"])  # fmt: skip
def test_what_cannot_be_checked_is_said(study, sets, how, monkeypatch):
    monkeypatch.chdir(study.parent)  # the recorded 'runs/...' as typed resolves nowhere
    write_paired_zip(study / "other.zip", phantom_set(range(3, 4), 16, 3, "o"))
    run = make_run(study, study / "synth", study / "other.zip", link=how != "moved")
    if how == "no-info":
        (study / "synth" / "generation.json").unlink()
    elif how == "moved":
        os.rename(run.parent, study / "elsewhere")
    elif how == "other-weights":
        (run / "network-snapshot-000000.200.safetensors").write_bytes(b"retrained")
    elif how == "no-archive":
        (run / "training_options.json").write_text('{"dataset_hash": "0"}')
    elif how == "changed":
        write_paired_zip(study / "other.zip", sets[0])
    else:
        (study / "synth" / "generation.json").write_text('{"network": ["\\u0000"]}')
    reason = {"no-info": "has no generation.json", "moved": "is not in the run folders tried",
              "other-weights": "is not in the run folders", "no-archive": "names no training",
              "changed": "has changed since training", "hostile": "cannot be used"}[how]
    got = _check(study, sets[1])
    assert not got.checked and "cannot be checked" in got.detail and reason in got.detail
    assert "\n" not in got.detail


def test_cli_says_it_and_records_it(study, sets):
    base = ["downstream", "--real", str(study / "data.zip"), "--synthetic", str(study / "synth"),
            "--steps", "1", "--batch-size", "4", "--seeds", "0", "--no-hd95"]  # fmt: skip
    res = CliRunner().invoke(cli, [*base, "--outdir", str(study / "o1")])  # no generation record
    assert res.exit_code == 0, res.output
    assert "Warning: --synthetic" in res.output and "cannot be checked" in res.output
    doc = json.loads((study / "o1" / "downstream.json").read_text())
    assert doc["data"]["generator"]["checked"] is False
    assert "trained on held-out patients could not be checked" in res.output  # table sentence
    for value, said in [(True, "holds no held-out patient"), (False, "could not be checked")]:
        doc["data"]["generator"]["checked"] = value
        assert said in report_ds.test_sentence(report_ds.check_document(doc))  # report too
    doc["data"]["generator"]["checked"] = "yes"
    with pytest.raises(BadValue):
        report_ds.check_document(doc)
    del doc["data"]["generator"]  # a study from before: no claim either way
    assert "checked" not in report_ds.test_sentence(report_ds.check_document(doc))
    make_run(study, study / "synth", study / "data-holdout.zip")  # the generator saw --test
    res = CliRunner().invoke(cli, [*base, "--outdir", str(study / "o2")])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "trained on --test" in res.output
    assert not (study / "o2").exists()
    assert len(load_archive(study / "data-holdout.zip", "x")) == 3  # inputs untouched


def test_recorded_paths_never_name_the_users_home(study, sets, monkeypatch, tmp_path_factory):
    # The run records its archive resolved (absolute); downstream.json travels with the results,
    # so a path under the home folder is shown from '~', one under the current folder relatively.
    real, test, _ = sets
    write_paired_zip(study / "other.zip", real)
    os.rename(study / "data.zip", study / "data2.zip")
    write_paired_zip(study / "data.zip", phantom_set(range(3, 4), 16, 3, "r2"))
    make_run(study, study / "synth", study / "other.zip")
    monkeypatch.setenv("HOME", str(study.parent))
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    got = _check(study, test)
    assert got.checked and f"~/{study.name}/other.zip (6 slices)" in got.detail
    assert str(study.parent) not in got.detail
    monkeypatch.chdir(study)
    assert "trained on other.zip (6 slices)" in _check(study, test).detail
