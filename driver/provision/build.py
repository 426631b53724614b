"""Build a source tree in a pinned tool root, cached: virglrenderer, Mesa's Venus ICD, QEMU.

Each ``venus-repro build-*`` command takes a source tarball (a release, Debian's
orig tarball, a ``git archive`` or GitHub tarball) or a source folder (a git
checkout: upstream, or your fork) and builds it in one of the profile's pinned
tool roots — the same Debian suite as the host root, so what it builds runs
there (virglrenderer, QEMU) or in the guest (Mesa, cross-built for arm64). The
result is a cached product like any other, checked before each use, keyed by
the source's sha256, the options and the tool root's pins:

    $VENUS_REPRO_CACHE/builds/virglrenderer-<source>-<key>/     build-virglrenderer
      lib/libvirglrenderer.so.1 -> libvirglrenderer.so.1.x.y
      libexec/virgl_render_server
    $VENUS_REPRO_CACHE/builds/mesa-<source>-<key>/              build-mesa (the guest's Venus ICD)
      usr/lib/aarch64-linux-gnu/libvulkan_virtio.so
      usr/share/vulkan/icd.d/virtio_icd.json           Debian's name; library_path is the path above
    $VENUS_REPRO_CACHE/builds/qemu-<source>-<key>/              build-qemu (aarch64-softmmu, for the host root)
      bin/qemu-system-aarch64

and in each, ``build.json`` (what was built, from what, with which options and
pins; the product's sha256s) and ``build.log``. The ``usr/`` tree of a Mesa
build lies at the paths Debian's mesa-vulkan-drivers installs, so it replaces
Debian's ICD when copied over the guest userland.

A build that fails is one ProvisionError with the log's tail; the whole log
stays in ``$VENUS_REPRO_CACHE/logs/``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, ClassVar

from .. import log, sandbox
from ..errors import ProvisionError, UsageError
from ..profile import ARCHES
from . import Provisioner, sysroot
from .lock import set_digest
from .store import sha256_file

_TARBALLS = (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar")
BUILD_JSON = "build.json"
q = shlex.quote


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one kind of source tree is built in its tool root."""

    name: str  # the product's stem in builds/, and what the log says
    tool: str  # the profile's tool root it builds in
    marker: str  # a file at the top of such a source tree
    base: tuple[str, ...]  # options every build gets, before the user's (part of the key)
    check_option: Callable[[str], None]  # a malformed user option: UsageError
    # (tree, work, out, options) → the shell lines that build ``tree`` in ``work`` and put the product in ``out``
    script: Callable[[Path, Path, Path, tuple[str, ...]], list[str]]
    # Options found from the tree itself (a release's option names), after ``base``.
    tree_options: Callable[[Path], tuple[str, ...]] = lambda tree: ()
    # (tree, work, out, key) → build.json's recipe-specific fields; may finish the product (out) from work.
    finish: Callable[[Path, Path, Path, str], dict] = lambda tree, work, out, key: {}
    revision: str = ""  # part of the key: bump when the recipe changes what it builds
    copies_tree: bool = False  # the script writes into the tree: a source folder is built from a copy


def _source_digest(source: Path) -> str:
    if source.is_file():
        return sha256_file(source)
    h = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file() and ".git" not in p.parts):
        h.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _check_source(source: Path, recipe: Recipe) -> None:
    if not source.exists():
        raise UsageError(f"{source}: no such source tarball or folder")
    if source.is_file() and not source.name.endswith(_TARBALLS):
        raise UsageError(f"{source}: give a source tarball ({', '.join(_TARBALLS)}) or a source folder")
    if source.is_dir() and not (source / recipe.marker).is_file():
        raise UsageError(f"{source}: not a {recipe.name} source folder (no {recipe.marker})")


def meson_option(opt: str) -> None:
    if not opt.startswith("-D") or "=" not in opt or any(c.isspace() for c in opt):
        raise UsageError(f"meson option {opt!r}: give -Dname=value")


