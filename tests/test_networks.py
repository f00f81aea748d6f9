"""Generator and discriminator: shapes, published parameter counts, mapping, mixing, R1 grads."""

import pytest
import torch

from mrisynth.config import resolve_preset
from mrisynth.errors import ConfigError
from mrisynth.networks import (
    Discriminator,
    Generator,
    NetworkConfig,
    build_discriminator,
    build_generator,
    network_config_from_preset,
)
from mrisynth.networks import synthesis as synthesis_module
from mrisynth.networks.layers import SynthesisLayer


def tiny_cfg(res: int = 16, channels: int = 1, c_dim: int = 0, **kw) -> NetworkConfig:
    return network_config_from_preset(resolve_preset("tiny", res), channels, c_dim, **kw)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "preset,res,g_params,d_params",
    [
        ("paper256", 256, 24_767_458, 24_001_089),
        ("paper512", 512, 30_276_583, 28_982_849),
        ("stylegan2", 1024, 30_370_060, 29_012_513),  # config-F
    ],
)
def test_parameter_counts_equal_published_ones(preset, res, g_params, d_params):
    cfg = network_config_from_preset(resolve_preset(preset, res), img_channels=3)
    with torch.device("meta"):
        G, D = build_generator(cfg), build_discriminator(cfg)
    assert count(G) == g_params
    assert count(D) == d_params
    assert count(G.mapping) == 2_101_248
    assert G.num_ws == 2 * (res.bit_length() - 1) - 2


def test_grayscale_differs_only_in_torgb_and_fromrgb():
    shapes = {}
    for channels in (1, 3):
        cfg = network_config_from_preset(resolve_preset("paper256", 256), channels)
        with torch.device("meta"):
            G, D = build_generator(cfg), build_discriminator(cfg)
        shapes[channels] = {k: v.shape for m in ("G", "D")
                            for k, v in {"G": G, "D": D}[m].state_dict(prefix=m + ".").items()}
    assert shapes[1].keys() == shapes[3].keys()
    differ = [k for k in shapes[1] if shapes[1][k] != shapes[3][k]]
    assert differ and all(".torgb." in k or ".fromrgb." in k for k in differ)


@pytest.mark.parametrize("res,channels", [(8, 1), (16, 3), (32, 1)])
def test_shapes_and_dtypes(res, channels):
    torch.manual_seed(0)
    cfg = tiny_cfg(res, channels)
    G, D = build_generator(cfg), build_discriminator(cfg)
    assert (G.z_dim, G.w_dim, G.img_channels, G.img_resolution) == (128, 128, channels, res)
    assert G.num_ws == cfg.num_ws == 2 * (res.bit_length() - 1) - 2
    z = torch.randn(4, G.z_dim)
    ws = G.mapping(z, None)
    assert ws.shape == (4, G.num_ws, G.w_dim)
    img = G(z, None)
    assert img.shape == (4, channels, res, res) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and 0.1 < img.std().item() < 10
    logits = D(img, None)
    assert logits.shape == (4, 1) and logits.dtype == torch.float32
    with pytest.raises(ConfigError):
        D(torch.randn(4, channels + 1, res, res), None)
    with pytest.raises(ConfigError):
        G.synthesis(ws[:, 1:])


def test_truncation_psi_zero_gives_w_avg_and_cutoff_limits_it():
    torch.manual_seed(1)
    G = build_generator(tiny_cfg(16))
    z = torch.randn(3, G.z_dim)
    for _ in range(3):
        G.mapping(torch.randn(8, G.z_dim), None, update_emas=True)
    w_avg = G.mapping.w_avg.clone()
    assert w_avg.abs().sum() > 0  # update_emas moved it from zero
    ws = G.mapping(z, None, truncation_psi=0)
    torch.testing.assert_close(ws, w_avg.expand_as(ws))
    plain = G.mapping(z, None)
    cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], w_avg + 0.5 * (plain[:, :2] - w_avg))
    torch.testing.assert_close(cut[:, 2:], plain[:, 2:])
    torch.testing.assert_close(G.mapping.w_avg, w_avg)  # inference leaves w_avg alone


def test_w_avg_update_is_an_ema_with_beta():
    G = build_generator(tiny_cfg(8))
    z = torch.randn(16, G.z_dim)
    w = G.mapping(z, None)[:, 0].mean(dim=0)
    G.mapping(z, None, update_emas=True)
    torch.testing.assert_close(G.mapping.w_avg, (1 - 0.995) * w)


