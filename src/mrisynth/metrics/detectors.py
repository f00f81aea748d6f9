"""Where NVIDIA's TorchScript feature detectors live: search order, checksums and fetching.

The files are the ones stylegan2-ada-pytorch publishes (Karras et al. 2020): an Inception-v3
port for FID/KID and a VGG16 for precision/recall. They are searched for, in order, in an
explicit folder (`--detector-dir` or $MRISYNTH_DETECTOR_DIR), mrisynth's cache
(`<cache>/detectors/`), and NVIDIA's dnnlib cache (`<md5(url)>_<file name>`). A missing file is
an error naming every place searched and the command that fixes it; nothing falls back silently.

Trust: results are recorded as reference-exact only when the file's sha256 is confirmed: it
matches `PUBLISHED_SHA256` (hashes the project publishes after checking them; empty until
then) or the user confirmed it (`mrisynth weights trust FILE` -> `<cache>/detectors/
trusted.json`, or `--trust-detector SHA` for one evaluation). A hash recorded by `weights
fetch` only detects later changes of the file (trust on first use); it confirms nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mrisynth import atomic, hashing, untrusted
from mrisynth.errors import ConfigError, InputError, MissingDependencyError

log = logging.getLogger(__name__)

_CDN = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics"
DETECTOR_DIR_ENV = "MRISYNTH_DETECTOR_DIR"
SHA256_RECORD = "sha256.json"
TRUSTED_RECORD = "trusted.json"

# Detector name -> sha256 the project has checked against NVIDIA's files. Empty: the files could
# not be downloaded while writing mrisynth, and a guessed hash would be worse than none.
PUBLISHED_SHA256: dict[str, str] = {}


@dataclass(frozen=True)
class DetectorSpec:
    """One published detector file; `pinned_sha256` only where the value is known for sure."""

    name: str
    title: str
    filename: str
    url: str
    feature_dim: int
    pinned_sha256: str | None = None

    @property
    def dnnlib_name(self) -> str:
        """File name in dnnlib's download cache: md5 of the URL, underscore, file name."""
        return f"{hashlib.md5(self.url.encode()).hexdigest()}_{self.filename}"


# No sha256 is pinned: the files could not be downloaded while writing mrisynth, and a guessed
# hash would be worse than none. `weights fetch` records the hash it saw (trust on first use).
DETECTORS: dict[str, DetectorSpec] = {
    "inception": DetectorSpec(
        "inception",
        "Inception-v3 (FID, KID)",
        "inception-2015-12-05.pt",
        f"{_CDN}/inception-2015-12-05.pt",
        2048,
    ),
    "vgg16": DetectorSpec(
        "vgg16",
        "VGG16 (precision/recall)",
        "vgg16.pt",
        f"{_CDN}/vgg16.pt",
        4096,
    ),
}


def get_spec(name: str | DetectorSpec) -> DetectorSpec:
    """Look a detector up by name (or pass a spec through)."""
    if isinstance(name, DetectorSpec):
        return name
    try:
        return DETECTORS[name]
    except KeyError:
        choices = ", ".join(DETECTORS)
        raise ConfigError(f"unknown detector {name!r}; choose one of: {choices}") from None


