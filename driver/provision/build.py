"""Build a virglrenderer source tree against the profile's suite, for A/B runs.

``venus-repro build-virglrenderer SOURCE`` takes a source tarball (as a
``git archive`` or GitHub tarball writes it) or a source folder — upstream, a
release, or your own fork — and builds it in the profile's pinned
``virglrenderer-build`` tool root (meson, ninja, gcc and the -dev packages of
the same Debian suite as the host root), so the library and its render server
run in the host root. The result is a cached product like any other, keyed by
the source's sha256, the meson options and the tool root's pins:

    $VENUS_REPRO_CACHE/builds/virglrenderer-<key>/
      lib/libvirglrenderer.so.1 -> libvirglrenderer.so.1.x.y
      libexec/virgl_render_server

Pass them to a run with ``--virglrenderer`` and ``--render-server`` (or
``components:`` in a scenario); the fingerprint records both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
from pathlib import Path

from .. import log, sandbox
from ..errors import ProvisionError, UsageError
from ..profile import host_debian_arch
from . import Provisioner, sysroot
from .lock import set_digest
from .store import sha256_file

TOOL = "virglrenderer-build"
# What every build gets, before the user's options: Venus and its render
# server, EGL as Debian builds it, no VA-API video, no tests.
BASE_OPTIONS = ("-Dvenus=true", "-Dplatforms=egl", "-Dvideo=false", "-Dtests=false", "--buildtype=release")
_TARBALLS = (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar")


@dataclasses.dataclass(frozen=True)
class VirglBuild:
    library: Path  # .../lib/libvirglrenderer.so.1 (the soname link QEMU loads)
    render_server: Path
    source_sha256: str
    options: tuple[str, ...]

    def as_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def overrides(self) -> dict[str, Path]:
        """What the run binds over the host root's virglrenderer (machine.StartCommand's keys)."""
        return {"virglrenderer": self.library, "render_server": self.render_server}

    @property
    def folder(self) -> Path:
        return self.library.parent.parent

    @property
    def version(self) -> str:
        return f"build {self.source_sha256[:12]}"


def _source_digest(source: Path) -> str:
    if source.is_file():
        return sha256_file(source)
    h = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file() and ".git" not in p.parts):
        h.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _check(source: Path, options: tuple[str, ...]) -> None:
    for opt in options:
        if not opt.startswith("-D") or "=" not in opt or any(c.isspace() for c in opt):
            raise UsageError(f"meson option {opt!r}: give -Dname=value")
    if not source.exists():
        raise UsageError(f"{source}: no such source tarball or folder")
    if source.is_file() and not source.name.endswith(_TARBALLS):
        raise UsageError(f"{source}: give a source tarball ({', '.join(_TARBALLS)}) or a source folder")
    if source.is_dir() and not (source / "meson.build").is_file():
        raise UsageError(f"{source}: not a virglrenderer source folder (no meson.build)")


def build_virglrenderer(provisioner: Provisioner, source: Path, options: tuple[str, ...] = ()) -> VirglBuild:
    """Build (once) ``source`` with ``options`` in the pinned build root; the cached result."""
    source = source.resolve()
    _check(source, options)
    root = provisioner.tool_root(TOOL)
    digest = _source_digest(source)
    pins = provisioner.lock.pins(f"tool-{TOOL}-{host_debian_arch()}")
    key = set_digest(pins, digest, *BASE_OPTIONS, *options)
    final = provisioner.cache / "builds" / f"virglrenderer-{key}"
    if not sysroot.reuse(final):
        with log.nested(f"building virglrenderer from {source.name} ({' '.join(options) or 'default options'})"):
            sysroot.build_once(final, lambda tmp: _build(root, source, (*BASE_OPTIONS, *options), tmp))
    libs = sorted((final / "lib").glob("libvirglrenderer.so.1"))
    server = final / "libexec" / "virgl_render_server"
    if not libs or not server.is_file():
        raise ProvisionError(f"{final}: the build has no libvirglrenderer.so.1 or virgl_render_server (was Venus built?)")
    return VirglBuild(libs[0], server, digest, options)


def _build(root: Path, source: Path, options: tuple[str, ...], out: Path) -> None:
    out.mkdir(parents=True)
    q = shlex.quote
    unpack = (
        f"mkdir -p /tmp/src && tar -xf {q(str(source))} -C /tmp/src && "
        "top=$(dirname \"$(find /tmp/src -maxdepth 2 -name meson.build | sort | head -1)\")"
        if source.is_file()
        else f"top={q(str(source))}"
    )
    script = "\n".join([
        "set -e",
        unpack,
        f"meson setup /tmp/build \"$top\" --prefix=/usr --libdir=lib {' '.join(q(o) for o in options)}",
        "ninja -C /tmp/build",
        "DESTDIR=/tmp/inst meson install -C /tmp/build --no-rebuild",
        f"mkdir -p {q(str(out))}/lib {q(str(out))}/libexec",
        f"cp -a /tmp/inst/usr/lib/libvirglrenderer.so.* {q(str(out))}/lib/",
        f"cp -a /tmp/inst/usr/libexec/virgl_render_server {q(str(out))}/libexec/",
    ])  # fmt: skip
    binds = [out, source if source.is_dir() else source.parent]
    proc = sandbox.run(root, ["/bin/sh", "-c", script], binds=binds, timeout=1800)
    (out / "build.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise ProvisionError(f"building virglrenderer from {source} failed:\n{tail}")


def build(kind: str | None, provisioner: Provisioner, source: Path | None, options: tuple[str, ...] = ()):
    """A registry component's ``build`` source: the builder of its kind (cached)."""
    builders = {"virglrenderer": build_virglrenderer}
    if kind not in builders or source is None:
        raise UsageError(f"no builder for {kind} here (builders: {', '.join(builders)})")
    return builders[kind](provisioner, source, tuple(o if o.startswith("-") else f"-D{o}" for o in options))
