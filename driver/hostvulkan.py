"""The host's own Vulkan driver (``--host-vulkan host``), found and bound into the host root.

By default Venus renders on the root's lavapipe (pinned, CPU). With
``host``, the render server, QEMU's display and the reference demos use the
GPU driver this host has, found the way the Vulkan loader and libglvnd find
it: ``VK_DRIVER_FILES``/``VK_ICD_FILENAMES`` when the caller sets them, else
the ICD JSON files in ``$XDG_CONFIG_DIRS``, ``/etc``, ``$XDG_DATA_DIRS``
(``…/vulkan/icd.d``), and the EGL vendor files (``…/glvnd/egl_vendor.d``)
likewise. Software drivers (lavapipe) are not a host GPU driver.

Two cases, one rule each:

* A Mesa driver the root ships too (radv, anv, …: an ICD file of the same
  name in the root): the root's pinned copy is used. Only the device nodes
  (``/dev/dri``, bound with ``/dev``) come from the host.
* A driver the root does not have (NVIDIA's): its library, the libraries it
  needs that the root lacks (``DT_NEEDED``, followed), and its companions of
  the same release (NVIDIA loads ``libnvidia-*.so.<release>`` with dlopen,
  which no ELF header names) are bound one file each into a folder of the run
  directory, ``host-vulkan/lib``; the ICD and EGL files are rewritten there to
  name them. Nothing is bound over the root's own libraries, so the root's
  glibc, libX11 and glvnd serve the driver, as on the host.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from pathlib import Path

from . import elf
from .errors import UsageError

LAVAPIPE = "lavapipe"
HOST = "host"
CHOICES = (LAVAPIPE, HOST)
STAGE = "host-vulkan"

# Libraries of software renderers: never "the host's GPU driver".
_SOFTWARE = re.compile(r"(libvulkan_lvp|swiftshader|libvk_swiftshader)")
# Where glibc finds libraries when ld.so.conf names nothing (both layouts).
_DEFAULT_LIBDIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu",
                    "usr/lib/aarch64-linux-gnu", "lib64", "usr/lib64", "lib", "usr/lib")  # fmt: skip
_MAX_LIBRARIES = 200
# A library's release in its real file name: libGLX_nvidia.so.580.159.04 (a soname link's target).
_RELEASE = re.compile(r"\.so\.(\d+(?:\.\d+)+)$")


def _release(library: Path) -> re.Match | None:
    """The release part of ``library``'s real name: group(0) ".so.580.159.04", group(1) "580.159.04"."""
    return _RELEASE.search(library.resolve().name)


@dataclasses.dataclass(frozen=True)
class Vendor:
    """One ICD (or EGL vendor) file and the library it names, as found on the host."""

    json_path: Path  # host path
    doc: dict
    library: Path | None  # host path, resolved (None: not found)

    @property
    def library_name(self) -> str:
        return str(self.doc["ICD"]["library_path"])


@dataclasses.dataclass(frozen=True)
class HostDriver:
    """The host's Vulkan driver, and how the root gets it."""

    icd: Vendor
    egl: Vendor | None  # the same vendor's EGL library for QEMU's display (None: the root's Mesa EGL)
    root_icd: str | None  # an ICD file the root ships under the same name (a Mesa driver): used instead
    files: tuple[tuple[str, Path], ...]  # (name in host-vulkan/lib, host file): bound one file each

    @property
    def name(self) -> str:
        lib = self.icd.library
        return f"{self.icd.json_path.name} ({lib.name if lib else self.icd.library_name})"

    @property
    def release(self) -> str | None:
        """The driver library's release, from its file name (libGLX_nvidia.so.580.159.04 → 580.159.04)."""
        m = _release(self.icd.library) if self.icd.library else None
        return m.group(1) if m else None

    @property
    def nvidia(self) -> bool:
        return "nvidia" in self.icd.library_name.lower()

    def describe(self) -> dict:
        return {
            "mode": HOST,
            "icd": str(self.icd.json_path),
            "library": str(self.icd.library) if self.icd.library else None,
            "release": self.release,
            "api_version": self.icd.doc["ICD"].get("api_version"),
            "egl_vendor": str(self.egl.json_path) if self.egl else None,
            "from_root": self.root_icd,
            "bound_files": len(self.files),
        }


@dataclasses.dataclass(frozen=True)
class Staged:
    """A ``HostDriver`` made ready in one run directory: what the root's processes get."""

    icd: str  # VK_DRIVER_FILES (a path as seen inside the root)
    egl: str | None  # __EGL_VENDOR_LIBRARY_FILENAMES
    lib_dir: Path | None  # LD_LIBRARY_PATH (inside the root: the run directory is bound at its own path)
    mounts: tuple[tuple[Path, Path], ...]  # (host file, placeholder in the run directory)


# --- ELF: the libraries a shared object needs ----------------------------------------
def needed(path: Path) -> list[str]:
    """``DT_NEEDED`` of a 64-bit little-endian ELF shared object ([] for anything else)."""
    return list(elf.read(path).needed)


