"""Held-out patients stay held out: no test slice among the training slices of any arm, and no
generator trained on the test archive.

Two checks, both cheap next to training: pixel-identical slices (a copy of the holdout passed
as --real or --synthetic, or a holdout packed into the training archive again), and the data
the generator actually trained on, as its run recorded it (`generation.json` -> the run folder
holding that snapshot -> `training_options.json`: the archive's content hash and path): not the
--test archive, and when it is not --real, no --test patient key or slice in it. When the run
or its archive cannot be found, the study goes on and says that this was not checked.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrisynth import untrusted as u
from mrisynth.downstream.pairs import SegSet, load_archive
from mrisynth.errors import InputError
from mrisynth.generate.folder_files import generator_run
from mrisynth.training.run_record import find_recorded_data, recorded_options


def _slice_hashes(s: SegSet) -> set[bytes]:
    """Digests of the slices with any structure (a blank slice may well occur twice)."""
    return {
        hashlib.blake2b(img.tobytes(), digest_size=16).digest()
        for img in s.images
        if int(img.max()) != int(img.min())
    }


def check_no_test_slices(real: SegSet, synthetic: SegSet, test: SegSet) -> None:
    """InputError when --real or --synthetic holds a slice pixel-identical to a --test slice."""
    held_out = _slice_hashes(test)
    for option, s in (("--real", real), ("--synthetic", synthetic)):
        shared = len(_slice_hashes(s) & held_out)
        if shared:
            raise InputError(
                f"{option} {s.source}: {shared} slice(s) identical to slices of --test "
                f"{test.source} (held-out patients); no arm may train on a test patient: "
                "pass the training archive and a generator's output, not the holdout"
            )


def _shown(path: Path) -> str:
    """A path for downstream.json, which travels with the results: relative to the current
    folder when inside it, else with the home folder as '~' (a run record's resolved paths
    would otherwise put the user's account name into the study's record)."""
    absolute = Path(os.path.abspath(path))
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        if absolute.is_relative_to(base) and absolute != base:
            return prefix + str(absolute.relative_to(base))
    return str(path)


@dataclass(frozen=True)
class GeneratorData:
    """What downstream could check of the data the --synthetic folder's generator trained on."""

    checked: bool
    detail: str  # one sentence: what was checked, or why it could not be

    def record(self) -> dict[str, Any]:
        return {"checked": self.checked, "detail": self.detail}


def check_generator(
    synthetic_dir: Path, real_path: Path, test_path: Path, test: SegSet
) -> GeneratorData:
    """InputError when the generator trained on a --test patient: on the --test archive itself,
    or on an archive holding a --test patient key or a --test slice. The generator's archive is
    the one its run recorded (generation.json -> run folder, its snapshot checked by sha256 ->
    training_options.json, `training.run_record`), not what the user says it was."""
    run = generator_run(synthetic_dir)
    if run.run_dir is None:
        return _unchecked(synthetic_dir, run.reason)
    try:
        options = recorded_options(run.run_dir) or {}
        trained_hash = u.optional(u.text, options.get("dataset_hash"), "dataset_hash", 128)
    except (InputError, u.BadValue) as e:
        return _unchecked(synthetic_dir, f"its run's record cannot be used ({str(e)[:120]})")
    hashes = {name: _content_hash(p) for name, p in (("test", test_path), ("real", real_path))}
    if trained_hash == hashes["test"]:
        raise InputError(
            f"--synthetic {synthetic_dir}: its generator (run {_shown(run.run_dir)}) was trained "
            f"on --test {test_path} (the held-out patients); train it on the --real archive and "
            "generate again"
        )
    if trained_hash == hashes["real"]:
        return GeneratorData(True, f"its generator (run {_shown(run.run_dir)}) trained on --real "
                                   f"{real_path}, which shares no patient with --test")  # fmt: skip
    archive = find_recorded_data(options, run.run_dir)
    if archive is None:
        return _unchecked(synthetic_dir, f"its run {_shown(run.run_dir)} names no training archive "
                                         "that is still there")  # fmt: skip
    if trained_hash is not None and _content_hash(archive) != trained_hash:
        return _unchecked(synthetic_dir, f"{_shown(archive)}, its run's training archive, has "
                                         "changed since training (content hash)")  # fmt: skip
    return _check_archive(synthetic_dir, archive, test)


def _check_archive(synthetic_dir: Path, archive: Path, test: SegSet) -> GeneratorData:
    """The generator's own training archive: no --test patient key, no --test slice in it."""
    try:
        trained = load_archive(archive, "the generator's training archive")
    except InputError as e:
        return _unchecked(synthetic_dir, str(e))
    shared_keys = {g for g in trained.groups if g} & {g for g in test.groups if g}
    shared_slices = len(_slice_hashes(trained) & _slice_hashes(test))
    if shared_keys or shared_slices:
        raise InputError(
            f"--synthetic {synthetic_dir}: its generator was trained on {_shown(archive)}, which "
            f"holds {len(shared_keys)} --test patient(s) and {shared_slices} --test slice(s); "
            "train it on an archive without the held-out patients and generate again"
        )
    return GeneratorData(True, f"its generator trained on {_shown(archive)} ({len(trained)} "
                               "slices): no --test patient key or slice in it")  # fmt: skip


def _unchecked(synthetic_dir: Path, reason: str) -> GeneratorData:
    return GeneratorData(False, f"--synthetic {synthetic_dir}: which patients its generator "
                                f"trained on cannot be checked ({reason}); make sure they "
                                "exclude the --test patients")  # fmt: skip


def _content_hash(path: Path) -> str:
    from mrisynth.data.archive import ImageArchive

    archive = ImageArchive(path)
    try:
        return archive.content_hash()
    finally:
        archive.close()
