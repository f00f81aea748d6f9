"""One projected target's files, and reading a saved latent back.

Per target, in `OUTDIR/<group>/<key>/`: `target.png`, `projected.png`, `latent.safetensors`
(tensor `ws` [num_ws, w_dim] and one `noise.<layer>` map per synthesis layer; metadata: the
snapshot, whether the rows may differ (w+), the settings), `loss.csv` and `loss.png` (the curve),
then `summary.json` last: its presence marks the target done (a resumed run skips it).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from mrisynth import atomic, untrusted
from mrisynth.errors import CheckpointError
from mrisynth.imaging import encode_png, quantize_images
from mrisynth.metrics import msssim
from mrisynth.networks.serialization import check_safetensors_file, safetensors_call
from mrisynth.projection.projector import ProjectionResult

SUMMARY = "summary.json"
LATENT = "latent.safetensors"
LATENT_FORMAT = "mrisynth-projection-1"
CURVE_COLUMNS = ("step", "loss", "lr", "pixel", "msssim", "vgg", "noise_reg")


def image_errors(projected: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """Projection error of uint8 [C, H, W] images in grey levels: MSE, RMSE, PSNR (dB) and
    MS-SSIM (mean over channels; None under 11 pixels)."""
    a, b = projected.astype(np.float64), target.astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    psnr = 10 * math.log10(255.0**2 / mse) if mse > 0 else None  # identical: no finite PSNR
    ssim = float(np.mean(msssim.ms_ssim(a, b))) if min(a.shape[1:]) >= msssim.WINDOW else None
    return {"mse": mse, "rmse": math.sqrt(mse), "psnr_db": psnr, "msssim": ssim}


def curve_csv(curve: list[dict[str, float]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CURVE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in curve:
        writer.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def curve_png(curve: list[dict[str, float]], title: str) -> bytes:
    """Loss against step (log scale), one line per term that was used."""
    from mrisynth.report.figures import figure_png, new_figure

    fig, axes = new_figure(figsize=(6.0, 3.6))
    ax = axes[0][0]
    steps = [row["step"] for row in curve]
    for key in ("loss", "pixel", "msssim", "vgg", "noise_reg"):
        values = [row[key] for row in curve if key in row]
        if len(values) == len(steps) and any(v > 0 for v in values):
            ax.plot(steps, [max(v, 1e-12) for v in values], label=key, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title[:80], fontsize=9)
    ax.legend(fontsize=8)
    return figure_png(fig)


def write_target(
    folder: Path, result: ProjectionResult, target: np.ndarray, summary: dict[str, Any],
    latent_meta: dict[str, Any],
) -> dict[str, Any]:
    """Write one target's files, `summary.json` last; returns the summary with its errors."""
    projected = quantize_images(result.image)[0].cpu().numpy()  # uint8 [C, H, W]
    summary = {**summary, "errors": image_errors(projected, target),
               "final_loss": result.curve[-1]["loss"] if result.curve else None}  # fmt: skip
    atomic.write_bytes(folder / "target.png", encode_png(target))
    atomic.write_bytes(folder / "projected.png", encode_png(projected))
    tensors = {"ws": result.ws.float().cpu().contiguous()}
    tensors.update({f"noise.{k}": v.float().cpu().contiguous() for k, v in result.noise.items()})
    meta = {"format": LATENT_FORMAT, "w_plus": json.dumps(result.w_plus),
            "settings": json.dumps(latent_meta)}  # fmt: skip
    atomic.write_bytes(folder / LATENT, safetensors.torch.save(tensors, metadata=meta))
    atomic.write_text(folder / "loss.csv", curve_csv(result.curve))
    atomic.write_bytes(folder / "loss.png", curve_png(result.curve, summary.get("target", "")))
    atomic.write_json(folder / SUMMARY, summary)
    return summary


def read_summary(folder: Path) -> dict[str, Any] | None:
    """A finished target's summary, or None (absent, unreadable or not ours: redo it)."""
    path = folder / SUMMARY
    if not path.is_file():
        return None
    try:
        data = untrusted.loads(path.read_text(encoding="utf-8"), str(path))
    except (OSError, ValueError, untrusted.BadValue):
        return None
    return data if isinstance(data, dict) else None


def load_latent(path: str | Path) -> tuple[torch.Tensor, dict[str, torch.Tensor], bool]:
    """A saved projection: (ws [num_ws, w_dim], noise maps by layer name, w_plus).
    Re-render it with `projector.synthesize(G, ws, noise)`."""
    path = Path(path)
    header = check_safetensors_file(path)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != LATENT_FORMAT:
        raise CheckpointError(f"{path}: not a latent written by `mrisynth project`")
    tensors = safetensors_call(path, "tensors", lambda: safetensors.torch.load_file(str(path)))
    ws = tensors.pop("ws", None)
    if ws is None or ws.ndim != 2 or not torch.isfinite(ws).all():
        raise CheckpointError(f"{path}: no finite 'ws' [num_ws, w_dim] tensor")
    noise = {k.removeprefix("noise."): v for k, v in tensors.items() if k.startswith("noise.")}
    return ws, noise, meta.get("w_plus") == "true"
