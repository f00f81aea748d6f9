"""Builders of hostile training archives, shared by tests/test_archive_hostile.py and
benchmarks/hostile_inputs.py. Each builder writes one input under `root` and returns its path."""

from __future__ import annotations

import functools
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np


def png_bytes(img: np.ndarray) -> bytes:
    _ok, buf = cv2.imencode(".png", img)
    return buf.tobytes()


def good_png(seed: int = 0, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 256, (size, size), dtype=np.uint8))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_png(width: int, height: int, idat: bytes, depth: int = 8, colour: int = 0) -> bytes:
    """A PNG whose IHDR claims `width` x `height`, with `idat` as its (compressed) pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def _zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]],
         compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _good_members(n: int = 2) -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    return [(f"img{i}.png", good_png(i)) for i in range(n)]


def _dataset_json_zip(root: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    return _zip(root / "labels.zip", [*_good_members(), ("dataset.json", data)])


def _patch_sizes(path: Path, real: int, claim: int) -> Path:
    """Rewrite a member's uncompressed size in the local and central headers (a lying ZIP)."""
    data = path.read_bytes().replace(struct.pack("<I", real), struct.pack("<I", claim))
    path.write_bytes(data)
    return path


def zip_slip(root: Path, name: str) -> Path:
    return _zip(root / "slip.zip", [*_good_members(), (name, good_png(9))])


def zip_nul_name(root: Path) -> Path:
    """A member named `x.png<NUL>../../outside.png` (zipfile shows only the part before NUL)."""
    path = _zip(root / "nul.zip", [*_good_members(), ("x.pngQ../../outside.png", good_png(9))])
    path.write_bytes(path.read_bytes().replace(b"x.pngQ../", b"x.png\0../"))
    return path


def zip_symlink(root: Path) -> Path:
    info = zipfile.ZipInfo("link.png")
    info.create_system = 3
    info.external_attr = 0o120777 << 16  # S_IFLNK
    return _zip(root / "link.zip", [*_good_members(), (info, b"/etc/passwd")])


def zip_duplicate(root: Path, second: str = "img0.png") -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it writes
        return _zip(root / "dup.zip", [*_good_members(), (second, good_png(5))])


def zip_huge_member(root: Path) -> Path:
    """A 100 MiB member of zeros, deflated to ~100 KB (its size claim is honest)."""
    return _zip(root / "bomb.zip", [*_good_members(), ("big.png", bytes(100 * 2**20))],
                zipfile.ZIP_DEFLATED)


def zip_lying_member(root: Path) -> Path:
    """The same bomb, but the headers claim 1000 bytes (reads must stop regardless)."""
    path = zip_huge_member(root)
    return _patch_sizes(path, 100 * 2**20, 1000)


def zip_claims_1gb_json(root: Path) -> Path:
    path = _zip(root / "claims.zip", [*_good_members(), ("dataset.json", b'{"labels":null}' * 7)])
    return _patch_sizes(path, 105, 2**30)


def png_claims_huge(root: Path, side: int = 100000) -> Path:
    idat = zlib.compress(bytes(side + 1) * 64)  # a few rows; the header is the lie
    return _zip(root / "ihdr.zip", [*_good_members(), ("huge.png", crafted_png(side, side, idat))])


@functools.cache
def _zeros_deflated(mib: int) -> bytes:
    return zlib.compress(bytes(mib * 2**20), 1)


def png_idat_bomb(root: Path) -> Path:
    """16x16 claimed, but the pixel stream inflates to 200 MiB."""
    idat = _zeros_deflated(200)
    return _zip(root / "idat.zip", [("img0.png", crafted_png(16, 16, idat))])


def png_variant(root: Path, kind: str) -> Path:
    good = good_png(3)
    data = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "header-only": good[:33],
        "bad-crc": good[:29] + b"\0\0\0\0" + good[33:],
        "not-png": b"\xff\xd8\xff\xe0 a JPEG pretending",
        "16-bit": png_bytes(np.zeros((16, 16), np.uint16)),
        "rgba": png_bytes(np.zeros((16, 16, 4), np.uint8)),
        "bad-depth": crafted_png(16, 16, zlib.compress(bytes(17 * 16)), depth=3),
        "zero-size": crafted_png(0, 16, zlib.compress(b"")),
        "garbage-idat": crafted_png(16, 16, os.urandom(64)),
    }[kind]
    return _zip(root / f"png-{kind}.zip", [*_good_members(), ("bad.png", data)])


