"""NVIDIA stylegan2-ada-pytorch pickles built without NVIDIA's code, and an independent forward
pass of NVIDIA's generator in NVIDIA's weight layout (float64), for the interop tests.

The pickle structure is the one NVIDIA's `torch_utils.persistence` writes (see issue 13 and
`pickletools.dis` of such a file): each network reduces to
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with `meta = {type: 'class',
version: 6, module_src, class_name, state}` where `state` is the module's `__dict__`
(`_parameters`, `_buffers`, `_modules` of nested records, `_init_args`, `_init_kwargs`, ...).
Stand-in `torch_utils` / `dnnlib` modules exist in `sys.modules` only while dumping, so the
file names the same globals as NVIDIA's.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import types
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mrisynth.networks import NetworkConfig, build_discriminator, build_generator

MODULE_SRC = "# training/networks.py of stylegan2-ada-pytorch (text only; never executed)\n"
BUFFERS = {"w_avg", "noise_const", "resample_filter", "p", "Hz_geom"}
FIR = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (pickled under that name)."""


def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called by the importer
    raise AssertionError("the importer must not call NVIDIA's reconstruct function")


class Persistent:
    """Pickles exactly as an NVIDIA persistent object does."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


@contextlib.contextmanager
def nvidia_names():
    """`torch_utils.persistence` and `dnnlib.util` importable while pickling, then gone."""
    mods = {name: types.ModuleType(name) for name in
            ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")}
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["dnnlib.util"].EasyDict = EasyDict
    saved = (_reconstruct_persistent_obj.__module__, EasyDict.__module__)
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    EasyDict.__module__ = "dnnlib.util"
    old = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        _reconstruct_persistent_obj.__module__, EasyDict.__module__ = saved
        for k, v in old.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def record(class_name: str, kwargs: dict | None, params: dict, buffers: dict,
           modules: dict, **attrs: Any) -> Persistent:
    """An NVIDIA module record with nn.Module's __dict__ layout (torch 1.7's keys)."""
    state = {
        "training": False,
        "_parameters": OrderedDict((k, torch.nn.Parameter(v, requires_grad=False))
                                   for k, v in params.items()),
        "_buffers": OrderedDict(buffers),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(),
        "_forward_pre_hooks": OrderedDict(), "_state_dict_hooks": OrderedDict(),
        "_load_state_dict_pre_hooks": OrderedDict(),
        "_modules": OrderedDict(modules),
        "_init_args": (),
        "_init_kwargs": dict(kwargs or {}),
        **attrs,
    }  # fmt: skip
    return Persistent({"type": "class", "version": 6, "module_src": MODULE_SRC,
                       "class_name": class_name, "state": state})


def _class_of(name: str) -> str:
    if name in ("mapping",):
        return "MappingNetwork"
    if name == "synthesis":
        return "SynthesisNetwork"
    if name.startswith("b") and name[1:].isdigit():
        return "Block"
    if name.startswith(("conv0", "conv1")):
        return "SynthesisLayer"
    return {"torgb": "ToRGBLayer", "mbstd": "MinibatchStdLayer"}.get(name, "FullyConnectedLayer")


def tree(class_name: str, kwargs: dict | None, flat: dict[str, torch.Tensor]) -> Persistent:
    """Nested records from dotted names (each prefix a submodule)."""
    params, buffers, children = {}, {}, {}
    for name, t in flat.items():
        head, _, rest = name.partition(".")
        if rest:
            children.setdefault(head, {})[rest] = t
        elif head in BUFFERS:
            buffers[head] = t
        else:
            params[head] = t
    modules = {k: tree(_class_of(k), {}, v) for k, v in children.items()}
    return record(class_name, kwargs, params, buffers, modules, **_numpy_attrs(class_name, params))


def _numpy_attrs(class_name: str, params: dict) -> dict:
    """NumPy scalars as NVIDIA's layers keep them in __dict__ (`weight_gain = 1 /
    np.sqrt(fan_in)`, `act_gain = bias_act.activation_funcs['lrelu'].def_gain = np.sqrt(2)`),
    which pickle as numpy scalar + dtype with a BUILD."""
    attrs: dict[str, Any] = {}
    if "weight" in params:
        attrs["weight_gain"] = np.float64(1 / np.sqrt(params["weight"][0].numel()))
    if class_name in ("SynthesisLayer", "Conv2dLayer"):
        attrs["act_gain"] = np.sqrt(2)
    return attrs


# ---------------------------------------------------------------------------------------------
# Networks in NVIDIA's layout


def small_kwargs(res=16, channels=1, c_dim=0, z_dim=32, w_dim=32, cbase=256, cmax=32, layers=2):
    G = {"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "img_resolution": res,
         "img_channels": channels, "mapping_kwargs": EasyDict(num_layers=layers),
         "synthesis_kwargs": EasyDict(channel_base=cbase, channel_max=cmax, num_fp16_res=4,
                                      conv_clamp=256)}
    D = {"c_dim": c_dim, "img_resolution": res, "img_channels": channels,
         "architecture": "resnet", "channel_base": cbase, "channel_max": cmax,
         "num_fp16_res": 4, "conv_clamp": 256, "block_kwargs": EasyDict(),
         "mapping_kwargs": EasyDict(), "epilogue_kwargs": EasyDict(mbstd_group_size=4)}
    return G, D


def _shape_oracle(G_kw: dict) -> NetworkConfig:
    syn, mp = G_kw["synthesis_kwargs"], G_kw["mapping_kwargs"]
    return NetworkConfig(img_resolution=G_kw["img_resolution"], img_channels=G_kw["img_channels"],
                         c_dim=G_kw["c_dim"], z_dim=G_kw["z_dim"], w_dim=G_kw["w_dim"],
                         map_depth=mp["num_layers"], channel_base=syn["channel_base"],
                         channel_max=syn["channel_max"])


def _random_like(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    t = torch.randn(shape, generator=gen, dtype=torch.float64)
    if name.startswith("mapping.") and name.endswith("weight"):
        return t * 100  # NVIDIA's init: N(0, 1) / lr_multiplier (0.01)
    if name.endswith("torgb.weight"):
        return t * 0.25  # keeps most pixels inside [0, 255]
    if name.endswith("affine.bias"):
        return 1 + 0.2 * t
    if name.endswith(("bias", "noise_strength")):
        return 0.2 * t
    return t


def nvidia_tensors(G_kw: dict, D_kw: dict | None, seed: int = 0) -> tuple[dict, dict]:
    """Random weights in NVIDIA's names and layout (incl. resampling-filter buffers)."""
    cfg = _shape_oracle(G_kw)
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        G, D = build_generator(cfg), build_discriminator(cfg)
    g = {k: _random_like(k, v.shape, gen).float() for k, v in G.state_dict().items()}
    for res in G.synthesis.block_resolutions:
        g[f"synthesis.b{res}.resample_filter"] = FIR.clone()
        for layer in ("conv0", "conv1") if res > 4 else ("conv1",):
            g[f"synthesis.b{res}.{layer}.resample_filter"] = FIR.clone()
    d = {k: _random_like(k, v.shape, gen).float() for k, v in D.state_dict().items()}
    for res in D.block_resolutions:
        d[f"b{res}.resample_filter"] = FIR.clone()
        for layer in ("fromrgb", "conv0", "conv1", "skip"):
            if f"b{res}.{layer}.weight" in d:
                d[f"b{res}.{layer}.resample_filter"] = FIR.clone()
    d["b4.conv.resample_filter"] = FIR.clone()
    return g, (d if D_kw is not None else {})


def snapshot_dict(G_kw, D_kw, g, d, p=0.25, G_ema=None) -> dict:
    """NVIDIA's training snapshot layout."""
    pipe = record("AugmentPipe", {"xflip": 1, "rotate90": 1}, {},
                  {"p": torch.tensor(p), "Hz_geom": torch.randn(12)}, {})
    return {
        "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset",
                                "path": "/home/someone/patients/data.zip", "use_labels": False,
                                "max_size": 100, "xflip": True, "resolution": 16},
        "G": tree("Generator", G_kw, g),
        "D": tree("Discriminator", D_kw, d),
        "G_ema": tree("Generator", G_kw, G_ema if G_ema is not None else g),
        "augment_pipe": pipe,
    }


def dumps(obj: Any, protocol: int = 3) -> bytes:
    """pickle.dumps as NVIDIA's Python 3.7 did (protocol 3 by default)."""
    with nvidia_names():
        return pickle.dumps(obj, protocol=protocol)


# ---------------------------------------------------------------------------------------------
# NVIDIA's generator, written independently in float64 from the published algorithm


def _fc(x, t, name, lr_mul=1.0, act=False):
    w, b = t[f"{name}.weight"], t[f"{name}.bias"]
    y = x @ (w * (lr_mul / math.sqrt(w.shape[1]))).T + b * lr_mul
    return F.leaky_relu(y, 0.2) * math.sqrt(2) if act else y


def _norm(x):
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


def _fir(x, pad):  # 4x4 [1,3,3,1] filter per channel (symmetric: convolution = correlation)
    c = x.shape[1]
    x = F.pad(x, pad)
    return F.conv2d(x, (FIR.double() * 4)[None, None].repeat(c, 1, 1, 1), groups=c)


def _zero_insert(x, size):
    out = torch.zeros(*x.shape[:2], size, size, dtype=x.dtype)
    out[:, :, ::2, ::2] = x
    return out


def _modconv(x, weight, style, demod, up):
    """Per sample: scale, demodulate; up: transposed conv with the kernel as stored (zero
    insertion + true convolution) then the FIR filter with gain 4, as NVIDIA's layer runs."""
    outs = []
    for n in range(x.shape[0]):
        w = weight * style[n][None, :, None, None]
        if demod:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        xn = x[n : n + 1]
        if up:
            k = w.shape[-1]
            z = _zero_insert(xn, 2 * xn.shape[-1] - 1)
            y = F.conv2d(z, w.flip([2, 3]), padding=k - 1)  # true convolution, 'full'
            outs.append(_fir(y, (1, 1, 1, 1)))
        else:
            outs.append(F.conv2d(xn, w, padding=w.shape[-1] // 2))
    return torch.cat(outs)


def _layer(x, w, t, name, up, clamp):
    style = _fc(w, t, f"{name}.affine")
    weight = t[f"{name}.weight"] / math.sqrt(t[f"{name}.weight"][0].numel())
    x = _modconv(x, weight, style, True, up)
    x = x + t[f"{name}.noise_const"] * t[f"{name}.noise_strength"]
    x = F.leaky_relu(x + t[f"{name}.bias"][None, :, None, None], 0.2) * math.sqrt(2)
    return x.clamp(-clamp, clamp) if clamp is not None else x


def _torgb(x, w, t, name, clamp):
    style = _fc(w, t, f"{name}.affine") / math.sqrt(t[f"{name}.weight"].shape[1])
    y = _modconv(x, t[f"{name}.weight"], style, False, False)
    y = y + t[f"{name}.bias"][None, :, None, None]
    return y.clamp(-clamp, clamp) if clamp is not None else y


def reference_generate(g: dict, G_kw: dict, seed: int, psi: float = 1.0,
                       class_idx: int | None = None) -> np.ndarray:
    """uint8 [C, H, W] for one seed: z = RandomState(seed).randn(1, z_dim), noise const,
    quantised as NVIDIA's generate.py (x * 127.5 + 128, clamp, truncate to uint8)."""
    t = {k: v.double() for k, v in g.items()}
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G_kw["z_dim"]))
    x = _norm(z)
    if G_kw["c_dim"]:
        c = torch.zeros(1, G_kw["c_dim"], dtype=torch.float64)
        c[0, class_idx] = 1
        x = torch.cat([x, _norm(_fc(c, t, "mapping.embed"))], dim=1)
    for i in range(G_kw["mapping_kwargs"]["num_layers"]):
        x = _fc(x, t, f"mapping.fc{i}", lr_mul=0.01, act=True)
    w = t["mapping.w_avg"] + psi * (x[0] - t["mapping.w_avg"])
    clamp = G_kw["synthesis_kwargs"].get("conv_clamp")
    res_max, img, feat = G_kw["img_resolution"], None, None
    res = 4
    while res <= res_max:
        b = f"synthesis.b{res}"
        if res == 4:
            feat = t[f"{b}.const"][None]
        else:
            feat = _layer(feat, w[None], t, f"{b}.conv0", True, clamp)
        feat = _layer(feat, w[None], t, f"{b}.conv1", False, clamp)
        y = _torgb(feat, w[None], t, f"{b}.torgb", clamp)
        if img is not None:  # upfirdn2d upsample: zeros after each sample, pad (2, 1), FIR x4
            img = _fir(_zero_insert(img, 2 * img.shape[-1]), (2, 1, 2, 1))
        img = y if img is None else img + y
        res *= 2
    return (img[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


# ---------------------------------------------------------------------------------------------
# NVIDIA's discriminator ('resnet'), float64, from the published algorithm


def _conv(x, t, name, act=True, gain=1.0, clamp=None, down=False):
    w = t[f"{name}.weight"]
    w = w / math.sqrt(w[0].numel())
    k = w.shape[-1]
    if down:  # upfirdn2d with the [1,3,3,1] filter (pad 2 for 3x3, 1 for 1x1), then stride 2
        c, pad = x.shape[1], 2 if k == 3 else 1
        x = F.conv2d(F.pad(x, (pad,) * 4), FIR.double()[None, None].repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(x, w, stride=2) if k == 3 else F.conv2d(x[:, :, ::2, ::2], w)
    else:
        x = F.conv2d(x, w, padding=k // 2)
    if f"{name}.bias" in t:
        x = x + t[f"{name}.bias"][None, :, None, None]
    if act:
        x = F.leaky_relu(x, 0.2) * math.sqrt(2)
    x = x * gain
    return x.clamp(-clamp * gain, clamp * gain) if clamp is not None else x


def _mbstd(x, group):
    n, c, h, w = x.shape
    g = min(group, n)
    y = x.reshape(g, n // g, 1, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean(dim=[2, 3, 4])  # [n/g, 1]
    return torch.cat([x, y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)], dim=1)


def reference_discriminate(d: dict, D_kw: dict, img: torch.Tensor,
                           c: torch.Tensor | None = None) -> torch.Tensor:
    """Logits [N, 1] of NVIDIA's resnet D with mbstd group 4 and conv clamp from D_kw."""
    t = {k: v.double() for k, v in d.items()}
    clamp, res = D_kw.get("conv_clamp"), D_kw["img_resolution"]
    x = _conv(img.double(), t, f"b{res}.fromrgb", clamp=clamp)
    while res > 4:
        b = f"b{res}"
        y = _conv(x, t, f"{b}.skip", act=False, gain=math.sqrt(0.5), down=True)
        x = _conv(x, t, f"{b}.conv0", clamp=clamp)
        x = _conv(x, t, f"{b}.conv1", gain=math.sqrt(0.5), clamp=clamp, down=True)
        x = x + y
        res //= 2
    x = _conv(_mbstd(x, D_kw["epilogue_kwargs"]["mbstd_group_size"]), t, "b4.conv", clamp=clamp)
    x = _fc(x.flatten(1), t, "b4.fc", act=True)
    x = _fc(x, t, "b4.out")
    if D_kw["c_dim"]:
        cmap = _norm(_fc(c.double(), t, "mapping.embed"))
        for i in range(8):
            cmap = _fc(cmap, t, f"mapping.fc{i}", lr_mul=0.01, act=True)
        x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(cmap.shape[1])
    return x
