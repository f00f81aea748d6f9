"""A generator as one self-contained file that runs without mrisynth: ONNX or TorchScript.

The graph is mapping + truncation + synthesis: inputs `z` float32 [N, z_dim], `c` float32
[N, c_dim] (conditional generators only, one-hot) and `psi` float32 [N] (only when the
truncation is an input; otherwise it is fixed at export); output `img` float32 [N, C, H, W]
on the network scale, roughly [-1, 1] and not clamped (uint8 as mrisynth writes it:
clip(img * 127.5 + 128, 0, 255), truncated). N is free. The noise inputs are the network's
constant maps (generate's default `--noise-mode const`), so a z gives the image `mrisynth
generate` gives for it. The modulated convolutions use the non-fused form (a plain convolution
whose weights do not depend on the batch), which both exporters keep batch-independent; it
equals the fused form to fp32 rounding.

ONNX goes through torch.export (`torch.onnx.export(dynamo=True)`): the TorchScript-based
exporter cannot export the up-sampling transposed convolution, whose kernel is flipped at run
time ("kernel of unknown shape"). TorchScript is `torch.jit.trace` (the networks use Python
control flow that `torch.jit.script` cannot compile); the trace is checked at other batch sizes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrisynth import atomic
from mrisynth.errors import ConfigError, MissingDependencyError
from mrisynth.generate.seeds import latents_from_seeds

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
METADATA_KEY = "mrisynth"  # ONNX metadata_props key / TorchScript extra file name
MAX_BATCH = 4096


class _Exported(nn.Module):
    """mapping -> truncation -> synthesis with constant noise; psi fixed (float) or an input."""

    def __init__(self, G: nn.Module, psi: float | None) -> None:
        super().__init__()
        self.G = copy.deepcopy(G).cpu().float().eval().requires_grad_(False)
        self.psi = psi

    def run(self, z: torch.Tensor, c: torch.Tensor | None, psi: torch.Tensor | None):
        if psi is None:  # fixed: exactly the generator's own truncation
            ws = self.G.mapping(z, c, truncation_psi=self.psi)
        else:
            ws = self.G.mapping(z, c)  # [N, num_ws, w_dim]
            w_avg = self.G.mapping.w_avg
            ws = w_avg + psi.reshape(-1, 1, 1) * (ws - w_avg)
        return self.G.synthesis(ws, noise_mode="const", fused_modconv=False, force_fp32=True)


class _Z(_Exported):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.run(z, None, None)


class _ZC(_Exported):
    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.run(z, c, None)


class _ZPsi(_Exported):
    def forward(self, z: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return self.run(z, None, psi)


class _ZCPsi(_Exported):
    def forward(self, z: torch.Tensor, c: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return self.run(z, c, psi)


def input_names(c_dim: int, psi_input: bool) -> list[str]:
    return ["z"] + ["c"] * (c_dim > 0) + ["psi"] * psi_input


def exportable(G: nn.Module, psi: float | None) -> _Exported:
    """The module that is exported; psi None = truncation as an input."""
    cls = {(False, False): _Z, (True, False): _ZC, (False, True): _ZPsi, (True, True): _ZCPsi}
    return cls[(int(G.c_dim) > 0, psi is None)](G, psi)


def example_inputs(G: nn.Module, seeds: list[int], psi_values: list[float] | None = None,
                   class_idx: int = 0) -> dict[str, torch.Tensor]:  # fmt: skip
    """Inputs by name: z of the seeds (as `mrisynth generate` draws them), one-hot c, psi."""
    n = len(seeds)
    inputs = {"z": torch.from_numpy(latents_from_seeds(seeds, int(G.z_dim)))}
    if int(G.c_dim) > 0:
        c = torch.zeros(n, int(G.c_dim))
        c[:, class_idx % int(G.c_dim)] = 1
        inputs["c"] = c
    if psi_values is not None:
        inputs["psi"] = torch.tensor(psi_values, dtype=torch.float32)
    return inputs


def export_generator(G: nn.Module, path: str | Path, fmt: str, psi: float | None,
                     metadata: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Write G as `fmt` to `path` atomically; returns {format, inputs, bytes, export_seconds}."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    module = exportable(G, psi)
    names = input_names(int(G.c_dim), psi is None)
    example = example_inputs(G, [0, 1], [0.7, 0.5] if psi is None else None)
    args = tuple(example[k] for k in names)
    meta = json.dumps({**metadata, "inputs": names, "output": "img", "z_dim": int(G.z_dim),
                       "c_dim": int(G.c_dim), "img_channels": int(G.img_channels),
                       "img_resolution": int(G.img_resolution), "truncation_psi": psi,
                       "noise_mode": "const", "output_range": "[-1, 1], not clamped"})  # fmt: skip
    start = time.monotonic()
    with atomic.atomic_path(path) as tmp:
        if fmt == "onnx":
            _write_onnx(module, args, names, tmp, meta)
        else:
            _write_torchscript(module, args, tmp, meta)
    seconds = time.monotonic() - start
    size = Path(path).stat().st_size
    log.info("exported %s (%d bytes) in %.1f s", path, size, seconds)
    return {"format": fmt, "inputs": names, "bytes": size, "export_seconds": seconds}


def _write_onnx(module: nn.Module, args: tuple, names: list[str], tmp: Path, meta: str) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as e:
        raise MissingDependencyError(
            "ONNX export needs onnx and onnxscript: pip install 'mrisynth[export]'"
        ) from e
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    shapes = {k: {0: batch} for k in names}
    quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed" per missing op
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        stack.callback(quiet.setLevel, level)
        warnings.simplefilter("ignore")  # the exporter's own deprecation chatter
        torch.onnx.export(module, args, str(tmp), input_names=names, output_names=["img"],
                          dynamic_shapes=shapes, dynamo=True, external_data=False,
                          verbose=False)  # fmt: skip
    model = onnx.load(str(tmp))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta
    onnx.save(model, str(tmp))


def _write_torchscript(module: nn.Module, args: tuple, tmp: Path, meta: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings on shape checks, TorchScript deprecation
        traced = torch.jit.trace(module, args, check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={METADATA_KEY: meta})


def load_runner(path: str | Path, fmt: str):
    """A function inputs-by-name -> numpy image, running the file with its plain runtime."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise MissingDependencyError(
                "checking an ONNX export needs onnxruntime: pip install 'mrisynth[export]' (or "
                "pass --no-check)"
            ) from e
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda inputs: session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(str(path), map_location="cpu")
    order = json.loads(read_torchscript_metadata(path))["inputs"]

    def run(inputs: dict[str, torch.Tensor]) -> np.ndarray:
        with torch.no_grad():
            return net(*[inputs[k] for k in order]).numpy()

    return run


