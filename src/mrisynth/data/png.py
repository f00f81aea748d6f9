"""The one validated path from untrusted PNG bytes to pixels.

The IHDR header is parsed here, before any decoding, so a file that claims 100000 x 100000
pixels is refused without allocating them. Limits (documented in README "Training archives"):
a PNG file of at most `MAX_PNG_BYTES`, and width x height x channels x bytes-per-sample of at
most `MAX_DECODED_BYTES`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from mrisynth.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 64 * 2**20  # one encoded file
MAX_DECODED_BYTES = 64 * 2**20  # pixels after decoding (e.g. 4096 x 4096 RGB 8-bit = 48 MiB)

# colour type -> (channels after decoding, samples per pixel in the file, allowed bit depths);
# PNG spec section 11.2.2
_COLOUR_TYPES: dict[int, tuple[int, int, tuple[int, ...]]] = {
    0: (1, 1, (1, 2, 4, 8, 16)),  # grey
    2: (3, 3, (8, 16)),  # RGB
    3: (3, 1, (1, 2, 4, 8)),  # palette (decoded to RGB)
    4: (2, 2, (8, 16)),  # grey + alpha
    6: (4, 4, (8, 16)),  # RGB + alpha
}


@dataclass(frozen=True)
class PngHeader:
    """What the IHDR chunk claims."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    channels: int  # after decoding (palette -> 3)
    interlaced: bool = False

    @property
    def decoded_bytes(self) -> int:
        return self.width * self.height * self.channels * (2 if self.bit_depth == 16 else 1)

    @property
    def raw_bytes(self) -> int:
        """Size of the inflated pixel stream of a non-interlaced file (filter byte per row)."""
        samples = _COLOUR_TYPES[self.colour_type][1]
        return self.height * (1 + (self.width * samples * self.bit_depth + 7) // 8)


def read_png_header(data: bytes, name: str) -> PngHeader:
    """Parse and check the signature and IHDR chunk; InputError naming `name` if invalid."""
    if len(data) == 0:
        raise InputError(f"{name}: empty file (0 bytes), not a PNG image")
    if len(data) > MAX_PNG_BYTES:
        raise InputError(f"{name}: {len(data)} bytes; PNG files over {MAX_PNG_BYTES} are refused")
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(f"{name}: not a PNG file (no PNG signature)")
    if len(data) < 33:
        raise InputError(f"{name}: truncated PNG ({len(data)} bytes, header incomplete)")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise InputError(f"{name}: corrupt PNG (first chunk is not a 13-byte IHDR)")
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(data[12:29]) != crc:
        raise InputError(f"{name}: corrupt PNG header (IHDR checksum mismatch)")
    width, height, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise InputError(f"{name}: PNG header claims {width}x{height} pixels")
    if colour not in _COLOUR_TYPES or depth not in _COLOUR_TYPES[colour][2]:
        raise InputError(f"{name}: PNG colour type {colour} with bit depth {depth} is invalid")
    if comp != 0 or filt != 0 or interlace not in (0, 1):
        raise InputError(f"{name}: PNG header has unknown compression/filter/interlace methods")
    header = PngHeader(width, height, depth, colour, _COLOUR_TYPES[colour][0], interlace == 1)
    if header.decoded_bytes > MAX_DECODED_BYTES:
        raise InputError(
            f"{name}: PNG claims {width}x{height} pixels x {header.channels} channel(s) "
            f"({header.decoded_bytes / 2**20:.0f} MiB decoded); the limit is "
            f"{MAX_DECODED_BYTES // 2**20} MiB per image"
        )
    return header


def check_stream(data: bytes, header: PngHeader, name: str) -> None:
    """Walk every chunk (lengths, checksums, IEND) and inflate the pixel stream, bounded.

    Truncated or corrupt files are refused here with a reason, so the decoder (whose libpng
    prints its own complaints on stderr) only ever sees well-formed files.
    """
    pos, idat, view = 8, [], memoryview(data)
    while True:
        if pos + 12 > len(data):
            raise InputError(f"{name}: truncated PNG (ends before its IEND chunk)")
        length, kind = struct.unpack(">I4s", view[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise InputError(f"{name}: truncated PNG (chunk {kind!r} cut short)")
        (crc,) = struct.unpack(">I", view[end - 4 : end])
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            raise InputError(f"{name}: corrupt PNG (checksum mismatch in a {kind!r} chunk)")
        if kind == b"IDAT":
            idat.append(view[pos + 8 : end - 4])
        if kind == b"IEND":
            break
        pos = end
    expected = header.raw_bytes
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), expected + 1)
    except zlib.error as exc:
        raise InputError(f"{name}: corrupt PNG pixel data ({exc})") from None
    if not header.interlaced and len(raw) < expected:
        raise InputError(f"{name}: truncated PNG pixel data ({len(raw)} of {expected} bytes)")


def decode_checked(data: bytes, name: str) -> tuple[PngHeader, np.ndarray]:
    """Checked decode: (header, cv2 image [H, W] or [H, W, C] BGR(A), uint8 or uint16)."""
    header = read_png_header(data, name)
    check_stream(data, header, name)
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise InputError(f"{name}: PNG cannot be decoded ({str(exc).strip()[:80]})") from None
    if img is None:
        raise InputError(f"{name}: truncated or corrupt PNG (decoding failed)")
    if img.shape[:2] != (header.height, header.width):
        raise InputError(f"{name}: decoded size differs from the PNG header (corrupt file)")
    return header, img


def decode_png(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """PNG bytes -> uint8 [C, H, W] (C = 1 grey, 3 RGB, or 2 = grey + alpha: a paired
    image + mask, see `mrisynth.data.masks`), as training archives need.

    16-bit and RGBA files are refused with a reason.
    """
    header = read_png_header(data, name)
    if header.bit_depth == 16:
        raise InputError(
            f"{name}: 16-bit PNG; training archives need 8-bit images "
            "(run `mrisynth prepare` without --bit-depth 16)"
        )
    if header.colour_type == 6:
        raise InputError(
            f"{name}: 4 channels (RGB + alpha); training archives need 1 (grey), 2 (grey + "
            "mask, from `mrisynth dataset --masks`) or 3 (RGB)"
        )
    _, img = decode_checked(data, name)
    if img.dtype != np.uint8:
        raise InputError(f"{name}: decoded as {img.dtype}; training archives need 8-bit images")
    if img.ndim == 2:
        return img[np.newaxis]  # [1, H, W]
    if header.colour_type == 4:  # cv2 gives grey + alpha as BGRA with B = G = R
        return np.ascontiguousarray(img[:, :, [0, 3]].transpose(2, 0, 1))  # [2, H, W]
    if img.shape[2] == 3:
        return np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))  # BGR -> RGB [3, H, W]
    raise InputError(f"{name}: {img.shape[2]} channels; training archives need 1 (grey) or 3 (RGB)")


def encode_grey_alpha(image: np.ndarray) -> bytes:
    """uint8 [2, H, W] -> PNG bytes of colour type 4 (grey + alpha), which cv2 cannot write.

    Deterministic (filter 0, zlib level 6), so packing the same pairs twice gives the same bytes.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] != 2:
        raise ValueError(f"expected uint8 [2, H, W], got {image.dtype} {image.shape}")
    _, h, w = image.shape
    rows = np.ascontiguousarray(image.transpose(1, 2, 0)).reshape(h, 2 * w)  # G A G A ...
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter 0

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 4, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))


def as_uint8_chw(img: np.ndarray) -> np.ndarray:
    """A decoded cv2 image (`decode_checked`) as uint8 [C, H, W], leniently: 16-bit scaled to
    8-bit, alpha dropped, BGR -> RGB (cv2 returns grey + alpha as 4 channels too)."""
    if img.dtype != np.uint8:
        img = (img.astype(np.float64) / 257).round().astype(np.uint8)
    if img.ndim == 2:
        return img[None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))
