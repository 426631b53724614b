"""Provisioning: turn a resolved environment into the files a run needs.

Each product is built once, keyed by the digest of exactly what went into it
(pins, sources), and published atomically:

    $VENUS_REPRO_CACHE/
      debs/                  pinned .deb files, sha256-verified
      apt/<suite>-<arch>/    private apt state (only read to resolve pins)
      roots/host-<arch>-*/   host userland: QEMU, virglrenderer, Mesa, gcc
      guest/root-*/          guest userland (arm64), before packing
      kernels/<flavour>-*/   vmlinuz + the modules the guest loads
      demos/build-*/         demo binaries, host and guest
      initramfs/initrd-*/    the packed guest (cpio)
      builds/<kind>-*/       component builds from your source trees

A warm cache needs no network.

The one place that turns an environment into a run's components:
``components(env)`` (the Debian profile's layers of pins, or the nix
profile's manifest). What a layer is made of is the environment's business
(driver/environment.py); how each registry component's source enters the run
is here (``_apply_sources``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .. import demos, elf, hostvulkan, log, registry, resources, sandbox, shims
from .. import profile as profiles
from ..errors import ProvisionError, UsageError
from ..profile import Profile, cache_dir, host_debian_arch
from . import deb, initramfs, kernel, manifest, packages, sysroot
from .apt import AptRepo, Pin
from .components import Components
from .lock import Lock, set_digest
from .store import DebStore

GUEST_MODULE_DIR = "lib/venus-repro/modules"
# Where a guest Mesa build's files go in the guest (Debian's own paths, so they replace its package's).
GUEST_ICD_DIR = "usr/share/vulkan/icd.d"


class Provisioner:
    def __init__(self, profile: Profile, cache: Path | None = None):
        self.profile = profile
        self.cache = cache or cache_dir()
        self.store = DebStore(self.cache)
        self._repos: dict[str, AptRepo] = {}
        self._lock: Lock | None = None
        self._controls: dict[str, dict[str, str]] = {}

    @property
    def lock(self) -> Lock:
        """The profile's lock (read on first use: a recorded environment needs none)."""
        if self._lock is None:
            self._lock = Lock.load(self.profile)
        return self._lock

    def repo(self, arch: str, suite: str | None = None) -> AptRepo:
        suite = suite or self.profile.suite
        key = f"{suite}-{arch}"
        if key not in self._repos:
            self._repos[key] = AptRepo(self.cache / "apt" / key, suite, arch)
        return self._repos[key]

    def _hint(self) -> str:
        return f"refresh the pins: `venus-repro lock --refresh --profile {self.profile.ref}`"

    def fetch(self, pins: list[Pin], what: str) -> list[Pin]:
        missing = self.store.missing(pins)
        if missing:
            with log.nested(f"fetching {what}: {len(missing)} of {len(pins)} packages missing from the cache"):
                self.store.ensure(pins, self._hint())
        return pins

    def control(self, pin: Pin) -> dict[str, str]:
        """The control fields of a pinned package (from its .deb, fetched if need be)."""
        if pin.sha256 not in self._controls:
            self.fetch([pin], pin.name)
            self._controls[pin.sha256] = deb.control(self.store.verified(pin))[0]
        return self._controls[pin.sha256]

    # --- products -----------------------------------------------------------------------

    def _chroot_root(self, stem: str, pins: list[Pin], what: str) -> Path:
        """A root unpacked from ``pins``, ready to chroot into (ldconfig run)."""
        final = self.cache / "roots" / f"{stem}-{set_digest(pins)}"
        if sysroot.reuse(final):
            return final

        def build(tmp: Path) -> None:
            sysroot.unpack_all(self.fetch(pins, stem), self.store, tmp, stem)
            for d in ("proc", "sys", "dev", "tmp", "root"):
                (tmp / d).mkdir(exist_ok=True)
            subprocess.run(["chroot", str(tmp), "/usr/sbin/ldconfig"], check=True)
            if len({p.suite for p in pins}) > 1:
                check_runnable(tmp, pins, self.store, what)

        with log.nested(f"building the {what} root ({len(pins)} packages)"):
            return sysroot.build_once(final, build)

    def host_root(self, pins: list[Pin], arch: str | None = None) -> Path:
        return self._chroot_root(f"host-{arch or host_debian_arch()}", pins, "host")

    def tool_root(self, tool: str, arch: str | None = None) -> Path:
        """A root holding one of the profile's pinned host tools (e.g. nix), to chroot into.

        A tool with a target architecture (mesa-build) also holds that set's libraries.
        """
        if tool not in self.profile.tools:
            raise ProvisionError(f"profile {self.profile.name} pins no tool '{tool}' (tools: {', '.join(self.profile.tools) or 'none'})")
        sets = self.tool_sets(tool, arch)
        return self._chroot_root(sets[0], [p for name in sets for p in self.lock.pins(name)], tool)

    def tool_sets(self, tool: str, arch: str | None = None) -> list[str]:
        """The lock sets a tool's root is made of: its host set, then its target's (if any)."""
        sets = [f"tool-{tool}-{arch or host_debian_arch()}"]
        if tool in self.profile.tool_targets:
            sets.append(profiles.tool_target_set(tool, self.profile.tool_targets[tool][0]))
        return sets

    def guest_root(self, pins: list[Pin], extra: list[Pin] = ()) -> Path:
        """The guest userland: the guest layer, plus a scenario's extra packages."""
        stem = "root" if not extra else "root-extra"
        final = self.cache / "guest" / f"{stem}-{set_digest([*pins, *extra], *self.profile.guest_drop, *((packages.RECIPE,) if extra else ()))}"
        if sysroot.reuse(final):
            return final

        def build(tmp: Path) -> None:
            base = self.fetch(list(pins), "the guest")
            sysroot.unpack_all(base, self.store, tmp, "the guest")
            if len({p.suite for p in pins}) > 1:
                check_runnable(tmp, list(pins), self.store, "guest")  # as installed: before the drop list
            # The drop list slims the base guest only: a scenario's packages are installed whole.
            sysroot.drop(tmp, self.profile.guest_drop)
            if extra:
                self.fetch(list(extra), "the scenario's guest packages")
                packages.install(tmp, list(extra), base, self.store)

        with log.nested(f"building the guest userland ({len(pins) + len(extra)} packages)"):
            return sysroot.build_once(final, build)

    def kernel_dir(self, pins: list[Pin], flavour: str) -> Path:
        final = self.cache / "kernels" / f"{flavour}-{set_digest(pins, *self.profile.guest_modules)}"
        if sysroot.reuse(final):
            return final

        def build(tmp: Path) -> None:
            unpacked = tmp / "pkg"
            sysroot.unpack_all(self.fetch(list(pins), f"the {flavour} kernel"), self.store, unpacked, f"kernel-{flavour}")
            image, modroot = kernel.find_in(unpacked)
            shutil.move(image, tmp / "vmlinuz")
            release = modroot.name
            (tmp / "release").write_text(release + "\n")
            order = kernel.modules_in_load_order(modroot, self.profile.guest_modules)
            (tmp / "modules").mkdir()
            names = []
            for path in order:
                name = kernel.module_name(path) + ".ko"
                (tmp / "modules" / name).write_bytes(kernel.read_module(path))
                names.append(name)
            (tmp / "modules.order").write_text("".join(f"{n}\n" for n in names))
            shutil.rmtree(unpacked)

        with log.nested(f"preparing the {flavour} guest kernel"):
            return sysroot.build_once(final, build)

    def demo_build(self, host_root: Path, guest_root: Path) -> Path:
        key = hashlib.sha256(f"{host_root.name} {guest_root.name} {demos.source_digest()}".encode()).hexdigest()[:16]
        final = self.cache / "demos" / f"build-{key}"
        if sysroot.reuse(final):
            return final
        gnu = self.profile.arch.gnu
        with log.nested(f"building the demos (host and {gnu})"):
            # The sandbox binds the output at the same path inside the root, so
            # build straight into a temporary directory that is renamed at the end.
            return sysroot.build_once(final, lambda tmp: demos.build(host_root, guest_root, gnu, tmp))

    def ring_wake(self, host_root: Path) -> Path:
        """The vkr_ring_wake shim, built once per host root and shim source."""
        key = hashlib.sha256(f"{host_root.name} {shims.source_digest()}".encode()).hexdigest()[:16]
        final = self.cache / "shims" / f"ring-wake-{key}"
        if not sysroot.reuse(final):
            with log.nested("building the vkr_ring_wake shim"):
                sysroot.build_once(final, lambda tmp: shims.build(host_root, tmp))
        return final / f"{shims.RING_WAKE}.so"

    def initramfs(self, guest_root: Path, kernel_dir: Path | None, guest_bins: Path, overlay: Path | None = None) -> Path:
        """The guest's initramfs: its userland, /init, the kernel's modules, the demos in ``guest_bins``.

        ``overlay`` (a folder laid out as the guest's /) goes over the userland: a
        guest component built from source replaces its package's files so.
        """
        init = resources.GUEST_INIT.read_bytes()
        # The layout of the tree (what is copied in and how) is part of the key too.
        bins = b"layout 2\0" + b"".join(p.name.encode() + b"\0" + p.read_bytes() for p in sorted(guest_bins.iterdir()) if p.is_file())
        parts = [guest_root.name.encode(), (kernel_dir.name if kernel_dir else "").encode(), bins, init]
        if overlay is not None:
            parts.append(b"overlay " + overlay.name.encode())  # a build's folder is named by its own key
        key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
        # The flavour is part of the name so that each kernel keeps its own
        # initramfs in the cache (build_once prunes older builds by name stem).
        flavour = kernel_dir.name.rsplit("-", 1)[0] if kernel_dir is not None else "custom"
        final = self.cache / "initramfs" / f"initrd-{flavour}-{key}"
        if sysroot.reuse(final):
            return final / "initrd.cpio"

        def build(tmp: Path) -> None:
            tree = tmp / "tree"
            shutil.copytree(guest_root, tree, symlinks=True, ignore=shutil.ignore_patterns(sysroot.PRODUCT_RECORD))
            if overlay is not None:
                shutil.copytree(overlay / "usr", tree / "usr", symlinks=True, dirs_exist_ok=True)
            (tree / "init").write_bytes(init)
            (tree / "init").chmod(0o755)
            (tree / "etc/venus-repro").mkdir(parents=True, exist_ok=True)
            modules = []
            if kernel_dir is not None:
                shutil.copytree(kernel_dir / "modules", tree / GUEST_MODULE_DIR)
                modules = [f"/{GUEST_MODULE_DIR}/{n}" for n in (kernel_dir / "modules.order").read_text().split()]
            (tree / "etc/venus-repro/modules").write_text("".join(f"{m}\n" for m in modules))
            shutil.copytree(guest_bins, tree / demos.GUEST_BIN_DIR)
            size = initramfs.write_cpio(tree, tmp / "initrd.cpio")
            shutil.rmtree(tree)
            log.info(f"initramfs: {size / 1e6:.1f} MB, {len(modules)} modules")

        with log.nested("packing the guest initramfs"):
            return sysroot.build_once(final, build) / "initrd.cpio"

    def guest(self, kernel_flavour: str | None, guest_bins: Path) -> tuple[Path, Path]:
        """The guest alone — (kernel folder, initramfs) — from the lock's packages and ``guest_bins``.

        Unpacking and packing only: no root, no chroot, no compiler, so it runs
        on any host with Python (the Nix flake runs it on macOS, with the
        packages fetched by their pinned sha256; ``venus-repro guest-initramfs``).
        """
        flavour = self.profile.kernel_flavour(kernel_flavour)
        if not guest_bins.is_dir():
            raise ProvisionError(f"{guest_bins}: no such folder of guest demo binaries")
        with log.nested(f"assembling the guest ({flavour} kernel)"):
            kdir = self.kernel_dir(self.lock.pins(f"kernel-{flavour}"), flavour)
            return kdir, self.initramfs(self.guest_root(self.lock.pins(f"guest-{self.profile.guest_arch}")), kdir, guest_bins)

    def provision(self, env) -> Components:
        """The components of resolved environment ``env`` (environment.resolve)."""
        sandbox.require_root()
        sysroot.checked.clear()  # what preflight reports is what this provisioning checked
        profile = self.profile
        image_path = env.kernel_image
        if image_path is not None:
            image = kernel.read_image(image_path)  # bad input fails before any download
        arch = host_debian_arch()
        with log.nested(f"provisioning profile {profile.name} (host {arch})"):
            host_root = self.host_root(list(env.layer("host")), arch)
            guest_root = self.guest_root(list(env.layer("guest")), list(env.layer("guest_extra")))
            if image_path is None:
                flavour = env.kernel_flavour or profile.default_kernel
                kdir = self.kernel_dir(list(env.layer("kernel")), flavour)
                image = kernel.read_image(kdir / "vmlinuz")
                release = (kdir / "release").read_text().strip()
            else:
                # A user-supplied Image: its modules are not known, so virtio-gpu
                # must be built in; the guest reports what it finds.
                kdir, release, flavour = None, None, "custom"
            demo_dir = self.demo_build(host_root, guest_root)
            overrides, overlay, builds = self._apply_sources(env, host_root)
            initrd = self.initramfs(guest_root, kdir, demo_dir / "guest", overlay)
            ring_wake = self.ring_wake(host_root)
        versions = {c.name: env.version(c) for c in registry.COMPONENTS}
        versions.update({name: b.version for name, b in builds.items()})
        return Components(
            profile=profile,
            lock_digest=env.pins_digest,
            host_root=host_root,
            host_arch=arch,
            kernel=image,
            kernel_flavour=flavour,
            kernel_release=release,
            initramfs=initrd,
            demo_bin=demo_dir / "host",
            versions=versions,
            origins={c.name: env.describe(c) for c in registry.COMPONENTS},
            ring_wake=ring_wake,
            virglrenderer=next(
                (f"/{p.relative_to(host_root)}" for p in sorted((host_root / "usr/lib").glob("*/libvirglrenderer.so.1"))), None
            ),
            overrides=overrides,
            builds={name: b.as_dict() for name, b in builds.items()},
        )

    def _apply_sources(self, env, host_root: Path) -> tuple[dict[str, Path], Path | None, dict]:
        """The components that come as files: (overrides bound into the host root, the guest overlay, builds).

        A path is the user's file; a build is made from the source tree (cached
        by tree, options and the build root's pins). Package sources (profile,
        suite) are already in the layers.
        """
        from . import build

        overrides: dict[str, Path] = {}
        overlay: Path | None = None
        builds: dict = {}
        for c in registry.COMPONENTS:
            src = env.source(c.name)
            if src.kind == registry.PATH:
                for part, path in src.paths:
                    if c.name != "guest_kernel":
                        overrides[c.part(part).key] = Path(path)
            elif src.kind == registry.BUILD:
                product = build.build_component(c.build, self, src.path("tree"), src.options, dict(src.paths).get("workspace"))
                builds[c.name] = product
                if c.side == "host":
                    overrides.update(product.overrides)
                else:
                    overlay = product.folder
        return overrides, overlay, builds


