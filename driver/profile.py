"""Profiles: which components a run uses, read from ``data/profiles/*.yaml``."""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from pathlib import Path

import yaml

from .errors import UsageError, read_limited
from .yamlread import problem

from .resources import DATA

PROFILES = DATA / "profiles"
PINS = DATA / "pins"

# Debian architecture names for the machine we run on.
_DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_debian_arch() -> str:
    machine = platform.machine()
    try:
        return _DEBIAN_ARCH[machine]
    except KeyError:
        raise UsageError(
            f"host architecture {machine} is not supported by the Debian profile "
            "(supported: x86_64, aarch64)"
        ) from None


@dataclasses.dataclass(frozen=True)
class Arch:
    """What differs between guest architectures, in one place (a profile's ``guest: arch``)."""

    debian: str  # Debian's name: arm64, amd64
    gnu: str  # the multiarch triplet: library folders (usr/lib/<gnu>), the compiler (<gnu>-gcc)
    qemu: str  # the system emulator, as the host root has it
    qemu_package: str  # the Debian package that ships it
    console: str  # the serial console the kernel writes to (console=)
    image: str  # what the kernel image is, as errors name it
    machine: str  # QEMU's machine type, unless a profile names another
    tcg_cpu: str  # the CPU under TCG, unless a profile names another (KVM and HVF: the host's)
    # Machine options the guest needs beside the profile's (q35's default VGA would be a
    # second display; the virt machine has none).
    machine_args: tuple[str, ...] = ()


ARCHES = {
    # pauth-impdef: QEMU's own pointer-authentication algorithm, not the architected QARMA
    # (~1 s less TCG boot; the guest cannot tell).
    "arm64": Arch("arm64", "aarch64-linux-gnu", "/usr/bin/qemu-system-aarch64", "qemu-system-arm", "ttyAMA0", "arm64 Image",
                  "virt", "max,pauth-impdef=on"),
    "amd64": Arch("amd64", "x86_64-linux-gnu", "/usr/bin/qemu-system-x86_64", "qemu-system-x86", "ttyS0", "x86 bzImage",
                  "q35", "max", ("-vga", "none")),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class QemuOptions:
    machine: str
    cpu: str
    smp: int
    memory: str
    hostmem: str


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    description: str
    suite: str
    lock_path: Path
    page_size: int
    host_packages: tuple[str, ...]
    guest_arch: str
    guest_packages: tuple[str, ...]
    guest_drop: tuple[str, ...]
    kernels: dict[str, str]
    default_kernel: str
    guest_modules: tuple[str, ...]
    qemu: QemuOptions
    # Host tools pinned beside the components, by name (e.g. nix: the Nix that
    # evaluates the flake in the tests). Each is a set per host architecture.
    tools: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    # A tool that builds for another architecture (mesa-build: the guest's ICD) also
    # names that architecture's libraries: tool → (Debian arch, packages), one set
    # pinned exactly (no dependency closure), unpacked into the same tool root.
    tool_targets: dict[str, tuple[str, tuple[str, ...]]] = dataclasses.field(default_factory=dict)
    # The nix profile: the flake's manifest.json names every component (driver/provision/manifest.py).
    manifest: Path | None = None
    # The virglrenderer a host GPU driver runs with (--host-vulkan host): (suite, packages),
    # installed over the host root's own; None: the host root's.
    gpu_renderer: tuple[str, tuple[str, ...]] | None = None
    # The profile file (None: the nix profile).
    path: Path | None = None

    @property
    def arch(self) -> Arch:
        """The guest architecture's facts (ARCHES)."""
        return ARCHES[self.guest_arch]

    @property
    def ref(self) -> str:
        """How to name this profile on the command line: a built-in by name, a user's file by its path."""
        if self.path is None or self.path.resolve().parent == PROFILES.resolve():
            return self.name
        return str(self.path)

    def set_suite(self, set_name: str) -> str:
        """The Debian suite a lock set is resolved from: the profile's, or gpu_renderer's."""
        if self.gpu_renderer is not None and set_name.startswith("gpu-renderer-"):
            return self.gpu_renderer[0]
        return self.suite

    def kernel_flavour(self, flavour: str | None) -> str:
        """``flavour`` (or the default) if the profile pins such a kernel; else a UsageError."""
        flavour = flavour or self.default_kernel
        if flavour not in self.kernels:
            raise UsageError(
                f"unknown kernel flavour '{flavour}' for profile {self.name} "
                f"(available: {', '.join(self.kernels)})"
            )
        return flavour

    def package_sets(self) -> dict[str, tuple[str, tuple[str, ...], bool | None]]:
        """Every set the lock pins: name → (Debian arch, requested packages, with deps; None: exactly these).

        Both host architectures are pinned, so one lock serves x86_64 and
        aarch64 hosts alike.
        """
        sets = {
            f"host-{arch}": (arch, self.host_packages, True) for arch in ("amd64", "arm64")
        }
        sets[f"guest-{self.guest_arch}"] = (self.guest_arch, self.guest_packages, True)
        for flavour, meta in self.kernels.items():
            sets[f"kernel-{flavour}"] = (self.guest_arch, (meta,), False)
        for tool, packages in self.tools.items():
            for arch in ("amd64", "arm64"):
                sets[f"tool-{tool}-{arch}"] = (arch, packages, True)
        for tool, (arch, packages) in self.tool_targets.items():
            # Exactly these (each Multi-Arch: same): a dependency with programs of the
            # target's architecture would land over the build tools in the same root.
            sets[tool_target_set(tool, arch)] = (arch, packages, None)
        if self.gpu_renderer is not None:
            for arch in ("amd64", "arm64"):
                # Exactly these packages: their dependencies are the host root's (checked by running it).
                sets[f"gpu-renderer-{arch}"] = (arch, self.gpu_renderer[1], None)
        return sets


def tool_target_set(tool: str, arch: str) -> str:
    """The lock set of a tool's target-architecture libraries."""
    return f"tool-{tool}-target-{arch}"


NIX = "nix"


def _tools(doc: dict, where: str) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, tuple[str, ...]]]]:
    """``tools:``: name → a package list, or → {packages: […], target: {arch, packages: […]}}."""
    tools, targets = {}, {}
    for name, value in doc.items():
        at = f"{where}: tools: {name}"
        if isinstance(value, dict):
            tools[str(name)] = _names(value, "packages", at)
            if "target" in value:
                target = _require(value, "target", dict, at)
                targets[str(name)] = (_require(target, "arch", str, f"{at}: target"), _names(target, "packages", f"{at}: target"))
        elif isinstance(value, list):
            tools[str(name)] = _names({"packages": value}, "packages", at)
        else:
            raise UsageError(f"{at}: give a package list, or a mapping with 'packages' (and 'target')")
    return tools, targets


