"""Pack a directory tree into a ``newc`` cpio archive (the initramfs format).

Written here rather than shelling out to ``cpio`` so that the archive is
byte-for-byte reproducible: entries sorted, owners root, times zero.
The archive is left uncompressed: under TCG the kernel's gunzip costs more
than copying the extra megabytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


def _header(f: BinaryIO, name: str, mode: int, size: int, ino: int, nlink: int = 1) -> None:
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name) + 1, 0]
    f.write(b"070701" + b"".join(b"%08X" % v for v in fields))
    f.write(name.encode() + b"\0")
    f.write(b"\0" * (-(110 + len(name) + 1) % 4))


def _data(f: BinaryIO, data: bytes) -> None:
    f.write(data)
    f.write(b"\0" * (-len(data) % 4))


def write_cpio(tree: Path, out: Path) -> int:
    """Archive everything below ``tree`` into ``out``; returns the archive size."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            entries.append(Path(dirpath, name))
    entries.sort(key=lambda p: str(p.relative_to(tree)))
    with open(out, "wb") as f:
        for ino, path in enumerate(entries, start=1):
            rel = str(path.relative_to(tree))
            st = path.lstat()
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path).encode()
                _header(f, rel, stat.S_IFLNK | 0o777, len(target), ino)
                _data(f, target)
            elif stat.S_ISDIR(st.st_mode):
                _header(f, rel, stat.S_IFDIR | perm, 0, ino, nlink=2)
            elif stat.S_ISREG(st.st_mode):
                data = path.read_bytes()
                _header(f, rel, stat.S_IFREG | perm, len(data), ino)
                _data(f, data)
            # Device nodes, fifos and sockets are not wanted: devtmpfs provides /dev.
        _header(f, "TRAILER!!!", 0, 0, 0)
        f.write(b"\0" * (-f.tell() % 512))
        return f.tell()
