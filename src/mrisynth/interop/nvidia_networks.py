"""NVIDIA stylegan2-ada-pytorch networks (as `PersistentRecord`s) -> our configs and weights.

The architecture is read from the recorded init kwargs, with the defaults of NVIDIA's classes
where a kwarg is absent (they differ from ours: e.g. `num_fp16_res` 0 and `conv_clamp` None);
any kwarg we do not implement is refused by name rather than silently ignored. Parameter names
are the same as ours with two exceptions:
- NVIDIA's up-sampling 3x3 convs (`synthesis.b*.conv0.weight`) run a transposed convolution
  with the kernel as stored, i.e. a true convolution; ours correlate after zero insertion
  (`layers.conv2d_resample`), so those kernels are flipped in both spatial axes.
- NVIDIA stores the [1, 3, 3, 1] resampling filters as buffers; ours are built in. They are
  checked to be that filter and dropped.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from mrisynth import untrusted as u
from mrisynth.errors import ConfigError, InputError
from mrisynth.interop.nvidia_pickle import PersistentRecord
from mrisynth.networks import NetworkConfig
from mrisynth.networks.layers import make_fir_filter

UP_CONV = re.compile(r"^synthesis\.b\d+\.conv0\.weight$")
FILTER_TAPS = [1, 3, 3, 1]
# Kwargs of StyleGAN3's synthesis network (configs 't' and 'r'), to say what a file is.
_STYLEGAN3_KWARGS = {
    "num_layers", "num_critical", "first_cutoff", "first_stopband", "last_stopband_rel",
    "margin_size", "output_scale", "conv_kernel", "filter_size", "lrelu_upsampling",
    "use_radial_filters", "magnitude_ema_beta",
}  # fmt: skip


_G_KWARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
             "synthesis_kwargs")


class Unsupported(Exception):
    """A network we cannot represent; the message names the kwarg or layer."""


def init_kwargs(rec: PersistentRecord) -> dict[str, Any]:
    """The kwargs a persistent object was constructed with (positional args are not used by
    NVIDIA's training code and are refused)."""
    args = rec.state.get("_init_args", ())
    if args not in ((), []):
        raise Unsupported(f"{rec.class_name} was built with positional arguments")
    kwargs = rec.state.get("_init_kwargs")
    if not isinstance(kwargs, dict):
        raise Unsupported(f"{rec.class_name} has no recorded init kwargs")
    _no_tensors(kwargs, f"{rec.class_name} kwargs")
    return kwargs


def _no_tensors(value: Any, where: str) -> None:
    """Settings are plain values: a tensor would reach comparisons and `or` that raise."""
    if isinstance(value, torch.Tensor):
        raise Unsupported(f"{where} holds a tensor where a setting belongs")
    if isinstance(value, dict):
        for key, item in value.items():
            _no_tensors(item, f"{where}.{str(key)[:40]}")
    elif isinstance(value, list | tuple | frozenset):
        for item in value:
            _no_tensors(item, where)


def _sub(kwargs: dict[str, Any], key: str) -> dict[str, Any]:
    value = kwargs.get(key) or {}
    return dict(u.mapping(value, key))


def _only(kwargs: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    """Refuse kwargs we do not implement; `allowed` maps name -> required value (or ...)."""
    for key, value in kwargs.items():
        if key not in allowed:
            raise Unsupported(f"{where} kwarg {str(key)[:40]!r} is not supported")
        want = allowed[key]
        if want is not ... and value is not None and value != want:
            raise Unsupported(f"{where} {key}={u.shown(value)} is not supported (only {want!r})")


def _fp16_and_clamp(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    return {
        "num_fp16_res": u.integer(kwargs.get("num_fp16_res", 0), f"{where}.num_fp16_res", 0, 16),
        "conv_clamp": u.optional(u.number, kwargs.get("conv_clamp"), f"{where}.conv_clamp",
                                 1e-6, 1e9),
    }


def generator_config(rec: PersistentRecord) -> NetworkConfig:
    """NetworkConfig of an NVIDIA Generator record (StyleGAN3 and other variants refused)."""
    kw = dict(init_kwargs(rec))
    # stylegan2-ada-pytorch nests synthesis kwargs; NVIDIA's stylegan3 repository (whose
    # '--cfg stylegan2' networks are the same) passes them at the top level.
    syn, mapping = _sub(kw, "synthesis_kwargs"), _sub(kw, "mapping_kwargs")
    for key in sorted(set(kw) - set(_G_KWARGS), key=str):
        syn[key] = kw.pop(key)
    if (_STYLEGAN3_KWARGS - {"num_layers"}) & set(syn) or "class SynthesisInput" in rec.module_src:
        kind = "'r'" if syn.get("use_radial_filters") or syn.get("conv_kernel") == 1 else "'t'"
        raise Unsupported(f"a StyleGAN3 generator (config {kind}); only StyleGAN2(-ADA) "
                          "networks can be imported")
    _only(syn, {"channel_base": ..., "channel_max": ..., "num_fp16_res": ..., "conv_clamp": ...,
                "architecture": "skip", "resample_filter": FILTER_TAPS, "use_noise": True,
                "activation": "lrelu", "kernel_size": 3, "fp16_channels_last": ...,
                "fused_modconv_default": ...}, "synthesis")
    _only(mapping, {"num_layers": ..., "lr_multiplier": ..., "w_avg_beta": ...,
                    "activation": "lrelu", "embed_features": kw.get("w_dim"),
                    "layer_features": kw.get("w_dim")}, "mapping")
    if mapping.get("w_avg_beta", 0.995) is None:
        raise Unsupported("mapping w_avg_beta=None (no w_avg) is not supported")
    return NetworkConfig.from_dict({
        "img_resolution": kw.get("img_resolution"), "img_channels": kw.get("img_channels"),
        "c_dim": kw.get("c_dim"), "z_dim": kw.get("z_dim"), "w_dim": kw.get("w_dim"),
        "map_depth": mapping.get("num_layers", 8),
        "mapping_lr_mul": mapping.get("lr_multiplier", 0.01),
        "w_avg_beta": mapping.get("w_avg_beta", 0.995),
        "channel_base": syn.get("channel_base", 32768),
        "channel_max": syn.get("channel_max", 512),
        **_fp16_and_clamp(syn, "synthesis"),
    })  # fmt: skip


def discriminator_config(rec: PersistentRecord) -> NetworkConfig:
    """NetworkConfig of an NVIDIA Discriminator record ('resnet' or 'orig' only)."""
    kw = init_kwargs(rec)
    block, mapping, epi = (_sub(kw, k) for k in ("block_kwargs", "mapping_kwargs",
                                                  "epilogue_kwargs"))
    _only(kw, dict.fromkeys(("c_dim", "img_resolution", "img_channels", "architecture",
                             "channel_base", "channel_max", "num_fp16_res", "conv_clamp",
                             "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs"),
                            ...), "Discriminator")
    arch = kw.get("architecture", "resnet")
    if arch not in ("resnet", "orig"):
        raise Unsupported(f"discriminator architecture {u.shown(arch)} (only 'resnet', 'orig')")
    _only(block, {"activation": "lrelu", "resample_filter": FILTER_TAPS,
                  "fp16_channels_last": ..., "freeze_layers": ...}, "block")
    _only(mapping, {"num_layers": ..., "lr_multiplier": ..., "activation": "lrelu",
                    "embed_features": ..., "layer_features": ...}, "discriminator mapping")
    _only(epi, {"mbstd_group_size": ..., "mbstd_num_channels": ..., "activation": "lrelu"},
          "epilogue")
    group = epi.get("mbstd_group_size", 4)
    cfg = NetworkConfig.from_dict({
        "img_resolution": kw.get("img_resolution"), "img_channels": kw.get("img_channels"),
        "c_dim": kw.get("c_dim"), "d_architecture": arch,
        "channel_base": kw.get("channel_base", 32768), "channel_max": kw.get("channel_max", 512),
        "d_map_depth": mapping.get("num_layers", 8),
        "mapping_lr_mul": mapping.get("lr_multiplier", 0.01),
        "mbstd_group": 4096 if group is None else group,  # None: the whole batch
        "mbstd_channels": epi.get("mbstd_num_channels", 1),
        **_fp16_and_clamp(kw, "Discriminator"),
    })  # fmt: skip
    cmap = kw.get("cmap_dim")
    if cfg.c_dim > 0 and cmap is not None and cmap != cfg.channels_at(4):
        raise Unsupported(f"cmap_dim={u.shown(cmap)} (only the 4x4 block's channels)")
    for key in ("embed_features", "layer_features"):  # NVIDIA's legacy.py writes None
        value = mapping.get(key)
        if cfg.c_dim > 0 and value is not None and value != cfg.channels_at(4):
            raise Unsupported(f"discriminator mapping {key}={u.shown(value)} (only the 4x4 "
                              "block's channels)")
    return cfg


def flat_tensors(rec: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every parameter and buffer of a record tree, by dotted name (as `state_dict()`)."""
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        entries = rec.state.get(group) or {}
        if not isinstance(entries, dict):
            raise Unsupported(f"{prefix or rec.class_name}: {group} is not a dictionary")
        for name, value in entries.items():
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise Unsupported(f"{prefix}{name} is not a tensor")
            out[f"{prefix}{name}"] = value
    modules = rec.state.get("_modules") or {}
    if not isinstance(modules, dict):
        raise Unsupported(f"{prefix or rec.class_name}: _modules is not a dictionary")
    for name, child in modules.items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise Unsupported(f"{prefix}{name} is not a network record")
        out.update(flat_tensors(child, f"{prefix}{name}."))
    return out


def _drop_filters(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    expected = make_fir_filter()
    out = {}
    for name, t in flat.items():
        if name == "resample_filter" or name.endswith(".resample_filter"):
            if t.shape != expected.shape or not torch.allclose(t.float(), expected, atol=1e-6):
                raise Unsupported(f"{name} is not the [1,3,3,1] filter mrisynth implements")
            continue
        out[name] = t
    return out


def our_state(rec: PersistentRecord, module: torch.nn.Module,
              what: str) -> dict[str, torch.Tensor]:
    """The tensors of NVIDIA's `rec` -> a state dict `module` loads strictly (names, shapes,
    finite float32 values checked; up-sampling kernels flipped)."""
    ours = _drop_filters(flat_tensors(rec))
    expected = module.state_dict()
    missing, extra = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    if missing or extra:
        diff = ", ".join([f"missing {k}" for k in missing[:3]] + [f"extra {k}" for k in extra[:3]])
        raise Unsupported(f"{what} layers differ from a StyleGAN2 network of its kwargs ({diff})")
    out = {}
    for name, t in ours.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise Unsupported(f"{what}.{name} has shape {list(t.shape)}, its kwargs say "
                              f"{list(expected[name].shape)}")
        if not t.is_floating_point() or not torch.isfinite(t).all():
            raise Unsupported(f"{what}.{name} is not a finite float tensor")
        t = t.float()
        out[name] = t.flip([2, 3]) if UP_CONV.match(name) else t
    return out


def checked(call: Any, path: Any, *args: Any) -> Any:
    """Run a conversion step; its refusals become one InputError naming the file."""
    try:
        return call(*args)
    except Unsupported as e:
        raise InputError(f"{path}: unsupported NVIDIA network: {e}") from None
    except (u.BadValue, ConfigError) as e:
        raise InputError(f"{path}: bad NVIDIA network kwargs: {e}") from None
