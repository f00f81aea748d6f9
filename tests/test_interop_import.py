"""`mrisynth import-nvidia`: NVIDIA-format pickles (built in `nvidia_format` without NVIDIA's
code) convert to snapshots whose images equal an independent float64 forward pass of NVIDIA's
generator in NVIDIA's weight layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import nvidia_format as nf
from mrisynth.cli import cli
from mrisynth.errors import InputError
from mrisynth.generate.images import read_png
from mrisynth.generate.sampling import SamplingOptions, sample_images
from mrisynth.interop import nvidia_networks
from mrisynth.interop.nvidia_import import import_pickle, save_imported
from mrisynth.training.checkpoint import load_generator, load_snapshot

VARIANTS = {"gray": (1, 0), "rgb": (3, 0), "conditional": (1, 3)}


def _pickle(tmp_path, channels=1, c_dim=0, name="network-snapshot-000120.pkl", **kw):
    G_kw, D_kw = nf.small_kwargs(channels=channels, c_dim=c_dim, **kw)
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    path = tmp_path / name
    path.write_bytes(nf.dumps(nf.snapshot_dict(G_kw, D_kw, g, d)))
    return path, G_kw, g, d


def _cli(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def _generate(snapshot, outdir, seeds, *extra):
    res = _cli("generate", "--network", snapshot, "--outdir", outdir, "--seeds", seeds,
               "--no-progress", *extra)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generate_on_imported_model_equals_nvidia_reference(tmp_path, variant):
    channels, c_dim = VARIANTS[variant]
    pkl, G_kw, g, _ = _pickle(tmp_path, channels, c_dim)
    out = tmp_path / "imported.safetensors"
    res = _cli("import-nvidia", pkl, "--output", out)
    assert res.exit_code == 0, res.output
    extra = ("--class", "2") if c_dim else ()
    for psi in (1.0, 0.7):
        folder = tmp_path / f"gen-{psi}"
        _generate(out, folder, "0-3", "--trunc", psi, *extra)
        diffs = []
        for seed in range(4):
            ref = nf.reference_generate(g, G_kw, seed, psi=psi, class_idx=2 if c_dim else None)
            ours = read_png(folder / f"seed{seed:06d}.png")
            assert ours.shape == ref.shape == (channels, 16, 16)
            assert ref.std() > 10  # a real image, not a constant
            diffs.append(np.abs(ours.astype(int) - ref.astype(int)))
        diffs = np.stack(diffs)
        assert diffs.max() <= 1 and (diffs > 0).mean() < 0.01, (diffs.max(), (diffs > 0).mean())


def test_without_the_kernel_flip_images_differ(tmp_path, monkeypatch):
    """The orientation conversion is what makes the images equal (a plain copy does not)."""
    pkl, G_kw, g, _ = _pickle(tmp_path)
    monkeypatch.setattr(nvidia_networks, "UP_CONV", nvidia_networks.re.compile("^$"))
    imp = import_pickle(pkl)
    ours = dict(sample_images(imp.G_ema, [0, 1]))
    for seed in (0, 1):
        diff = np.abs(ours[seed].astype(int) - nf.reference_generate(g, G_kw, seed).astype(int))
        assert diff.max() > 10 and (diff > 1).mean() > 0.3


def _nvidia_layout(G: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our generator's weights written the way NVIDIA stores them (the inverse conversion)."""
    flat = {k: (v.flip([2, 3]) if nvidia_networks.UP_CONV.match(k) else v).clone()
            for k, v in G.state_dict().items()}
    for res in G.synthesis.block_resolutions:
        flat[f"synthesis.b{res}.resample_filter"] = nf.FIR.clone()
    return flat