# --- where the host's and the root's libraries are ---------------------------------------
def _ld_conf_dirs(root: Path, conf: str = "etc/ld.so.conf", depth: int = 0) -> list[Path]:
    dirs: list[Path] = []
    try:
        lines = (root / conf).read_text().splitlines()
    except OSError:
        return dirs
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include") and depth < 4:
            for pattern in line.split()[1:]:
                for inc in sorted(glob.glob(str(root / pattern.lstrip("/")))):
                    dirs += _ld_conf_dirs(root, str(Path(inc).relative_to(root)), depth + 1)
        elif line.startswith("/"):
            dirs.append(root / line.lstrip("/"))
    return dirs


def library_dirs(root: Path) -> list[Path]:
    """Where the dynamic linker of ``root`` looks: ld.so.conf's folders, then the defaults."""
    seen, out = set(), []
    for d in [*_ld_conf_dirs(root), *(root / d for d in _DEFAULT_LIBDIRS)]:
        if d not in seen and d.is_dir():
            seen.add(d)
            out.append(d)
    return out


def find_library(name: str, dirs: list[Path]) -> Path | None:
    """``name`` in the first of ``dirs`` that has it (as the dynamic linker searches)."""
    for d in dirs:
        candidate = d / name
        if candidate.exists():
            return candidate
    return None


# --- discovery ---------------------------------------------------------------------------
def _env_dirs(env: dict, key: str, default: str) -> list[str]:
    return [d for d in (env.get(key) or default).split(":") if d]


def search_dirs(kind: str, env: dict) -> list[str]:
    """The folders the Vulkan loader (``vulkan/icd.d``) or libglvnd (``glvnd/egl_vendor.d``) searches, in order."""
    config = _env_dirs(env, "XDG_CONFIG_DIRS", "/etc/xdg")
    data = _env_dirs(env, "XDG_DATA_DIRS", "/usr/local/share:/usr/share")
    if kind == "glvnd/egl_vendor.d":
        return ["/etc/glvnd/egl_vendor.d", *(f"{d}/glvnd/egl_vendor.d" for d in data)]
    return [*(f"{d}/{kind}" for d in config), f"/etc/{kind}", *(f"{d}/{kind}" for d in data)]