def available() -> list[str]:
    return sorted([*(p.stem for p in PROFILES.glob("*.yaml")), NIX])


def _lock_path(profile_path: Path, name: str) -> Path:
    """A built-in profile's lock is the package's (pins/); a user's profile's lives beside it."""
    if profile_path.resolve().parent == PROFILES.resolve():
        return PINS / name
    return profile_path.resolve().parent / name


def _read(path: Path) -> dict:
    """A profile file's mapping, read as data: a size limit, UTF-8, one line for any fault."""
    data = read_limited(path, MAX_BYTES, "profile")
    try:
        # Aliases are shared, never copied, by the loader; no field is expanded into a string
        # or walked, so an alias bomb costs nothing here.
        doc = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{line}: malformed YAML: {problem(exc)}") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to be a profile") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: a profile is a mapping")
    return doc


def _extended(doc: dict, path: Path, depth: int = 0) -> dict:
    """``extends: <built-in profile>``: its fields, with this file's own over them (field by field)."""
    base = doc.get("extends")
    if base is None:
        return doc
    if not isinstance(base, str) or not (PROFILES / f"{base}.yaml").is_file():
        raise UsageError(f"{path}: extends: '{base}' is not a built-in profile ({', '.join(p.stem for p in PROFILES.glob('*.yaml'))})")
    if depth > 4:
        raise UsageError(f"{path}: extends: profiles extend each other too deeply")
    parent = _extended(_read(PROFILES / f"{base}.yaml"), PROFILES / f"{base}.yaml", depth + 1)
    return {**parent, **{k: v for k, v in doc.items() if k != "extends"}}


def _lock_name(doc: dict, where: str) -> str:
    """The profile's lock: a plain file name beside it (a profile never points elsewhere)."""
    name = _require(doc, "lock", str, where)
    if "/" in name or name in (".", "..") or not name.endswith(".json"):
        raise UsageError(f"{where}: field 'lock' must be a file name ending in .json beside the profile")
    return name


def _require(doc: dict, key: str, kind: type, where: str):
    if key not in doc:
        raise UsageError(f"{where}: missing field '{key}'")
    value = doc[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"{where}: field '{key}' must be a {kind.__name__}")
    return value