def build(provisioner: Provisioner, recipe: Recipe, source: Path, options: tuple[str, ...] = (), workspace: str | None = None) -> tuple[Path, dict]:
    """Build (once) ``source`` with ``options`` in the recipe's pinned tool root: (product folder, build.json).

    ``workspace`` (a name: one repository's history, as bisect --source builds it) keeps
    the build folder between trees: each tree is synced into its source folder by
    content, so only what changed is compiled again, as in a checkout that ``git
    bisect`` moves. The product is the same as a clean build's, cached the same way.
    """
    source = source.resolve()
    for opt in options:
        recipe.check_option(opt)
    _check_source(source, recipe)
    sandbox.require_root()  # the tool root is entered with chroot
    root = provisioner.tool_root(recipe.tool)
    digest = _source_digest(source)
    pins = [p for s in provisioner.tool_sets(recipe.tool) for p in provisioner.lock.pins(s)]
    key = set_digest(pins, digest, *([recipe.revision] if recipe.revision else []), *recipe.base, *options)
    # The source and the options are in the name: each tree and option set keeps its own
    # product (build_once prunes older builds of the same name stem: other pins or recipe).
    final = provisioner.cache / "builds" / f"{recipe.name}-{set_digest([], digest, *options)[:12]}-{key}"
    if not sysroot.reuse(final):
        info = {"source": str(source), "source_sha256": digest, "user_options": list(options), "tool": recipe.tool,
                "tool_pins_sha256": set_digest(pins), "key": key}  # fmt: skip
        failed_log = provisioner.cache / "logs" / f"build-{recipe.name}-{key}.log"
        with log.nested(f"building {recipe.name} from {source.name} ({' '.join(options) or 'default options'})"):
            space = None
            if workspace is not None and source.is_dir():
                space = provisioner.cache / "workspaces" / f"{recipe.name}-{set_digest(pins, workspace, recipe.revision, *recipe.base, *options)}"
            sysroot.build_once(final, lambda tmp: _build(provisioner.cache, root, recipe, source, options, info, tmp, failed_log, space))
    record = final / BUILD_JSON
    return final, json.loads(record.read_text()) if record.is_file() else {}


def sync_tree(source: Path, into: Path) -> int:
    """Make ``into`` hold exactly ``source``'s files, writing only those whose content differs; how many were written.

    Unchanged files keep their times, so ninja rebuilds only what changed.
    """
    into.mkdir(parents=True, exist_ok=True)
    wanted = {p.relative_to(source) for p in source.rglob("*") if not p.is_dir() or p.is_symlink()}
    written = 0
    for rel in sorted(wanted):
        src, dst = source / rel, into / rel
        if src.is_symlink():
            if not dst.is_symlink() or os.readlink(dst) != os.readlink(src):
                if dst.exists() or dst.is_symlink():
                    dst.unlink()
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(src), dst)
                written += 1
            continue
        data = src.read_bytes()
        if dst.is_symlink() or not dst.is_file() or dst.stat().st_size != len(data) or dst.read_bytes() != data:
            if dst.is_symlink():
                dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
            os.chmod(dst, src.stat().st_mode & 0o7777)
            written += 1
    for path in sorted(into.rglob("*"), reverse=True):
        rel = path.relative_to(into)
        if rel not in wanted and not (path.is_dir() and not path.is_symlink()):
            path.unlink()
            written += 1
    return written


def _build(cache: Path, root: Path, recipe: Recipe, source: Path, options: tuple[str, ...], info: dict, out: Path, failed_log: Path,
           space: Path | None = None) -> None:  # fmt: skip
    out.mkdir(parents=True)
    if space is not None:
        # One repository's workspace: its build folder outlives this build (never two builds at once in it).
        work = space
        work.mkdir(parents=True, exist_ok=True)
        lock = open(work / ".lock", "w")
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        changed = sync_tree(source, work / "src")
        shutil.rmtree(work / "inst", ignore_errors=True)
        log.info(f"workspace {work.name}: {changed} file(s) changed since its last build")
    else:
        work = cache / "tmp" / f"build-{recipe.name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    build_log = out / "build.log"
    binds = [out, work, *([source] if source.is_dir() else [source.parent])]
    start = time.monotonic()
    try:
        if space is not None:
            tree = work / "src"
        elif source.is_dir() and recipe.copies_tree:
            sync_tree(source, work / "src")
            tree = work / "src"
        elif source.is_file():
            _run(root, [f"mkdir -p {q(str(work / 'src'))}", f"tar -xf {q(str(source))} -C {q(str(work / 'src'))}"],
                 binds, build_log, "unpacking", failed_log, source, info["key"])  # fmt: skip
            top = work / "src"
            tops = [top] if (top / recipe.marker).is_file() else sorted(p.parent for p in top.glob(f"*/{recipe.marker}"))
            if not tops:
                raise UsageError(f"{source}: not a {recipe.name} source tarball (no {recipe.marker} in it)")
            tree = tops[0]
        else:
            tree = source
        every = (*recipe.base, *recipe.tree_options(tree), *options)
        _run(root, recipe.script(tree, work, out, every), binds, build_log, "building", failed_log, source, info["key"])
        info.update(recipe.finish(tree, work, out, info["key"]))
        info.update(options=list(every), build_seconds=round(time.monotonic() - start, 1),
                    built=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))  # fmt: skip
        (out / BUILD_JSON).write_text(json.dumps(info, indent=1) + "\n")
    finally:
        if space is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            lock.close()