def read_torchscript_metadata(path: str | Path) -> str:
    extra = {METADATA_KEY: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return extra[METADATA_KEY]


@torch.no_grad()
def reference_images(
    G: nn.Module, inputs: dict[str, torch.Tensor], psi: float | None
) -> np.ndarray:
    """What mrisynth's own generator makes for the same inputs (one call per psi value)."""
    G = G.cpu().float().eval()
    c = inputs.get("c")
    if psi is not None:
        return G(inputs["z"], c, truncation_psi=psi, noise_mode="const").numpy()
    rows = [G(inputs["z"][i : i + 1], None if c is None else c[i : i + 1],
              truncation_psi=float(p), noise_mode="const")
            for i, p in enumerate(inputs["psi"])]  # fmt: skip
    return torch.cat(rows).numpy()


def check_export(G: nn.Module, path: str | Path, fmt: str, psi: float | None) -> dict[str, Any]:
    """Run the file with onnxruntime / torch.jit.load at batch sizes 1 and 3 and compare with
    the PyTorch generator: {max_abs_diff, ms_per_image (exported), ms_per_image_torch}."""
    run = load_runner(path, fmt)
    worst, seconds, ref_seconds, count = 0.0, 0.0, 0.0, 0
    for seeds in ([0], [1, 2, 3]):
        inputs = example_inputs(G, seeds, [1.0, 0.7, 0.0][: len(seeds)] if psi is None else None)
        start = time.monotonic()
        got = run(inputs)
        seconds += time.monotonic() - start
        start = time.monotonic()
        want = reference_images(G, inputs, psi)
        ref_seconds += time.monotonic() - start
        if got.shape != want.shape:
            raise ConfigError(f"{path}: the exported model gives {list(got.shape)} for "
                              f"{len(seeds)} latents, not {list(want.shape)}")  # fmt: skip
        worst = max(worst, float(np.abs(got - want).max()))
        count += len(seeds)
    return {"max_abs_diff": worst, "ms_per_image": 1000 * seconds / count,
            "ms_per_image_torch": 1000 * ref_seconds / count}  # fmt: skip
