"""Archives from someone else (a bundle, a carry pack): read with limits, every fault one UsageError.

A compressed tar is read through a bound on what it may decompress to, so a small file
that inflates to gigabytes (or whose headers claim a gigabyte of metadata) costs no more
than its limit; its members are counted and their sizes summed as they are read; and a
truncated, corrupt or non-tar file is one error line naming the file, never an EOFError
or a zlib/lzma error from deep inside the standard library.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import lzma
import tarfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

from .errors import UsageError, shown

# What the standard library raises for a damaged archive (checked before OSError: BadGzipFile is one).
DAMAGED = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, UnicodeError)
MAX_READ = 16 << 20  # one read tarfile asks for: a header's data is KiBs; file data comes in 16 KiB reads


class _Bounded(io.RawIOBase):
    """A decompressing file that refuses to go past ``limit`` bytes of what it decompresses."""

    def __init__(self, raw, limit: int, refuse: Callable[[], UsageError]):
        self.raw, self.limit, self.refuse = raw, limit, refuse

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > MAX_READ or self.raw.tell() + size > self.limit:
            raise self.refuse()
        return self.raw.read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self.raw.tell() + offset}.get(whence)
        if target is None or target > self.limit:
            raise self.refuse()
        return self.raw.seek(target)

    def tell(self) -> int:
        return self.raw.tell()


@contextlib.contextmanager
def open_tar(path: Path, opener: Callable, what: str, max_bytes: int, max_members: int) -> Iterator[tuple[tarfile.TarFile, list[tarfile.TarInfo]]]:
    """``path`` (opened with ``opener``, e.g. gzip.open) as a tar and all its members, within the limits.

    Whatever goes wrong reading or unpacking it inside the ``with`` is one UsageError
    naming ``path`` as not ``what`` (a venus-repro bundle, a carry).
    """

    def too_large() -> UsageError:
        return UsageError(f"{path}: unpacks to more than {max_bytes >> 20} MiB: not {what}")

    try:
        with opener(path) as raw, tarfile.open(fileobj=_Bounded(raw, max_bytes + (max_members + 1) * 3 * 512 + MAX_READ, too_large), mode="r:") as tar:
            members, total = [], 0
            for member in tar:
                members.append(member)
                total += max(member.size, 0)
                if len(members) > max_members:
                    raise UsageError(f"{path}: more than {max_members} entries: not {what}")
                if total > max_bytes:
                    raise too_large()
            yield tar, members
    except DAMAGED as exc:
        raise UsageError(f"{path}: not {what} (damaged or cut short: {shown(exc) or type(exc).__name__})") from None
    except OSError as exc:  # a member that cannot be written where it is unpacked (a file and a folder of one name)
        where = f" ({shown(Path(exc.filename).name)})" if exc.filename else ""
        raise UsageError(f"{path}: cannot unpack it: {exc.strerror or shown(exc)}{where}") from None


def plain_name(name: str) -> bool:
    """Whether a member's ``name`` stays inside the folder it is unpacked into: relative, no '..', printable."""
    parts = Path(name).parts
    return bool(parts) and name.isprintable() and not name.startswith("/") and ".." not in parts and all(len(p.encode()) <= 255 for p in parts)
