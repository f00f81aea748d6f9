"""The output folder of one generation run: a plan first, the files, the manifest last.

`generation.partial.json` (the plan: the run's record and every file it will write) is written
before any image, `generation.json` and then `manifest.csv` after the last one, and the plan is
removed at the very end. So a folder with a plan is unfinished (a kill or a full disk), and a
re-run of the same command recognises its own files by the plan and writes only the missing
ones; a run with other options (another model, other seeds) is refused instead of mixing in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mrisynth import atomic
from mrisynth import untrusted as u
from mrisynth.errors import ConfigError

log = logging.getLogger(__name__)

PLAN_NAME = "generation.partial.json"
PLAN_FORMAT = "mrisynth-generation-plan"
INFO_NAME = "generation.json"
MANIFEST_NAME = "manifest.csv"


def identity(record: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same output: the record without the network path as typed,
    and without the batch size unless noise is random (then batches shape the images)."""
    same = {k: v for k, v in record.items() if k not in ("network", "network_from_outdir")}
    sampling = dict(same.get("sampling") or {})
    if sampling.get("noise_mode") != "random":
        sampling.pop("batch_size", None)
    same["sampling"] = sampling
    return same


def _read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON object of ours, or None when it is unreadable (then it is not ours)."""
    try:
        raw = path.read_bytes()
        obj = u.loads(raw, path.name, max_bytes=64 * 2**20)
    except (OSError, u.BadValue):
        return None
    return obj if isinstance(obj, dict) else None


class OutputFolder:
    """Writes one run's files into `outdir`, resuming its own unfinished output."""

    def __init__(self, outdir: str | Path, record: dict[str, Any], files: list[str]) -> None:
        self.outdir = Path(outdir)
        self.record = record
        self.files = files
        self.done: set[str] = set()  # files already complete from an interrupted run

    def start(self) -> set[str]:
        """Check the folder, write the plan; returns the file names that need no writing."""
        mine = identity(self.record)
        plan = self.outdir / PLAN_NAME
        if plan.exists():
            old = _read_json(plan)
            if old is None or old.get("format") != PLAN_FORMAT or identity(
                old.get("record") or {}
            ) != mine:
                raise ConfigError(
                    f"{self.outdir}: holds an unfinished generation with other options (see "
                    f"{PLAN_NAME}); re-run that command to finish it, or choose another --outdir"
                )
            atomic.remove_stale_temps(self.outdir)
            self.done = {f for f in self.files if (self.outdir / f).is_file()}
            log.info("resuming %s: %d of %d files already written", self.outdir,
                     len(self.done), len(self.files))
        elif (self.outdir / INFO_NAME).exists():
            old = _read_json(self.outdir / INFO_NAME)
            if old is None or identity(old) != mine:
                raise ConfigError(
                    f"{self.outdir}: holds the output of another generation ({INFO_NAME}); "
                    "choose another --outdir or delete that folder"
                )
        elif self.outdir.is_dir() and any(self.outdir.iterdir()):
            # e.g. a prepare folder or a run: synthetic PNGs there would pass for real ones
            raise ConfigError(
                f"{self.outdir}: folder is not empty and is not a `mrisynth generate` output; "
                "choose a new --outdir"
            )
        with self._writing():
            if self.outdir.exists() and not self.outdir.is_dir():  # a pipe, device, ...
                raise ConfigError(f"{self.outdir}: exists and is not a folder; choose another "
                                  "--outdir")
            self.outdir.mkdir(parents=True, exist_ok=True)
            atomic.write_json(plan, {"format": PLAN_FORMAT, "version": 1, "record": self.record,
                                     "files": self.files})
        return set(self.done)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A full disk stays a DiskFullError; any other OSError is an unusable --outdir."""
        with atomic.output_errors(self.outdir, "--outdir"):
            yield

    def write(self, name: str, data: bytes) -> None:
        if name not in self.done:
            with self._writing():
                atomic.write_bytes(self.outdir / name, data)

    def finish(self, manifest_text: str) -> None:
        """generation.json, then manifest.csv, then the plan goes: the run is complete."""
        with self._writing():
            atomic.write_json(self.outdir / INFO_NAME, self.record)
            atomic.write_text(self.outdir / MANIFEST_NAME, manifest_text)
            (self.outdir / PLAN_NAME).unlink(missing_ok=True)
