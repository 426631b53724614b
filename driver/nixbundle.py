"""A nix-profile run in a bundle: what it ran with, and how another machine reproduces it.

On the user's Mac every run is a nix-profile run: its components are store
paths named by the flake's manifest. ``bundle`` of such a run adds, beside the
run directory, ``nix/``:

    nix/manifest.json      the manifest as the run used it
    nix/store-paths.json   each component's store path, its name and version, its sha256 (where the file was there)
    nix/flake.lock         the flake's lock (and manifest.json's nix.flake_rev: its revision), where the manifest has them

and as ``profile/`` the Debian profile whose lock the flake's guest is packed
from (the guest's pins). ``replay`` then runs the same steps:

* ``--profile nix --manifest FILE`` (another Mac, or Linux with Nix): after
  saying which store paths of FILE differ from the bundle's;
* by default, on the Debian profile (Linux without Nix): the same guest pins on
  Linux's host stack, saying what it leaves out (macOS-only components, HVF,
  16K host pages), which is the point: a failure that stays is on the guest's
  side, one that goes is on the host's.

A bundle is data: nothing of the flake in it is built or run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import log
from .errors import UsageError
from .profile import Profile
from .provision import manifest as manifests
from .provision.store import sha256_file

# The manifest's fields that name files, by role (bisect.MANIFEST_FIELDS names the components).
PATH_FIELDS = ("qemu", "render_server", "virglrenderer", "vulkan_icd", "vulkaninfo", "egl_vendor", "kernel", "initramfs", "host_demos", "ring_wake")
_INSIDE_ROOT = ("qemu", "render_server", "virglrenderer", "vulkan_icd", "vulkaninfo", "egl_vendor")
_STORE = re.compile(r"^/nix/store/([0-9a-z]{32})-([^/]+)")
MAX_HASHED = 512 << 20


def identities(doc: dict) -> dict[str, dict]:
    """Each file the manifest names: its path, store path name, the component's version, its sha256 (if here)."""
    root = Path(doc.get("root") or "/")
    versions = doc.get("versions") or {}
    out = {}
    for field in PATH_FIELDS:
        value = doc.get(field)
        if not isinstance(value, str):
            continue
        path = root / value.lstrip("/") if field in _INSIDE_ROOT else Path(value)
        m = _STORE.match(value)
        entry: dict = {"path": value, "store_name": m.group(2) if m else None, "version": versions.get(field)}
        try:
            entry["sha256"] = sha256_file(path) if path.is_file() and path.stat().st_size <= MAX_HASHED else None
        except OSError:
            entry["sha256"] = None
        out[field] = entry
    return out


def pack(tar, manifest_path: Path, guest_profile: Profile, add_bytes) -> dict:
    """Add ``nix/`` to a bundle being written; the bundle manifest's ``nix`` entry."""
    doc = manifests.read(manifest_path)
    add_bytes(tar, "nix/manifest.json", json.dumps(doc, indent=1).encode())
    add_bytes(tar, "nix/store-paths.json", json.dumps(identities(doc), indent=1).encode())
    flake = doc.get("flake") or {}
    if flake.get("lock"):
        add_bytes(tar, "nix/flake.lock", json.dumps(flake["lock"], indent=2).encode())
    pins = doc.get("guest_pins") or {}
    ours = sha256_file(guest_profile.lock_path)
    return {
        "system": doc.get("system"),
        "accel": doc.get("accel"),
        "flake_rev": flake.get("rev") or None,
        "guest_lock": pins.get("lock"),
        "guest_lock_sha256": pins.get("lock_sha256"),
        # Whether the guest the Mac ran is pinned by this venus-repro's lock: then a Debian replay runs the same guest.
        "guest_pins_match": pins.get("lock_sha256") == ours if pins.get("lock_sha256") else None,
    }


def guest_profile_for(manifest_path: Path) -> str:
    """The Debian profile whose lock the manifest's guest is packed from (debian-trixie unless it says)."""
    pins = manifests.read(manifest_path).get("guest_pins") or {}
    name = (pins.get("lock") or "debian-trixie.lock.json").removesuffix(".lock.json")
    return name


