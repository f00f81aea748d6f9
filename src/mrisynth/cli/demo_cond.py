"""`mrisynth demo --cond`: what a position-conditional demo run changes.

The archive gets `--labels position:4` (slice level, top to bottom, normalised per patient;
see `data/conditions.py`), training `--cond`, the last-snapshot evaluation adds the
faithfulness metric, the samples step asks for the middle of the abdomen, and the report shows
one row of generated slices per position bin (`report/classes.py`).
"""

from __future__ import annotations

POSITION_BINS = 4
LABELS = f"position:{POSITION_BINS}"
SAMPLE_REQUEST: tuple[float | None, str | None] = (0.5, None)  # (position, label) of samples


def pack_labels(cond: bool) -> str | None:
    """`pack_archive(labels=...)` of the demo."""
    return LABELS if cond else None


def final_metrics(cond: bool, num_eval: int) -> list[str]:
    """Metrics added to the last snapshot's evaluation."""
    return [f"faithfulness{num_eval}"] if cond else []


def sample_request(cond: bool) -> tuple[float | None, str | None]:
    """`write_generation(class_request=...)`: a conditional model needs a class."""
    return SAMPLE_REQUEST if cond else (None, None)


def describe(cond: bool) -> str:
    """Added to the packing step's line."""
    if not cond:
        return ""
    return f"; labels: {POSITION_BINS} slice-position bins per patient, top to bottom"
