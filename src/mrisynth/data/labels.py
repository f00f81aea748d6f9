"""`dataset.json` (NVIDIA's label file) read as untrusted input, with a schema.

`{"labels": [[name, label], ...] | null, ...}`: a label is a class (an int, one-hot encoded with
max+1 classes, NVIDIA's rule) or a list of finite floats of one length for every image. Other
top-level keys (mrisynth's `"mrisynth"` record) are allowed and ignored here. Limits: the file
is read only up to `MAX_MEMBER_BYTES` (archive.py), and classes / float dims up to
`MAX_LABEL_DIM`, so a label can never ask for a huge one-hot matrix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from mrisynth import untrusted
from mrisynth.errors import InputError

MAX_LABEL_DIM = 1024  # classes, or floats per label
META_KEY = "mrisynth"  # top-level key of dataset.json beside NVIDIA's "labels"
LabelValue = int | list[float]


def parse_dataset_json(data: bytes, source: str) -> dict:
    """Bytes -> the top-level JSON object; InputError for anything else."""
    try:  # NaN is let through here: the label schema below refuses it with a clearer reason
        obj = untrusted.loads(data.decode("utf-8"), source, len(data), allow_nan=True)
    except UnicodeDecodeError:
        raise InputError(f"{source}: not UTF-8 text; re-create it with `mrisynth dataset`"
                         ) from None
    except untrusted.BadValue as exc:  # its text names the file and the JSON error
        raise InputError(f"{str(exc)[:200]}; re-create it with `mrisynth dataset`") from None
    if not isinstance(obj, dict):
        raise InputError(f"{source}: must be a JSON object like {{\"labels\": [...]}}")
    return obj


def label_table(obj: dict, source: str) -> dict[str, LabelValue] | None:
    """The validated `{name: label}` of a dataset.json object; None when unlabelled."""
    raw = obj.get("labels")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InputError(f"{source}: 'labels' must be a list of [name, label] pairs or null")
    table: dict[str, LabelValue] = {}
    for i, pair in enumerate(raw):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise InputError(f"{source}: labels entry {i} is not a [name, label] pair")
        name = pair[0].replace("\\", "/")
        if name in table:
            raise InputError(f"{source}: two labels for {name}")
        table[name] = _check_label(pair[1], f"{source}: label of {name}")
    return table


def _check_label(value: object, where: str) -> LabelValue:
    if isinstance(value, bool):
        raise InputError(f"{where} is a boolean; give a class number or a list of floats")
    if isinstance(value, int):
        if not 0 <= value < MAX_LABEL_DIM:
            raise InputError(f"{where}: class {value} outside 0..{MAX_LABEL_DIM - 1}")
        return value
    if isinstance(value, float):
        raise InputError(f"{where}: {value!r} is not a whole class number; write float labels "
                         "as lists, e.g. [0.5]")
    if isinstance(value, list):
        if not 0 < len(value) <= MAX_LABEL_DIM:
            raise InputError(f"{where}: a float label needs 1..{MAX_LABEL_DIM} values")
        try:
            return [untrusted.number(v, where) for v in value]
        except untrusted.BadValue:  # also ints beyond any float, which math.isfinite overflows on
            raise InputError(f"{where}: float labels must be finite numbers") from None
    raise InputError(f"{where}: {type(value).__name__} is neither a class nor a list of floats")


def labels_for(table: dict[str, LabelValue], names: Sequence[str], source: str) -> list:
    """Labels in archive order; every image needs one."""
    missing = [n for n in names if n not in table]
    if missing:
        raise InputError(f"{source}: no label for {missing[0]} ({len(missing)} images unlabelled)")
    return [table[n] for n in names]


def declared_classes(obj: dict, source: str = "dataset.json") -> int | None:
    """`{"mrisynth": {"num_classes": K}}`: the class count of a split archive (a holdout may not
    contain the highest class, but its one-hot width must match training's). None when not
    recorded; InputError when recorded as anything but a whole number 1..MAX_LABEL_DIM (a
    silently ignored count would give a holdout another width than its training archive)."""
    meta = obj.get(META_KEY)
    if not isinstance(meta, dict) or meta.get("num_classes") is None:
        return None
    k = meta["num_classes"]
    if not (isinstance(k, int) and not isinstance(k, bool) and 0 < k <= MAX_LABEL_DIM):
        raise InputError(f"{source}: {META_KEY}.num_classes {str(k)[:40]!r} is not a whole "
                         f"number 1..{MAX_LABEL_DIM}; re-create the archive with `mrisynth "
                         "dataset --labels ...`")
    return k


def labels_to_array(raw: Sequence, source: str, num_classes: int | None = None) -> np.ndarray:
    """NVIDIA's rule: ints are classes (one-hot, max+1 classes, or `num_classes` when larger);
    lists of floats are vectors.

    float32 [N, c_dim]. Mixed or ragged labels are refused (checked values only, see above).
    """
    values = [_check_label(v, f"{source}: label {i}") for i, v in enumerate(raw)]
    if values and all(isinstance(v, int) for v in values):
        classes = np.asarray(values, dtype=np.int64)
        if num_classes is not None and int(classes.max()) >= num_classes:
            raise InputError(f"{source}: class {int(classes.max())} in an archive that declares "
                             f"{num_classes} classes ({META_KEY}.num_classes); re-create it "
                             "with `mrisynth dataset --labels ...`")
        width = max(int(classes.max()) + 1, num_classes or 0)
        onehot = np.zeros((classes.size, width), dtype=np.float32)
        onehot[np.arange(classes.size), classes] = 1
        return onehot  # [N, num_classes]
    if values and all(isinstance(v, list) for v in values):
        dims = {len(v) for v in values}  # type: ignore[arg-type]
        if len(dims) == 1:
            return np.asarray(values, dtype=np.float32)  # [N, label_dim]
    raise InputError(
        f"{source}: labels must be all ints (classes) or all equal-length float lists"
    )


MAX_CLASS_NAME = 64
# What `dataset --labels` writes (pos0.25-0.50, t1_opp+pos0.00-0.25): names reach figure labels
# (matplotlib reads '$' as maths), HTML, metric keys and --label matching, so nothing else is
# accepted from a file: no markup, paths, spaces or look-alike letters
_CLASS_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.+-]{{0,{MAX_CLASS_NAME - 1}}}")


def condition_meta(names: Sequence[str], condition: dict) -> dict:
    """dataset.json's `"mrisynth"` entries for named classes (see `data/conditions.py`)."""
    return {"classes": list(names), "condition": dict(condition), "num_classes": len(names)}


def class_names(obj: dict, source: str) -> list[str] | None:
    """The checked class names of a dataset.json object (None when it records none): unique,
    short, printable strings, at most MAX_LABEL_DIM of them."""
    meta = obj.get(META_KEY)
    names = meta.get("classes") if isinstance(meta, dict) else None
    if names is None:
        return None
    return checked_class_names(names, f"{source}: {META_KEY}.classes")


def checked_class_names(names: object, where: str) -> list[str]:
    """Class names read from a file (dataset.json, a snapshot): InputError unless a list of
    unique printable strings of 1..MAX_CLASS_NAME characters."""
    if not isinstance(names, list) or not 0 < len(names) <= MAX_LABEL_DIM:
        raise InputError(f"{where} must be a list of 1..{MAX_LABEL_DIM} names")
    for n in names:
        if not (isinstance(n, str) and _CLASS_NAME.fullmatch(n) and ".." not in n):
            raise InputError(f"{where}: {str(n)[:40]!r} is not a class name (1..{MAX_CLASS_NAME} "
                             "ASCII letters, digits and _ . + -, starting with a letter or digit)")
    if len(set(names)) != len(names):
        raise InputError(f"{where}: names repeat")
    return list(names)


def archive_class_names(archive) -> list[str] | None:
    """The class names an opened `ImageArchive` records, checked against its one-hot width."""
    source = f"{archive.path}/dataset.json"
    names = class_names(archive.dataset_json(), source)
    if names is not None and len(names) != archive.label_dim:
        raise InputError(f"{source}: {len(names)} class names for {archive.label_dim} classes; "
                         "re-run `mrisynth dataset --labels ...`")
    return names
