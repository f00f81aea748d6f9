"""Training options (StyleGAN2-ADA, Karras et al. 2020): what the user set, and what it resolves to.

`TrainOptions` mirrors the command line; `None` means "let the preset decide". `resolve_options`
fills every unset value from the named preset (`mrisynth.config`) for the archive's resolution
and the number of processes, checks consistency, and returns a frozen `ResolvedOptions` that is
written to the run folder as `training_options.json`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mrisynth import untrusted as u
from mrisynth.config import ResolvedPreset, resolve_preset
from mrisynth.data.labels import archive_class_names
from mrisynth.data.masks import check_mirror_of_masks, mask_spec
from mrisynth.errors import ConfigError

if TYPE_CHECKING:
    from mrisynth.data.archive import ImageArchive

# A full resume keeps the run's options, except these: always the new invocation's ...
RESUME_PER_INVOCATION = (
    "data", "outdir", "resume", "resume_mode", "stop_after_kimg", "workers", "device",
    "cpu_threads", "modconv", "compile", "resume_channels",
)  # fmt: skip
# ... and these, when the new command line sets them (differ from the default).
RESUME_OVERRIDABLE = (
    "kimg", "tick", "snap", "metrics", "precision", "max_bad_steps", "min_free_gb", "ada_kimg",
    "p_max", "desc",
)  # fmt: skip
AUG_MODES = ("ada", "fixed", "noaug")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
RESUME_MODES = ("auto", "full", "weights")
RESUME_CHANNELS = ("same", "average")  # training.transfer: adapting RGB <-> grey image layers
MODCONV_FORMS = ("auto", "fused", "nonfused")


@dataclass(frozen=True)
class TrainOptions:
    """Everything `mrisynth train` accepts. Units are in the names; `None` = preset decides."""

    data: str  # training archive (folder or ZIP of PNGs)
    outdir: str | None = None  # parent of run folders; None only with a full --resume
    cfg: str = "auto"  # preset name in mrisynth.config.PRESETS
    gpus: int = 1  # number of processes (set from the launcher's WORLD_SIZE)
    batch: int | None = None  # total batch over all processes
    batch_gpu: int | None = None  # per-process micro-batch; the rest is accumulation
    gamma: float | None = None  # R1 weight
    cbase: int | None = None  # channel_base (feature maps = cbase // res, capped at cmax)
    cmax: int | None = None
    map_depth: int | None = None
    glr: float | None = None
    dlr: float | None = None
    mbstd_group: int | None = None
    mirror: bool = False  # add x-flipped copies of the reals
    cond: bool = False  # condition on the archive's labels
    aug: str = "ada"  # ada | fixed | noaug
    p: float | None = None  # initial (ada) or constant (fixed) augmentation probability
    target: float = 0.6  # ADA target for r_t
    augpipe: str = "bg"
    ada_kimg: float | None = None  # ADA speed; None: preset's (500), at most 100 on resume
    p_max: float | None = None  # upper bound on p (the original has none)
    kimg: float = 25000.0  # total training length in thousands of real images shown
    tick: float = 4.0  # kimg per tick (fractions allowed for short CPU runs)
    snap: int = 50  # ticks per snapshot (0 = only at start and end)
    metrics: tuple[str, ...] = ()
    seed: int = 0
    resume: str | None = None  # run folder or snapshot
    resume_mode: str = "auto"  # auto (full if same dataset) | full | weights
    resume_channels: str = "same"  # same | average: adapt G/D image layers (training.transfer)
    workers: int = 3  # data-loader processes per training process
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (= fp16) | fp32 | fp16 | bf16: dtype of G/D's top blocks on GPU
    cpu_threads: int | None = None  # torch threads on CPU; None: OMP_NUM_THREADS or cores // 2
    desc: str | None = None  # run-folder suffix; None: derived from data and options
    max_bad_steps: int = 10  # consecutive non-finite steps before stopping
    min_free_gb: float | None = None  # free disk needed; None: estimated from snapshot size
    stop_after_kimg: float | None = None  # stop early, as if killed (tests, time-boxed jobs)
    modconv: str = "auto"  # modulated-conv form in training: auto (per device) | fused | nonfused
    compile: bool = False  # torch.compile the main G/D phases (regularisers stay eager)


@dataclass(frozen=True)
class ResolvedOptions:
    """Every number the loop needs, after presets and overrides."""

    user: TrainOptions
    preset: ResolvedPreset  # network + hyper-parameters, overrides applied
    resolution: int
    img_channels: int
    c_dim: int
    num_images: int  # archive size, before mirroring
    dataset_hash: str
    device: str
    precision: str
    batch: int
    batch_gpu: int
    num_accum: int  # micro-batches per process per step
    glr: float
    dlr: float
    gamma: float
    aug: str
    p_init: float
    ada_kimg: float
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    classes: tuple[str, ...] = ()  # names of the conditioning classes (dataset --labels)
    mask_labels: tuple[str, ...] = ()  # a paired archive's mask labels (generate decodes by them)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["user"]["metrics"] = list(self.user.metrics)
        return d


# Ranges of saved option values (a resumed run reads them from its snapshot): type comes from
# the field's annotation, these bound what would size memory or loops.
_SAVED_RANGES: dict[str, tuple[float, float]] = {
    "gpus": (1, 4096), "batch": (1, 65536), "batch_gpu": (1, 65536), "cbase": (1, 2**20),
    "cmax": (1, 2048), "map_depth": (1, 32), "mbstd_group": (1, 1024), "workers": (0, 256),
    "cpu_threads": (1, 1024), "snap": (0, 10**9), "max_bad_steps": (1, 10**9),
    "kimg": (1e-6, 1e8), "tick": (1e-6, 1e8), "p": (0, 1), "target": (0, 1),
    "ada_kimg": (1e-6, 1e8), "p_max": (0, 1e6), "glr": (1e-12, 10), "dlr": (1e-12, 10),
    "gamma": (0, 1e9), "min_free_gb": (0, 1e9), "stop_after_kimg": (0, 1e8),
    "seed": (0, 2**32 - 1),
}  # fmt: skip
_CHOICES = {"aug": AUG_MODES, "precision": PRECISIONS, "resume_mode": RESUME_MODES,
            "modconv": MODCONV_FORMS, "resume_channels": RESUME_CHANNELS}  # fmt: skip


def check_saved_options(saved: dict[str, Any], where: str) -> None:
    """Type- and range-check options read back from a snapshot (unknown keys are ignored)."""
    for f in dataclasses.fields(TrainOptions):
        if f.name not in saved:
            continue
        value, at = saved[f.name], f"{where}.{f.name}"
        kind = str(f.type)
        if value is None and "None" in kind:
            continue
        lo, hi = _SAVED_RANGES.get(f.name, (-math.inf, math.inf))
        if kind.startswith("tuple"):
            for i, item in enumerate(u.sequence(value, at, 0, 64)):
                u.text(item, f"{at}[{i}]", 256)
        elif f.name in _CHOICES:
            u.choice(value, at, _CHOICES[f.name])
        elif kind.startswith("bool"):
            u.boolean(value, at)
        elif kind.startswith("int"):
            u.integer(value, at, int(max(lo, -(2**62))), int(min(hi, 2**62)))
        elif kind.startswith("float"):
            u.number(value, at, lo, hi)
        else:
            u.text(value, at)


def check_option_values(opts: TrainOptions) -> None:
    """Numbers the user typed: finite and in range (NaN, inf, 1e30 and negative sizes refused
    here, before they reach an int() or an allocation)."""
    for name, (lo, hi) in _SAVED_RANGES.items():
        value = getattr(opts, name)
        try:
            u.optional(u.number, value, name, lo, hi)
        except u.BadValue:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} must be a number in [{_num(lo)}, {_num(hi)}], got {u.shown(value)}"
            ) from None
    if opts.desc is not None and not _DESC.fullmatch(opts.desc):
        raise ConfigError(  # it becomes part of a folder name: '../x' or '/' escaped --outdir
            f"--desc {opts.desc!r}: use 1-100 letters, digits, '.', '_', '+' or '-' "
            "(not starting with '.')"
        )


_DESC = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,99}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"


def check_augmentation(opts: TrainOptions) -> None:
    """A known --augpipe, and no augmentation option that the --aug mode would ignore."""
    from mrisynth.training.augment import AUGMENT_PRESETS  # torch stays out of option parsing

    if opts.augpipe not in AUGMENT_PRESETS:
        raise ConfigError(
            f"--augpipe {opts.augpipe!r}: unknown pipeline; choose one of "
            f"{', '.join(AUGMENT_PRESETS)} (the study used bg)"
        )
    ignored = {"noaug": ("p", "ada_kimg", "p_max"), "fixed": ("ada_kimg", "p_max")}
    for name in ignored.get(opts.aug, ()):
        value = getattr(opts, name)
        if value is not None:
            flag = "--" + name.replace("_", "-")
            use = "--aug fixed or ada" if name == "p" else "--aug ada"
            raise ConfigError(
                f"{flag} {value:g} has no effect with --aug {opts.aug}; drop it or use {use}"
            )


def resolve_options(
    opts: TrainOptions,
    *,
    resolution: int,
    img_channels: int,
    label_dim: int,
    num_images: int,
    dataset_hash: str,
    resuming: bool = False,
    classes: list[str] | None = None,
    mask_labels: tuple[str, ...] = (),
) -> ResolvedOptions:
    """Fill unset options from the preset and check that the result can run."""
    check_option_values(opts)  # ranges of gpus, kimg, tick, snap, p, ...
    if opts.aug not in AUG_MODES:
        raise ConfigError(f"--aug must be one of {', '.join(AUG_MODES)}, got {opts.aug!r}")
    if opts.precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if opts.resume_mode not in RESUME_MODES:
        raise ConfigError(f"--resume-mode must be one of {', '.join(RESUME_MODES)}")
    if opts.modconv not in MODCONV_FORMS:
        raise ConfigError(f"--modconv must be one of {', '.join(MODCONV_FORMS)}")
    if opts.cond and label_dim == 0:
        raise ConfigError(f"--cond: the archive {opts.data} has no labels (dataset.json)")
    if opts.aug == "fixed" and opts.p is None:
        raise ConfigError("--aug fixed needs --p (the constant augmentation probability)")
    check_augmentation(opts)
    gpus = opts.gpus
    preset = resolve_preset(opts.cfg, resolution, gpus)

    # Overrides from the command line, applied on top of the preset.
    over: dict[str, Any] = {}
    for name, value in (
        ("channel_base", opts.cbase),
        ("channel_max", opts.cmax),
        ("map_depth", opts.map_depth),
        ("mbstd_group", opts.mbstd_group),
        ("gamma", opts.gamma),
    ):
        if value is not None:
            over[name] = value
    batch = preset.batch
    batch_gpu = preset.batch_gpu
    if opts.batch is not None:
        batch = opts.batch
        batch_gpu = batch // gpus
    if opts.batch_gpu is not None:
        batch_gpu = opts.batch_gpu
    if batch % gpus:
        raise ConfigError(f"--batch {batch} is not divisible by the number of GPUs ({gpus})")
    batch_gpu = max(1, min(batch_gpu, batch // gpus))
    if batch % (batch_gpu * gpus):
        raise ConfigError(
            f"--batch {batch} is not a multiple of --batch-gpu {batch_gpu} x {gpus} GPU(s)"
        )
    over.update(batch=batch, batch_gpu=batch_gpu)
    if "mbstd_group" not in over and opts.cfg == "auto":
        over["mbstd_group"] = min(batch_gpu, 4)
    preset = dataclasses.replace(preset, **over)

    # ADA restarts faster after a weights-only resume (p starts from 0 again), as the original.
    preset_ada_kimg = min(preset.ada_kimg, 100.0) if resuming else preset.ada_kimg
    from mrisynth.devices import resolve_device  # torch stays out of option parsing

    device = resolve_device(opts.device).type
    # Reduced precision exists only on CUDA (the networks run fp32 on CPU whatever is asked).
    precision = "fp16" if opts.precision == "auto" else opts.precision
    if device != "cuda":
        precision = "fp32"
    return ResolvedOptions(
        user=opts,
        preset=preset,
        resolution=resolution,
        img_channels=img_channels,
        c_dim=label_dim if opts.cond else 0,
        num_images=num_images,
        dataset_hash=dataset_hash,
        device=device,
        precision=precision,
        batch=batch,
        batch_gpu=batch_gpu,
        num_accum=batch // (batch_gpu * gpus),
        glr=opts.glr if opts.glr is not None else preset.lr,
        dlr=opts.dlr if opts.dlr is not None else preset.lr,
        gamma=preset.gamma,
        aug=opts.aug,
        p_init=opts.p if opts.p is not None else 0.0,
        ada_kimg=opts.ada_kimg if opts.ada_kimg is not None else preset_ada_kimg,
        classes=tuple(classes or ()) if opts.cond else (),
        mask_labels=tuple(mask_labels),
    )


def merge_resume_options(saved: dict[str, Any], new: TrainOptions) -> TrainOptions:
    """The resumed run's options: the original run's, except what the user changed and may."""
    defaults = TrainOptions(data="")
    fields = {f.name for f in dataclasses.fields(TrainOptions)}
    merged = {k: v for k, v in saved.items() if k in fields}
    merged["metrics"] = tuple(merged.get("metrics", ()))
    for name in RESUME_PER_INVOCATION:
        merged[name] = getattr(new, name)
    for name in RESUME_OVERRIDABLE:
        value = getattr(new, name)
        if value != getattr(defaults, name) or name not in merged:
            merged[name] = value
    merged["gpus"] = new.gpus
    return TrainOptions(**merged)


def resolve_for_archive(
    opts: TrainOptions, archive: ImageArchive, resuming: bool
) -> ResolvedOptions:
    """`resolve_options` for an opened `ImageArchive`."""
    spec = mask_spec(archive)
    check_mirror_of_masks(opts.mirror, spec)
    return resolve_options(
        opts,
        resolution=archive.resolution,
        img_channels=archive.num_channels,
        label_dim=archive.label_dim,
        num_images=len(archive),
        dataset_hash=archive.content_hash(),
        resuming=resuming,
        classes=archive_class_names(archive),
        mask_labels=spec.labels if spec else (),
    )


def run_description(r: ResolvedOptions, data_name: str) -> str:
    """Run-folder suffix in the original's style, e.g. `chaos-paper256-gpus2-batch64-gamma1.5`."""
    if r.user.desc:
        return r.user.desc
    parts = [data_name, r.preset.name, f"gpus{r.user.gpus}", f"batch{r.batch}", f"gamma{r.gamma:g}"]
    if r.user.mirror:
        parts.append("mirror")
    if r.aug != "ada":
        parts.append(r.aug)
    return "-".join(parts)
