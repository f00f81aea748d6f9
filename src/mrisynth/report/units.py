"""Axis labels with units for every number the report plots, chosen from the result key.

Result keys follow the metric records' naming (`<metric>_<quantity>`, e.g. `body_area64_gen_std`,
`diversity64_msssim_gen`); the first rule that matches names the quantity and its unit.
"""

from __future__ import annotations

KIMG_LABEL = "kimg (thousands of real images shown to D)"
KIMG_SHORT = "kimg (thousands of images)"  # small panels

_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("msssim",), "MS-SSIM (0-1, unitless)"),
    (("ratio",), "ratio (unitless)"),
    (("body_area",), "body area (fraction of the image)"),
    (("jsd",), "JS divergence (bits)"),
    (("intensity",), "grey levels (0-255)"),
    (("warning",), "warning (0 = no, 1 = yes)"),
    (("_p", "p_value", "pvalue"), "p-value (0-1)"),
    (("ncc",), "NCC (-1 to 1, unitless)"),
    (("distance", "threshold"), "distance (unitless)"),
    (("zu",), "Z_U statistic (standard normal units)"),
    (("coverage", "precision", "recall", "density", "fraction"), "fraction (0-1)"),
    (("kid", "kd"), "squared MMD of features (unitless)"),
    (("fid", "fd", "frd"), "Fréchet distance (squared feature units)"),
)


def unit_of(key: str) -> str:
    """'quantity (unit)' for a result key; 'value (unitless)' when no rule knows it."""
    k = key.lower()
    for needles, label in _RULES:
        if any(n in k if n != "_p" else k.endswith(n) for n in needles):
            return label
    return "value (unitless)"
