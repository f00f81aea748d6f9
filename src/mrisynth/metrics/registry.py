"""Metric names -> what to compute: NVIDIA's names (Karras et al. 2020) plus mrisynth's own.

Names (`<n>` is an image count written `50k`, `2k` or `500`; it is the number of generated
images, and the real side is always the full training set for `_full`):
- `fid<n>_full`, `kid<n>_full`, `pr<n><k>_full` (e.g. `pr50k3_full`; a plain count needs an
  underscore: `pr500_3_full`): NVIDIA's detectors; reference-exact.
- `standin_fd<n>_full`, `standin_kd<n>_full`, `standin_pr<n><k>_full`: the same computations on
  seeded random networks of the detectors' architectures (tests, wiring checks). Not FID/KID/PR.
- `intensity_hist[<n>]`, `body_area[<n>]`: weight-free pixel statistics (default 1k images).
- `frd<n>`: Fréchet Radiomics Distance on n real and n generated images (optional extra).
- `pixfd[<n>]`: weight-free pixel Fréchet distance (`metrics.pixfd`; default 1k generated
  images, all real ones); never FID, never reference-exact. Its name always states n.
- `memorisation[<n>]`: memorisation audit on n generated images (default 1k).
- `diversity[<n>]`: MS-SSIM, spread and coverage of n generated images against the real ones,
  with the mode-collapse verdict (`metrics.diversity`; default 1k).
- `faithfulness[<n>]`: a conditional generator's images of each class classified by a probe
  fitted on the real training slices, next to its accuracy on held-out real slices
  (`metrics.faithfulness`; n generated images split evenly over the classes; default 1k).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from mrisynth.errors import ConfigError

DEFAULT_PIXEL_COUNT = 1000
_COUNT = r"(?P<n>\d+k|\d+)"
_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("fid", re.compile(rf"^fid{_COUNT}_full$")),
    ("kid", re.compile(rf"^kid{_COUNT}_full$")),
    ("pr", re.compile(r"^pr(?P<n>\d+k|\d+_)(?P<k>\d+)_full$")),
    ("standin_fd", re.compile(rf"^standin_fd{_COUNT}_full$")),
    ("standin_kd", re.compile(rf"^standin_kd{_COUNT}_full$")),
    ("standin_pr", re.compile(r"^standin_pr(?P<n>\d+k|\d+_)(?P<k>\d+)_full$")),
    ("intensity_hist", re.compile(r"^intensity_hist(?P<n>\d+k|\d+)?$")),
    ("body_area", re.compile(r"^body_area(?P<n>\d+k|\d+)?$")),
    ("frd", re.compile(rf"^frd{_COUNT}$")),
    ("pixfd", re.compile(r"^pixfd(?P<n>\d+k|\d+)?$")),
    ("memorisation", re.compile(r"^memorisation(?P<n>\d+k|\d+)?$")),
    ("diversity", re.compile(r"^diversity(?P<n>\d+k|\d+)?$")),
    ("faithfulness", re.compile(r"^faithfulness(?P<n>\d+k|\d+)?$")),
]

# Which detector each family feeds ('standin-' = the seeded random stand-in).
DETECTOR_OF = {
    "fid": "inception",
    "kid": "inception",
    "pr": "vgg16",
    "standin_fd": "standin-inception",
    "standin_kd": "standin-inception",
    "standin_pr": "standin-vgg16",
}
REFERENCE_FAMILIES = ("fid", "kid", "pr")


def parse_count(token: str) -> int:
    """'50k' -> 50000, '500' -> 500."""
    token = token.rstrip("_")
    return int(token[:-1]) * 1000 if token.endswith("k") else int(token)


def format_count(num: int) -> str:
    """50000 -> '50k', 500 -> '500' (the form NVIDIA's names use)."""
    return f"{num // 1000}k" if num >= 1000 and num % 1000 == 0 else str(num)


@dataclass(frozen=True)
class MetricSpec:
    """One requested metric: its family, generated-image count and (for PR) k."""

    family: str
    num_gen: int
    k: int = 3
    count_in_name: bool = True  # False: weight-free name given without a count

    @property
    def name(self) -> str:
        """Canonical name; it states the number of generated images actually used."""
        n = format_count(self.num_gen)
        f = self.family
        if f in ("fid", "kid", "standin_fd", "standin_kd"):
            return f"{f}{n}_full"
        if f in ("pr", "standin_pr"):
            return f"{f}{n}{'' if n.endswith('k') else '_'}{self.k}_full"
        if f in ("frd", "pixfd") or self.count_in_name:
            return f"{f}{n}"
        return f

    @property
    def detector(self) -> str | None:
        return DETECTOR_OF.get(self.family)

    @property
    def reference_exact(self) -> bool:
        """Computed exactly as NVIDIA's metric of the same name (needs the real detectors)."""
        return self.family in REFERENCE_FAMILIES

    def with_num_gen(self, num_gen: int | None) -> MetricSpec:
        if num_gen is None:
            return self
        return replace(self, num_gen=num_gen, count_in_name=True)


MAX_NUM_GEN = 1_000_000  # 20x the study's 50k; a larger count asked for memory it never got


def parse_metric_name(name: str) -> MetricSpec:
    """Turn a metric name into a spec; ConfigError for unknown or malformed names."""
    for family, pattern in _PATTERNS:
        m = pattern.match(name)
        if m is None:
            continue
        token = m.group("n")
        num = parse_count(token) if token else DEFAULT_PIXEL_COUNT
        if not 2 <= num <= MAX_NUM_GEN:
            raise ConfigError(f"metric {name!r}: needs 2..{MAX_NUM_GEN:,} generated images")
        k = int(m.group("k")) if "k" in pattern.groupindex else 3
        if k < 1:
            raise ConfigError(f"metric {name!r}: k must be >= 1")
        return MetricSpec(family, num, k, count_in_name=token is not None)
    if name.startswith(("fid", "kid", "pr")) and not name.endswith("_full"):
        hint = "; only the `_full` variants (all real images) are supported, e.g. fid50k_full"
    else:
        hint = ""
    raise ConfigError(
        f"unknown metric {name!r}{hint}; known: fid50k_full, kid50k_full, pr50k3_full "
        "(any count, e.g. fid2k_full), standin_fd/kd/pr..., intensity_hist, body_area, "
        "frd<n>, pixfd[<n>], memorisation[<n>], diversity[<n>], faithfulness[<n>] "
        "(see `mrisynth metrics --help`)"
    )


def check_metric_names(names: list[str]) -> None:
    """Raise ConfigError for unknown names (called by training before any work)."""
    seen = set()
    for name in names:
        spec = parse_metric_name(name)
        if spec.name in seen:
            raise ConfigError(f"metric {name!r} given twice")
        seen.add(spec.name)


def parse_metric_list(names: list[str] | str, num_gen: int | None = None) -> list[MetricSpec]:
    """Comma-separated string or list -> specs (with `num_gen` overriding every count)."""
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    names = [n.strip() for n in names if n.strip()]
    check_metric_names(names)
    if num_gen is not None and not 2 <= num_gen <= MAX_NUM_GEN:
        raise ConfigError(f"--num-gen must be in 2..{MAX_NUM_GEN:,}, got {num_gen}")
    return [parse_metric_name(n).with_num_gen(num_gen) for n in names]
