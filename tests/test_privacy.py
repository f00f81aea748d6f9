"""Privacy by default: no input folder or file name in any shared output (manifest, report,
training ZIP), patient keys that cannot be reversed without a secret kept out of every shared
output, and the secret reused, or supplied to link several prepares."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import zipfile

import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.data.phantom_dicom import write_phantom_tree

# hospital exports name folders and files after patients
ROOT = "Smith_John_19700101"
PATIENT_DIR = "DOE^JANE_4711"
LEAKS = (ROOT, "Smith", "DOE", "JANE", "4711", "Train_Sets", "InPhase", "IMG-0004", ".dcm")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A phantom tree under identity-carrying names, with one broken file among them."""
    base = tmp_path_factory.mktemp("export")
    phantom = base / "phantom"
    write_phantom_tree(phantom, 2, seed=4, matrix_sizes=(32,), num_slices=(4, 4), t2spir=False)
    root = base / ROOT
    shutil.copytree(phantom / "Train_Sets" / "MR" / "1", root / PATIENT_DIR)
    shutil.copytree(phantom / "Train_Sets" / "MR" / "2", root / "DOE^JOHN_0815")
    bad = next((root / PATIENT_DIR).rglob("*.dcm"))
    (root / PATIENT_DIR / f"{PATIENT_DIR}_broken.dcm").write_bytes(bad.read_bytes()[:400])
    return root


def _run(*args):
    res = CliRunner().invoke(cli, [*map(str, args), "--size", "16", "--no-progress"])
    assert res.exit_code == 0, res.output
    return res


def _shared(out):
    """Everything `dataset` may carry or a user may share: the non-hidden files."""
    return {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}


def test_no_input_names_in_shared_outputs_or_the_zip(export, tmp_path):
    out = tmp_path / "out"
    _run("prepare", export, "-o", out, "--sequence", "any")
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"] and report["inputs"] == ["input-1"]
    res = CliRunner().invoke(cli, ["dataset", str(out), "-o", str(tmp_path / "d.zip")])
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(tmp_path / "d.zip") as z:
        members = {n: z.read(n) for n in z.namelist()}
    assert not any(n.startswith(".") for n in members)  # secret and source map stay home
    secret = (out / ".mrisynth-secret").read_bytes().strip()
    for blob in [*_shared(out).values(), *members.values(), "\n".join(members).encode()]:
        for word in LEAKS:
            assert word.encode() not in blob, word
        assert secret not in blob


def test_skip_reasons_name_no_path(export, tmp_path):
    out = tmp_path / "out"
    _run("prepare", export, "-o", out)
    skipped = json.loads((out / "report.json").read_text())["skipped"]
    assert all(s["source"].startswith("src-") for s in skipped)
    # the local source map (mode 0600, never packed) tells the user which file it was
    sources = (out / ".mrisynth-sources.csv").read_text()
    line = next(x for x in sources.splitlines() if x.endswith(f'{PATIENT_DIR}_broken.dcm"'))
    assert line == f'{line.split(",")[0]},"{PATIENT_DIR}/{PATIENT_DIR}_broken.dcm"'
    assert line.split(",")[0] in {s["source"] for s in skipped}
    assert stat.S_IMODE((out / ".mrisynth-sources.csv").stat().st_mode) == 0o600


def test_secret_is_private_reused_and_linkable(export, tmp_path):
    out = tmp_path / "out"
    _run("prepare", export, "-o", out)
    secret = out / ".mrisynth-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    names = sorted(p.name for p in out.glob("*.png"))
    _run("prepare", export, "-o", out)  # re-run: same secret, same keys, same names
    assert sorted(p.name for p in out.glob("*.png")) == names
    other = tmp_path / "other"
    _run("prepare", export, "-o", other)  # a new folder: new secret, unlinkable keys
    assert not set(names) & {p.name for p in other.glob("*.png")}
    linked = tmp_path / "linked"
    _run("prepare", export, "-o", linked, "--patient-key-secret", secret)
    assert sorted(p.name for p in linked.glob("*.png")) == names
    assert not (linked / ".mrisynth-secret").exists()  # a supplied secret is not copied


def test_patient_key_is_not_the_public_salted_hash(export, tmp_path):
    """The old key (sha256 of a public salt + ID) fell to a brute force over 6-digit IDs; the
    keyed one does not match any such guess."""
    out = tmp_path / "out"
    _run("prepare", export, "-o", out)
    keys = {line.split(",")[1] for line in (out / "manifest.csv").read_text().splitlines()[1:]}
    for pid in ("PHANTOM-001", "PHANTOM-002"):
        for ref in (pid, f"{pid}|{ROOT}", f"{pid}|{PATIENT_DIR}"):
            old = "p" + hashlib.sha256(f"mrisynth-patient-key-v1|{ref}".encode()).hexdigest()[:10]
            assert old not in keys


def test_secret_file_is_checked(export, tmp_path):
    short = tmp_path / "short"
    short.write_text("abc")
    res = CliRunner().invoke(
        cli, ["prepare", str(export), "-o", str(tmp_path / "o"), "--patient-key-secret", str(short)]
    )
    assert res.exit_code == 1 and "Error:" in res.output and "at least 16 bytes" in res.output
    out = tmp_path / "tampered"
    _run("prepare", export, "-o", out)
    (out / ".mrisynth-secret").write_text("not hex")
    res = CliRunner().invoke(cli, ["prepare", str(export), "-o", str(out), "--size", "16"])
    assert res.exit_code == 1 and "not a secret written by mrisynth" in res.output


def test_keep_source_paths_and_the_old_flag(export, tmp_path):
    out = tmp_path / "kept"
    _run("prepare", export, "-o", out, "--keep-source-paths")
    assert PATIENT_DIR.encode() in (out / "manifest.csv").read_bytes()
    assert not (out / ".mrisynth-sources.csv").exists()
    res = _run("prepare", export, "-o", tmp_path / "old", "--hide-source-paths")
    assert "default now" in res.output
    assert PATIENT_DIR.encode() not in (tmp_path / "old" / "manifest.csv").read_bytes()
