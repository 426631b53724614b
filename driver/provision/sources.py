"""Debian source packages pinned by sha256, fetched from the mirror into the cache.

``data/pins/sources.json`` names each source a test builds (Debian's Mesa and
QEMU of trixie and forky): its package, suite and version, its ``.dsc`` and its
orig tarball, each by pool path, size and sha256. ``fetch`` brings a source's
orig tarball into ``$VENUS_REPRO_CACHE/sources/``: the ``.dsc`` first, checked
by its pinned sha256, then the tarball, checked by both its pin and the
``.dsc``'s ``Checksums-Sha256`` (the two must agree). A file enters the cache
only by an atomic rename after its sha256 matched; a cached file is checked
again before each use.

``venus-repro lock --refresh --sources`` re-pins every entry to what the
mirror's source index (deb-src) serves for its suite now.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.client
import json
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .. import log
from ..errors import PinError, ProvisionError, UsageError
from ..profile import PINS, cache_dir
from .apt import AptRepo, host_mirror
from .store import sha256_file

SOURCES = PINS / "sources.json"
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class PoolFile:
    path: str  # relative to the mirror root: pool/main/m/mesa/…
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclasses.dataclass(frozen=True)
class DebianSource:
    name: str  # the entry's name: mesa-trixie, qemu-forky, …
    package: str
    suite: str
    version: str
    dsc: PoolFile
    orig: PoolFile


def load(path: Path = SOURCES) -> dict[str, DebianSource]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PinError(f"{path}: cannot read the source pins ({exc})") from None
    if doc.get("format") != FORMAT:
        raise PinError(f"{path} has format {doc.get('format')}, expected {FORMAT}")
    return {
        name: DebianSource(name, e["package"], e["suite"], e["version"], PoolFile(**e["dsc"]), PoolFile(**e["orig"]))
        for name, e in doc["sources"].items()
    }


def get(name: str, path: Path = SOURCES) -> DebianSource:
    sources = load(path)
    if name not in sources:
        raise UsageError(f"no pinned Debian source '{name}' (pinned: {', '.join(sources)})")
    return sources[name]


def dsc_checksums(text: str) -> dict[str, tuple[int, str]]:
    """A .dsc's ``Checksums-Sha256``: file name → (size, sha256)."""
    block = re.search(r"^Checksums-Sha256:[ \t]*\n((?:[ \t]+\S.*\n?)+)", text, re.M)
    if block is None:
        raise PinError("the .dsc has no Checksums-Sha256 field")
    sums = {}
    for line in block.group(1).splitlines():
        sha256, size, name = line.split()
        sums[name] = (int(size), sha256)
    return sums


def _fetch_file(f: PoolFile, into: Path, mirror: str) -> Path:
    """``f`` in ``into``, downloaded unless already there intact; published only once its sha256 matched."""
    final = into / f.name
    if final.is_file() and final.stat().st_size == f.size and sha256_file(final) == f.sha256:
        return final
    into.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{f.name}.", suffix=".part", dir=into)
    url = f"{mirror}/{urllib.parse.quote(f.path)}"
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=300) as response:
            progress = log.Progress(f"  {f.name}", -(-f.size >> 20), " MB", every=5.0)
            while chunk := response.read(1 << 20):
                out.write(chunk)
                h.update(chunk)
                progress.advance()
        if h.hexdigest() != f.sha256:
            raise PinError(
                f"{f.path}: the mirror served sha256 {h.hexdigest()[:16]}…, the pin is {f.sha256[:16]}… "
                "(the mirror no longer has this version? run `venus-repro lock --refresh --sources`)"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        raise ProvisionError(f"fetching {url} failed: {getattr(exc, 'reason', exc)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def fetch(source: DebianSource | str, cache: Path | None = None, mirror: str | None = None) -> Path:
    """The source's orig tarball in the cache, checked against its pin and its pinned .dsc."""
    if isinstance(source, str):
        source = get(source)
    into = (cache or cache_dir()) / "sources"
    mirror = mirror or host_mirror()
    with log.nested(f"fetching Debian's {source.package} {source.version} source ({source.suite})"):
        dsc = _fetch_file(source.dsc, into, mirror)
        listed = dsc_checksums(dsc.read_text(errors="replace")).get(source.orig.name)
        if listed != (source.orig.size, source.orig.sha256):
            raise PinError(f"{source.dsc.name} lists {source.orig.name} as {listed}, the pin says "
                           f"{(source.orig.size, source.orig.sha256)}: fix {SOURCES.name}")  # fmt: skip
        return _fetch_file(source.orig, into, mirror)


def _upstream(version: str) -> str:
    """1:10.2.2+ds-1 → 10.2.2+ds"""
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


def _version_key(version: str) :
    return functools.cmp_to_key(lambda a, b: _dpkg_compare(a, b))(version)


def _dpkg_compare(a: str, b: str) -> int:
    if a == b:
        return 0
    return 1 if subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0 else -1


def refresh(apt_root: Path, path: Path = SOURCES) -> list[tuple[str, str, str]]:
    """Re-pin every entry to its suite's current source package; the changes (name, was, now)."""
    doc = json.loads(path.read_text())
    changes = []
    for name, entry in doc["sources"].items():
        repo = AptRepo(apt_root / f"{entry['suite']}-source", entry["suite"], AptRepo.SOURCE)
        versions = repo.showsrc(entry["package"])
        # An entry with a series (an upstream version prefix, e.g. 10.2) follows that series
        # (sid lists older uploads beside the newest); otherwise the suite's newest version.
        series = entry.get("series")
        wanted = [v for v in versions if series is None or _upstream(v).startswith(series + ".")]
        if not wanted:
            raise PinError(f"the {entry['suite']} source index has no {entry['package']} {series}.x (it has {', '.join(versions)})")
        version = max(wanted, key=_version_key)
        files = versions[version]
        dsc = [n for n in files if n.endswith(".dsc")]
        orig = [n for n in files if re.search(r"\.orig\.tar\.[a-z0-9]+$", n)]
        if len(dsc) != 1 or len(orig) != 1:
            raise PinError(f"{entry['package']} {version} ({entry['suite']}): expected one .dsc and one orig tarball, found {sorted(files)}")
        pinned = {k: dict(zip(("path", "size", "sha256"), files[n])) for k, n in (("dsc", dsc[0]), ("orig", orig[0]))}
        if version != entry["version"] or pinned != {k: entry[k] for k in ("dsc", "orig")}:
            changes.append((name, entry["version"], version))
        entry.update(version=version, **pinned)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return changes
