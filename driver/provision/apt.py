"""A private apt for one Debian suite and architecture.

apt does what it is good at — reading the signed indices, resolving
dependencies and fetching ``.deb`` files — inside a state directory of our
own, so the host's apt configuration and dpkg database are never touched.
The mirror is the one the host's apt already uses (or
``$VENUS_REPRO_DEBIAN_MIRROR``), so no address is baked into venus-repro.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

from .. import log
from ..errors import PinError, ProvisionError

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@dataclasses.dataclass(frozen=True, order=True)
class Pin:
    """One package at one exact version, as the lock file records it."""

    name: str
    version: str
    arch: str
    filename: str  # pool path, relative to the mirror root
    size: int
    sha256: str
    suite: str = ""  # the suite it was resolved from (provenance: every suite's pool is the same)

    @property
    def deb_name(self) -> str:
        return Path(self.filename).name

    @property
    def source(self) -> str:
        """The Debian source package it was built from: its pool folder (pool/main/m/mesa/… → mesa)."""
        parts = self.filename.split("/")
        return parts[3] if len(parts) >= 5 and parts[0] == "pool" else self.name

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not self.suite:
            d.pop("suite")
        return d

    @classmethod
    def from_dict(cls, d: dict, suite: str = "") -> "Pin":
        """A pin as a lock records it (the set's suite where the pin names none)."""
        pin = cls(**{k: d[k] for k in ("name", "version", "arch", "filename", "size", "sha256")}, suite=d.get("suite") or suite)
        if not _POOL_PATH.fullmatch(pin.filename) or not re.fullmatch(r"[0-9a-f]{64}", pin.sha256):
            raise PinError(f"pin {pin.name}: {pin.filename!r} is not a Debian pool path with a sha256")
        return pin


# A pinned file's place on the mirror: pool/<component>/<prefix>/<source>/<file>.deb, plain names only.
_POOL_PATH = re.compile(r"pool/[a-z-]+/[a-z0-9+]+/[a-z0-9][a-z0-9+.~-]*/[A-Za-z0-9][A-Za-z0-9+.~_%-]*\.deb")


def host_mirror() -> str:
    """The Debian mirror this host's apt uses, or ``$VENUS_REPRO_DEBIAN_MIRROR``."""
    env = os.environ.get("VENUS_REPRO_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    candidates: list[str] = []
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        # deb822 .sources files: "URIs: <uri>"; one-line format: "deb [opts] <uri> suite …".
        candidates += re.findall(r"^URIs:\s*(\S+)", text, re.M)
        candidates += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
    for uri in candidates:
        path = urllib.parse.urlparse(uri).path.rstrip("/")
        if path.endswith("/debian"):
            return uri.rstrip("/")
    raise ProvisionError(
        "no Debian mirror found in /etc/apt/sources.list*; set VENUS_REPRO_DEBIAN_MIRROR "
        "to a Debian archive URL (the directory that holds dists/ and pool/)"
    )


class AptRepo:
    """apt state for ``suite``/``arch`` under ``root`` (lists, config; no dpkg database).

    ``arch`` ``source`` reads the suite's source index (deb-src) instead: ``showsrc``.
    """

    SOURCE = "source"

    def __init__(self, root: Path, suite: str, arch: str, mirror: str | None = None):
        self.root = root
        self.suite = suite
        self.arch = arch
        self._mirror = mirror
        self._updated = False
        self.fields: dict[str, dict[str, str]] = {}  # sha256 → control fields of what show() returned

    @property
    def mirror(self) -> str:
        if self._mirror is None:
            self._mirror = host_mirror()
        return self._mirror

    def _options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir": r,
            "Dir::State::status": r / "status",
            "Dir::Etc::SourceList": r / "sources.list",
            "Dir::Etc::SourceParts": "-",
            "Dir::Etc::Parts": r / "apt.conf.d",
            "Dir::Etc::PreferencesParts": r / "preferences.d",
            "Dir::Cache": r / "cache",
            "Dir::State": r / "state",
            "APT::Architecture": self.arch,
            "APT::Architectures::": self.arch,
            "APT::Install-Recommends": "false",
            "Debug::NoLocking": "1",
            "Acquire::Languages": "none",
        }
        return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]

    def _setup(self) -> None:
        if not KEYRING.exists():
            raise ProvisionError(
                f"{KEYRING} is missing: install the Debian archive keyring "
                "(apt-get install debian-archive-keyring)"
            )
        for sub in ("apt.conf.d", "preferences.d", "cache/archives/partial", "state/lists/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        line = (
            f"deb-src [signed-by={KEYRING}] {self.mirror} {self.suite} main"
            if self.arch == self.SOURCE
            else f"deb [arch={self.arch} signed-by={KEYRING}] {self.mirror} {self.suite} main"
        )
        (self.root / "sources.list").write_text(line + "\n")

    def _apt(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        cmd = [tool, *self._options(), *args]
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        except FileNotFoundError:
            raise ProvisionError(f"'{tool}' is not installed: resolving pins needs Debian's apt (a warm cache needs none)") from None
        if proc.returncode != 0:
            raise ProvisionError(
                f"{tool} {' '.join(args[:3])}… failed for {self.suite}/{self.arch}: "
                + (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            )
        return proc.stdout

    def update(self) -> None:
        if self._updated:
            return
        self._setup()
        with log.nested(f"reading the {self.suite} package index ({self.arch}) from {self.mirror}"):
            # --error-on=any: a mirror out of reach is an error here, not an empty index later.
            self._apt("apt-get", "update", "--error-on=any")
        self._updated = True

    def resolve(self, packages: tuple[str, ...] | list[str], with_deps: bool | None) -> list[Pin]:
        """Pins for ``packages`` and (``with_deps``) everything they depend on.

        apt resolves against an empty dpkg status, so the closure is complete:
        it is what an empty root needs. Recommends are not followed. Without
        deps (False), a package and its own parts (``parts_of``: a kernel meta
        package gives its image, binary and modules); None pins exactly ``packages``.
        """
        self.update()
        if with_deps is None:
            return sorted(self.show(list(packages)))
        if with_deps:
            out = self._apt("apt-get", "install", "--download-only", "--print-uris", "-y", *packages)
            names = []
            for line in out.splitlines():
                if line.startswith("'"):
                    deb = urllib.parse.unquote(line.split()[1])
                    name, version, _arch = deb[: -len(".deb")].split("_")
                    names.append(f"{name}={version}")
            return sorted(self.show(names))
        return sorted(self.parts_of(packages))

    def parts_of(self, packages) -> list[Pin]:
        """``packages`` and their own parts: what they depend on at exactly one version (``pkg (= V)``), followed.

        An exactly-versioned dependency is Debian's way of tying the binary
        packages of one build together: a kernel meta package names its image
        so, and the image its binary and modules where a suite splits them
        (forky: linux-image-<abi> → linux-binary-<abi>, linux-modules-<abi>).
        A meta package itself (only such dependencies, no files of its own)
        gives way to its parts.
        """
        from .debian import relations

        out: dict[str, Pin] = {}
        todo, seen = list(packages), set(packages)
        while todo:
            name = todo.pop()
            (pin,) = self.show([name])
            fields = self.fields[pin.sha256]
            exact = [g[0] for g in relations(fields.get("Depends")) if len(g) == 1 and g[0].op == "="]
            for dep in exact:
                if dep.name not in seen:
                    seen.add(dep.name)
                    todo.append(f"{dep.name}={dep.version}")
            if not (exact and name in packages):
                out[pin.name] = pin
        return list(out.values())

    def show(self, specs: list[str]) -> list[Pin]:
        """Pins for ``name`` or ``name=version`` specs, from the index's own records.

        Each record's control fields are kept (``fields``): what mixing sets reads.
        """
        out = self._apt("apt-cache", "show", "--no-all-versions", *specs)
        pins = []
        for record in out.strip().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z0-9-]+): ?(.*)$", record, re.M))
            pin = Pin(
                name=fields["Package"],
                version=fields["Version"],
                arch=fields["Architecture"],
                filename=fields["Filename"],
                size=int(fields["Size"]),
                sha256=fields["SHA256"],
                suite=self.suite,
            )
            self.fields[pin.sha256] = fields
            pins.append(pin)
        return pins

    def showsrc(self, package: str) -> dict[str, dict[str, tuple[str, int, str]]]:
        """Each version of a source package the suite's index lists: version → {file name: (pool path, size, sha256)}."""
        self.update()
        out = self._apt("apt-cache", "showsrc", "--only-source", package)
        versions = {}
        for record in out.strip().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z0-9-]+): ?(.*)$", record, re.M))
            checksums = re.search(r"^Checksums-Sha256:\n((?: .*\n?)+)", record, re.M)
            if "Version" not in fields or checksums is None:
                continue
            files = {}
            for line in checksums.group(1).splitlines():
                sha256, size, name = line.split()
                files[name] = (f"{fields['Directory']}/{name}", int(size), sha256)
            versions[fields["Version"]] = files
        if not versions:
            raise PinError(f"the {self.suite} mirror has no source package {package}")
        return versions

    def clean(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