def test_round_trip_of_an_asymmetric_up_kernel_keeps_the_image(tmp_path):
    from mrisynth.networks import build_generator

    G_kw, _ = nf.small_kwargs()
    torch.manual_seed(3)
    G = build_generator(nvidia_networks.NetworkConfig.from_dict(
        {"img_resolution": 16, "img_channels": 1, "z_dim": 32, "w_dim": 32, "map_depth": 2,
         "channel_base": 256, "channel_max": 32}))  # fmt: skip
    with torch.no_grad():
        for layer in (G.synthesis.b8.conv0, G.synthesis.b16.conv0):
            layer.weight[:, :, 0, :] += 2.0  # strongly asymmetric: top row differs from bottom
            layer.noise_strength.fill_(0.3)
        w = G.synthesis.b8.conv0.weight
        assert not torch.allclose(w, w.flip([2, 3]))
    path = tmp_path / "bare-G.pkl"
    path.write_bytes(nf.dumps(nf.tree("Generator", G_kw, _nvidia_layout(G))))
    back = import_pickle(path).G_ema
    z = torch.randn(3, 32)
    torch.testing.assert_close(back(z, None, noise_mode="const"), G(z, None, noise_mode="const"))
    for k, v in G.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_snapshot_holds_every_network_and_no_dataset_path(tmp_path):
    pkl, _G_kw, g, d = _pickle(tmp_path)
    out = tmp_path / "imported.safetensors"
    res = _cli("import-nvidia", pkl, "-o", out)
    assert res.exit_code == 0, res.output
    assert "kimg 120" in res.output and "augment p 0.250" in res.output
    snap = load_snapshot(out)
    assert snap.info.kimg == 120 and snap.state["augment_p"] == pytest.approx(0.25)
    assert snap.state["imported"]["training_set"] == {
        "resolution": 16, "use_labels": False, "xflip": True, "max_size": 100}
    assert sorted(snap.state["imported"]["networks"]) == ["D", "G", "G_ema", "augment_pipe"]
    for key, t in d.items():  # D is copied name for name (its convs have no orientation issue)
        if not key.endswith("resample_filter"):
            assert torch.equal(snap.tensors[f"D.{key}"], t), key
    assert torch.equal(snap.tensors["G.mapping.w_avg"], g["mapping.w_avg"])
    for text in (out.read_bytes()[:20000], (tmp_path / "imported.json").read_bytes()):
        assert b"patients" not in text and b"/home/" not in text
    G, _ = load_generator(out)
    assert G.config.num_fp16_res == 4 and G.config.conv_clamp == 256


def test_g_ema_is_what_generate_uses(tmp_path):
    G_kw, D_kw = nf.small_kwargs()
    g, d = nf.nvidia_tensors(G_kw, D_kw, seed=0)
    g_ema, _ = nf.nvidia_tensors(G_kw, D_kw, seed=1)
    pkl = tmp_path / "snap.pkl"
    pkl.write_bytes(nf.dumps(nf.snapshot_dict(G_kw, D_kw, g, d, G_ema=g_ema)))
    imp = import_pickle(pkl)
    img = dict(sample_images(imp.G_ema, [5]))[5]
    assert np.abs(img.astype(int) - nf.reference_generate(g_ema, G_kw, 5).astype(int)).max() <= 1
    assert not torch.equal(imp.G.mapping.fc0.weight, imp.G_ema.mapping.fc0.weight)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_protocols_and_bare_generator(tmp_path, protocol):
    G_kw, _ = nf.small_kwargs()
    g, _ = nf.nvidia_tensors(G_kw, None)
    pkl = tmp_path / "G.pkl"
    pkl.write_bytes(nf.dumps(nf.tree("Generator", G_kw, g), protocol=protocol))
    imp = import_pickle(pkl)
    assert imp.D is None and imp.augment_p is None and imp.kimg == 0
    img = dict(sample_images(imp.G_ema, [0]))[0]
    assert np.abs(img.astype(int) - nf.reference_generate(g, G_kw, 0).astype(int)).max() <= 1