def test_style_mixing_changes_only_layers_after_cutoff():
    torch.manual_seed(2)
    G = build_generator(tiny_cfg(16))
    layers = [m for m in G.synthesis.modules() if isinstance(m, SynthesisLayer)]
    outputs = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in layers]
    ws1 = G.mapping(torch.randn(2, G.z_dim), None)
    ws2 = G.mapping(torch.randn(2, G.z_dim), None)
    cutoff = 2  # layers: b4.conv1 (w0), b8.conv0 (w1), b8.conv1 (w2), b16.conv0 (w3), ...
    mixed = torch.cat([ws1[:, :cutoff], ws2[:, cutoff:]], dim=1)
    G.synthesis(ws1, noise_mode="const")
    first, outputs[:] = list(outputs), []
    img = G.synthesis(mixed, noise_mode="const")
    for h in hooks:
        h.remove()
    for i, (a, b) in enumerate(zip(first, outputs, strict=True)):
        assert torch.equal(a, b) == (i < cutoff), f"layer {i}"
    assert not torch.allclose(img, G.synthesis(ws1, noise_mode="const"))


def test_synthesis_is_differentiable_wrt_ws_for_path_length():
    G = build_generator(tiny_cfg(16))
    ws = G.mapping(torch.randn(2, G.z_dim), None).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="const")
    y = torch.randn_like(img) / 16
    (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    assert grad.shape == ws.shape and (grad.abs().sum(dim=2) > 0).all()
    pl = grad.square().sum(dim=2).mean(dim=1).sqrt().mean()
    pl.backward()
    assert G.synthesis.b16.conv1.weight.grad.abs().sum() > 0


def test_const_noise_is_deterministic_and_random_noise_is_not():
    torch.manual_seed(3)
    G = build_generator(tiny_cfg(16))
    for m in G.modules():
        if isinstance(m, SynthesisLayer):
            m.noise_strength.data.fill_(0.3)
    z = torch.randn(2, G.z_dim)
    torch.testing.assert_close(G(z, None, noise_mode="const"), G(z, None, noise_mode="const"))
    assert not torch.allclose(G(z, None, noise_mode="random"), G(z, None, noise_mode="random"))


@pytest.mark.parametrize("arch", ["resnet", "orig"])
def test_discriminator_r1_double_backward(arch):
    """R1 differentiates the input gradient again: every op must support double backward."""
    torch.manual_seed(4)
    D = build_discriminator(tiny_cfg(16, 3, d_architecture=arch))
    assert hasattr(D.b16, "skip") == (arch == "resnet")
    real = torch.randn(4, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(D(real, None).sum(), real, create_graph=True)
    assert grad.abs().sum() > 0
    grad.square().sum(dim=[1, 2, 3]).mean().backward()
    for name, p in D.named_parameters():
        if name == "b4.out.bias":  # a constant offset of the logit has no input gradient
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert D.b16.conv0.weight.grad.abs().sum() > 0
    assert D.b4.fc.weight.grad.abs().sum() > 0


def test_conditional_generator_and_discriminator_use_labels():
    torch.manual_seed(5)
    cfg = tiny_cfg(16, 1, c_dim=3)
    G, D = build_generator(cfg), build_discriminator(cfg)
    z = torch.randn(4, G.z_dim).repeat(2, 1)
    c = torch.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1]]
    ws = G.mapping(z, c)
    assert not torch.allclose(ws[0], ws[1])
    logits = D(G(z, c, noise_mode="const"), c)
    assert logits.shape == (8, 1)
    img = torch.randn(4, 1, 16, 16)
    assert not torch.allclose(D(img, torch.eye(3)[[0] * 4]), D(img, torch.eye(3)[[1] * 4]))
    with pytest.raises(ConfigError):
        G(z, None)
    with pytest.raises(ConfigError):
        D(img, None)


def test_fused_and_non_fused_generator_agree():
    torch.manual_seed(6)
    G = build_generator(tiny_cfg(16, 3))
    z = torch.randn(3, G.z_dim)
    torch.testing.assert_close(G(z, None, noise_mode="const", fused_modconv=True),
                               G(z, None, noise_mode="const", fused_modconv=False),
                               atol=1e-4, rtol=1e-4)


def test_cpu_runs_fp32_even_with_mixed_precision_configured():
    cfg = tiny_cfg(32, 1, mixed_precision="fp16")
    assert cfg.fp16_resolution == 8  # tiny 32 px: the blocks at 8, 16, 32 (4 highest, >= 8)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert synthesis_module.block_dtype(True, "fp16", cpu) == torch.float32
    assert synthesis_module.block_dtype(True, "fp16", cuda) == torch.float16
    assert synthesis_module.block_dtype(True, "bf16", cuda) == torch.bfloat16
    assert synthesis_module.block_dtype(True, "fp16", cuda, force_fp32=True) == torch.float32
    assert synthesis_module.block_dtype(False, "fp16", cuda) == torch.float32
    assert tiny_cfg(32, 1, mixed_precision="off").fp16_resolution > 32


