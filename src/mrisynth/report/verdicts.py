"""The summary box at the top of the report: copy-test, diversity and distribution verdicts.

Metric records (`metric-<name>.jsonl`) and memorisation audits (`memorisation-<snapshot>.json`)
may carry `"verdicts": [{"topic", "level", "title", "text"}]` (the issue-10 contract). The box
shows, for each source, the verdicts of its latest evaluated snapshot, warnings first, and says
plainly when no copy test or no diversity metric was run, with the command that adds it.
Verdicts are untrusted text: unknown topics/levels are mapped to "info"/"data", text is made
plain and bounded, and a source contributes at most `MAX_PER_SOURCE` of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mrisynth.report.plaintext import plain
from mrisynth.report.runfiles import RunFiles, audit_order, finite, record_order
from mrisynth.report.tables import kimg_text

TOPICS = ("copying", "diversity", "distribution", "data")
LEVELS = ("warning", "ok", "info")  # display order: warnings first
MAX_PER_SOURCE = 12


@dataclass(frozen=True)
class Verdict:
    """One line of the summary box; `source` says which file and snapshot it comes from."""

    topic: str
    level: str
    title: str
    text: str
    source: str = ""

    def order(self) -> tuple[int, int]:
        return LEVELS.index(self.level), TOPICS.index(self.topic)


def clean_verdicts(value: Any, source: str) -> list[Verdict]:
    """The contract's verdict list from an untrusted value (anything else gives [])."""
    if not isinstance(value, list):
        return []
    out: list[Verdict] = []
    for item in value[:MAX_PER_SOURCE]:
        if not isinstance(item, dict):
            continue
        title = plain(item.get("title") or "", 120)
        text = plain(item.get("text") or "", 400)
        if not (title or text):
            continue
        topic = item.get("topic") if item.get("topic") in TOPICS else "data"
        level = item.get("level") if item.get("level") in LEVELS else "info"
        out.append(Verdict(str(topic), str(level), title, text, source))
    return out


def _where(snapshot: Any, kimg: Any) -> str:
    kimg = finite(kimg, 0, 1e9)
    at = f" at {kimg_text(kimg)} kimg" if kimg is not None else ""
    return f"{plain(snapshot, 120)}{at}" if snapshot else at.strip()


def collect(run: RunFiles) -> list[Verdict]:
    """Verdicts of each source's latest record that has any, warnings first."""
    found: list[Verdict] = []
    for name, records in sorted(run.metrics.items()):
        with_verdicts = [r for r in records if isinstance(r.get("verdicts"), list)]
        if with_verdicts:
            r = max(with_verdicts, key=record_order)
            where = _where(r["snapshot"], r["kimg"])
            found += clean_verdicts(r["verdicts"], f"metric {plain(name, 80)}, {where}")
    audits = [(p, a) for p, a in run.memorisation if isinstance(a.get("verdicts"), list)]
    if audits:
        path, obj = max(audits, key=audit_order)
        found += clean_verdicts(obj["verdicts"], f"{path.name}, {_where('', obj.get('kimg'))}")
    unique: dict[tuple[str, str, str, str], Verdict] = {}
    for v in found:  # the same verdict in a metric record and in its audit file: once
        unique.setdefault((v.topic, v.level, v.title, v.text), v)
    return sorted(unique.values(), key=Verdict.order)


def _has_metric(run: RunFiles, prefix: str) -> bool:
    return any(name.startswith(prefix) for name in run.metrics)


def missing(run: RunFiles, verdicts: list[Verdict]) -> list[Verdict]:
    """Info lines for checks that were not run, each naming the command that adds it."""
    topics = {v.topic for v in verdicts}
    source = (
        "--images IMAGES_DIR --data TRAIN.zip -o OUT"
        if run.is_evaluation
        else "--network RUN_DIR --data TRAIN.zip"
    )
    out: list[Verdict] = []
    if "copying" not in topics and not (run.memorisation or _has_metric(run, "memorisation")):
        out.append(
            Verdict(
                "copying",
                "info",
                "No copy test was run",
                "Whether generated images copy training patients is unknown. Add the test with "
                f"`mrisynth metrics {source} --metrics memorisation1k`.",
            )
        )
    elif "copying" not in topics:
        out.append(
            Verdict(
                "copying",
                "info",
                "Copy test without a verdict",
                "The memorisation audit below was written without a verdict (an older "
                f"version); re-run `mrisynth metrics {source} --metrics memorisation1k`.",
            )
        )
    if "diversity" not in topics and not _has_metric(run, "diversity"):
        out.append(
            Verdict(
                "diversity",
                "info",
                "No diversity metric was run",
                "Mode collapse is not checked. Add it with "
                f"`mrisynth metrics {source} --metrics diversity1k`.",
            )
        )
    return out


def summary_box(run: RunFiles) -> list[Verdict]:
    """Everything the box shows, in display order."""
    found = collect(run)
    return sorted(found + missing(run, found), key=Verdict.order)
