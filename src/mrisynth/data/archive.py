"""Training archives: folder or uncompressed ZIP of PNGs + `dataset.json` (NVIDIA's convention).

Reading is random access (one ZIP member or one file per item) and safe in DataLoader workers:
the ZIP handle is opened lazily per process and never pickled. Archives are untrusted input:
member names, links and sizes are checked in `members.py`, every PNG goes through `png.py`, and
`dataset.json` through the schema in `labels.py`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mrisynth.data.labels import (
    declared_classes,
    label_table,
    labels_for,
    labels_to_array,
    parse_dataset_json,
)
from mrisynth.data.members import (
    list_folder_members,
    list_zip_members,
    read_folder_member,
    read_zip_member,
)
from mrisynth.data.png import decode_png
from mrisynth.errors import InputError

logger = logging.getLogger(__name__)

LABELS_NAME = "dataset.json"
MANIFEST_NAME = "manifest.csv"
IMAGE_SUFFIX = ".png"


def _is_hidden(rel: str) -> bool:
    """Hidden path parts (`.x`, macOS `__MACOSX`) are never images of the dataset."""
    return any(p.startswith(".") or p == "__MACOSX" for p in rel.split("/"))


__all__ = ["ImageArchive", "check_image_shape", "decode_png", "labels_to_array"]


def list_image_names(path: str | os.PathLike[str]) -> list[str]:
    """Sorted POSIX names of the PNGs in a folder (recursive) or ZIP; hidden ones skipped.

    Every member name is checked first (InputError for unsafe names, links, duplicates).
    """
    path = Path(path)
    if path.is_dir():
        names = list_folder_members(path)
    elif not path.is_file():
        raise InputError(f"{path}: neither a folder nor a ZIP archive")
    else:
        try:
            with zipfile.ZipFile(path) as zf:
                names = list_zip_members(zf, str(path))
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable ZIP archive ({exc})") from None
    return sorted(n for n in names if n.lower().endswith(IMAGE_SUFFIX) and not _is_hidden(n))


class ImageArchive:
    """Random-access reader for a training archive (folder or ZIP); see DEVELOPERS.md."""

    def __init__(self, path: str | os.PathLike[str], only: list[str] | None = None) -> None:
        """`only`: the member names to take (a generate folder's listed images), not every PNG."""
        self.path = Path(path)
        self._only = None if only is None else set(only)
        from mrisynth.data.source_kind import explained, refuse_non_archive

        try:
            refuse_non_archive(self.path)  # a DICOM tree or a run folder: say what it is
            self._open()
        except InputError as e:  # a snapshot or pickle file: the same
            raise explained(self.path, e) from None

    def _open(self) -> None:
        if not self.path.exists():
            raise InputError(f"{self.path}: no such folder or ZIP archive")
        if not (self.path.is_dir() or self.path.is_file()):  # a pipe or device would block
            raise InputError(f"{self.path}: neither a folder nor a ZIP archive (a special file)")
        self._is_zip = self.path.is_file()
        if self._is_zip and not zipfile.is_zipfile(self.path):
            raise InputError(f"{self.path}: neither a folder nor a ZIP archive")
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._lock = threading.Lock()
        self._hash: str | None = None
        self.names: list[str] = self._without_masks(list_image_names(self.path))
        if self._only is not None:
            self.names = [n for n in self.names if n in self._only]
        if not self.names:
            raise InputError(f"{self.path}: contains no PNG images")
        first = self[0]  # [C, H, W]
        self.num_channels, self.resolution = int(first.shape[0]), int(first.shape[1])
        check_image_shape(first, f"{self.path}/{self.names[0]}")
        self.labels = self._load_labels()  # [N, c_dim]
        logger.info(
            "archive %s: %d images, %dx%d, %d channel(s), label_dim %d",
            self.path,
            len(self),
            self.resolution,
            self.resolution,
            self.num_channels,
            self.label_dim,
        )

    def _without_masks(self, names: list[str]) -> list[str]:
        """`prepare --masks` keeps label masks in masks/ (with masks/labels.json) beside the
        images, named in the manifest's mask_file column: never training images themselves."""
        if "masks/labels.json" in self._member_names():
            names = [n for n in names if not n.startswith("masks/")]
        try:
            text = self.manifest_text()
            if text is None:
                return names
            from mrisynth.data.manifest import read_manifest

            rows = read_manifest(text, f"{self.path}/{MANIFEST_NAME}")
        except InputError:
            return names  # reported by whoever needs the manifest
        masks = {(r.get("mask_file") or "").replace("\\", "/") for r in rows}
        return [n for n in names if n not in masks]

    def _member_names(self) -> set[str]:
        if self._is_zip:
            return set(self._zipfile().namelist())
        return {"masks/labels.json"} if (self.path / "masks" / "labels.json").is_file() else set()

    # -- raw member access -------------------------------------------------------------------
    def _zipfile(self) -> zipfile.ZipFile:
        """One ZipFile per process (forked DataLoader workers must not share the parent's)."""
        pid = os.getpid()
        if self._zip is None or self._zip_pid != pid:
            with self._lock:
                if self._zip is None or self._zip_pid != pid:
                    try:
                        self._zip = zipfile.ZipFile(self.path)
                    except (zipfile.BadZipFile, OSError) as exc:
                        raise InputError(f"{self.path}: cannot open the ZIP ({exc})") from None
                    self._zip_pid = pid
        return self._zip

    def read_member(self, name: str) -> bytes | None:
        """Raw bytes of one member (image, `dataset.json`, `manifest.csv`); None if absent.

        Bounded (members.MAX_MEMBER_BYTES): an oversize member is an InputError.
        """
        if self._is_zip:
            return read_zip_member(self._zipfile(), name, str(self.path))
        return read_folder_member(self.path, name)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_zip"], state["_zip_pid"], state["_lock"] = None, None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- the contract --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, idx: int) -> np.ndarray:
        """uint8 [C, H, W]; every image is checked against the first one's shape."""
        name = self.names[idx]
        data = self.read_member(name)
        if data is None:
            raise InputError(f"{self.path}: member {name} vanished while reading")
        img = decode_png(data, f"{self.path}/{name}")
        if hasattr(self, "resolution") and img.shape != self.image_shape:
            raise InputError(
                f"{self.path}/{name}: shape {list(img.shape)} differs from the archive's "
                f"{list(self.image_shape)}; all images must have the same size and channels"
            )
        return img

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.num_channels, self.resolution, self.resolution)

    @property
    def label_dim(self) -> int:
        return int(self.labels.shape[1])

    def dataset_json(self) -> dict:
        """The checked top-level object of `dataset.json` ({} when absent); read once."""
        if not hasattr(self, "_dataset_json"):
            data = self.read_member(LABELS_NAME)
            src = f"{self.path}/{LABELS_NAME}"
            self._dataset_json = {} if data is None else parse_dataset_json(data, src)
        return self._dataset_json

    def label_list(self) -> list | None:
        """Checked labels in `names` order, as in dataset.json (ints or float lists); None if
        unlabelled."""
        src = f"{self.path}/{LABELS_NAME}"
        table = label_table(self.dataset_json(), src)
        return None if table is None else labels_for(table, self.names, src)

    def _load_labels(self) -> np.ndarray:
        raw = self.label_list()
        if raw is None:
            return np.zeros((len(self), 0), dtype=np.float32)
        src = f"{self.path}/{LABELS_NAME}"
        return labels_to_array(raw, src, num_classes=declared_classes(self.dataset_json(), src))

    def content_hash(self) -> str:
        """sha256 over (name, bytes) of every image in order; same for a folder and its ZIP.

        Labels are not part of it, so relabelling keeps metric caches valid.
        """
        if self._hash is None:
            h = hashlib.sha256()
            for name in self.names:
                data = self.read_member(name) or b""
                h.update(name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "little"))
                h.update(data)
            self._hash = h.hexdigest()
        return self._hash

    def read_all(self, num_threads: int = 4) -> np.ndarray:
        """All images as uint8 [N, C, H, W] (decoding in threads: cv2 releases the GIL).

        Refused when the array would not fit in the memory available now: many small PNGs of
        a uniform 4096 px image would otherwise ask for tens of GB.
        """
        need = len(self) * int(np.prod(self.image_shape))
        free = _available_memory()
        if free is not None and need > 0.8 * free:
            raise InputError(
                f"{self.path}: {len(self)} images of {'x'.join(map(str, self.image_shape))} need "
                f"{need / 2**30:.1f} GiB in memory, {free / 2**30:.1f} GiB are available; use a "
                "smaller archive or resolution"
            )
        out = np.empty((len(self), *self.image_shape), dtype=np.uint8)  # [N, C, H, W]

        def load(i: int) -> None:
            out[i] = self[i]

        if num_threads <= 1 or len(self) < 64:
            for i in range(len(self)):
                load(i)
        else:
            with ThreadPoolExecutor(num_threads) as pool:
                list(pool.map(load, range(len(self))))
        return out

    def manifest_text(self) -> str | None:
        """mrisynth's manifest.csv carried along from `prepare`, if present."""
        data = self.read_member(MANIFEST_NAME)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}/{MANIFEST_NAME}: not UTF-8 text") from None

    @property
    def patient_keys(self) -> list[str] | None:
        """Per image (in `names` order), the manifest's opaque `patient_key`; None when the
        archive carries no manifest or the manifest has no patient key for every image."""
        if not hasattr(self, "_patient_keys"):
            self._patient_keys = self._read_patient_keys()
        return self._patient_keys

    def _read_patient_keys(self) -> list[str] | None:
        from mrisynth.data.manifest import read_manifest

        text = self.manifest_text()
        if text is None:
            return None
        rows = read_manifest(text, f"{self.path}/{MANIFEST_NAME}")
        table = {r["file"].replace("\\", "/"): (r.get("patient_key") or "") for r in rows}
        keys = [table.get(n, "") for n in self.names]
        if not all(keys):
            logger.info("%s: manifest lacks patient keys for some images", self.path)
            return None
        return keys

    def validate(self) -> None:
        """Decode every image (raises InputError on the first bad one)."""
        for i in range(len(self)):
            self[i]


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_image_shape(img: np.ndarray, name: str) -> None:
    """Square, power-of-two side, 1, 2 (image + mask) or 3 channels: what the networks accept."""
    c, h, w = img.shape
    if h != w:
        raise InputError(f"{name}: {w}x{h} is not square; run `mrisynth prepare` (pads to square)")
    if h < 4 or h & (h - 1):
        raise InputError(
            f"{name}: side {h} is not a power of two >= 4; re-run `mrisynth prepare --size 256`"
        )
    if c not in (1, 2, 3):
        raise InputError(f"{name}: {c} channels; need 1, 2 (image + mask) or 3")