def left_out(bundle_dir: Path, info: dict) -> list[str]:
    """What a replay on the Debian profile here does not reproduce of the bundled nix-profile run."""
    import os
    import platform

    doc = _bundled(bundle_dir, "manifest.json")
    fp = _bundled(bundle_dir, "../run/fingerprint.json") or {}
    out = []
    if doc.get("accel") not in (None, "tcg"):
        out.append(f"the accelerator: {doc['accel']} on the original, TCG here")
    if doc.get("system") and doc["system"].endswith("darwin"):
        out.append(f"the host: {doc['system']} (macOS) on the original, {platform.machine()} Linux here")
    host_page = (fp.get("host") or {}).get("page_size")
    if isinstance(host_page, int) and host_page != os.sysconf("SC_PAGE_SIZE"):
        out.append(f"host pages: {host_page // 1024}K on the original, {os.sysconf('SC_PAGE_SIZE') // 1024}K here")
    for field, what in (("qemu", "QEMU"), ("virglrenderer", "virglrenderer"), ("vulkan_icd", "the host Vulkan driver")):
        if isinstance(doc.get(field), str):
            out.append(f"{what}: the original's {Path(doc[field]).parts[3] if doc[field].startswith('/nix/store/') else doc[field]}, this profile's here")
    if doc.get("display") and doc["display"] != "sdl,gl=on":
        out.append(f"the display: {doc['display']} on the original, sdl,gl=on (offscreen) here")
    if info.get("guest_pins_match") is False:
        out.append("the guest: the original's guest lock differs from this venus-repro's (guest pins replayed from the bundle's lock)")
    return out


def store_path_differences(bundle_dir: Path, manifest_path: Path) -> list[dict]:
    """Which files of ``manifest_path`` differ from the bundled run's, by role (and by sha256 where both are known)."""
    bundled = _bundled(bundle_dir, "store-paths.json") or {}
    here = identities(manifests.read(manifest_path))
    out = []
    for field in sorted(set(bundled) | set(here)):
        a, b = bundled.get(field) or {}, here.get(field) or {}
        same = a.get("path") == b.get("path") or (a.get("sha256") and a.get("sha256") == b.get("sha256"))
        if not same:
            out.append({"what": field, "bundle": a.get("path"), "here": b.get("path")})
    return out


def _bundled(bundle_dir: Path, name: str):
    path = bundle_dir / "nix" / name if not name.startswith("../") else bundle_dir / name[3:]
    if not path.is_file() or path.is_symlink():
        return None
    try:
        doc = json.loads(path.read_bytes()[: 4 << 20])
    except (ValueError, RecursionError):
        raise UsageError(f"{path.name} in the bundle is not JSON") from None
    return doc if isinstance(doc, dict) else None


def describe(report: dict) -> None:
    for line in report.get("left_out", []):
        log.info(f"left out: {line}")
    for d in report.get("store_paths", []):
        log.info(f"store path differs: {d['what']}: bundle {d['bundle']}, here {d['here']}")


def guest_layers(doc: dict) -> dict | None:
    """The guest's layers of pins, where the manifest's guest is packed from this venus-repro's own lock
    (its guest_pins name the lock and its sha256): what lines a nix-profile run's guest up with a Debian run's."""
    from .profile import PINS, load
    from .provision.lock import Lock

    pins = doc.get("guest_pins") or {}
    lock = PINS / str(pins.get("lock") or "")
    if not pins.get("lock_sha256") or not lock.is_file() or sha256_file(lock) != pins["lock_sha256"]:
        return None
    prof = load(lock.name.removesuffix(".lock.json"))
    lk = Lock.load(prof)
    flavour = pins.get("kernel_flavour") or prof.default_kernel
    return {"guest": lk.pins(f"guest-{prof.guest_arch}"), "kernel": lk.pins(f"kernel-{flavour}")}
