"""The download cache: pinned ``.deb`` files, each verified by sha256.

A file enters ``debs/`` only by an atomic rename after its sha256 matched the
pin, so an interrupted download never leaves a partial file in the cache.
Files are verified again when they are used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import PinError
from .apt import AptRepo, Pin


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DebStore:
    def __init__(self, cache: Path):
        self.dir = cache / "debs"
        self.tmp = cache / "tmp"

    def path(self, pin: Pin) -> Path:
        return self.dir / pin.deb_name

    def missing(self, pins: list[Pin]) -> list[Pin]:
        return [p for p in pins if not (self.path(p).exists() and self.path(p).stat().st_size == p.size)]

    def ensure(self, pins: list[Pin], repo: AptRepo) -> None:
        """Make every pin present and verified; download only what is missing."""
        todo = self.missing(pins)
        if not todo:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="download-", dir=self.tmp))
        try:
            repo.download(todo, scratch)
            for pin in todo:
                got = scratch / pin.deb_name
                if not got.exists():
                    # apt names files name_version_arch.deb with the epoch ':' escaped.
                    alt = list(scratch.glob(f"{pin.name}_*_{pin.arch}.deb"))
                    if len(alt) != 1:
                        raise PinError(f"apt did not deliver {pin.name} {pin.version}")
                    got = alt[0]
                digest = sha256_file(got)
                if digest != pin.sha256:
                    raise PinError(
                        f"sha256 mismatch for {pin.name} {pin.version}: the lock pins {pin.sha256[:16]}…, "
                        f"the mirror served {digest[:16]}…; if the archive really changed, "
                        "run `venus-repro lock --refresh` and review the diff"
                    )
                os.replace(got, self.path(pin))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def verified(self, pin: Pin) -> Path:
        """The cached file for ``pin``, checked against its sha256 right before use."""
        path = self.path(pin)
        if sha256_file(path) != pin.sha256:
            path.unlink(missing_ok=True)
            raise PinError(
                f"cached {path.name} does not match its pinned sha256 (removed it); run the command again"
            )
        return path
