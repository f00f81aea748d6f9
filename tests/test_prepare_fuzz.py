"""Attack `prepare` as a hostile tester would: a few hundred mutated DICOM files (truncations,
byte flips, hostile header values, invalid VRs, lying lengths, huge size claims, a Deflated zip
bomb, RLE and JPEG 2000 files claiming 40000x40000) next to good phantom files, run in a
subprocess under a memory cap. prepare must exit 0 with every good image, account for every
file (used, or skipped with a one-line reason), print no traceback, and stay far below the cap.

`benchmarks/prepare_fuzz.py` runs the same generator at a larger scale and prints counts.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate, generate_frames
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from mrisynth.data.dicom_checks import MAX_INFLATED_BYTES
from mrisynth.data.phantom_dicom import write_phantom_tree

MEMORY_CAP = int(1.5 * 2**30)  # RLIMIT_AS of the prepare process
TIMEOUT_S = 120  # a run that takes longer counts as a hang
SECRET = "fuzz-secret-0123456789abcdef\n"


def _us(v: int) -> bytes:
    return struct.pack("<H", v)


# (keyword, raw value bytes as they would appear in a hostile file)
HOSTILE = [
    *[("NumberOfFrames", v) for v in (b"1A", b"-1", b"0 ", b"999999999 ", b"1e9 ", b"NaN ")],
    *[
        ("RescaleSlope", v)
        for v in (b"abc ", b"1\\2 ", b"NaN ", b"inf ", b"0 ", b"-inf", b"1e999 ")
    ],
    *[("RescaleIntercept", v) for v in (b"NaN ", b"inf ", b"x ")],
    *[
        ("PixelSpacing", v)
        for v in (b"NaN\\1 ", b"inf\\1 ", b"1e-9\\1", b"-1\\1", b"1\\2\\3 ", b"a\\b ")
    ],
    *[("ImagePositionPatient", v) for v in (b"NaN\\0\\0 ", b"1e300\\0\\0", b"0\\0 ")],
    *[
        ("ImageOrientationPatient", v)
        for v in (b"0\\0\\0\\0\\0\\0 ", b"1\\0\\0\\1\\0\\0 ", b"NaN\\0\\0\\0\\1\\0")
    ],
    *[("Rows", v) for v in (_us(0), _us(1), _us(65535), b"\x01")],
    *[("Columns", v) for v in (_us(0), _us(40000))],
    *[("BitsAllocated", _us(v)) for v in (0, 1, 7, 12, 64, 65535)],
    *[("BitsStored", _us(v)) for v in (0, 17, 255)],
    *[("PixelRepresentation", _us(v)) for v in (2, 65535)],
    *[("SamplesPerPixel", _us(v)) for v in (0, 3, 200)],
    ("PhotometricInterpretation", b"MONOCHROME1 "),
    ("PhotometricInterpretation", b"\xff\xfe"),
    *[("EchoTime", v) for v in (b"NaN ", b"-4.6", b"1e308 ", b"abc ")],
    ("InstanceNumber", b"1e99"),
    ("SliceThickness", b"inf "),
    ("MagneticFieldStrength", b"0 "),
    ("PatientID", b"\xff" * 64),
]


def _raw(ds: pydicom.Dataset, keyword: str, value: bytes) -> None:
    """Put `value` into the dataset unchecked, as a hostile file would carry it."""
    tag = Tag(tag_for_keyword(keyword))
    ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def _save(ds: pydicom.Dataset) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def deflate_bomb(good: Path, inflated: int = MAX_INFLATED_BYTES + 2**24) -> bytes:
    """A Deflated-syntax file whose dataset inflates to `inflated` bytes (a private OB of 0s)."""
    ds = pydicom.dcmread(good)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = _save(ds)
    head = head[: 144 + struct.unpack_from("<I", head, 140)[0]]  # preamble + meta group
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [z.compress(struct.pack("<HH2sHI", 0x0011, 0x1010, b"OB", 0, inflated))]
    zeros = bytes(1 << 24)
    parts += [z.compress(zeros) for _ in range(inflated // len(zeros))]
    return head + b"".join(parts) + z.flush()


def _tiny_elements(n: int) -> bytes:
    """n distinct 12-byte private elements (UL): pydicom needs ~15x their size to hold them."""
    el = np.zeros(n, dtype=[("g", "<u2"), ("e", "<u2"), ("vr", "S2"), ("len", "<u2"), ("v", "<u4")])
    k = np.arange(n)
    el["g"], el["e"] = 0x0009 + 2 * (k // 0xF000 % 0x3F00), 0x1000 + k % 0xF000
    el["vr"], el["len"], el["v"] = b"UL", 4, k
    return el.tobytes()


def _claims(good: Path, heavy: bool = False) -> Iterator[tuple[str, bytes]]:
    """Small files that claim huge images, in every way the header allows."""
    ds = pydicom.dcmread(good)
    ds.compress(RLELossless)
    ds.Rows = ds.Columns = 40000
    yield "rle-40000", _save(ds)
    ds.Rows, ds.Columns = 8192, 2048  # within the limits: the decoder meets too little data
    yield "rle-8192x2048", _save(ds)
    ds = pydicom.dcmread(good)
    ds.compress(JPEG2000Lossless)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    siz = frame.find(b"\xff\x51")
    struct.pack_into(">IIIIIIII", frame, siz + 6, 40000, 40000, 0, 0, 40000, 40000, 0, 0)
    ds.PixelData = encapsulate([bytes(frame)])
    yield "j2k-40000", _save(ds)
    ds = pydicom.dcmread(good)
    ds.Rows = ds.Columns = 4096
    yield "native-4096", _save(ds)
    ds.NumberOfFrames = 16
    yield "native-4096x16", _save(ds)
    data = good.read_bytes()
    at = data.find(b"\xe0\x7f\x10\x00OW")  # PixelData's 4-byte length: 4 GB
    yield "pixel-length-4G", data[: at + 8] + b"\xfe\xff\xff\xff" + data[at + 12 :]
    yield "header-9MiB", data[:at] + _tiny_elements(9 * 2**20 // 12) + data[at:]
    if heavy:  # the largest slice within the limits, valid: 0.5 MB of RLE, 4096x4096
        ds = pydicom.dcmread(good)
        pixels = np.zeros((4096, 4096), dtype="<u2")
        pixels[1000:3000, 1000:3000] = 1000
        ds.Rows, ds.Columns, ds.PixelData = 4096, 4096, pixels.tobytes()
        ds.compress(RLELossless)
        yield "rle-4096-valid", _save(ds)


def _compressed(src: Path, syntax: str, cache: dict) -> bytes:
    """The good file re-encoded (RLE: decoders that panic on corrupt runs; JPEG 2000)."""
    if (src, syntax) not in cache:
        ds = pydicom.dcmread(src)
        ds.compress(syntax)
        cache[src, syntax] = _save(ds)
    return cache[src, syntax]


def mutants(
    good_files: list[Path], count: int, seed: int, heavy: bool = False
) -> Iterator[tuple[str, bytes]]:
    """`count` hostile variants of the good files (deterministic for a seed), then the bombs."""
    rng = np.random.default_rng(seed)
    cache: dict = {}
    for i in range(count):
        src = good_files[int(rng.integers(len(good_files)))]
        data = bytearray(src.read_bytes())
        kind = ("trunc", "flip", "header", "header", "vr")[i % 5]
        if kind == "trunc":
            yield f"{i:04d}-trunc", bytes(data[: int(rng.integers(0, len(data)))])
        elif kind == "flip":  # in the header, or in native / RLE / JPEG 2000 pixel data
            syntax = (None, None, RLELossless, JPEG2000Lossless)[i // 5 % 4]
            if syntax is not None:
                data = bytearray(_compressed(src, syntax, cache))
            pixels = bytes(data).find(b"\xe0\x7f\x10\x00")
            lo, hi = (pixels, len(data)) if syntax or rng.random() < 0.3 else (0, pixels)
            for pos in rng.integers(lo, hi, size=int(rng.integers(1, 9))):
                data[pos] = int(rng.integers(256))
            name = {None: "flip", RLELossless: "flip-rle", JPEG2000Lossless: "flip-j2k"}
            yield f"{i:04d}-{name[syntax]}", bytes(data)
        elif kind == "header":
            ds = pydicom.dcmread(src)
            keyword, value = HOSTILE[int(rng.integers(len(HOSTILE)))]
            _raw(ds, keyword, value)
            yield f"{i:04d}-{keyword}", _save(ds)
        else:  # invalid VR or a lying element length in one of the common tags
            tag = (
                b"\x18\x00\x81\x00",
                b"\x28\x00\x30\x00",
                b"\x28\x00\x10\x00",
                b"\x10\x00\x20\x00",
            )
            at = bytes(data).find(tag[int(rng.integers(len(tag)))])
            if rng.random() < 0.5:
                data[at + 4 : at + 6] = rng.integers(0, 256, size=2, dtype=np.uint8).tobytes()
            else:
                data[at + 6 : at + 8] = rng.integers(0, 256, size=2, dtype=np.uint8).tobytes()
            yield f"{i:04d}-vr", bytes(data)
    yield from _claims(good_files[0], heavy)
    yield "deflate-bomb", deflate_bomb(good_files[0])


def write_attack(root: Path, count: int, seed: int, heavy: bool = False) -> tuple[Path, Path, int]:
    """good/ (phantom, 2 patients) and bad/ (mutants); returns (good, bad, number of mutants)."""
    good = root / "good"
    write_phantom_tree(good, 2, seed=seed, matrix_sizes=(32, 40), num_slices=(4, 5), t2spir=False)
    bad = root / "bad"
    bad.mkdir()
    files = sorted(good.rglob("*.dcm"))
    n = 0
    for name, data in mutants(files, count, seed, heavy):
        (bad / f"{name}.dcm").write_bytes(data)
        n += 1
    os.mkfifo(bad / "fifo.dcm")  # opening it would block forever
    (bad / "zero.dcm").symlink_to("/dev/zero")  # endless zeros
    (bad / "dangling.dcm").symlink_to(bad / "missing")
    return good, bad, n + 3


# The child's own peak RSS is VmHWM of its address space: ru_maxrss would start from the
# parent's (pytest's) size, which a forked child inherits into its accounting.
_CHILD = """
import sys
from mrisynth.cli import main
try:
    main(sys.argv[1:])
