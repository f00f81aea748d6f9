"""Warning verdicts (mode collapse, data-copying) of many snapshots said once: an evaluation of
a run's every snapshot printed the same warning for each of them. The records keep each
snapshot's verdict; the console gets one line per metric and verdict, naming the snapshots.
Caveats (why a number is not the reference's) are said once per metric the same way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from logging.handlers import BufferingHandler

from mrisynth.metrics.runner import verdict_log

MAX_NAMED = 6  # snapshots named in a line; the rest are counted


@contextlib.contextmanager
def gathered() -> Iterator[None]:
    """Hold the runner's per-snapshot warning lines back (the caller says them once from the
    records); if the evaluation fails they are said as they were."""
    held = BufferingHandler(capacity=1 << 30)
    verdict_log.addHandler(held)
    propagate, verdict_log.propagate = verdict_log.propagate, False
    try:
        yield
    except BaseException:
        _release(held, propagate)
        for record in held.buffer:
            verdict_log.handle(record)
        raise
    finally:
        _release(held, propagate)


def _release(held: logging.Handler, propagate: bool) -> None:
    verdict_log.removeHandler(held)
    verdict_log.propagate = propagate


def summary_lines(evaluated: list[tuple[str, str, object]]) -> list[str]:
    """One line per (metric, warning title) from `(snapshot, metric, verdicts)` in the order
    evaluated: in how many of the metric's snapshots it rang, which, and the latest's text."""
    rang: dict[tuple[str, str], list[tuple[str, str]]] = {}
    total: dict[str, int] = {}
    for snap, metric, verdicts in evaluated:
        total[metric] = total.get(metric, 0) + 1
        for v in verdicts if isinstance(verdicts, list) else []:
            if isinstance(v, dict) and v.get("level") == "warning":
                key = (metric, str(v.get("title", "warning")))
                rang.setdefault(key, []).append((snap, str(v.get("text", ""))))
    lines = []
    for (metric, title), hits in rang.items():
        latest, text = hits[-1]
        if len(hits) == 1 and total[metric] == 1:
            lines.append(f"{metric}: {title}. {latest}: {text}")
            continue
        lines.append(
            f"{metric}: {title}, in {len(hits)} of {total[metric]} snapshots evaluated "
            f"({_named([s for s, _ in hits])}). The latest, {latest}: {text} (each snapshot's "
            f"numbers are in its record, metric-{metric}.jsonl)"
        )
    return lines


def caveat_lines(evaluated: list[tuple[str, str, object]]) -> list[str]:
    """One `note` line per (metric, caveat) from `(snapshot, metric, caveats)` in the order
    evaluated, saying in which of the metric's snapshots it applies when more than one was
    evaluated (a caveat about the method is the same for every snapshot)."""
    where: dict[tuple[str, str], list[str]] = {}
    total: dict[str, int] = {}
    for snap, metric, caveats in evaluated:
        total[metric] = total.get(metric, 0) + 1
        for caveat in caveats if isinstance(caveats, list) else []:
            snaps = where.setdefault((metric, str(caveat)), [])
            if snap not in snaps:
                snaps.append(snap)
    return [
        f"note ({metric}{_scope(snaps, total[metric])}): {caveat}"
        for (metric, caveat), snaps in where.items()
    ]


def _scope(snaps: list[str], total: int) -> str:
    if total == 1:
        return ""
    if len(snaps) == total:
        return f", all {total} snapshots"
    return f", {len(snaps)} of {total} snapshots: {_named(snaps)}"


def _named(snapshots: list[str]) -> str:
    if len(snapshots) <= MAX_NAMED:
        return ", ".join(snapshots)
    head = snapshots[: MAX_NAMED // 2]
    tail = snapshots[-(MAX_NAMED // 2) :]
    return f"{', '.join(head)}, ... {len(snapshots) - MAX_NAMED} more ..., {', '.join(tail)}"