def _names(doc: dict, key: str, where: str, default: list | None = None) -> tuple[str, ...]:
    """A list of names (packages, modules, paths): every item a non-empty string."""
    value = _require(doc, key, list, where) if default is None or key in doc else default
    if not all(isinstance(item, str) and item for item in value):
        raise UsageError(f"{where}: field '{key}' must be a list of names (strings)")
    return tuple(value)


def _optional(doc: dict, key: str, kinds: tuple[type, ...], default, where: str):
    value = doc.get(key, default)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise UsageError(f"{where}: field '{key}' must be a {' or '.join(k.__name__ for k in kinds)}")
    return value


MAX_BYTES = 1 << 20  # a profile is a few KiB; one from elsewhere (a bundle) is read with a limit


def load(name_or_path: str) -> Profile:
    """A Debian profile by name or YAML path (the nix profile: provision.load_profile)."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = PROFILES / f"{name_or_path}.yaml"
        if not path.exists():
            raise UsageError(
                f"unknown profile '{name_or_path}' (available: {', '.join(available())})"
            )
    doc = _extended(_read(path), path)
    where = str(path)
    host = _require(doc, "host", dict, where)
    guest = _require(doc, "guest", dict, where)
    qemu = _require(doc, "qemu", dict, where)
    kernels = _require(doc, "kernels", dict, where)
    default_kernel = _require(doc, "default_kernel", str, where)
    tools = _require(doc, "tools", dict, where) if doc.get("tools") is not None else {}
    gpu = _require(doc, "gpu_renderer", dict, where) if doc.get("gpu_renderer") is not None else None
    tools, tool_targets = _tools(tools, where)
    guest_arch = _guest_arch(guest, f"{where}: guest")
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in kernels.items()):
        raise UsageError(f"{where}: field 'kernels' must map flavours to package names")
    if default_kernel not in kernels:
        raise UsageError(f"{where}: default_kernel '{default_kernel}' is not in kernels")
    return Profile(
        name=_plain_name(doc, where),
        description=_optional(doc, "description", (str,), "", where),
        suite=_require(doc, "suite", str, where),
        lock_path=_lock_path(path, _lock_name(doc, where)),
        page_size=_require(doc, "page_size", int, where),
        host_packages=_names(host, "packages", f"{where}: host"),
        guest_arch=guest_arch,
        guest_packages=_names(guest, "packages", f"{where}: guest"),
        guest_drop=_names(guest, "drop", f"{where}: guest", default=[]),
        kernels=dict(kernels),
        default_kernel=default_kernel,
        guest_modules=_names(doc, "guest_modules", where),
        qemu=QemuOptions(
            machine=_optional(qemu, "machine", (str,), ARCHES[guest_arch].machine, f"{where}: qemu"),
            cpu=_optional(qemu, "cpu", (str,), ARCHES[guest_arch].tcg_cpu, f"{where}: qemu"),
            smp=_smp(qemu, f"{where}: qemu"),
            memory=_optional(qemu, "memory", (str,), "2G", f"{where}: qemu"),
            hostmem=_optional(qemu, "hostmem", (str,), "1G", f"{where}: qemu"),
        ),
        tools=tools,
        tool_targets=tool_targets,
        gpu_renderer=(
            (_require(gpu, "suite", str, f"{where}: gpu_renderer"), _names(gpu, "packages", f"{where}: gpu_renderer"))
            if gpu is not None else None
        ),
        path=path,
    )


PLAIN_NAME = re.compile(r"[\w][\w.+-]{0,99}")


def _plain_name(doc: dict, where: str) -> str:
    """The profile's name: a plain word (it names run directories: ./venus-runs/<time>-<name>)."""
    name = _require(doc, "name", str, where)
    if not PLAIN_NAME.fullmatch(name):
        raise UsageError(f"{where}: field 'name' must be a plain word (letters, digits, . _ + -; at most 100)")
    return name


def _guest_arch(guest: dict, where: str) -> str:
    arch = _require(guest, "arch", str, where)
    if arch not in ARCHES:
        raise UsageError(f"{where}: field 'arch' must be a guest architecture venus-repro knows ({', '.join(ARCHES)}), not {arch!r}")
    return arch


def _smp(qemu: dict, where: str) -> int:
    smp = _optional(qemu, "smp", (int,), 2, where)
    if not 1 <= smp <= 64:
        raise UsageError(f"{where}: field 'smp' must be a number of guest CPUs, 1 to 64")
    return smp


def cache_dir() -> Path:
    """``$VENUS_REPRO_CACHE``, else ``$XDG_CACHE_HOME/venus-repro``, else ``~/.cache/venus-repro``."""
    env = os.environ.get("VENUS_REPRO_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg).resolve() / "venus-repro"
