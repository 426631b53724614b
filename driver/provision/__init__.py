"""Provisioning: turn a profile and its lock into the files a run needs.

Each product is built once, keyed by the digest of exactly what went into it
(pins, sources), and published atomically:

    $VENUS_REPRO_CACHE/
      debs/                  pinned .deb files, sha256-verified
      apt/<suite>-<arch>/    private apt state (only read when a .deb is missing)
      roots/host-<arch>-*/   host userland: QEMU, virglrenderer, Mesa, gcc
      guest/root-*/          guest userland (arm64), before packing
      kernels/<flavour>-*/   vmlinuz + the modules the guest loads
      demos/build-*/         demo binaries, host and guest
      initramfs/initrd-*/    the packed guest (cpio)

A warm cache needs no network: apt is consulted only for missing files.

The one place that decides where a run's components come from: ``load_profile``
and ``components`` (the Debian profile's lock, or the nix profile's manifest).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
from pathlib import Path

from .. import demos, hostvulkan, log, resources, sandbox, shims
from ..errors import ProvisionError
from .. import profile as profiles
from ..errors import UsageError
from ..profile import Profile, cache_dir, host_debian_arch
from . import initramfs, kernel, manifest, packages, sysroot
from .apt import AptRepo, Pin
from .components import GUEST_BIN_DIR, Components
from .lock import Lock, extra_guest_pins, set_digest
from .store import DebStore

GUEST_MODULE_DIR = "lib/venus-repro/modules"
_GNU_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


class Provisioner:
    def __init__(self, profile: Profile, cache: Path | None = None):
        self.profile = profile
        self.cache = cache or cache_dir()
        self.store = DebStore(self.cache)
        self._repos: dict[str, AptRepo] = {}
        self.lock = Lock.load(profile)

    def _repo(self, arch: str, suite: str | None = None) -> AptRepo:
        suite = suite or self.profile.suite
        key = f"{suite}-{arch}"
        if key not in self._repos:
            self._repos[key] = AptRepo(self.cache / "apt" / key, suite, arch)
        return self._repos[key]

    def _fetch(self, set_name: str) -> list[Pin]:
        pins = self.lock.pins(set_name)
        missing = self.store.missing(pins)
        if missing:
            entry = self.lock.doc["sets"][set_name]
            with log.nested(f"fetching {set_name}: {len(missing)} of {len(pins)} packages missing from the cache"):
                self.store.ensure(pins, self._repo(entry["arch"], entry.get("suite")))
        return pins

    # --- products -----------------------------------------------------------------------

    def _chroot_root(self, set_names: list[str], what: str) -> Path:
        """A root unpacked from pinned sets (one, or a tool's and its target's), ready to chroot into (ldconfig run)."""
        pins = [p for name in set_names for p in self.lock.pins(name)]
        final = self.cache / "roots" / f"{set_names[0]}-{set_digest(pins)}"
        if sysroot.reuse(final):
            return final

        def build(tmp: Path) -> None:
            for name in set_names:
                sysroot.unpack_all(self._fetch(name), self.store, tmp, name)
            for d in ("proc", "sys", "dev", "tmp", "root"):
                (tmp / d).mkdir(exist_ok=True)
            subprocess.run(["chroot", str(tmp), "/usr/sbin/ldconfig"], check=True)

        with log.nested(f"building the {what} root ({len(pins)} packages)"):
            return sysroot.build_once(final, build)

    def host_root(self, arch: str) -> Path:
        return self._chroot_root([f"host-{arch}"], "host")

    def tool_root(self, tool: str, arch: str | None = None) -> Path:
        """A root holding one of the profile's pinned host tools (e.g. nix), to chroot into.

        A tool with a target architecture (mesa-build) also holds that set's libraries.
        """
        if tool not in self.profile.tools:
            raise ProvisionError(f"profile {self.profile.name} pins no tool '{tool}' (tools: {', '.join(self.profile.tools) or 'none'})")
        return self._chroot_root(self.tool_sets(tool, arch), tool)

    def tool_sets(self, tool: str, arch: str | None = None) -> list[str]:
        """The lock sets a tool's root is made of: its host set, then its target's (if any)."""
        sets = [f"tool-{tool}-{arch or host_debian_arch()}"]
        if tool in self.profile.tool_targets:
            sets.append(profiles.tool_target_set(tool, self.profile.tool_targets[tool][0]))
        return sets

    def gpu_renderer(self, arch: str) -> tuple[Path, Path, str]:
        """The profile's virglrenderer for host GPU drivers: (libvirglrenderer.so.1, virgl_render_server, version).

        Unpacked on its own (host paths, bound into the host root over its
        virglrenderer; its dependencies are the host root's).
        """
        if self.profile.gpu_renderer is None:
            raise ProvisionError(f"profile {self.profile.name} pins no gpu_renderer")
        set_name = f"gpu-renderer-{arch}"
        pins = self.lock.pins(set_name)
        final = self.cache / "renderers" / f"{set_name}-{set_digest(pins)}"
        if not sysroot.reuse(final):

            def build(tmp: Path) -> None:
                sysroot.unpack_all(self._fetch(set_name), self.store, tmp, set_name)

            with log.nested(f"unpacking the GPU virglrenderer ({', '.join(f'{p.name} {p.version}' for p in pins)})"):
                sysroot.build_once(final, build)
        libs = sorted((final / "usr/lib").glob("*/libvirglrenderer.so.1"))
        server = final / "usr/libexec/virgl_render_server"
        if not libs or not server.is_file():
            raise ProvisionError(f"{set_name}: the pinned packages hold no libvirglrenderer.so.1 and virgl_render_server")
        version = next((p.version for p in pins if p.name == "libvirglrenderer1"), "?")
        return libs[0], server, version

    def guest_root(self, extra: list[Pin] = ()) -> Path:
        """The guest userland: the profile's guest set, plus a scenario's extra packages."""
        set_name = f"guest-{self.profile.guest_arch}"
        pins = self.lock.pins(set_name)
        stem = "root" if not extra else "root-extra"
        final = self.cache / "guest" / f"{stem}-{set_digest([*pins, *extra], *self.profile.guest_drop, *((packages.RECIPE,) if extra else ()))}"
        if sysroot.reuse(final):
            return final

        def build(tmp: Path) -> None:
            base = self._fetch(set_name)
            sysroot.unpack_all(base, self.store, tmp, set_name)
            # The drop list slims the base guest only: a scenario's packages are installed whole.
            sysroot.drop(tmp, self.profile.guest_drop)
            if extra:
                missing = self.store.missing(list(extra))
                if missing:
                    with log.nested(f"fetching the scenario's guest packages: {len(missing)} missing from the cache"):
                        self.store.ensure(list(extra), self._repo(self.profile.guest_arch))
                packages.install(tmp, list(extra), base, self.store)

        with log.nested(f"building the guest userland ({len(pins)} packages)"):
            return sysroot.build_once(final, build)

    def kernel_dir(self, flavour: str) -> Path:
        set_name = f"kernel-{flavour}"
        pins = self.lock.pins(set_name)
        final = self.cache / "kernels" / f"{flavour}-{set_digest(pins, *self.profile.guest_modules)}"
        if sysroot.reuse(final):
            return final

        def build(tmp: Path) -> None:
            unpacked = tmp / "pkg"
            sysroot.unpack_all(self._fetch(set_name), self.store, unpacked, set_name)
            images = sorted((unpacked / "boot").glob("vmlinuz-*"))
            if len(images) != 1:
                raise ProvisionError(f"{set_name}: expected one /boot/vmlinuz-*, found {len(images)}")
            shutil.move(images[0], tmp / "vmlinuz")
            modroot = unpacked / "usr/lib/modules"
            release = kernel.kernel_release(modroot)
            (tmp / "release").write_text(release + "\n")
            order = kernel.modules_in_load_order(modroot / release, self.profile.guest_modules)
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
        libdir = f"usr/lib/{_GNU_ARCH[self.profile.guest_arch]}-linux-gnu"
        with log.nested("building the demos (host and aarch64)"):
            # The sandbox binds the output at the same path inside the root, so
            # build straight into a temporary directory that is renamed at the end.
            return sysroot.build_once(final, lambda tmp: demos.build(host_root, guest_root, libdir, tmp))

    def ring_wake(self, host_root: Path) -> Path:
        """The vkr_ring_wake shim, built once per host root and shim source."""
        key = hashlib.sha256(f"{host_root.name} {shims.source_digest()}".encode()).hexdigest()[:16]
        final = self.cache / "shims" / f"ring-wake-{key}"
        if not sysroot.reuse(final):
            with log.nested("building the vkr_ring_wake shim"):
                sysroot.build_once(final, lambda tmp: shims.build(host_root, tmp))
        return final / f"{shims.RING_WAKE}.so"

    def initramfs(self, guest_root: Path, kernel_dir: Path | None, guest_bins: Path) -> Path:
        """The guest's initramfs: its userland, /init, the kernel's modules and the demos in ``guest_bins``."""
        init = resources.GUEST_INIT.read_bytes()
        # The layout of the tree (what is copied in and how) is part of the key too.
        bins = b"layout 2\0" + b"".join(p.name.encode() + b"\0" + p.read_bytes() for p in sorted(guest_bins.iterdir()) if p.is_file())
        key = hashlib.sha256(
            b"\0".join([guest_root.name.encode(), (kernel_dir.name if kernel_dir else "").encode(), bins, init])
        ).hexdigest()[:16]
        # The flavour is part of the name so that each kernel keeps its own
        # initramfs in the cache (build_once prunes older builds by name stem).
        flavour = kernel_dir.name.rsplit("-", 1)[0] if kernel_dir is not None else "custom"
        final = self.cache / "initramfs" / f"initrd-{flavour}-{key}"
        if sysroot.reuse(final):
            return final / "initrd.cpio"

        def build(tmp: Path) -> None:
            tree = tmp / "tree"
            shutil.copytree(guest_root, tree, symlinks=True, ignore=shutil.ignore_patterns(sysroot.PRODUCT_RECORD))
            (tree / "init").write_bytes(init)
            (tree / "init").chmod(0o755)
            (tree / "etc/venus-repro").mkdir(parents=True, exist_ok=True)
            modules = []
            if kernel_dir is not None:
                shutil.copytree(kernel_dir / "modules", tree / GUEST_MODULE_DIR)
                modules = [f"/{GUEST_MODULE_DIR}/{n}" for n in (kernel_dir / "modules.order").read_text().split()]
            (tree / "etc/venus-repro/modules").write_text("".join(f"{m}\n" for m in modules))
            shutil.copytree(guest_bins, tree / GUEST_BIN_DIR)
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
            kdir = self.kernel_dir(flavour)
            return kdir, self.initramfs(self.guest_root(), kdir, guest_bins)

    def versions(self, host_arch: str) -> dict[str, str]:
        def version(set_name: str, pkg: str) -> str:
            for p in self.lock.pins(set_name):
                if p.name == pkg:
                    return p.version
            return "?"

        host = f"host-{host_arch}"
        guest = f"guest-{self.profile.guest_arch}"
        return {
            "qemu": version(host, "qemu-system-arm"),
            "virglrenderer": version(host, "libvirglrenderer1"),
            "host_mesa": version(host, "mesa-vulkan-drivers"),
            "guest_mesa": version(guest, "mesa-vulkan-drivers"),
            "vulkan_loader": version(host, "libvulkan1"),
        }

    def provision(
        self, kernel_flavour: str | None = None, kernel_image: Path | None = None, extra_guest: list[Pin] = ()
    ) -> Components:
        sandbox.require_root()
        sysroot.checked.clear()  # what preflight reports is what this provisioning checked
        profile = self.profile
        flavour = profile.kernel_flavour(kernel_flavour)
        if kernel_image is not None:
            image = kernel.read_image(kernel_image)  # bad input fails before any download
        arch = host_debian_arch()
        with log.nested(f"provisioning profile {profile.name} (host {arch})"):
            host_root = self.host_root(arch)
            guest_root = self.guest_root(list(extra_guest))
            if kernel_image is None:
                kdir = self.kernel_dir(flavour)
                image = kernel.read_image(kdir / "vmlinuz")
                release = (kdir / "release").read_text().strip()
            else:
                # A user-supplied Image: its modules are not known, so virtio-gpu
                # must be built in; the guest reports what it finds.
                kdir, release, flavour = None, None, "custom"
            demo_dir = self.demo_build(host_root, guest_root)
            initrd = self.initramfs(guest_root, kdir, demo_dir / "guest")
            ring_wake = self.ring_wake(host_root)
        return Components(
            profile=profile,
            lock_digest=self.lock.digest(),
            host_root=host_root,
            host_arch=arch,
            kernel=image,
            kernel_flavour=flavour,
            kernel_release=release,
            initramfs=initrd,
            demo_bin=demo_dir / "host",
            versions=self.versions(arch),
            ring_wake=ring_wake,
            virglrenderer=next(
                (f"/{p.relative_to(host_root)}" for p in sorted((host_root / "usr/lib").glob("*/libvirglrenderer.so.1"))), None
            ),
        )


def load_profile(name_or_path: str, manifest_path: Path | None = None) -> Profile:
    """A profile by name or YAML path; ``nix`` reads the flake's manifest instead."""
    if name_or_path == profiles.NIX:
        return manifest.profile(manifest_path)
    if manifest_path is not None:
        raise UsageError(f"--manifest belongs to the nix profile (--profile nix), not to {name_or_path}")
    return profiles.load(name_or_path)


def check_inputs(
    profile: Profile,
    kernel_flavour: str | None = None,
    kernel_image: Path | None = None,
    guest_packages: tuple[str, ...] = (),
    scenario_path: Path | None = None,
) -> None:
    """What ``components`` will refuse, checked without fetching or building anything.

    A kernel flavour the profile does not pin, guest packages on the nix
    profile, a scenario's missing or stale lock: one UsageError before a run starts.
    """
    if kernel_flavour is not None or kernel_image is None:
        profile.kernel_flavour(kernel_flavour)
    if profile.manifest is not None:
        if guest_packages:
            raise UsageError("the nix profile takes no guest packages: its guest is the flake's initramfs")
    elif guest_packages:
        extra_guest_pins(profile, Lock.load(profile), guest_packages, scenario_path)


def components(
    profile: Profile,
    kernel_flavour: str | None = None,
    kernel_image: Path | None = None,
    guest_packages: tuple[str, ...] = (),
    scenario_path: Path | None = None,
    host_vulkan: str = hostvulkan.LAVAPIPE,
) -> Components:
    """The run's components: provisioned from the lock (Debian), or read from the nix manifest.

    ``host_vulkan`` ``host`` puts the host's own GPU driver in place of the root's lavapipe.
    """
    check_inputs(profile, kernel_flavour, kernel_image, guest_packages, scenario_path)
    if profile.manifest is not None:
        c = manifest.components(profile, kernel_flavour, kernel_image)
    else:
        prov = Provisioner(profile)
        c = prov.provision(kernel_flavour, kernel_image, extra_guest_pins(profile, prov.lock, guest_packages, scenario_path))
    if host_vulkan == hostvulkan.HOST:
        c = dataclasses.replace(c, host_driver=hostvulkan.discover(c.host_root))
        if profile.manifest is None and profile.gpu_renderer is not None:
            # virglrenderer 1.1's render server initialises the host driver before it forks,
            # which NVIDIA's cannot survive: a host GPU gets the pinned later one.
            lib, server, version = prov.gpu_renderer(c.host_arch)
            c = dataclasses.replace(
                c, renderer_overrides={"virglrenderer": lib, "render_server": server},
                versions={**c.versions, "virglrenderer": f"{version} ({profile.gpu_renderer[0]})"},
            )
    elif host_vulkan != hostvulkan.LAVAPIPE:
        raise UsageError(f"--host-vulkan {host_vulkan}: choose one of {', '.join(hostvulkan.CHOICES)}")
    return c