# Where a root's programs and libraries are (merged /usr): what a mixed root's check reads.
_ELF_DIRS = ("usr/bin", "usr/sbin", "usr/libexec", "usr/lib")


def check_runnable(root: Path, pins: list[Pin], store: DebStore, what: str) -> None:
    """A root mixed from several suites must run: every ELF file finds its libraries and symbol versions.

    One clear error naming the file, the library, and the packages of both.
    """
    files = []
    for top in _ELF_DIRS:
        for dirpath, _, names in os.walk(root / top):
            for name in names:
                path = Path(dirpath) / name
                if not path.is_symlink() and path.is_file():
                    files.append(path)
    problems = elf.check_root(root, files, hostvulkan.library_dirs(root))
    if not problems:
        return
    p = problems[0]
    owner: dict[str, Pin] = {}
    for pin in pins:  # who shipped what: read only now, for the message
        for name in deb.file_names(store.verified(pin)):
            owner[name] = pin

    def who(path: str | None) -> str:
        pin = owner.get(path.lstrip("/")) if path else None
        return f"{pin.name} {pin.version} ({pin.suite})" if pin else "no package"

    provider = p.provider or next((n for n in owner if n.endswith("/" + p.library)), None)
    needs = f"{p.library} {p.version}" if p.version else p.library
    raise ProvisionError(
        f"the mixed {what} root cannot run: {p.file} of {who(p.file)} needs {needs}, "
        + (f"which {p.library} of {who(provider)} does not define" if p.version else "which no package of the root has")
        + (f" (and {len(problems) - 1} more such)" if len(problems) > 1 else "")
        + "; take that library's package from the same suite too (leave `exact` out)"
    )


