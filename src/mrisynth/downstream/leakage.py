"""Held-out patients stay held out: no test slice among the training slices of any arm, and no
generator trained on the test archive.

Two checks, both cheap next to training: pixel-identical slices (a copy of the holdout passed
as --real or --synthetic, or a holdout packed into the training archive again), and the
generator's recorded training data (`generation.json` -> its run's `training_options.json`
`dataset_hash`, the archive's content hash) compared with the test archive's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mrisynth import untrusted as u
from mrisynth.downstream.pairs import SegSet
from mrisynth.errors import InputError

MAX_RECORD_BYTES = 4 * 2**20


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


def generator_data_hash(synthetic_dir: Path) -> str | None:
    """The content hash of the archive the folder's generator trained on, when recorded and
    its run folder is still where generation.json says (else None: nothing to compare)."""
    try:
        gen = _record(synthetic_dir / "generation.json")
        network = Path(u.text(gen.get("network"), "generation.json network", 4096))
        run = network if network.is_dir() else network.parent
        opts = _record(run / "training_options.json")
        return u.text(opts.get("dataset_hash"), "dataset_hash", 128)
    except (OSError, ValueError, u.BadValue):
        return None


def _record(path: Path) -> Any:
    """A small JSON object written by another stage (size checked before reading)."""
    if not path.is_file() or path.stat().st_size > MAX_RECORD_BYTES:
        raise u.BadValue(f"{path}: missing or too large")
    return u.mapping(u.loads(path.read_bytes(), path.name, MAX_RECORD_BYTES), path.name)


def check_generator(synthetic_dir: Path, real: Path, test: Path) -> str | None:
    """InputError when the generator trained on the --test archive; a warning (returned) when
    it trained on an archive other than --real, since its patients cannot be checked."""
    from mrisynth.data.archive import ImageArchive

    trained_on = generator_data_hash(Path(synthetic_dir))
    if trained_on is None:
        return None
    hashes = {}
    for name, path in (("test", test), ("real", real)):
        archive = ImageArchive(path)
        try:
            hashes[name] = archive.content_hash()
        finally:
            archive.close()
    if trained_on == hashes["test"]:
        raise InputError(
            f"--synthetic {synthetic_dir}: its generator was trained on --test {test} (the "
            "held-out patients); train it on the --real archive and generate again"
        )
    if trained_on != hashes["real"]:
        return (
            f"--synthetic {synthetic_dir}: its generator was trained on another archive than "
            f"--real {real}; make sure that archive held out the --test patients"
        )
    return None