def read_vendor(path: Path, host: Path) -> Vendor | None:
    """An ICD/EGL vendor file and its library on the host; None if it is no such file."""
    try:
        doc = json.loads(path.read_text())
        lib = doc["ICD"]["library_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(lib, str) or not lib:
        return None
    if lib.startswith("/"):
        found = host / lib.lstrip("/")
        library = found if found.exists() else None
    elif "/" in lib:
        found = path.parent / lib
        library = found if found.exists() else None
    else:
        library = find_library(lib, library_dirs(host))
    return Vendor(path, doc, library)


def _listed(env: dict, keys: tuple[str, ...], kind: str, host: Path) -> list[Path]:
    for key in keys:
        if env.get(key):
            return [host / p.lstrip("/") for p in env[key].split(":") if p]
    files = []
    for d in search_dirs(kind, env):
        folder = host / d.lstrip("/")
        if folder.is_dir():
            files += sorted(p for p in folder.iterdir() if p.suffix == ".json")
    return files


def icd_candidates(env: dict | None = None, host: Path = Path("/")) -> tuple[list[Vendor], list[str]]:
    """The host's GPU ICDs (software ones left out), and why others were passed over."""
    env = dict(os.environ if env is None else env)
    found, skipped = [], []
    for path in _listed(env, ("VK_DRIVER_FILES", "VK_ICD_FILENAMES"), "vulkan/icd.d", host):
        vendor = read_vendor(path, host)
        if vendor is None:
            skipped.append(f"{path}: not an ICD file")
        elif _SOFTWARE.search(vendor.library_name):
            skipped.append(f"{path}: a software renderer")
        elif vendor.library is None:
            skipped.append(f"{path}: its library {vendor.library_name} is not installed")
        elif all(v.library != vendor.library for v in found):
            found.append(vendor)
    return found, skipped


def _egl_for(icd: Vendor, env: dict, host: Path) -> Vendor | None:
    """The EGL vendor of the same driver: its library lies beside the ICD's, or shares its release."""
    assert icd.library is not None
    release = _release(icd.library)
    for path in _listed(env, ("__EGL_VENDOR_LIBRARY_FILENAMES",), "glvnd/egl_vendor.d", host):
        vendor = read_vendor(path, host)
        if vendor is None or vendor.library is None:
            continue
        real = vendor.library.resolve()
        if real.parent == icd.library.resolve().parent and (release is None or real.name.endswith(release.group(0))):
            return vendor
    return None


def _closure(start: list[Path], host_dirs: list[Path], root_dirs: list[Path]) -> list[tuple[str, Path]]:
    """The libraries the root must be given: ``start``, what they need that the root lacks, recursively."""
    files: dict[str, Path] = {}
    queue = [(p.name, p) for p in start]
    while queue:
        name, path = queue.pop(0)
        if name in files:
            continue
        if len(files) >= _MAX_LIBRARIES:
            raise UsageError(f"the host driver needs over {_MAX_LIBRARIES} libraries the root lacks: is {start[0]} a driver?")
        files[name] = path
        for dep in needed(path):
            if dep in files or find_library(dep, root_dirs) is not None:
                continue
            host_lib = find_library(dep, [path.parent, *host_dirs])
            if host_lib is None:
                raise UsageError(f"the host driver's {path.name} needs {dep}, which neither the host nor the root has")
            queue.append((dep, host_lib))
    return list(files.items())


def _companions(library: Path) -> list[Path]:
    """Files beside ``library`` of its release (libnvidia-*.so.580.159.04 beside libGLX_nvidia.so.580.159.04)."""
    real = library.resolve()
    m = _release(real)
    if not m:
        return []
    return sorted(p for p in real.parent.iterdir() if p.name.endswith(m.group(0)) and p.is_file() and p != real)


def discover(root: Path, env: dict | None = None, host: Path = Path("/")) -> HostDriver:
    """The host's Vulkan GPU driver, and what ``root`` must be given to run it: one clear error if none or several."""
    env = dict(os.environ if env is None else env)
    icds, skipped = icd_candidates(env, host)
    why = "".join(f"\n  passed over {s}" for s in skipped)
    if not icds:
        raise UsageError(
            "--host-vulkan host: this host has no Vulkan GPU driver (no ICD file in "
            f"{', '.join(search_dirs('vulkan/icd.d', env))}){why}\n"
            "  install the GPU's Vulkan driver, set VK_DRIVER_FILES to its ICD file, or run with --host-vulkan lavapipe"
        )
    if len(icds) > 1:
        names = ", ".join(str(v.json_path) for v in icds)
        raise UsageError(f"--host-vulkan host: this host has several Vulkan GPU drivers ({names}): set VK_DRIVER_FILES to the one to use")
    icd = icds[0]
    assert icd.library is not None
    in_root = root / "usr/share/vulkan/icd.d" / icd.json_path.name
    if in_root.is_file():
        # A Mesa driver: the root's pinned build of it, with the host's device nodes.
        return HostDriver(icd, None, f"/usr/share/vulkan/icd.d/{icd.json_path.name}", ())
    egl = _egl_for(icd, env, host)
    root_dirs = library_dirs(root)
    host_dirs = library_dirs(host)
    start = [icd.library] + ([egl.library] if egl and egl.library else [])
    files = _closure([Path(p) for p in start], host_dirs, root_dirs)
    names = {n for n, _ in files}
    for companion in _companions(icd.library):
        if companion.name not in names:
            try:
                more = _closure([companion], host_dirs, root_dirs)
            except UsageError:
                continue  # a companion the driver cannot have loaded here either (e.g. CUDA's, needing more)
            files += [(n, p) for n, p in more if n not in names]
            names = {n for n, _ in files}
    return HostDriver(icd, egl, None, tuple(files))


def stage(driver: HostDriver, run_dir: Path, root: Path) -> Staged:
    """Write the rewritten ICD/EGL files and the bind placeholders into ``run_dir/host-vulkan``.

    Where ``root`` is ``/`` (the nix profile runs on the host itself) the host's
    own files serve as they are.
    """
    if driver.root_icd is not None:
        return Staged(driver.root_icd, None, None, ())
    if Path(root) == Path("/"):
        return Staged(str(driver.icd.json_path), str(driver.egl.json_path) if driver.egl else None, None, ())
    base = run_dir / STAGE
    lib_dir = base / "lib"
    lib_dir.mkdir(parents=True, exist_ok=True)
    mounts = []
    for name, host_file in driver.files:
        placeholder = lib_dir / name
        placeholder.touch()
        mounts.append((host_file.resolve(), placeholder))

    def rewrite(vendor: Vendor, out: Path) -> str:
        doc = json.loads(json.dumps(vendor.doc))
        assert vendor.library is not None
        doc["ICD"]["library_path"] = str(lib_dir / vendor.library.name)
        out.write_text(json.dumps(doc, indent=2) + "\n")
        return str(out)

    icd = rewrite(driver.icd, base / "icd.json")
    egl = rewrite(driver.egl, base / "egl_vendor.json") if driver.egl else None
    return Staged(icd, egl, lib_dir, tuple(mounts))


def device_nodes(driver: HostDriver, dev: Path = Path("/dev")) -> list[str]:
    """The GPU device nodes the driver will open: /dev/nvidia* for NVIDIA's, render nodes otherwise."""
    pattern = "nvidia*" if driver.nvidia else "dri/renderD*"
    return sorted(str(p) for p in dev.glob(pattern))
