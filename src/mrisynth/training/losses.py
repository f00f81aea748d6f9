"""StyleGAN2-ADA losses: non-saturating logistic, lazy R1 and path-length regularisation.

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (arXiv 1912.04958)
and "Training GANs with Limited Data" (arXiv 2006.06676). Every image the discriminator sees,
reals, fakes and the R1 pass, goes through the same augmentation pipe with the same p.

Matches the reference step: w_avg is tracked on every training-mode mapping call (G main, G reg,
D main); the path-length penalty uses the *updated* running mean with this batch's term still
in the graph; the real logits' signs are reported by the main D pass and the R1 pass alike (ADA
counts both); `gain` is the lazy interval, and micro-batches are summed, not averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mrisynth.training import distributed

# Phase names: 'main' = the adversarial loss, 'reg' = lazy regulariser, 'both' = the two at once
# (used when a regulariser runs every step).
PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


class StyleGAN2Loss:
    """Accumulates gradients for one phase and one micro-batch; returns the values to log.

    `fused_modconv` picks the modulated-conv form used in training (None: the network config's),
    `channels_last` the networks' memory format (None: the config's);
    `compiled` holds torch.compile'd G.synthesis and D for the main phases (the regularisers need
    double backward, which compiled graphs do not give, so they stay eager).
    """

    def __init__(
        self,
        G: torch.nn.Module,
        D: torch.nn.Module,
        augment_pipe: torch.nn.Module | None = None,
        *,
        r1_gamma: float,
        style_mixing_prob: float = 0.9,
        pl_weight: float = 2.0,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        fused_modconv: bool | None = None,
        channels_last: bool | None = None,
        compiled: tuple[torch.nn.Module, torch.nn.Module] | None = None,
    ) -> None:
        self.G, self.D, self.augment_pipe = G, D, augment_pipe
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        self.fused_modconv, self.channels_last = fused_modconv, channels_last
        self.main_synthesis, self.main_D = compiled if compiled else (G.synthesis, D)
        device = next(G.parameters()).device
        self.pl_mean = torch.zeros([], device=device)  # running mean of path lengths

    # -- forward helpers ---------------------------------------------------------------------
    def run_G(
        self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = True, main: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z [N, z_dim], c [N, c_dim] -> (img [N, C, H, W], ws [N, num_ws, w_dim]).

        Style mixing: with probability `style_mixing_prob` the ws from a random cutoff on come
        from a second latent, so that the network does not assume adjacent styles correlate.
        update_emas: track w_avg (every training-mode call does, as in the reference).
        """
        ws = self.G.mapping(z, c, update_emas=update_emas)  # [N, num_ws, w_dim]
        if self.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = torch.randint(1, num_ws, [], device=ws.device)
            mix = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
            ws2 = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            take = torch.arange(num_ws, device=ws.device)[None, :, None] >= cutoff
            ws = torch.where(take, ws2, ws)
        synthesis = self.main_synthesis if main else self.G.synthesis
        img = synthesis(ws, fused_modconv=self.fused_modconv, channels_last=self.channels_last)
        return img, ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor, main: bool = False) -> torch.Tensor:
        """img [N, C, H, W] -> logits [N, 1], augmented first when a pipe is set."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return (self.main_D if main else self.D)(img, c, channels_last=self.channels_last)

    # -- one phase, one micro-batch ------------------------------------------------------------
    def accumulate_gradients(
        self,
        phase: str,
        real_img: torch.Tensor,
        real_c: torch.Tensor,
        gen_z: torch.Tensor,
        gen_c: torch.Tensor,
        gain: float,
    ) -> dict[str, torch.Tensor]:
        """Backpropagate `phase`'s loss times `gain` into .grad; returns detached per-sample values.

        real_img: [N, C, H, W] in [-1, 1]; gen_z: [N, z_dim]; gain is the phase's lazy interval
        (1 for main phases); micro-batches of one step add up, as in the reference.
        """
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        do_Gmain = phase in ("Gmain", "Gboth")
        do_Dmain = phase in ("Dmain", "Dboth")
        do_Gpl = phase in ("Greg", "Gboth") and self.pl_weight > 0
        do_Dr1 = phase in ("Dreg", "Dboth") and self.r1_gamma > 0
        stats: dict[str, torch.Tensor] = {}
        if do_Gmain:
            self._G_main(gen_z, gen_c, gain, stats)
        if do_Gpl:
            self._G_pl(gen_z, gen_c, gain, stats)
        loss_Dgen = self._D_gen(gen_z, gen_c, gain, stats) if do_Dmain else None
        if do_Dmain or do_Dr1:
            self._D_real(real_img, real_c, gain, stats, loss_Dgen, do_Dr1)
        return stats

    # -- the four terms --------------------------------------------------------------------------
    def _G_main(self, gen_z, gen_c, gain: float, stats: dict) -> None:
        """G: make D call the fakes real (non-saturating logistic loss)."""
        gen_img, _ = self.run_G(gen_z, gen_c, main=True)
        gen_logits = self.run_D(gen_img, gen_c, main=True)  # [N, 1]
        loss_Gmain = F.softplus(-gen_logits)
        stats["Loss/scores/fake"] = gen_logits.detach()
        stats["Loss/signs/fake"] = gen_logits.detach().sign()
        stats["Loss/G/loss"] = loss_Gmain.detach()
        loss_Gmain.mean().mul(gain).backward()

    def _G_pl(self, gen_z, gen_c, gain: float, stats: dict) -> None:
        """G: path-length regularisation on a part of the batch (needs double backward)."""
        n = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        gen_img, gen_ws = self.run_G(gen_z[:n], gen_c[:n])
        h, w = gen_img.shape[2], gen_img.shape[3]
        pl_noise = torch.randn_like(gen_img) / (h * w) ** 0.5
        (pl_grads,) = torch.autograd.grad(
            outputs=(gen_img * pl_noise).sum(), inputs=gen_ws, create_graph=True
        )  # [n, num_ws, w_dim]
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()  # [n]
        batch_mean = pl_lengths.mean()
        # The value is the mean over all processes (one pl_mean everywhere); the gradient is
        # this process's own batch term, as in the reference, where each GPU has its own mean.
        synced = distributed.all_reduce_mean(batch_mean.detach().clone())
        batch_mean = batch_mean + (synced - batch_mean.detach())
        pl_mean = self.pl_mean.lerp(batch_mean, self.pl_decay)  # batch term still in the graph
        self.pl_mean.copy_(pl_mean.detach())
        pl_penalty = (pl_lengths - pl_mean).square()
        stats["Loss/pl_penalty"] = pl_penalty.detach()
        loss_Gpl = pl_penalty * self.pl_weight
        stats["Loss/G/reg"] = loss_Gpl.detach()
        loss_Gpl.mean().mul(gain).backward()

    def _D_gen(self, gen_z, gen_c, gain: float, stats: dict) -> torch.Tensor:
        """D: push the fakes' logits down (G is run in training mode: w_avg moves)."""
        with torch.no_grad():
            gen_img, _ = self.run_G(gen_z, gen_c, main=True)
        gen_logits = self.run_D(gen_img, gen_c, main=True)
        loss_Dgen = F.softplus(gen_logits)
        stats["Loss/scores/fake"] = gen_logits.detach()
        stats["Loss/signs/fake"] = gen_logits.detach().sign()
        stats["Loss/D/loss_fake"] = loss_Dgen.detach()
        loss_Dgen.mean().mul(gain).backward()
        return loss_Dgen.detach()

    def _D_real(self, real_img, real_c, gain: float, stats: dict, loss_Dgen, do_Dr1: bool) -> None:
        """D: push the reals' logits up, and/or R1 on the (augmented) reals."""
        real_tmp = real_img.detach().requires_grad_(do_Dr1)
        real_logits = self.run_D(real_tmp, real_c, main=not do_Dr1)  # [N, 1]
        stats["Loss/scores/real"] = real_logits.detach()
        stats["Loss/signs/real"] = real_logits.detach().sign()  # ADA counts both passes
        loss = torch.zeros_like(real_logits)
        if loss_Dgen is not None:
            loss_Dreal = F.softplus(-real_logits)
            stats["Loss/D/loss"] = (loss_Dgen + loss_Dreal).detach()
            loss = loss + loss_Dreal
        if do_Dr1:
            # Gradient of D(aug(x)) with respect to the un-augmented x (through the pipe).
            (r1_grads,) = torch.autograd.grad(
                outputs=real_logits.sum(), inputs=real_tmp, create_graph=True
            )  # [N, C, H, W]
            r1_penalty = r1_grads.square().sum([1, 2, 3])  # [N]
            stats["Loss/r1_penalty"] = r1_penalty.detach()
            loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
            stats["Loss/D/reg"] = loss_Dr1.detach()
            loss = loss + loss_Dr1[:, None]
        loss.mean().mul(gain).backward()