def test_stylegan3_repository_layout_of_a_stylegan2_network(tmp_path):
    """NVIDIA's stylegan3 code passes synthesis kwargs at the generator's top level."""
    G_kw, D_kw = nf.small_kwargs()
    flat = {k: v for k, v in G_kw.items() if k != "synthesis_kwargs"}
    flat.update(G_kw["synthesis_kwargs"], fused_modconv_default="inference_only")
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    pkl = tmp_path / "sg3-repo.pkl"
    pkl.write_bytes(nf.dumps(nf.snapshot_dict(flat, D_kw, g, d), protocol=4))
    imp = import_pickle(pkl)
    assert imp.G.config.num_fp16_res == 4 and imp.G.config.channel_base == 256
    img = dict(sample_images(imp.G_ema, [2]))[2]
    assert np.abs(img.astype(int) - nf.reference_generate(g, G_kw, 2).astype(int)).max() <= 1


def test_tensorflow_pickles_are_named(tmp_path):
    pkl = tmp_path / "tf.pkl"
    pkl.write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\n.")
    with pytest.raises(InputError, match="TensorFlow StyleGAN"):
        import_pickle(pkl)


def _refused(tmp_path, G_kw=None, D_kw=None, g=None, d=None, match=""):
    base_G, base_D = nf.small_kwargs()
    G_kw, D_kw = G_kw or base_G, D_kw or base_D
    g0, d0 = nf.nvidia_tensors(base_G, base_D)
    pkl = tmp_path / "x.pkl"
    pkl.write_bytes(nf.dumps(nf.snapshot_dict(G_kw, D_kw, g or g0, d or d0)))
    with pytest.raises(InputError, match=match):
        import_pickle(pkl)


def test_unsupported_variants_are_named(tmp_path):
    G_kw, D_kw = nf.small_kwargs()
    sg3 = dict(G_kw, synthesis_kwargs=nf.EasyDict(channel_base=256, conv_kernel=1,
                                                  use_radial_filters=True))
    _refused(tmp_path, G_kw=sg3, match="StyleGAN3 generator \\(config 'r'\\)")
    sg3t = dict(G_kw, synthesis_kwargs=nf.EasyDict(channel_base=256, num_critical=2))
    _refused(tmp_path, G_kw=sg3t, match="config 't'")
    _refused(tmp_path, D_kw=dict(D_kw, architecture="skip"), match="architecture 'skip'")
    orig = dict(G_kw, synthesis_kwargs=nf.EasyDict(G_kw["synthesis_kwargs"], architecture="orig"))
    _refused(tmp_path, G_kw=orig, match="architecture='orig' is not supported")
    _refused(tmp_path, G_kw=dict(G_kw, extra_thing=1), match="kwarg 'extra_thing'")
    g, _d = nf.nvidia_tensors(G_kw, D_kw)
    bad_filter = dict(g, **{"synthesis.b8.resample_filter": torch.ones(4, 4) / 16})
    _refused(tmp_path, g=bad_filter, match="not the \\[1,3,3,1\\] filter")
    _refused(tmp_path, G_kw=dict(G_kw, w_dim=64), match="shape")
    missing = {k: v for k, v in g.items() if k != "synthesis.b16.torgb.bias"}
    _refused(tmp_path, g=missing, match="missing synthesis.b16.torgb.bias")
    nan = dict(g, **{"mapping.fc0.weight": torch.full_like(g["mapping.fc0.weight"], np.nan)})
    _refused(tmp_path, g=nan, match="not a finite float")


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("img_resolution", "16", "img_resolution must be an integer"),
        ("img_resolution", 12, "power of two"),
        ("img_resolution", 2**40, "img_resolution must be in"),
        ("img_channels", True, "img_channels must be an integer"),
        ("z_dim", None, "z_dim must be an integer"),
        ("c_dim", -1, "c_dim must be in"),
        ("mapping_kwargs", [1, 2], "mapping_kwargs must be"),
        ("synthesis_kwargs", {"channel_base": float("nan")}, "channel_base must be an integer"),
        ("synthesis_kwargs", {"conv_clamp": float("inf")}, "conv_clamp must be a finite"),
        ("synthesis_kwargs", {"channel_base": 2**21, "channel_max": 4096}, "parameters"),
    ],
)
def test_wrong_types_in_init_kwargs_are_one_error(tmp_path, key, value, match):
    G_kw, _ = nf.small_kwargs()
    _refused(tmp_path, G_kw=dict(G_kw, **{key: value}), match=match)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_imported_discriminator_equals_nvidia_reference(tmp_path, variant):
    channels, c_dim = VARIANTS[variant]
    G_kw, D_kw = nf.small_kwargs(channels=channels, c_dim=c_dim)
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    pkl = tmp_path / "snap.pkl"
    pkl.write_bytes(nf.dumps(nf.snapshot_dict(G_kw, D_kw, g, d)))
    D = import_pickle(pkl).D
    torch.manual_seed(0)
    img = torch.randn(8, channels, 16, 16)
    c = torch.nn.functional.one_hot(torch.arange(8) % 3, 3).float() if c_dim else None
    ref = nf.reference_discriminate(d, D_kw, img, c)
    with torch.no_grad():
        ours = D(img, c)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(ours.double(), ref, rtol=1e-4, atol=1e-4)