def test_reduced_precision_blocks_keep_outputs_float32_and_close(monkeypatch):
    """The GPU mixed-precision code path, exercised on CPU with bf16."""
    torch.manual_seed(7)
    cfg = tiny_cfg(16, 1, mixed_precision="bf16", channels_last=True)
    G, D = Generator(cfg), Discriminator(cfg)
    z = torch.randn(2, G.z_dim)
    ref_img = G(z, None, noise_mode="const")
    ref_logits = D(ref_img, None)

    def fake_block_dtype(use_reduced, mixed_precision, device, force_fp32=False):
        return torch.bfloat16 if use_reduced and not force_fp32 else torch.float32

    monkeypatch.setattr(synthesis_module, "block_dtype", fake_block_dtype)
    monkeypatch.setattr("mrisynth.networks.discriminator.block_dtype", fake_block_dtype)
    img = G(z, None, noise_mode="const")
    assert img.dtype == torch.float32
    assert not torch.equal(img, ref_img)  # the reduced-precision path really ran
    torch.testing.assert_close(img, ref_img, atol=0.1, rtol=0.1)
    logits = D(img, None)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, ref_logits, atol=0.1, rtol=0.1)
    forced = G(z, None, noise_mode="const", force_fp32=True)
    torch.testing.assert_close(forced, ref_img)


def test_config_validation_and_dict_round_trip():
    cfg = tiny_cfg(32, 3, c_dim=2)
    assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    assert NetworkConfig.from_dict({**cfg.to_dict(), "future_option": 1}) == cfg
    assert cfg.preset == "tiny" and cfg.channels_at(32) == 32 and cfg.channels_at(4) == 64
    for bad in ({"img_resolution": 24}, {"img_channels": 0}, {"mixed_precision": "fp8"},
                {"d_architecture": "skip"}):
        with pytest.raises(ConfigError):
            cfg.replace(**bad)
    with pytest.raises(ConfigError):
        NetworkConfig.from_dict({"img_channels": 1})
    with pytest.raises(ConfigError):
        build_discriminator(NetworkConfig(img_resolution=4, img_channels=1))


def test_network_config_follows_the_preset():
    cfg = network_config_from_preset(resolve_preset("paper256", 256), 1, c_dim=2,
                                     fused_modconv=False)
    assert (cfg.channel_base, cfg.channel_max, cfg.mbstd_group, cfg.map_depth) == (
        16384, 512, 8, 8)
    assert (cfg.z_dim, cfg.w_dim, cfg.c_dim, cfg.img_channels) == (512, 512, 2, 1)
    assert cfg.channels_at(256) == 64 and cfg.channels_at(8) == 512
    assert cfg.fp16_resolution == 32 and cfg.conv_clamp == 256  # 4 highest: 32..256
    assert not cfg.fused_modconv and cfg.preset == "paper256"
    cifar = network_config_from_preset(resolve_preset("cifar", 32), 3)
    assert cifar.d_architecture == "orig" and cifar.map_depth == 2 and cifar.mbstd_group == 32


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU (tests hide GPUs unless CUDA_VISIBLE_DEVICES is set)",
)
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_reduced_precision_matches_fp32(precision):
    torch.manual_seed(8)
    cfg = tiny_cfg(32, 3, mixed_precision=precision, channels_last=True)
    G, D = build_generator(cfg).cuda(), build_discriminator(cfg).cuda()
    z = torch.randn(4, G.z_dim, device="cuda")
    img = G(z, None, noise_mode="const")
    ref = G(z, None, noise_mode="const", force_fp32=True)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    torch.testing.assert_close(img, ref, atol=0.1, rtol=0.1)
    real = ref.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real, None).sum(), real, create_graph=True)
    grad.square().sum().backward()
    assert torch.isfinite(D.b32.conv0.weight.grad).all()


def test_torgb_uses_the_w_of_the_next_blocks_first_conv():
    G = build_generator(tiny_cfg(16))
    seen = {}
    hooks = [
        getattr(G.synthesis, f"b{r}").torgb.affine.register_forward_hook(
            lambda _m, inp, _out, r=r: seen.__setitem__(r, inp[0]))
        for r in (4, 8, 16)
    ]
    ws = torch.randn(2, G.num_ws, G.w_dim)
    G.synthesis(ws, noise_mode="none")
    for h in hooks:
        h.remove()
    # b4: conv1 w0, torgb w1; b8: conv0 w1, conv1 w2, torgb w3; b16: w3, w4, torgb w5.
    for res, idx in ((4, 1), (8, 3), (16, 5)):
        torch.testing.assert_close(seen[res], ws[:, idx])


def test_generator_can_fit_a_target_image():
    """Gradients reach every part of G in a useful direction: a few Adam steps fit an image."""
    torch.manual_seed(9)
    G = build_generator(tiny_cfg(8))
    z = torch.randn(4, G.z_dim)
    target = torch.linspace(-1, 1, 8).reshape(1, 1, 1, 8).expand(4, 1, 8, 8)
    opt = torch.optim.Adam(G.parameters(), lr=0.01, betas=(0.0, 0.99))
    losses = []
    for _ in range(40):
        loss = (G(z, None, noise_mode="const") - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
