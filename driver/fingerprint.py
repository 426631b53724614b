"""The environment's fingerprint: every component's identity, the host, the scenario.

Written as ``fingerprint.json`` into every run directory and printed by
``venus-repro fingerprint``. It holds no time stamps and no run paths, so two
runs in the same environment have the same fingerprint, and ``compare`` can say
exactly what changed between two runs ("it worked on Tuesday").
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

from . import hostvulkan, registry
from .machine import StartCommand
from .provision import Components
from .provision.lock import set_digest
from .provision.store import sha256_file


class HashCache:
    """sha256 of files, remembered by (size, mtime) so a warm run re-hashes nothing."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            self.entries = {}

    def sha256(self, file: Path) -> str | None:
        try:
            st = file.stat()
        except OSError:
            return None
        key = str(file)
        stamp = [st.st_size, st.st_mtime_ns]
        entry = self.entries.get(key)
        if entry and entry[:2] == stamp:
            return entry[2]
        digest = sha256_file(file)
        self.entries[key] = [*stamp, digest]
        return digest

    def save(self) -> None:
        # The nix profile may run before anything else made the cache folder.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries))
        tmp.replace(self.path)


def _dir_digest(cache: HashCache, directory: Path) -> dict[str, str]:
    return {p.name: cache.sha256(p) or "missing" for p in sorted(directory.iterdir()) if p.is_file()}


def _host(accel: str) -> dict:
    os_name = "unknown"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "os": os_name,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "accelerator": accel,
    }


def _host_vulkan(c: Components, start: StartCommand, cache: HashCache, icd: str, driver_lib: Path | None) -> dict:
    """The host Vulkan driver: the root's lavapipe (the lock's Mesa), or the host's own (--host-vulkan host)."""
    d = c.host_driver
    if d is not None and "vulkan_icd" not in start.overrides:
        return {
            **d.describe(),
            "driver": "host",
            "icd_sha256": cache.sha256(d.icd.json_path),
            "library_sha256": cache.sha256(d.icd.library.resolve()) if d.icd.library else None,
        }
    return {
        "mode": "lavapipe" if "vulkan_icd" not in start.overrides else "override",
        "icd": icd,
        "icd_sha256": cache.sha256(start.host_path("vulkan_icd", icd)),
        "driver": "lavapipe" if "lvp" in icd else Path(icd).stem,
        "library_sha256": cache.sha256(driver_lib) if driver_lib else None,
    }


def _files(c: Components, start: StartCommand, cache: HashCache) -> dict[str, dict]:
    """What each host component is as files (the ones QEMU and the render server actually load)."""
    server = start.render_server
    lib = start.virglrenderer_library
    icd = start.environment()["VK_DRIVER_FILES"]
    vendor = hostvulkan.read_vendor(start.host_path("vulkan_icd", icd), c.host_root)  # the library the ICD names, in the root
    return {
        "qemu": {"binary": start.qemu_binary, "binary_sha256": cache.sha256(start.host_path("qemu", start.qemu_binary))},
        "virglrenderer": {
            "library": str(lib) if "virglrenderer" in start.overrides else "(profile)",
            "library_sha256": cache.sha256(lib) if lib else None,
            "render_server": server,
            "render_server_sha256": cache.sha256(start.host_path("render_server", server)),
        },
        "host_vulkan": _host_vulkan(c, start, cache, icd, vendor.library if vendor else None),
        "guest_kernel": {
            "flavour": c.kernel_flavour,
            "release": c.kernel_release,
            "page_size": c.kernel.page_size,
            "image_sha256": cache.sha256(c.kernel.path),
        },
    }


def fingerprint(c: Components, start: StartCommand, cache_dir: Path, scenario=None, env=None) -> dict:
    """Every registry component's identity (its source, version, files), the machine, the host, the scenario."""
    cache = HashCache(cache_dir / "hash-cache.json")
    files = _files(c, start, cache)
    layers = {k: list(v) for k, v in env.layers} if env is not None and env.layers is not None else None
    if layers is None and c.profile.manifest is not None:
        from . import nixbundle
        from .provision import manifest

        layers = nixbundle.guest_layers(manifest.read(c.profile.manifest))  # the flake's guest: the lock's pins
    entries = {}
    for spec in registry.COMPONENTS:
        kind, detail = c.origins.get(spec.name, ("profile", None))
        entry = {"source": kind, **({"detail": detail} if detail else {}), "version": c.versions.get(spec.name, "?")}
        if spec.name in start.overrides or any(p.key in start.overrides for p in spec.parts):
            entry["version"] = "override"
        if layers is not None and spec.layer in layers:
            from .environment import pins_of

            pins = pins_of(spec, layers[spec.layer])
            entry["pins_sha256"] = set_digest(pins) if pins else None
        if spec.name in c.builds:
            entry["build"] = c.builds[spec.name]
        entries[spec.name] = {**entry, **files.get(spec.name, {})}
    guest_demos = c.demo_bin.parent / "guest" if c.demo_bin else None
    fp = {
        "components": {
            **entries,
            "initramfs": {"sha256": cache.sha256(c.initramfs)},
            "demos": {
                "host": _dir_digest(cache, c.demo_bin) if c.demo_bin else None,
                # The nix profile has no guest build beside the host one: its demos are in its initramfs.
                "guest": _dir_digest(cache, guest_demos) if guest_demos and guest_demos.is_dir() else "(in the initramfs)",
            },
            # The render server's preloaded shim changes its behaviour, so it is part of the identity.
            "ring_wake": {"sha256": cache.sha256(start.ring_wake) if start.ring_wake else "off"},
        },
        "machine": {
            "guest_arch": c.profile.guest_arch,
            "accel": c.accel,
            "qemu_machine": c.profile.qemu.machine,
            "cpu": c.profile.qemu.cpu if c.accel == "tcg" else "host",
            "smp": c.profile.qemu.smp,
            "memory": c.profile.qemu.memory,
            "gpu_options": start.gpu_options,
            "display": start.display,
            "host_env": dict(sorted(start.env_overrides.items())),
        },
        "host": _host(c.accel),
        "profile": c.profile.name,
        "lock_sha256": c.lock_digest,
        "scenario": {"name": scenario.name, "sha256": scenario.digest} if scenario else None,
    }
    cache.save()
    return seal(fp)


def seal(fp: dict) -> dict:
    """(Re)compute the fingerprint's own digest, over everything but itself."""
    body = {k: v for k, v in fp.items() if k != "sha256"}
    fp["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return fp