def load_profile(name_or_path: str, manifest_path: Path | None = None) -> Profile:
    """A profile by name or YAML path; ``nix`` reads the flake's manifest instead."""
    if name_or_path == profiles.NIX:
        return manifest.profile(manifest_path)
    if manifest_path is not None:
        raise UsageError(f"--manifest belongs to the nix profile (--profile nix), not to {name_or_path}")
    return profiles.load(name_or_path)


def check_inputs(env, pinning=None) -> None:
    """What ``components`` will refuse, checked without fetching or building anything.

    A kernel flavour the profile does not pin, guest packages or other suites
    on the nix profile, a scenario's missing or stale lock: one UsageError
    before a run starts.
    """
    from .lock import extra_guest_pins

    profile = env.profile
    if env.kernel_image is None:
        profile.kernel_flavour(env.kernel_flavour)
    if profile.manifest is not None:
        if env.guest_packages:
            raise UsageError("the nix profile takes no guest packages: its guest is the flake's initramfs")
        debian = [n for n, s in env.sources if s.kind in (registry.SUITE, registry.MIXED, registry.BUILD)]
        if debian:
            raise UsageError(f"the nix profile's components are the flake's: {debian[0]} cannot come from a suite or a build there")
    elif env.guest_packages and env.layers is None and pinning is not None:
        extra_guest_pins(profile, Lock.load(profile), env.guest_packages, pinning.lock_path, pinning.scenario_path)