DATASET_JSON_CASES: dict[str, str | bytes] = {
    "dict": '{"labels": {"img0.png": 0, "img1.png": 1}}',
    "string": '{"labels": "img0.png"}',
    "ragged": '{"labels": [["img0.png", [1.0]], ["img1.png", [1.0, 2.0]]]}',
    "mixed": '{"labels": [["img0.png", 1], ["img1.png", [1.0]]]}',
    "nan": '{"labels": [["img0.png", [NaN]], ["img1.png", [1.0]]]}',
    "inf": '{"labels": [["img0.png", [1e400]], ["img1.png", [1.0]]]}',
    "class-2e9": '{"labels": [["img0.png", 2000000000], ["img1.png", 1]]}',
    "negative": '{"labels": [["img0.png", -1], ["img1.png", 1]]}',
    "bool": '{"labels": [["img0.png", true], ["img1.png", false]]}',
    "float-class": '{"labels": [["img0.png", 0.5], ["img1.png", 1]]}',
    "null-label": '{"labels": [["img0.png", null], ["img1.png", 1]]}',
    "not-pairs": '{"labels": [["img0.png"], ["img1.png", 1, 2]]}',
    "name-not-str": '{"labels": [[0, 1], [1, 1]]}',
    "duplicate": '{"labels": [["img0.png", 1], ["img0.png", 0], ["img1.png", 1]]}',
    "missing": '{"labels": [["img0.png", 1]]}',
    "top-list": '[["img0.png", 1]]',
    "deep": "[" * 200000 + "]" * 200000,
    "huge-int": '{"labels": [["img0.png", ' + "9" * 5000 + '], ["img1.png", 1]]}',
    "not-utf8": b'{"labels": "\xff\xfe"}',
    "not-json": "{labels: [}",
    "empty": "",
}


def hostile_cases(root: Path) -> dict[str, Callable[[], Path]]:
    """Every hostile archive by case name; calling a builder writes it under its own folder."""

    def at(name: str, build: Callable[[Path], Path]) -> Callable[[], Path]:
        def make() -> Path:
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            return build(folder)

        return make

    cases: dict[str, Callable[[], Path]] = {}
    slips = {
        "absolute": str(root.resolve() / "outside.png"),
        "dotdot": "../outside.png",
        "nested-dotdot": "a/../../outside.png",
        "drive": "C:/outside.png",
        "backslash": "a\\..\\outside.png",
        "newline": "bad\nname.png",
        "dot": "./img9.png",
    }
    for label, name in slips.items():
        cases[f"slip-{label}"] = at(f"slip-{label}", lambda r, n=name: zip_slip(r, n))
    cases["zip-symlink"] = at("symlink", zip_symlink)
    cases["slip-nul"] = at("nul", zip_nul_name)
    cases["zip-duplicate"] = at("dup", zip_duplicate)
    cases["zip-duplicate-case"] = at("dupcase", lambda r: zip_duplicate(r, "IMG0.png"))
    cases["zip-huge-member"] = at("huge", zip_huge_member)
    cases["zip-lying-member"] = at("lying", zip_lying_member)
    cases["zip-claims-1gb-json"] = at("claims", zip_claims_1gb_json)
    cases["png-ihdr-100000"] = at("ihdr", png_claims_huge)
    cases["png-idat-bomb"] = at("idatbomb", png_idat_bomb)
    for kind in ("empty", "truncated", "header-only", "bad-crc", "not-png", "16-bit", "rgba",
                 "bad-depth", "zero-size", "garbage-idat"):
        cases[f"png-{kind}"] = at(f"png-{kind}", lambda r, k=kind: png_variant(r, k))
    for key, text in DATASET_JSON_CASES.items():
        cases[f"json-{key}"] = at(f"json-{key}", lambda r, t=text: _dataset_json_zip(r, t))
    cases["folder-symlink-file"] = at("fsym", folder_with_symlink)
    cases["folder-symlink-dir"] = at("fsymdir", lambda r: folder_with_symlink(r, to_dir=True))
    cases["folder-1gb-json"] = at("fbig", folder_with_sparse_json)
    return cases


def folder_with_symlink(root: Path, to_dir: bool = False) -> Path:
    src = root / "src"
    src.mkdir()
    for i in range(2):
        (src / f"img{i}.png").write_bytes(good_png(i))
    secret = root / "secret"
    secret.mkdir()
    (secret / "x.png").write_bytes(good_png(7))
    if to_dir:
        (src / "linked").symlink_to(secret, target_is_directory=True)
    else:
        (src / "link.png").symlink_to(secret / "x.png")
    return src


def folder_with_sparse_json(root: Path) -> Path:
    """dataset.json of 1 GiB (sparse: costs no disk) beside good images."""
    src = root / "src"
    src.mkdir()
    for i in range(2):
        (src / f"img{i}.png").write_bytes(good_png(i))
    with open(src / "dataset.json", "wb") as f:
        f.write(b'{"labels": [')
        f.truncate(2**30)
    return src
