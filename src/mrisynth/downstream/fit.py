"""Training one unit: MONAI's 2D U-Net with Dice + cross-entropy loss, Adam, a fixed budget.

Nothing here is written by hand that MONAI provides (network, loss); the loop only feeds the
batches `units.batches` chooses. Images are scaled to [0, 1]; no augmentation, so arms differ
only in their data (a left-right flip would also swap the kidneys' labels).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from mrisynth.downstream.options import DownstreamOptions
from mrisynth.downstream.pairs import SegSet
from mrisynth.downstream.units import Unit, batches, real_subset

log = logging.getLogger(__name__)


def build_unet(num_labels: int, channels: tuple[int, ...]) -> torch.nn.Module:
    """The segmenter of every arm: 1 input channel, one output per label (background too)."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=num_labels,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=1,  # 2 in MONAI tutorials; 1 halves the CPU time
    )


def as_tensors(images: np.ndarray, labels: np.ndarray, device: torch.device):
    """uint8 [N, H, W] pairs -> float [N, 1, H, W] in [0, 1] and long [N, 1, H, W]."""
    x = torch.from_numpy(images).to(device=device, dtype=torch.float32).div_(255.0)[:, None]
    y = torch.from_numpy(labels).to(device=device, dtype=torch.long)[:, None]
    return x, y


def train_unit(
    unit: Unit,
    opts: DownstreamOptions,
    real: SegSet,
    synthetic: SegSet,
    num_labels: int,
    device: torch.device,
) -> tuple[torch.nn.Module, dict]:
    """Train one unit's U-Net; returns it (eval mode) and what it trained on."""
    from monai.losses import DiceCELoss

    torch.manual_seed(unit.seed)  # same initialisation for every arm of a seed
    model = build_unet(num_labels, opts.channels).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=opts.lr)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    pool = real_subset(len(real), unit.fraction, unit.seed)
    real_x, real_y = as_tensors(real.images, real.labels, device)
    syn_x, syn_y = as_tensors(synthetic.images, synthetic.labels, device)
    model.train()
    t0, losses = time.time(), []
    for real_idx, syn_idx in batches(unit, opts, pool, len(synthetic)):
        x = torch.cat([real_x[real_idx], syn_x[syn_idx]])  # [B, 1, H, W]
        y = torch.cat([real_y[real_idx], syn_y[syn_idx]])
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    model.eval()
    n_real, n_syn = unit.batch_split(opts)
    info = {
        "steps": opts.steps,
        "batch_size": opts.batch_size,
        "batch_real": n_real,
        "batch_synthetic": n_syn,
        "real_slices_available": len(pool) if n_real else 0,
        "synthetic_slices_available": len(synthetic) if n_syn else 0,
        "final_loss": float(np.mean(losses[-max(1, len(losses) // 10) :])),
        "train_seconds": round(time.time() - t0, 2),
    }
    log.info(
        "%s: %d steps in %.1f s, loss %.3f",
        unit.name,
        opts.steps,
        info["train_seconds"],
        info["final_loss"],
    )
    return model, info