def test_channels_last_weights_of_an_nhwc_run(tmp_path):
    """NVIDIA's `--nhwc` keeps fp16 layers' weights channels-last: pickled with permuted
    strides, which must be read as the same values."""
    G_kw, D_kw = nf.small_kwargs()
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    nhwc = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
            for k, v in g.items()}  # fmt: skip
    assert any(not v.is_contiguous() for v in nhwc.values())
    pkl = tmp_path / "nhwc.pkl"
    pkl.write_bytes(nf.dumps(nf.snapshot_dict(G_kw, D_kw, nhwc, d)))
    imp = import_pickle(pkl)
    img = dict(sample_images(imp.G_ema, [1]))[1]
    assert np.abs(img.astype(int) - nf.reference_generate(g, G_kw, 1).astype(int)).max() <= 1
    out = save_imported(imp, tmp_path / "nhwc.safetensors")  # safetensors wants contiguous
    assert out.is_file()


@pytest.mark.parametrize("c_dim", [0, 3])
def test_every_kwarg_as_nvidia_legacy_py_writes_them(tmp_path, c_dim):
    """NVIDIA's published networks (converted by its legacy.py) record every kwarg, with None
    for the mapping's embed/layer features (D's too), and no augment pipe or training set."""
    G_kw, D_kw = nf.small_kwargs(channels=3, c_dim=c_dim)
    G_kw["mapping_kwargs"].update(embed_features=None, layer_features=None, activation="lrelu",
                                  lr_multiplier=0.01, w_avg_beta=0.995)
    G_kw["synthesis_kwargs"].update(architecture="skip", resample_filter=[1, 3, 3, 1],
                                    use_noise=True, activation="lrelu")
    D_kw.update(cmap_dim=None)
    D_kw["block_kwargs"].update(activation="lrelu", resample_filter=[1, 3, 3, 1], freeze_layers=0)
    D_kw["mapping_kwargs"].update(embed_features=None, layer_features=None,
                                  activation="lrelu", lr_multiplier=0.1)
    D_kw["epilogue_kwargs"].update(mbstd_num_channels=1, activation="lrelu")
    g, d = nf.nvidia_tensors(G_kw, D_kw)
    snap = nf.snapshot_dict(G_kw, D_kw, g, d)
    snap.update(training_set_kwargs=None, augment_pipe=None)
    pkl = tmp_path / "ffhq-res256-mirror-paper256-noaug.pkl"
    pkl.write_bytes(nf.dumps(snap))
    imp = import_pickle(pkl)
    assert imp.D is not None and imp.augment_p is None
    opts = SamplingOptions(class_idx=1 if c_dim else None)
    img = dict(sample_images(imp.G_ema, [3], opts))[3]
    ref = nf.reference_generate(g, G_kw, 3, class_idx=1 if c_dim else None)
    assert np.abs(img.astype(int) - ref.astype(int)).max() <= 1
    D_kw["mapping_kwargs"]["embed_features"] = 7
    pkl.write_bytes(nf.dumps(nf.snapshot_dict(G_kw, D_kw, g, d)))
    if c_dim:
        with pytest.raises(InputError, match="discriminator mapping embed_features=7"):
            import_pickle(pkl)
