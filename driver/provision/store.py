"""The download cache: pinned ``.deb`` files, each verified by sha256.

A pin names its file on the mirror (``pool/…``, the same for every suite) and
its sha256, taken from the signed index when the lock was made; so a file is
fetched straight from the mirror by that path — whichever suite it was
resolved from, whether or not that suite's index still lists it — and enters
``debs/`` only by an atomic rename after its sha256 matched. An interrupted
download never leaves a partial file in the cache. Files are verified again
when they are used.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .. import log
from ..errors import PinError, ProvisionError
from .apt import Pin, host_mirror

_PARALLEL = 4
_TIMEOUT = 60
_ATTEMPTS = 4


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

    def ensure(self, pins: list[Pin], refresh_hint: str = "run `venus-repro lock --refresh`") -> None:
        """Make every pin present and verified; download only what is missing (``refresh_hint``: how to re-pin)."""
        todo = self.missing(pins)
        if not todo:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="download-", dir=self.tmp))
        mirror = host_mirror()
        log.info(f"downloading {len(todo)} packages ({sum(p.size for p in todo) / 1e6:.1f} MB) from {mirror}")
        progress = log.Progress("  fetched", len(todo), " packages")
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=_PARALLEL) as pool:
                futures = [pool.submit(self._fetch, mirror, pin, scratch, refresh_hint) for pin in todo]
                for fut in concurrent.futures.as_completed(futures):
                    fut.result()
                    progress.advance()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _fetch(self, mirror: str, pin: Pin, scratch: Path, refresh_hint: str) -> None:
        got = scratch / pin.deb_name
        url = f"{mirror}/{pin.filename}"
        for attempt in range(_ATTEMPTS):
            try:
                with urllib.request.urlopen(url, timeout=_TIMEOUT) as response, open(got, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
                break
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise PinError(
                        f"the mirror no longer serves {pin.name} {pin.version}{f' ({pin.suite})' if pin.suite else ''}: "
                        f"{url} is gone (a moving suite moved on); {refresh_hint}"
                    ) from None
                failure = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                failure = str(getattr(exc, "reason", None) or exc)
            # A name lookup or a connection that failed once (a busy mirror, a resolver hiccup): again, a little later.
            time.sleep(2 ** attempt)
        else:
            raise ProvisionError(f"downloading {url} failed {_ATTEMPTS} times: {failure}")
        digest = sha256_file(got)
        if digest != pin.sha256:
            raise PinError(
                f"sha256 mismatch for {pin.name} {pin.version}: the lock pins {pin.sha256[:16]}…, "
                f"the mirror served {digest[:16]}…; if the archive really changed, {refresh_hint} and review the diff"
            )
        os.replace(got, self.path(pin))

    def verified(self, pin: Pin) -> Path:
        """The cached file for ``pin``, checked against its sha256 right before use."""
        path = self.path(pin)
        if sha256_file(path) != pin.sha256:
            path.unlink(missing_ok=True)
            raise PinError(
                f"cached {path.name} does not match its pinned sha256 (removed it); run the command again"
            )
        return path
