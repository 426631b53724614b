"""Frames: the raw RGBA a demo wrote, turned into PNG files a person can open."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rgba_to_png(rgba: bytes, width: int, height: int, out: Path) -> Path:
    if not (0 < width < 1 << 16 and 0 < height < 1 << 16):
        raise ValueError(f"frame size {width}x{height} is not a picture")
    stride = width * 4
    if len(rgba) != stride * height:
        raise ValueError(f"frame has {len(rgba)} bytes, expected {stride * height} for {width}x{height}")
    raw = b"".join(b"\0" + rgba[y * stride : (y + 1) * stride] for y in range(height))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )
    out.write_bytes(png)
    return out