finally:
    with open("/proc/self/status") as f:
        peak = [line.split()[1] for line in f if line.startswith("VmHWM:")]
    print("PEAK_KB", *peak, file=sys.stderr)
"""


def run_capped(args: list[str], cap: int = MEMORY_CAP, timeout: float = TIMEOUT_S) -> dict:
    """`mrisynth ARGS` in a child under RLIMIT_AS: exit code, output, the child's own peak RSS
    and whether it had to be killed as hung."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    start = time.monotonic()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, *args],
            preexec_fn=limit,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        timer = threading.Timer(timeout, child.kill)
        timer.start()
        child.wait()
        hang = not timer.is_alive()
        timer.cancel()
        log.seek(0)
        output = log.read().decode(errors="replace")
    peak = [line.split()[1:] for line in output.splitlines() if line.startswith("PEAK_KB")]
    return {
        "code": child.returncode,
        "output": output,
        "peak_mb": int(peak[-1][0]) / 1024 if peak and peak[-1] else float("nan"),
        "hang": hang,
        "seconds": time.monotonic() - start,
    }


def account(good: Path, bad: Path, out: Path) -> dict[str, object]:
    """Which input files were used, skipped with a reason, or lost without one."""
    with open(out / "manifest.csv", newline="") as f:
        used = {r["source"].split("#")[0] for r in csv.DictReader(f)}
    report = json.loads((out / "report.json").read_text())
    reasons = {s["source"].split("#")[0]: s["reason"] for s in report["skipped"]}
    files = [
        p.relative_to(root).as_posix()
        for root in (good, bad)
        for p in sorted(root.rglob("*"))
        if not p.is_dir()
    ]
    return {
        "used": [f for f in files if f in used],
        "skipped": {f: reasons[f] for f in files if f in reasons and f not in used},
        "lost": [f for f in files if f not in used and f not in reasons],
    }


