"""`generate` on hostile network files and options: one `Error:` line, nothing written; the DICOM
writer refuses unbounded header values instead of copying them."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.errors import CheckpointError, InputError
from mrisynth.generate.dicom import SeriesInfo
from mrisynth.networks import save_network
from mrisynth.networks.serialization import check_safetensors_file, load_network, safetensors_call
from mrisynth.training.checkpoint import SnapshotInfo, save_snapshot
from test_generate import tiny_generator


def _header_file(header: bytes, tail: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + tail


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nets")
    G = tiny_generator()
    snap = save_snapshot(root / "run" / "network-snapshot-000012.safetensors", G=G, D=None,
                         G_ema=G, state={"kimg": 12})
    plain = save_network(root / "plain.safetensors", G)
    sdata, pdata = snap.read_bytes(), plain.read_bytes()
    outside = json.dumps({"x": {"dtype": "F32", "shape": [10**6], "data_offsets": [0, 4 * 10**6]}})
    cases = {
        "empty": b"",
        "seven-bytes": b"\x01" * 7,
        "garbage": b"definitely not a network " * 40,
        "huge-header-claim": struct.pack("<Q", 2**62) + b"{}",
        "claim-past-end": struct.pack("<Q", 10**6) + b"{}",
        "bad-json": _header_file(b"{{{{{"),
        "json-list": _header_file(b"[1, 2]"),
        "deep-json": _header_file(b"[" * 100000 + b"]" * 100000),
        "nan-json": _header_file(b'{"__metadata__": {"x": NaN}}'),
        "offsets-outside": _header_file(outside.encode()),
        "truncated-snapshot": sdata[: len(sdata) // 2],
        "truncated-plain": pdata[: len(pdata) // 2],
        "header-only-plain": pdata[: 8 + struct.unpack("<Q", pdata[:8])[0]],
    }
    out = {}
    for name, data in cases.items():
        out[name] = root / f"{name}.safetensors"
        out[name].write_bytes(data)
    out["bad-metadata"] = root / "bad-metadata.safetensors"
    meta = {"mrisynth_network": json.dumps({"class": "Generator", "config": {"z_dim": "abc"}})}
    import safetensors.torch
    import torch

    safetensors.torch.save_file({"x": torch.zeros(2)}, str(out["bad-metadata"]), metadata=meta)
    return out


HOSTILE = ["empty", "seven-bytes", "garbage", "huge-header-claim", "claim-past-end", "bad-json",
           "json-list", "deep-json", "nan-json", "offsets-outside", "truncated-snapshot",
           "truncated-plain", "header-only-plain", "bad-metadata"]


@pytest.mark.parametrize("case", HOSTILE)
def test_generate_on_a_hostile_network_file(files, tmp_path, case):
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["generate", "--network", str(files[case]), "--outdir",
                                   str(out), "--num", "2", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1, res.output
    assert str(files[case]) in res.output
    assert not out.exists()


@pytest.mark.parametrize("case", [*HOSTILE[:12], "bad-metadata"])
def test_load_network_refuses_with_checkpoint_error(files, case):
    with pytest.raises((CheckpointError, InputError), match=case):
        load_network(files[case])


def test_layout_check_accepts_real_files_and_a_panic_is_caught(files, tmp_path):
    header = check_safetensors_file(files["truncated-snapshot"].parent / "plain.safetensors")
    assert "__metadata__" in header

    class FakePanic(BaseException):  # pyo3_runtime.PanicException derives from BaseException
        pass

    def panic():
        raise FakePanic("rust panicked")

    with pytest.raises(CheckpointError, match="rust panicked"):
        safetensors_call(tmp_path / "x.safetensors", "tensors", panic)


SERIES = dict(model_sha256="a" * 64, snapshot_name="network-snapshot-000012.safetensors",
              kimg=12, truncation_psi=0.7, noise_mode="const", class_idx=None, seeds_text="0-9")


@pytest.mark.parametrize(("field", "value"), [
    ("kimg", 10**30), ("kimg", 1e30), ("kimg", -1), ("kimg", "abc"), ("kimg", True),
    ("kimg", 12.3456), ("truncation_psi", math.nan), ("truncation_psi", math.inf),
    ("model_sha256", "zz"), ("class_idx", -3), ("seeds_text", "0-9\\x"), ("series_number", -1),
])
def test_dicom_series_refuses_unbounded_values(field, value):
    with pytest.raises(InputError, match="refusing to write DICOM"):
        SeriesInfo(**{**SERIES, field: value})


def test_dicom_series_takes_a_sub_kimg_snapshot():
    assert "kimg 0.2;" in SeriesInfo(**{**SERIES, "kimg": 0.2}).derivation(0)


def test_dicom_series_sanitises_the_file_name():
    info = SeriesInfo(**{**SERIES, "snapshot_name": "a\\b^c\n" + "é" * 300})
    assert info.snapshot_name.startswith("a_b_c_") and len(info.snapshot_name) == 128


def test_tampered_kimg_never_reaches_dicom(monkeypatch, tmp_path):
    """Even if a loader let kimg=1e30 through, generate writes nothing and says why."""
    import mrisynth.training.checkpoint as ck

    G = tiny_generator()
    fake = SnapshotInfo(path=Path(__file__), kimg=10**30, run_dir=tmp_path, dataset_hash=None)
    monkeypatch.setattr(ck, "load_generator", lambda *a, **k: (G, fake))
    out = tmp_path / "out"
    (tmp_path / "x.safetensors").write_bytes(b"")  # the path must pass the CLI's check
    x = str(tmp_path / "x.safetensors")
    res = CliRunner().invoke(cli, ["generate", "--network", x, "--outdir", str(out), "--num",
                                   "2", "--format", "dicom", "--no-progress"])
    assert res.exit_code == 1 and "kimg 1000000000000000000000000000000" in res.output
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["--seeds", "0-4294967295"], ["--num", "1000000000"], ["--num", "0"], ["--seeds", "-5"],
    ["--num", "2", "--trunc", "nan"], ["--num", "2", "--trunc", "inf"], ["--num", "2", "--batch",
    "0"], ["--num", "2", "--batch", "100000"], ["--num", "2", "--trunc-cutoff", "-1"],
])
def test_hostile_options_are_one_line_errors(files, tmp_path, args):
    plain = files["empty"].parent / "plain.safetensors"
    res = CliRunner().invoke(cli, ["generate", "--network", str(plain), "--outdir",
                                   str(tmp_path / "o"), "--no-progress", *args])
    assert res.exit_code in (1, 2) and isinstance(res.exception, SystemExit), res.output
    assert "Error" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["fifo", "file-parent"])
def test_unusable_outdir_is_one_error_line(files, tmp_path, kind):
    plain = files["empty"].parent / "plain.safetensors"
    (tmp_path / "afile").write_text("mine")
    out = tmp_path / "fifo" if kind == "fifo" else tmp_path / "afile" / "out"
    if kind == "fifo":
        os.mkfifo(out)
    res = CliRunner().invoke(cli, ["generate", "--network", str(plain), "--outdir", str(out),
                                   "--num", "2", "--no-progress"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert res.output.startswith("Error: ") and "--outdir" in res.output
    assert (tmp_path / "afile").read_text() == "mine"


def test_symlinked_outdir_is_fine(files, tmp_path):
    plain = files["empty"].parent / "plain.safetensors"
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    res = CliRunner().invoke(cli, ["generate", "--network", str(plain), "--outdir",
                                   str(tmp_path / "link"), "--num", "2", "--no-progress"])
    assert res.exit_code == 0 and (tmp_path / "real" / "manifest.csv").is_file()
