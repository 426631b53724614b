"""The nix profile: components named by the flake's ``manifest.json``.

``nix build .#manifest`` (and every ``nix run .#…`` app) hands the driver a
JSON file of store paths (nix/manifest.nix). Nothing is downloaded or unpacked
here: the manifest is checked - every path must exist, the kernel must be an
arm64 Image with the page size the manifest promises - and turned into the
same ``Components`` the Debian profile provisions, so the rest of the driver
(preflight, machine, verdict, fingerprint) is shared.

Keys (format 1): ``qemu``, ``render_server``, ``vulkan_icd``, ``virglrenderer``,
``vulkaninfo`` and ``egl_vendor`` are paths as seen inside ``root`` (default ``/``: store paths
are self-contained); ``kernel``, ``initramfs``, ``host_demos`` (or null) and
``ring_wake`` (or null) are host paths. ``page_size``, ``accel`` (hvf, kvm, tcg,
or auto: KVM where it can run the guest), ``system`` and ``versions`` describe them.
Optional: ``guest_arch`` (arm64 or amd64; default arm64), ``smp`` (default 2)
is the guest's CPU count, ``hostmem`` (default 1G) the size of virtio-gpu's
host-visible region, ``display`` (default ``sdl,gl=on``) QEMU's -display.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from pathlib import Path

from .. import registry
from ..errors import UsageError, read_limited, shown
from ..profile import ARCHES, NIX, Profile, QemuOptions
from . import kernel
from .components import Components

FORMAT = 1
MAX_BYTES = 1 << 20  # a manifest is about 1 KiB
# The manifest's names for the registry's components (nix/manifest.nix writes these).
_VERSION_KEYS = {"host_mesa": "host_vulkan", "vulkan_loader": "host_base", "kernel": "guest_kernel"}
_INSIDE = ("qemu", "render_server", "vulkan_icd")
_OPTIONAL_INSIDE = ("virglrenderer", "vulkaninfo", "egl_vendor")
_HOST = ("kernel", "initramfs")
_OPTIONAL_HOST = ("host_demos", "ring_wake")
_ACCELS = ("hvf", "kvm", "tcg", "auto")  # auto: KVM where it can run the guest, else TCG (machine.StartCommand)
_SYSTEMS = {("Darwin", "arm64"): "aarch64-darwin", ("Linux", "aarch64"): "aarch64-linux", ("Linux", "x86_64"): "x86_64-linux"}


def host_system() -> str:
    return _SYSTEMS.get((platform.system(), platform.machine()), f"{platform.machine()}-{platform.system().lower()}")


def validate(doc, where: str) -> None:
    """The manifest's shape (fields and their types), without looking at the paths."""
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: a manifest is a JSON object")
    if doc.get("format") != FORMAT:
        raise UsageError(f"{where}: field 'format' must be {FORMAT} (this driver reads format {FORMAT} manifests)")
    for key in (*_INSIDE, *_HOST):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise UsageError(f"{where}: field '{key}' must be a path")
    for key in (*_OPTIONAL_INSIDE, *_OPTIONAL_HOST, "root"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise UsageError(f"{where}: field '{key}' must be a path or null")
    if not isinstance(doc.get("page_size"), int) or doc["page_size"] not in (4096, 16384, 65536):
        raise UsageError(f"{where}: field 'page_size' must be 4096, 16384 or 65536")
    if doc.get("display") is not None and not isinstance(doc["display"], str):
        raise UsageError(f"{where}: field 'display' must be a QEMU -display value")
    if doc.get("smp") is not None and not (isinstance(doc["smp"], int) and not isinstance(doc["smp"], bool) and 1 <= doc["smp"] <= 64):
        raise UsageError(f"{where}: field 'smp' must be a number of guest CPUs, 1 to 64")
    if doc.get("hostmem") is not None and not (isinstance(doc["hostmem"], str) and re.fullmatch(r"[1-9][0-9]*[KMG]", doc["hostmem"])):
        raise UsageError(f"{where}: field 'hostmem' must be a size such as 256M or 1G")
    if doc.get("accel") not in _ACCELS:
        raise UsageError(f"{where}: field 'accel' must be one of {', '.join(_ACCELS)}")
    if doc.get("guest_arch") is not None and doc["guest_arch"] not in ARCHES:
        raise UsageError(f"{where}: field 'guest_arch' must be one of {', '.join(ARCHES)}")
    if doc.get("system") is not None and not isinstance(doc["system"], str):
        raise UsageError(f"{where}: field 'system' must be a Nix system name such as x86_64-linux")
    versions = doc.get("versions")
    # nix/manifest.nix writes strings, and one flag (fd_fallback_patch: true/false).
    if versions is not None and not (isinstance(versions, dict) and all(isinstance(v, (str, bool)) for v in versions.values())):
        raise UsageError(f"{where}: field 'versions' must map components to version strings")
    flake = doc.get("flake")
    if flake is not None and not (isinstance(flake, dict) and isinstance(flake.get("rev"), str) and isinstance(flake.get("lock"), dict)):
        raise UsageError(f"{where}: field 'flake' must be {{lock: the flake.lock, rev: the flake's revision}}")
    pins = doc.get("guest_pins")
    if pins is not None and not (isinstance(pins, dict) and all(isinstance(v, str) for v in pins.values())):
        raise UsageError(f"{where}: field 'guest_pins' must map names to strings (the guest's lock and its sha256)")


def read(path: Path) -> dict:
    """The manifest as a checked mapping; one UsageError naming the file and field otherwise."""
    where = str(path)
    data = read_limited(path, MAX_BYTES, "manifest", "; build it with `nix build .#manifest`")
    try:
        doc = json.loads(data)
    except ValueError as exc:  # also: not UTF-8, an integer of more than 4300 digits
        raise UsageError(f"{where}: malformed JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{where}: malformed JSON: nested too deeply") from None
    validate(doc, where)
    system = doc.get("system")
    if system is not None and system != host_system():
        raise UsageError(f"{where}: the manifest is for {shown(system)}, this host is {host_system()}: build .#manifest here")
    root = Path(doc.get("root") or "/")
    for key in (*_INSIDE, *_OPTIONAL_INSIDE):
        value = doc.get(key)
        if value is not None and not _exists(root / value.lstrip("/"), where, key):
            raise UsageError(f"{where}: {key} {shown(value)} does not exist" + (f" in {shown(root)}" if str(root) != "/" else ""))
    for key in (*_HOST, *_OPTIONAL_HOST):
        value = doc.get(key)
        if value is not None and not _exists(Path(value), where, key):
            raise UsageError(f"{where}: {key} {shown(value)} does not exist")
    return doc


def _exists(path: Path, where: str, key: str) -> bool:
    """Whether ``path`` exists; a path the system cannot even look up (too long, a loop) is an error naming ``key``."""
    try:
        path.stat()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UsageError(f"{where}: {key} {shown(str(path)[:200] + ('…' if len(str(path)) > 200 else ''))}: {exc.strerror}") from None
    except ValueError:  # a NUL byte
        raise UsageError(f"{where}: {key}: not a path (a NUL byte)") from None


def profile(manifest: Path | None) -> Profile:
    """The nix profile: components from the flake's manifest (``nix build .#manifest``)."""
    if manifest is None:
        raise UsageError(
            "the nix profile needs --manifest FILE: `nix run .#alpine-venus` passes it, "
            "or build one with `nix build .#manifest` and pass result/manifest.json"
        )
    doc = read(manifest)
    flavour = f"{doc['page_size'] // 1024}k"
    arch = ARCHES[doc.get("guest_arch") or "arm64"]
    return Profile(
        name=NIX,
        description=f"components from the Nix flake ({manifest})",
        suite="",
        lock_path=Path(manifest).resolve(),
        page_size=doc["page_size"],
        host_packages=(),
        guest_arch=arch.debian,
        guest_packages=(),
        guest_drop=(),
        kernels={flavour: doc["kernel"]},
        default_kernel=flavour,
        guest_modules=(),
        # The CPU: the architecture's under TCG; with HVF/KVM the host's (machine.StartCommand).
        qemu=QemuOptions(machine=arch.machine, cpu=arch.tcg_cpu, smp=doc.get("smp") or 2, memory="2G", hostmem=doc.get("hostmem") or "1G"),
        manifest=Path(manifest).resolve(),
    )


def components(profile: Profile, kernel_flavour: str | None = None, kernel_image: Path | None = None) -> Components:
    """The run's components from the profile's manifest (``kernel_image`` replaces its kernel)."""
    assert profile.manifest is not None
    doc = read(profile.manifest)
    image = kernel.read_image(kernel_image or Path(doc["kernel"]))
    if kernel_image is None and image.page_size != doc["page_size"]:
        # The seed's failure: never boot a kernel other than the one promised.
        raise UsageError(
            f"{profile.manifest}: kernel {doc['kernel']} has {(image.page_size or 0) // 1024}K pages, "
            f"but the manifest promises {doc['page_size'] // 1024}K: rebuild .#manifest"
        )
    versions = {_VERSION_KEYS.get(str(k), str(k)): str(v) for k, v in (doc.get("versions") or {}).items() if isinstance(v, str)}
    for c in registry.COMPONENTS:
        versions.setdefault(c.name, "?")
    return Components(
        profile=profile,
        lock_digest=hashlib.sha256(profile.manifest.read_bytes()).hexdigest(),
        host_root=Path(doc.get("root") or "/"),
        host_arch=platform.machine(),
        kernel=image,
        kernel_flavour=f"{doc['page_size'] // 1024}k" if kernel_image is None else "custom",
        kernel_release=None,
        initramfs=Path(doc["initramfs"]),
        demo_bin=Path(doc["host_demos"]) if doc.get("host_demos") else None,
        versions=versions,
        origins={c.name: (registry.MANIFEST, None) for c in registry.COMPONENTS},
        ring_wake=Path(doc["ring_wake"]) if doc.get("ring_wake") else None,
        qemu=doc["qemu"],
        render_server=doc["render_server"],
        vulkan_icd=doc["vulkan_icd"],
        virglrenderer=doc.get("virglrenderer"),
        vulkaninfo=doc.get("vulkaninfo") or "vulkaninfo",
        egl_vendor=doc.get("egl_vendor"),
        accel=doc["accel"],
        display=doc.get("display") or "sdl,gl=on",
    )