_STEP = re.compile(r"^\[(\d+)/(\d+)\]")


def _run(root: Path, lines: list[str], binds: list[Path], build_log: Path, what: str, failed_log: Path, source: Path,
         key: str, timeout: float = 3600) -> None:  # fmt: skip
    """Run ``lines`` in ``root`` ($BUILD_KEY: the product's key), the output appended to ``build_log``, ninja's steps as progress."""
    cmd = sandbox.command(root, ["/bin/sh", "-c", "\n".join(["set -e", *lines])], binds=binds, env={"BUILD_KEY": key})
    progress = None
    with open(build_log, "a") as logf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                preexec_fn=sandbox.die_with_parent)  # fmt: skip
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                logf.write(line)
                m = _STEP.match(line)
                if m:
                    if progress is None or progress.total != int(m.group(2)):
                        progress = log.Progress("  compiling", int(m.group(2)), " steps", every=30.0)
                    progress.advance(int(m.group(1)) - progress.done)
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if rc != 0:
        failed_log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_log, failed_log)
        # (meson's "A full log can be found at …" names the work folder, which is gone by now)
        text = [l for l in build_log.read_text(errors="replace").strip().splitlines() if not l.startswith("A full log can be found at")]
        errors = [l for l in text if re.match(r"^(ERROR|meson\.build:\d+:\d+: ERROR|.*: error:|FAILED:)", l)]
        tail = text[-20:]
        tail = "\n".join([*[e for e in errors[:3] if e not in tail], *(["…"] if set(errors) - set(tail) else []), *tail])
        stopped = " (stopped after {:.0f} min)".format(timeout / 60) if rc < 0 else ""
        raise ProvisionError(f"{what} {source} failed{stopped}; the whole log: {failed_log}\n{tail}")


# --- virglrenderer (host) ---------------------------------------------------------------------


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


def _virgl_script(tree: Path, work: Path, out: Path, options: tuple[str, ...]) -> list[str]:
    return [
        f"[ -f {q(str(work / 'build'))}/build.ninja ] || meson setup {q(str(work / 'build'))} {q(str(tree))} --prefix=/usr --libdir=lib {' '.join(q(o) for o in options)}",
        f"ninja -C {q(str(work / 'build'))}",
        f"DESTDIR={q(str(work / 'inst'))} meson install -C {q(str(work / 'build'))} --no-rebuild",
        f"mkdir -p {q(str(out))}/lib {q(str(out))}/libexec",
        f"cp -a {q(str(work))}/inst/usr/lib/libvirglrenderer.so.* {q(str(out))}/lib/",
        f"cp -a {q(str(work))}/inst/usr/libexec/virgl_render_server {q(str(out))}/libexec/",
    ]


VIRGLRENDERER = Recipe(
    name="virglrenderer", tool="virglrenderer-build", marker="meson.build", check_option=meson_option, script=_virgl_script,
    # What every build gets, before the user's options: Venus and its render
    # server, EGL as Debian builds it, no VA-API video, no tests.
    base=("-Dvenus=true", "-Dplatforms=egl", "-Dvideo=false", "-Dtests=false", "--buildtype=release"),
)  # fmt: skip


def build_virglrenderer(provisioner: Provisioner, source: Path, options: tuple[str, ...] = (), workspace: str | None = None) -> VirglBuild:
    """Build (once) ``source`` with ``options`` in the pinned build root; the cached result."""
    final, info = build(provisioner, VIRGLRENDERER, source, options, workspace)
    libs = sorted((final / "lib").glob("libvirglrenderer.so.1"))
    server = final / "libexec" / "virgl_render_server"
    if not libs or not server.is_file():
        raise ProvisionError(f"{final}: the build has no libvirglrenderer.so.1 or virgl_render_server (was Venus built?)")
    return VirglBuild(libs[0], server, _source_digest(source.resolve()) if not info else info["source_sha256"], options)


# --- Mesa's Venus ICD (guest, cross-built) ------------------------------------------------------