def components(env, pinning=None) -> tuple[Components, object]:
    """(the run's components, the resolved environment): from the Debian profile's pins, or the nix manifest.

    ``pinning`` (environment.Pinning): where the scenario's own pins are.
    """
    from .. import environment

    pinning = pinning or environment.Pinning()
    check_inputs(env, pinning)
    host = env.source("host_vulkan").kind == registry.HOST
    if env.profile.manifest is not None:
        c = manifest.components(env.profile, env.kernel_flavour, env.kernel_image)
        c = dataclasses.replace(c, overrides=_path_overrides(env))
    else:
        prov = Provisioner(env.profile)
        if host and env.profile.gpu_renderer is not None and env.source("virglrenderer").kind == registry.PROFILE and env.layers is None:
            # virglrenderer 1.1's render server initialises the host driver before it forks,
            # which NVIDIA's cannot survive: a host GPU gets the profile's later one, exactly.
            env = env.with_sources(virglrenderer=registry.Source(registry.SUITE, suite=env.profile.gpu_renderer[0], exact=True))
        env = environment.resolve(env, prov, pinning)
        c = prov.provision(env)
    if host:
        c = dataclasses.replace(c, host_driver=hostvulkan.discover(c.host_root))
    return c, env


def _path_overrides(env) -> dict[str, Path]:
    return {
        registry.spec(name).part(part).key: Path(path)
        for name, src in env.sources if src.kind == registry.PATH and name != "guest_kernel"
        for part, path in src.paths
    }  # fmt: skip
