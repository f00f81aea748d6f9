"""prepare's report.json content and the hidden id -> path table (what the user reads)."""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mrisynth import __version__
from mrisynth.data.dicom_scan import Skipped
from mrisynth.data.orientation import slice_plane
from mrisynth.data.series import Series


def _versions() -> dict[str, str]:
    import cv2
    import pydicom

    return {
        "mrisynth": __version__,
        "python": platform.python_version(),
        "pydicom": pydicom.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


def build_report(inputs, opts, name, all_series, chosen, outs, skipped, warnings, counts) -> dict:
    """The report's content; `name(rel)` is how an input path appears (itself or an id)."""
    patients: dict[str, dict[str, int]] = {}
    for s, o in zip(chosen, outs, strict=True):
        p = patients.setdefault(s.patient_key, {"series": 0, "images": 0})
        p["series"] += 1
        p["images"] += len(o.images)
    found = Counter(s.sequence for s in all_series)
    return {
        "tool": "mrisynth prepare",
        "inputs": [p.name if opts.source_paths else f"input-{i + 1}" for i, p in enumerate(inputs)],
        "options": {
            "sequence": opts.sequence,
            **asdict(opts.slice),
            "source_paths": opts.source_paths,
            "strict": opts.strict,
        },
        "versions": _versions(),
        "counts": {
            **counts,
            "series_found": dict(sorted(found.items())),
            "skipped_by_reason": dict(
                Counter(k.reason.split(" (")[0] for k in skipped).most_common()
            ),
        },
        "patients": dict(sorted(patients.items())),
        "series": [
            {
                "series_key": s.series_key,
                "patient_key": s.patient_key,
                "sequence": s.sequence,
                "echo_time_ms": s.echo_time_ms,
                "orientation": slice_plane(s.slices[0].orientation),  # one per series
                "slices": len(o.images),
                "matrix": f"{s.slices[0].rows}x{s.slices[0].columns}",
                "folder": name(s.slices[0].folder),
            }
            for s, o in zip(chosen, outs, strict=True)
        ],
        "skipped": [{"source": name(k.rel), "reason": k.reason} for k in skipped],
        "warnings": warnings,
    }


def not_selected(all_series: list[Series], chosen: list[Series], sequence: str) -> list[Skipped]:
    """Slices of other sequences: listed too, so every input file is accounted for."""
    picked = {id(s) for s in chosen}
    return [
        Skipped(sl.source, f"not selected: {s.sequence} (--sequence {sequence})")
        for s in all_series
        if id(s) not in picked
        for sl in s.slices
    ]


def sources_csv(inputs: list[Path], skipped: list[Skipped], chosen: list[Series], name) -> bytes:
    """`id,path` for every input, skipped file and series folder the report names by id."""
    rows = {(k.rel, name(k.rel)) for k in skipped}
    rows |= {(s.slices[0].folder, name(s.slices[0].folder)) for s in chosen}
    body = "".join(f"{i},{json.dumps(rel)}\n" for rel, i in sorted(rows, key=lambda r: r[1]))
    roots = "".join(f"input-{k + 1},{json.dumps(str(p))}\n" for k, p in enumerate(inputs))
    return ("id,path\n" + roots + body).encode()