# Mesa options turned off for a Venus-only ICD: no OpenGL (GL, GLES, EGL, GLX, GBM, glvnd),
# no Gallium, no LLVM, no video codecs, no layers or tools, no WSI platform (the guest's
# demos are offscreen; VK_KHR_display still comes with DRM), driconf's defaults compiled
# in (no expat), no zstd/valgrind/libunwind/sensors. Each is given only where the tree has
# that option, with the off value of its type (Mesa renames, retypes and drops options
# between releases, and meson refuses an option a tree does not have).
MESA_OFF = (
    "gallium-drivers", "platforms", "opengl", "glx", "egl", "gbm", "gles1", "gles2", "glvnd", "shared-glapi",
    "llvm", "video-codecs", "gallium-va", "gallium-vdpau", "gallium-xa", "gallium-nine", "gallium-opencl",
    "gallium-rusticl", "vulkan-layers", "tools", "build-tests", "xmlconfig", "expat", "zstd", "valgrind",
    "libunwind", "lmsensors", "perfetto", "html-docs",
)  # fmt: skip
MESA_BASE = ("-Dvulkan-drivers=virtio", "--buildtype=release")
# Where the guest finds the ICD: the paths Debian's mesa-vulkan-drivers installs (arm64), so
# the build replaces Debian's files.
ICD_JSON = "usr/share/vulkan/icd.d/virtio_icd.json"
ICD_LIBRARY = "libvulkan_virtio.so"


def meson_options(tree: Path) -> dict[str, tuple[str, list[str]]]:
    """A meson tree's own options: name → (type, choices), from meson.options or meson_options.txt."""
    for name in ("meson.options", "meson_options.txt"):
        if (tree / name).is_file():
            text = (tree / name).read_text(errors="replace")
            break
    else:
        return {}
    found = {}
    for block in re.split(r"\boption\s*\(", text)[1:]:
        m = re.match(r"\s*'([\w-]+)'\s*,\s*type\s*:\s*'(\w+)'", block)
        if m:
            choices = re.search(r"choices\s*:\s*\[([^\]]*)\]", block)
            found[m.group(1)] = (m.group(2), re.findall(r"'([^']*)'", choices.group(1)) if choices else [])
    return found


def _off(kind: str, choices: list[str]) -> str | None:
    if kind == "boolean":
        return "false"
    if kind == "feature" or (kind == "combo" and "disabled" in choices):
        return "disabled"
    if kind == "array":
        return ""
    return None


def _mesa_tree_options(tree: Path) -> tuple[str, ...]:
    offered = meson_options(tree)
    if "vulkan-drivers" not in offered or "virtio" not in offered["vulkan-drivers"][1]:
        raise UsageError(f"{tree}: this Mesa tree has no Venus driver (vulkan-drivers has no 'virtio')")
    return tuple(f"-D{n}={v}" for n in MESA_OFF if n in offered and (v := _off(*offered[n])) is not None)


def _mesa_cross_file(triplet: str) -> str:
    cpu = triplet.split("-")[0]
    return "\n".join([
        "[binaries]",
        f"c = '{triplet}-gcc'",
        f"cpp = '{triplet}-g++'",
        f"ar = '{triplet}-ar'",
        f"strip = '{triplet}-strip'",
        f"nm = '{triplet}-nm'",
        "pkg-config = 'pkgconf'",
        "[properties]",
        # The target's .pc files only (the tool set's target libraries), never the build machine's.
        f"pkg_config_libdir = ['/usr/lib/{triplet}/pkgconfig', '/usr/share/pkgconfig']",
        "[host_machine]",
        "system = 'linux'",
        f"cpu_family = '{cpu}'",
        f"cpu = '{cpu}'",
        "endian = 'little'",
    ])  # fmt: skip