def test_prepare_survives_a_few_hundred_hostile_files(tmp_path):
    good, bad, n_bad = write_attack(tmp_path / "in", count=300, seed=20261129)
    key = tmp_path / "key"
    key.write_text(SECRET)
    common = ["--size", "16", "--no-progress", "--keep-source-paths", "--patient-key-secret"]
    ref = subprocess.run(
        [
            sys.executable,
            "-m",
            "mrisynth",
            "prepare",
            str(good),
            "-o",
            str(tmp_path / "ref"),
            *common,
            str(key),
        ],
        capture_output=True,
        check=True,
    )
    assert ref.returncode == 0
    run = run_capped(
        ["prepare", str(good), str(bad), "-o", str(tmp_path / "out"), *common, str(key)]
    )
    print(f"fuzz: {n_bad} hostile files, {run['seconds']:.1f} s, peak RSS {run['peak_mb']:.0f} MB")
    assert not run["hang"] and run["code"] == 0, run["output"][-3000:]
    assert "Traceback" not in run["output"], run["output"][-3000:]
    # every good image, byte for byte, under the same name as in a run without the attack
    ref_pngs = {p.name: p.read_bytes() for p in (tmp_path / "ref").glob("*.png")}
    got = {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.png")}
    assert len(ref_pngs) >= 8 and all(got.get(k) == v for k, v in ref_pngs.items())
    # every file accounted for: used, or skipped with a one-line reason
    acc = account(good, bad, tmp_path / "out")
    assert acc["lost"] == []
    assert all(r.strip() and "\n" not in r for r in acc["skipped"].values())
    bombs = ("rle-40000", "j2k-40000", "native-4096x16", "deflate-bomb", "pixel-length-4G")
    bombs += ("fifo", "zero", "dangling", "header-9MiB")
    for name in bombs:
        assert f"{name}.dcm" in acc["skipped"], name
    # refused by the header checks, not by whatever the decoder or the memory cap did later
    assert "claims 40000x40000" in acc["skipped"]["j2k-40000.dcm"]
    assert "Rows 40000 is outside" in acc["skipped"]["rle-40000.dcm"]
    assert len(acc["skipped"]) >= n_bad * 0.6  # most mutants are unusable, and said so
    assert run["peak_mb"] < 512
