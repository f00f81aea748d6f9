"""mrisynth export: ONNX / TorchScript generators that match the PyTorch one."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mrisynth.cli import cli
from mrisynth.config import resolve_preset
from mrisynth.generate.sampling import SamplingOptions, sample_images
from mrisynth.generate.seeds import latents_from_seeds
from mrisynth.interop.export_model import METADATA_KEY, export_generator
from mrisynth.networks import build_generator, network_config_from_preset
from mrisynth.training.checkpoint import save_snapshot


def tiny_generator(c_dim: int = 0, channels: int = 1):
    torch.manual_seed(1)
    cfg = network_config_from_preset(resolve_preset("tiny", 16), channels, c_dim)
    G = build_generator(cfg).eval()
    with torch.no_grad():  # as after training: truncation and the noise maps matter
        G.mapping.w_avg.normal_()
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G


def reference(G, z: np.ndarray, c: torch.Tensor | None, psi) -> np.ndarray:
    """mrisynth's own generator, one image at a time (psi per image)."""
    with torch.no_grad():
        return torch.cat([
            G(torch.from_numpy(z[i : i + 1]), None if c is None else c[i : i + 1],
              truncation_psi=float(psi[i]), noise_mode="const")
            for i in range(len(z))
        ]).numpy()  # fmt: skip


def run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_onnx_conditional_with_psi_input_matches_pytorch_and_generate(tmp_path):
    import onnx
    import onnxruntime as ort

    G = tiny_generator(c_dim=3)
    path = tmp_path / "g.onnx"
    info = export_generator(G, path, "onnx", None, {"snapshot": "s"})
    assert info["inputs"] == ["z", "c", "psi"] and info["bytes"] == path.stat().st_size
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta[METADATA_KEY])["c_dim"] == 3
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "c", "psi"]
    seeds = [4, 5, 6, 7, 8]  # another batch size than the export's example (2)
    z = latents_from_seeds(seeds, G.z_dim)
    c = torch.eye(3)[[2, 2, 2, 2, 2]]
    psi = np.array([1.0, 0.7, 0.5, 0.0, -0.5], np.float32)
    got = session.run(None, {"z": z, "c": c.numpy(), "psi": psi})[0]
    want = reference(G, z, c, psi)
    assert got.shape == (5, 1, 16, 16)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(got[0] - got[3]).max() > 1e-2  # psi and the latent matter
    # uint8 as `mrisynth generate --class 2 --trunc 0.7` writes them
    one = session.run(None, {"z": z, "c": c.numpy(), "psi": np.full(5, 0.7, np.float32)})[0]
    u8 = np.clip(one * 127.5 + 128, 0, 255).astype(np.uint8)
    opts = SamplingOptions(truncation_psi=0.7, class_idx=2, batch_size=5)
    made = np.stack([img for _, img in sample_images(G, seeds, opts)])
    diff = np.abs(u8.astype(int) - made.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.parametrize("c_dim,psi", [(0, 0.7), (2, None)])
def test_torchscript_matches_pytorch_at_any_batch_size(tmp_path, c_dim, psi):
    G = tiny_generator(c_dim=c_dim, channels=3)
    path = tmp_path / "g.pt"
    export_generator(G, path, "torchscript", psi, {"snapshot": "s"})
    extra = {METADATA_KEY: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra[METADATA_KEY])
    assert meta["truncation_psi"] == psi and meta["img_channels"] == 3
    for n in (1, 4):
        z = latents_from_seeds(list(range(n)), G.z_dim)
        psis = np.linspace(1.0, 0.3, n).astype(np.float32) if psi is None else [psi] * n
        c = torch.eye(c_dim)[[i % c_dim for i in range(n)]] if c_dim else None
        args = [torch.from_numpy(z)] + ([c] if c_dim else []) + (
            [torch.from_numpy(psis)] if psi is None else [])  # fmt: skip
        with torch.no_grad():
            got = net(*args).numpy()
        assert np.abs(got - reference(G, z, c, psis)).max() < 1e-4


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    G = tiny_generator()
    run_dir = tmp_path_factory.mktemp("run")
    return save_snapshot(run_dir / "network-snapshot-000002.safetensors", G=G, D=None, G_ema=G,
                         state={"kimg": 2})  # fmt: skip


def test_cli_writes_and_checks_a_torchscript_file(snapshot, tmp_path):
    out = tmp_path / "sub" / "g.pt"
    res = run(["export", "--network", str(snapshot), "--format", "torchscript", "--output",
               str(out), "--truncation-psi", "input"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "inputs z, psi" in res.output and "max |diff|" in res.output
    assert out.is_file() and not [p for p in out.parent.iterdir() if p.name != "g.pt"]


def _error_line(res, *expected: str) -> None:
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for text in expected:
        assert text in lines[0], (text, lines[0])


def test_hostile_export_command_lines(snapshot, tmp_path):
    base = ["export", "--network", str(snapshot), "--format", "torchscript", "--output"]
    out = str(tmp_path / "g.pt")
    for psi in ("nan", "inf", "abc", "1e300", ""):
        _error_line(run([*base, out, "--truncation-psi", psi]), "--truncation-psi")
    _error_line(run([*base, str(tmp_path)]), str(tmp_path))  # a folder
    before = snapshot.read_bytes()
    _error_line(run([*base, str(snapshot)]), "snapshot itself")
    assert snapshot.read_bytes() == before
    _error_line(run(["export", "--network", str(tmp_path / "none.safetensors"), "--format",
                     "onnx", "--output", out]), "none.safetensors")  # fmt: skip
    _error_line(run(["export", "--network", str(snapshot), "--format", "tflite", "--output",
                     out]), "tflite")  # fmt: skip
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _error_line(run([*base, str(blocker / "g.pt")]), "file")
    _error_line(run([*base, str(blocker / "sub" / "g.pt")]), "is a file, not a folder")
    assert not (tmp_path / "g.pt").exists()


def test_an_existing_output_is_replaced_only_with_force(snapshot, tmp_path):
    """export overwrote any file named as --output (a README, another model) unasked."""
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    base = ["export", "--network", str(snapshot), "--format", "torchscript", "--output", str(out),
            "--no-check"]  # fmt: skip
    _error_line(run(base), "notes.txt", "exists", "--force")
    assert out.read_text() == "keep me"
    res = run([*base, "--force"])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 1000