def _mesa_recipe(triplet: str) -> Recipe:
    libdir = f"usr/lib/{triplet}"

    def script(tree: Path, work: Path, out: Path, options: tuple[str, ...]) -> list[str]:
        w = q(str(work))
        return [
            # The driver names this build: VkPhysicalDeviceDriverProperties.driverInfo reads
            # "Mesa <version> (git-<key[:10]>)" (Mesa's git_sha1_gen.py takes the override).
            'export MESA_GIT_SHA1_OVERRIDE="$BUILD_KEY"',
            f"cat > {w}/cross.ini <<'EOF'\n{_mesa_cross_file(triplet)}\nEOF",
            f"cat {w}/cross.ini",
            f"[ -f {w}/build/build.ninja ] || meson setup {w}/build {q(str(tree))} --cross-file {w}/cross.ini --prefix=/usr --libdir=lib/{triplet} "
            + " ".join(q(o) for o in options),
            f"ninja -C {w}/build",
            f"DESTDIR={w}/inst meson install -C {w}/build --no-rebuild",
        ]

    def finish(tree: Path, work: Path, out: Path, key: str) -> dict:
        built = work / "inst" / libdir / ICD_LIBRARY
        icds = sorted((work / "inst/usr/share/vulkan/icd.d").glob("virtio_icd*.json"))
        if not built.is_file() or not icds:
            raise ProvisionError(f"the Mesa build installed no {libdir}/{ICD_LIBRARY} and virtio ICD JSON (was Venus built?)")
        (out / libdir).mkdir(parents=True)
        shutil.copyfile(built, out / libdir / ICD_LIBRARY)
        icd = json.loads(icds[0].read_text())
        icd["ICD"]["library_path"] = f"/{libdir}/{ICD_LIBRARY}"
        (out / ICD_JSON).parent.mkdir(parents=True)
        (out / ICD_JSON).write_text(json.dumps(icd, indent=4) + "\n")
        version = (tree / "VERSION").read_text().strip() if (tree / "VERSION").is_file() else None
        return {
            "mesa_version": version,
            "driver_info": f"Mesa {version} (git-{key[:10]})",
            "target": triplet,
            "guest_library": f"/{libdir}/{ICD_LIBRARY}",
            "library_sha256": sha256_file(out / libdir / ICD_LIBRARY),
            "guest_icd_json": f"/{ICD_JSON}",
            "icd_api_version": icd["ICD"].get("api_version"),
            "cross_file": _mesa_cross_file(triplet),
        }

    return Recipe(name="mesa", tool="mesa-build", marker="meson.build", base=MESA_BASE, check_option=meson_option,
                  script=script, tree_options=_mesa_tree_options, finish=finish, revision="mesa-venus 2")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class MesaBuild:
    folder: Path  # the product: its usr/ tree lies at the guest's paths
    library: Path  # folder/usr/lib/<triplet>/libvulkan_virtio.so
    icd_json: Path  # folder/usr/share/vulkan/icd.d/virtio_icd.json (library_path: the guest's path)
    info: dict  # build.json

    def as_dict(self) -> dict:
        return {**self.info, "folder": str(self.folder), "library": str(self.library), "icd_json": str(self.icd_json)}

    overrides: ClassVar[dict] = {}  # a guest component: its files go into the initramfs (folder), nothing is bound

    @property
    def version(self) -> str:
        return f"{self.info.get('mesa_version') or '?'} (build {self.info.get('key', '')[:10]})"


def build_mesa(provisioner: Provisioner, source: Path, options: tuple[str, ...] = (), workspace: str | None = None) -> MesaBuild:
    """Build (once) Mesa's Venus ICD from ``source`` for the guest's architecture; the cached product."""
    profile = provisioner.profile
    arch = profile.tool_targets.get("mesa-build", (profile.guest_arch,))[0]
    final, info = build(provisioner, _mesa_recipe(ARCHES[arch].gnu), source, options, workspace)
    library = final / info.get("guest_library", "").lstrip("/")
    if not info or not library.is_file() or not (final / ICD_JSON).is_file():
        raise ProvisionError(f"{final}: the build has no {ICD_LIBRARY} or {ICD_JSON}")
    return MesaBuild(final, library, final / ICD_JSON, info)


# --- QEMU (host) --------------------------------------------------------------------------------

# What the profile's QEMU needs for Venus, and nothing else: the aarch64 system emulator
# (TCG; KVM on an arm64 host), the virt machine's device tree (system libfdt), virtio-gpu-gl
# with virglrenderer, OpenGL (epoxy and EGL; GBM comes with them) and SDL for `-display sdl,gl=on`, pixman for
# the display; every other optional feature off (--without-default-features: no slirp,
# VNC, audio, block drivers beyond the built-in ones, tools, docs, guest agent). One binary
# (no modules, QEMU's default), no download of missing subprojects, warnings not errors (a
# git checkout would turn them on), no firmware blobs (-kernel needs none; Debian's +ds
# tarballs have none).
QEMU_BASE = (
    "--target-list=aarch64-softmmu", "--without-default-features", "--enable-virglrenderer", "--enable-opengl",
    "--enable-sdl", "--enable-pixman", "--enable-fdt=system", "--disable-download", "--disable-werror",
    "--disable-install-blobs",
)  # fmt: skip
QEMU_BINARY = "bin/qemu-system-aarch64"


