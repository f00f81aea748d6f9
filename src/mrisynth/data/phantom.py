"""Synthetic abdominal MRI phantom: per-patient anatomy and a two-point Dixon-like signal model.

Pure numpy/scipy. Tissues carry water (W) and fat (F) signal so T1 in-phase = W + F and
opposed-phase = |W - F| (Dixon 1984); partial-volume edges give the opposed-phase "India ink"
rim at fat/water borders. A smooth multiplicative bias field and Rician noise (magnitude of a
complex Gaussian signal) make it look acquired. Coordinates are DICOM patient space (LPS, mm):
x to the patient's left, y posterior, z towards the head; image columns run along +x, so the
liver (patient right) appears on the image left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

# CHAOS ground-truth values
MASK_VALUES: dict[str, int] = {"liver": 63, "kidney_r": 126, "kidney_l": 189, "spleen": 252}

# tissue -> (water, fat, T2-weighted SPIR signal) in arbitrary units (liver in-phase ~0.6)
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (0.0, 0.0, 0.0),
    "fat": (0.06, 0.92, 0.08),
    "muscle": (0.34, 0.03, 0.22),
    "visceral": (0.16, 0.30, 0.30),  # mesenteric fat + bowel loops (fat varies in space)
    "liver": (0.56, 0.04, 0.28),
    "spleen": (0.44, 0.0, 0.55),
    "cortex": (0.52, 0.0, 0.50),
    "medulla": (0.36, 0.0, 0.65),
    "sinus_fat": (0.08, 0.80, 0.10),
    "fluid": (0.18, 0.0, 0.95),
    "vessel": (0.62, 0.0, 0.15),
    "bone": (0.03, 0.0, 0.02),
    "marrow": (0.28, 0.42, 0.20),
    "csf": (0.15, 0.0, 0.90),
    "lung": (0.03, 0.0, 0.02),
}


@dataclass(frozen=True)
class Blob:
    """An ellipsoid of one tissue (mm); `label` names its CHAOS mask class, if any."""

    tissue: str
    center: tuple[float, float, float]
    semi: tuple[float, float, float]
    label: str | None = None


@dataclass(frozen=True)
class Anatomy:
    """One patient: blobs painted in order (later ones cover earlier ones) plus field settings."""

    blobs: tuple[Blob, ...]
    stomach: Blob
    liver_fat: float  # extra fat fraction of the liver (steatosis drops opposed-phase signal)
    bias: tuple[float, ...]  # bias-field coefficients
    gain: float  # counts per signal unit (12-bit output)
    noise: float  # Rician sigma in counts


def sample_anatomy(rng: np.random.Generator, extent_mm: float) -> Anatomy:
    """Draw a patient: organ sizes/positions jittered around an adult abdomen.

    z positions are fractions of the imaged slab `extent_mm` (0 = lowest slice), so any number
    of slices shows lung bases at the top and the lower kidney poles at the bottom.
    """

    def j(v: float, rel: float = 0.08) -> float:
        return float(v * (1 + rng.uniform(-rel, rel)))

    h = extent_mm

    def z(frac: float) -> float:
        return (frac + rng.uniform(-0.03, 0.03)) * h

    ba, bb = j(160), j(115)  # body semi-axes (LR, AP)
    fat_mm = rng.uniform(8, 28)
    wall = fat_mm + 8
    big = 10 * h  # "infinite" along z
    blobs = [
        Blob("fat", (0, 0, h / 2), (ba, bb, big)),
        Blob("muscle", (0, 0, h / 2), (ba - fat_mm, bb - fat_mm, big)),
        Blob("visceral", (0, j(-4), h / 2), (ba - wall, bb - wall, big)),
        Blob("muscle", (j(-38), bb * 0.62, h / 2), (j(22), j(20), big)),  # paraspinal
        Blob("muscle", (j(38), bb * 0.62, h / 2), (j(22), j(20), big)),
        Blob("liver", (j(-55), j(-5), z(0.66)), (j(80), j(78), 0.42 * h), "liver"),
        Blob("liver", (j(5), j(-45), z(0.72)), (j(55), j(30), 0.22 * h), "liver"),  # left lobe
        Blob("spleen", (j(88), j(42), z(0.68)), (j(32), j(48), 0.2 * h), "spleen"),
    ]
    for side, zc in (("r", z(0.34)), ("l", z(0.4))):
        sx = -1 if side == "r" else 1
        c = (sx * j(68), j(58), zc)
        s = (j(27), j(32), 0.2 * h)
        blobs += [
            Blob("cortex", c, s, f"kidney_{side}"),
            Blob(
                "medulla",
                (c[0] - sx * 3, c[1], c[2]),
                (s[0] * 0.6, s[1] * 0.6, s[2] * 0.75),
                f"kidney_{side}",
            ),
            Blob(
                "sinus_fat",
                (c[0] - sx * 9, c[1], c[2]),
                (s[0] * 0.3, s[1] * 0.3, s[2] * 0.5),
                f"kidney_{side}",
            ),
        ]
    spine_y = bb * 0.55
    blobs += [
        Blob("vessel", (j(14), spine_y - 26, h / 2), (j(11, 0.15),) * 2 + (big,)),  # aorta
        Blob("vessel", (j(-22), spine_y - 24, h / 2), (j(13, 0.2), j(10, 0.2), big)),  # IVC
        Blob("bone", (0, spine_y, h / 2), (j(20), j(17), big)),
        Blob("marrow", (0, spine_y, h / 2), (j(17), j(14), big)),
        Blob("csf", (0, spine_y + 27, h / 2), (8, 7, big)),
        Blob("lung", (j(-78), j(35), 1.1 * h), (j(72), j(65), 0.21 * h)),
        Blob("lung", (j(78), j(35), 1.12 * h), (j(72), j(65), 0.21 * h)),
    ]
    for _ in range(int(rng.integers(3, 8))):  # bowel gas, lower and anterior
        r = rng.uniform(5, 14)
        pos = (rng.uniform(-70, 70), rng.uniform(-bb * 0.6, 0), rng.uniform(0.05, 0.45) * h)
        blobs.append(Blob("air", pos, (r, r * rng.uniform(0.6, 1.0), r * 1.5)))
    stomach = Blob("fluid", (j(45), j(-35), z(0.7)), (j(40), j(32), 0.16 * h))
    return Anatomy(
        blobs=tuple(blobs),
        stomach=stomach,
        liver_fat=float(rng.uniform(0.0, 0.12)),
        bias=tuple(float(v) for v in rng.uniform(-0.18, 0.18, size=5)),
        gain=float(rng.uniform(1900, 2600)),
        noise=float(rng.uniform(12, 28)),
    )


def _coverage(blob: Blob, x: np.ndarray, y: np.ndarray, z: float, edge_mm: float) -> np.ndarray:
    """Soft (partial-volume) coverage in [0, 1] of an ellipsoid on one slice."""
    (cx, cy, cz), (a, b, c) = blob.center, blob.semi
    dz = ((z - cz) / c) ** 2
    if dz >= 1:
        return np.zeros_like(x)
    r = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + dz)  # [H, W]
    return np.clip((1 - r) * min(a, b) / edge_mm + 0.5, 0, 1)


def render_slice(
    anatomy: Anatomy,
    z_mm: float,
    matrix: int,
    spacing_mm: float,
    rng: np.random.Generator,
    extent_mm: float,
) -> dict[str, np.ndarray]:
    """One axial slice: uint16 'in', 'opp', 't2' images and a uint8 CHAOS 'mask' [H, W]."""
    coords = (np.arange(matrix) - (matrix - 1) / 2) * spacing_mm
    x, y = np.meshgrid(coords, coords)  # [H, W]: columns along +x, rows along +y
    water, fat, t2 = (np.zeros_like(x) for _ in range(3))
    label = np.zeros(x.shape, dtype=np.uint8)
    loops = 1 + 0.9 * np.tanh(3 * gaussian_filter(rng.standard_normal(x.shape), 6 / spacing_mm))
    for blob in anatomy.blobs:
        f = _coverage(blob, x, y, z_mm, spacing_mm)
        if not f.any():
            continue
        w_t, f_t, t2_t = TISSUES[blob.tissue]
        if blob.tissue == "liver":
            f_t += anatomy.liver_fat
        elif blob.tissue == "visceral":  # bowel loops: fat content varies smoothly in-plane
            f_t = f_t * loops
        water += f * (w_t - water)
        fat += f * (f_t - fat)
        t2 += f * (t2_t - t2)
        label[f > 0.5] = MASK_VALUES[blob.label] if blob.label else 0
    st = _coverage(anatomy.stomach, x, y, z_mm, spacing_mm)
    if st.any():  # supine: air rises anteriorly (smaller y) above a flat fluid level
        air = y < anatomy.stomach.center[1] - 0.25 * anatomy.stomach.semi[1]
        w_t = np.where(air, 0.0, TISSUES["fluid"][0])
        t2_t = np.where(air, 0.0, TISSUES["fluid"][2])
        water += st * (w_t - water)
        fat -= st * fat
        t2 += st * (t2_t - t2)
        label[st > 0.5] = 0
    texture = 1 + 0.06 * gaussian_filter(rng.standard_normal(x.shape), 1.5) * 2.5  # [H, W]
    water, fat, t2 = water * texture, fat * texture, t2 * texture
    field = _bias_field(anatomy.bias, x, y, z_mm / extent_mm - 0.5)
    out = {
        "in": (water + fat) * field,
        "opp": np.abs(water - fat) * field * 1.04,  # shorter echo: slightly less T2* decay
        "t2": t2 * field,
    }
    for key, sig in out.items():
        s = sig * anatomy.gain
        noisy = np.hypot(
            s + rng.normal(0, anatomy.noise, s.shape), rng.normal(0, anatomy.noise, s.shape)
        )
        out[key] = np.clip(np.rint(noisy), 0, 4095).astype(np.uint16)  # 12-bit
    out["mask"] = label
    return out


def _bias_field(c: tuple[float, ...], x: np.ndarray, y: np.ndarray, zn: float) -> np.ndarray:
    """Smooth receive-coil sensitivity: exp of a low-order polynomial, ~0.7..1.3."""
    u, v = x / 200.0, y / 200.0
    return np.exp(c[0] * u + c[1] * v + c[2] * (u * u + v * v) + c[3] * u * v + c[4] * zn)