def cache_dir() -> Path:
    """mrisynth's cache folder: $MRISYNTH_CACHE_DIR, else ~/.cache/mrisynth."""
    env = os.environ.get("MRISYNTH_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mrisynth"


def detector_cache_dir() -> Path:
    return cache_dir() / "detectors"


def dnnlib_download_dir() -> Path:
    """NVIDIA's dnnlib download cache: $DNNLIB_CACHE_DIR/downloads, else ~/.cache/dnnlib/..."""
    env = os.environ.get("DNNLIB_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "dnnlib"
    return base / "downloads"


def candidate_paths(
    spec: DetectorSpec, detector_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Every place searched, in order (explicit folder, mrisynth cache, dnnlib cache)."""
    paths: list[Path] = []
    explicit = detector_dir if detector_dir is not None else os.environ.get(DETECTOR_DIR_ENV)
    if explicit:
        paths += [Path(explicit) / spec.filename, Path(explicit) / spec.dnnlib_name]
    paths.append(detector_cache_dir() / spec.filename)
    paths.append(dnnlib_download_dir() / spec.dnnlib_name)
    return paths


def find_detector(
    spec: str | DetectorSpec, detector_dir: str | os.PathLike | None = None
) -> Path | None:
    """First existing file in the search order, or None."""
    spec = get_spec(spec)
    return next((p for p in candidate_paths(spec, detector_dir) if p.is_file()), None)


def missing_message(spec: DetectorSpec, detector_dir: str | os.PathLike | None = None) -> str:
    searched = ", ".join(str(p) for p in candidate_paths(spec, detector_dir))
    return (
        f"{spec.title} detector {spec.filename} not found (searched: {searched}); on a connected "
        f"machine run `mrisynth weights fetch {spec.name}`, or copy {spec.filename} from "
        f"{spec.url} into {detector_cache_dir()} or pass --detector-dir"
    )


def locate_detector(
    spec: str | DetectorSpec, detector_dir: str | os.PathLike | None = None
) -> Path:
    """The detector file to use; MissingDependencyError (one line) when there is none."""
    spec = get_spec(spec)
    path = find_detector(spec, detector_dir)
    if path is None:
        raise MissingDependencyError(missing_message(spec, detector_dir))
    return path


_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (memoised on path, size and mtime: detectors are ~100-500 MB)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        _HASH_MEMO[key] = hashing.sha256_file(path)
    return _HASH_MEMO[key]


def recorded_hashes(folder: str | os.PathLike | None = None) -> dict[str, dict]:
    """What `weights fetch` recorded in `folder` (default: the cache):
    {file name: {"sha256", "url", "size", "fetched"}}."""
    path = Path(folder if folder is not None else detector_cache_dir()) / SHA256_RECORD
    return _read_record(path, "delete it and re-fetch")


def trusted_hashes() -> dict[str, dict]:
    """sha256 -> {"detector", "file", "trusted"} confirmed with `mrisynth weights trust`."""
    path = detector_cache_dir() / TRUSTED_RECORD
    return _read_record(path, "delete it and re-run `weights trust`")


def _read_record(path: Path, fix: str) -> dict[str, dict]:
    """A JSON object this module wrote (empty when absent); a broken one is one Error line."""
    if not path.is_file():
        return {}
    try:
        table = untrusted.loads(path.read_text(), str(path), allow_nan=True)
    except (OSError, ValueError, untrusted.BadValue) as e:
        raise InputError(f"{path}: unreadable ({e}); {fix}") from e
    if not isinstance(table, dict):
        raise InputError(f"{path}: not a JSON object; {fix}")
    return table


def trust_file(spec: str | DetectorSpec, path: str | os.PathLike) -> str:
    """Record that the user confirmed `path`'s sha256 for detector `spec`; returns the hash."""
    spec = get_spec(spec)
    sha = sha256_file(path)
    table = trusted_hashes()
    table[sha] = {
        "detector": spec.name,
        "file": Path(path).name,
        "trusted": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    atomic.write_json(detector_cache_dir() / TRUSTED_RECORD, table)
    return sha


@dataclass(frozen=True)
class Trust:
    """How far a detector file's sha256 is vouched for; `confirmed` gates reference_exact."""

    how: str
    confirmed: bool


def trust_of(spec: DetectorSpec, path: Path, sha256: str, confirmed: tuple[str, ...] = ()) -> Trust:
    """Published hash, user-confirmed hash, hash recorded at fetch, or nothing.

    A hash that contradicts the published or fetch-recorded value raises InputError.
    """
    published = PUBLISHED_SHA256.get(spec.name) or spec.pinned_sha256
    if published is not None:
        if sha256 != published:
            raise InputError(
                f"{path}: sha256 {sha256} differs from the published {published}; "
                f"delete it and run `mrisynth weights fetch {spec.name}`"
            )
        return Trust("published sha256", True)
    record = recorded_hashes(path.parent).get(spec.filename)
    if record is not None and not isinstance(record, dict):
        raise InputError(
            f"{path.parent / SHA256_RECORD}: malformed entry for {spec.filename}; delete the "
            f"entry and run `mrisynth weights fetch {spec.name}`"
        )
    if record is not None and record.get("sha256") != sha256:
        raise InputError(
            f"{path}: sha256 {sha256} differs from the {record.get('sha256')} recorded when it "
            f"was fetched; delete it and run `mrisynth weights fetch {spec.name}`"
        )
    user = trusted_hashes().get(sha256)
    by_user = isinstance(user, dict) and user.get("detector") == spec.name
    if sha256 in {c.lower() for c in confirmed} or by_user:
        return Trust("confirmed by the user", True)
    if record is not None:
        return Trust("recorded at fetch, not confirmed (see `mrisynth weights trust`)", False)
    return Trust("unverified: no published, confirmed or recorded sha256", False)


def verification(spec: DetectorSpec, path: Path, sha256: str) -> str:
    """The `how` of `trust_of` (kept for callers that only show it)."""
    return trust_of(spec, path, sha256).how


@dataclass(frozen=True)
class DetectorStatus:
    spec: DetectorSpec
    path: Path | None
    searched: list[Path]
    sha256: str | None
    verified: str | None


def detector_status(detector_dir: str | os.PathLike | None = None) -> list[DetectorStatus]:
    """What is present, where it was looked for, and how its checksum is vouched for."""
    rows = []
    for spec in DETECTORS.values():
        path = find_detector(spec, detector_dir)
        sha = sha256_file(path) if path else None
        verified = verification(spec, path, sha) if path else None
        rows.append(DetectorStatus(spec, path, candidate_paths(spec, detector_dir), sha, verified))
    return rows


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    size: int


Opener = Callable[[str], BinaryIO]


def fetch_detector(
    spec: str | DetectorSpec,
    url: str | None = None,
    dest_dir: str | os.PathLike | None = None,
    opener: Opener | None = None,
    progress: bool = True,
) -> FetchResult:
    """Download a detector into the cache atomically and record its sha256 (trust on first use).

    `url` overrides the published address (a mirror or a `file://` copy); `opener` replaces
    `urllib.request.urlopen` (tests). A pinned hash, where known, is enforced.
    """
    from tqdm import tqdm

    spec = get_spec(spec)
    url = url or spec.url
    dest = Path(dest_dir) if dest_dir is not None else detector_cache_dir()
    target = dest / spec.filename
    digest = hashlib.sha256()
    size = 0
    open_url = opener or (lambda u: urllib.request.urlopen(u, timeout=60))
    try:
        response = open_url(url)
    except (OSError, ValueError) as e:
        raise MissingDependencyError(
            f"cannot download {spec.filename} from {url} ({e}); on an offline machine copy the "
            f"file into {dest} by hand"
        ) from e
    with response, atomic.atomic_path(target) as tmp, open(tmp, "wb") as out:
        total = int(getattr(response, "headers", {}).get("Content-Length") or 0) or None
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=spec.filename, disable=not progress)
        for block in iter(lambda: response.read(1 << 20), b""):
            out.write(block)
            digest.update(block)
            size += len(block)
            bar.update(len(block))
        bar.close()
        out.flush()
        sha = digest.hexdigest()
        if spec.pinned_sha256 is not None and sha != spec.pinned_sha256:
            raise InputError(f"{url}: sha256 {sha} is not the published {spec.pinned_sha256}")
    records = recorded_hashes(dest)
    records[spec.filename] = {
        "sha256": sha,
        "url": url,
        "size": size,
        "fetched": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    atomic.write_json(dest / SHA256_RECORD, records)
    log.info("fetched %s (%d bytes, sha256 %s)", target, size, sha)
    return FetchResult(target, sha, size)