def configure_option(opt: str) -> None:
    if not opt.startswith("--") or len(opt) < 3 or any(c.isspace() for c in opt):
        raise UsageError(f"configure option {opt!r}: give --enable-FEATURE, --disable-FEATURE or --name=value")


# The devices the profile's machine has, and no other board's (the device models of every ARM
# board are half of QEMU's compiles): the virt machine, virtio over PCI, the GPU and the disk.
# Measured on 10.0.13 here: 1013 compiles instead of 1574, 516 s instead of 741 s, and the
# binary realizes the Venus GPU with an SDL GL display as the full one does.
QEMU_DEVICES = "venus-repro"
QEMU_DEVICES_MAK = "CONFIG_ARM_VIRT=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_GPU=y\nCONFIG_VIRTIO_BLK=y\nCONFIG_PCI_DEVICES=n\n"


def _qemu_recipe(host_arch: str) -> Recipe:
    base = (*QEMU_BASE, "--without-default-devices", f"--with-devices-aarch64={QEMU_DEVICES}",
            *(["--enable-kvm"] if host_arch == "arm64" else []))  # fmt: skip

    def script(tree: Path, work: Path, out: Path, options: tuple[str, ...]) -> list[str]:
        w = q(str(work))
        devices = q(f"{tree}/configs/devices/aarch64-softmmu/{QEMU_DEVICES}.mak")
        return [
            # The device set lives in the tree: this is the build's own copy (copies_tree), never your folder.
            f"printf '{QEMU_DEVICES_MAK}' > {devices}",
            f"mkdir -p {w}/build && cd {w}/build",
            # gcc by name: /usr/bin/cc is an alternatives link that no maintainer script made here.
            f"[ -f build.ninja ] || {q(str(tree))}/configure --prefix=/usr --cc=gcc " + " ".join(q(o) for o in options),
            f"ninja -C {w}/build qemu-system-aarch64",
            f"mkdir -p {q(str(out))}/bin && cp {w}/build/qemu-system-aarch64 {q(str(out))}/{QEMU_BINARY}",
        ]

    def finish(tree: Path, work: Path, out: Path, key: str) -> dict:
        version = (tree / "VERSION").read_text().strip() if (tree / "VERSION").is_file() else None
        return {"qemu_version": version, "binary": QEMU_BINARY, "binary_sha256": sha256_file(out / QEMU_BINARY)}

    return Recipe(name="qemu", tool="qemu-build", marker="configure", base=base, check_option=configure_option,
                  script=script, finish=finish, revision="qemu-venus 2", copies_tree=True)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class QemuBuild:
    folder: Path
    binary: Path  # folder/bin/qemu-system-aarch64: runs in the host root
    info: dict

    def as_dict(self) -> dict:
        return {**self.info, "folder": str(self.folder), "binary": str(self.binary)}

    @property
    def overrides(self) -> dict[str, Path]:
        return {"qemu": self.binary}

    @property
    def version(self) -> str:
        return f"{self.info.get('qemu_version') or '?'} (build {self.info.get('key', '')[:10]})"


def build_qemu(provisioner: Provisioner, source: Path, options: tuple[str, ...] = (), workspace: str | None = None) -> QemuBuild:
    """Build (once) QEMU's aarch64 system emulator from ``source`` for the host root; the cached product."""
    from ..profile import host_debian_arch

    final, info = build(provisioner, _qemu_recipe(host_debian_arch()), source, options, workspace)
    if not info or not (final / QEMU_BINARY).is_file():
        raise ProvisionError(f"{final}: the build has no {QEMU_BINARY}")
    return QemuBuild(final, final / QEMU_BINARY, info)


# The registry's builders (registry.ComponentSpec.build), for a component's ``build`` source.
BUILDERS = {"virglrenderer": build_virglrenderer, "mesa": build_mesa, "qemu": build_qemu}


def build_component(kind: str | None, provisioner: Provisioner, source: Path | None, options: tuple[str, ...] = (), workspace: str | None = None):
    """A registry component's ``build`` source: its builder's cached product (``overrides``, ``folder``, ``version``)."""
    if kind not in BUILDERS or source is None:
        raise UsageError(f"no builder for {kind} (builders: {', '.join(BUILDERS)})")
    if kind != "qemu":
        options = tuple(o if o.startswith("-") else f"-D{o}" for o in options)
    return BUILDERS[kind](provisioner, source, options, workspace)
