"""How metrics are evaluated (`EvalOptions`) and the detectors loaded for one evaluation
(`ExtractorPool`: each loaded once, a stand-in never swapped for a real detector)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from mrisynth.errors import ConfigError, MissingDependencyError
from mrisynth.metrics.extractor import FeatureExtractor, load_detector, standin_detector

__all__ = ["EvalOptions", "ExtractorPool"]


@dataclass
class EvalOptions:
    """How to evaluate; defaults follow the reference where it has one."""

    batch_size: int = 32  # generated images per forward pass
    detector_dir: str | os.PathLike | None = None  # searched before the caches
    extractors: dict[str, FeatureExtractor] = field(default_factory=dict)  # preloaded, by key
    seed: int = 0  # KID subsets, FRD's real subset, holdout split
    first_seed: int = 0  # seed of the first generated image
    use_cache: bool = True  # real features cached by dataset hash + detector hash
    pr_fp16: bool = True  # NVIDIA casts features to float16 for PR (False: not reference-exact)
    copy_percentile: float = 1.0  # memorisation: flag below this percentile of real
    # between-patient nearest-neighbour distances (calibrated from the data, not a constant)
    frd_workers: int | None = 1
    trusted_sha256: tuple[str, ...] = ()  # detector hashes the user confirms (--trust-detector)


class ExtractorPool:
    """Loads each detector once per evaluation; never swaps a stand-in for a real detector."""

    def __init__(self, device: torch.device, opts: EvalOptions) -> None:
        self.device, self.opts = device, opts
        self.loaded: dict[str, FeatureExtractor] = dict(opts.extractors)

    def get(self, key: str) -> FeatureExtractor:
        if key not in self.loaded:
            if key.startswith("standin-"):
                self.loaded[key] = standin_detector(key.removeprefix("standin-"), self.device)
            else:
                self.loaded[key] = load_detector(
                    key, self.device, self.opts.detector_dir, self.opts.trusted_sha256
                )
        ext = self.loaded[key]
        if ext.reference_exact != (not key.startswith("standin-")):
            raise ConfigError(
                f"detector {ext.name!r} given for {key!r}: stand-ins are only for standin_* metrics"
            )
        return ext

    def optional(self, key: str) -> FeatureExtractor | None:
        try:
            return self.get(key)
        except MissingDependencyError:
            return None
