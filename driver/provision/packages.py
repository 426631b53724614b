"""A scenario's guest packages, installed as packages in the unpacked guest root.

The profile's drop list slims the *base* guest (Mesa's arm64 package ships
lavapipe, radv and LLVM; the guest needs only the Venus ICD). A scenario's
packages are what the user asked for, so none of their files is dropped, and
base packages they depend on (libxml2 for ffmpeg, say) get back what the drop
list took. No maintainer script runs (the root is unpacked, not installed);
what they would do that a program needs is done here instead:

* ``update-alternatives --install LINK NAME PATH PRIORITY`` links (libblas.so.3,
  for one): the highest priority of each name is linked, as dpkg would;
* libraries in folders a package adds to ld.so.conf.d (found through ldconfig's
  cache, which an unpacked guest lacks) get links in the default library folder;
* a script that needs a running system (system users and groups, kernel
  modules built at install) is one clear error naming the package: a guest
  with busybox as init has none of those, and a program that depends on them
  would fail later for a reason nobody could see.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from .. import log
from ..errors import ProvisionError
from . import deb
from .apt import Pin
from .store import DebStore

# What a maintainer script may do that an unpacked guest cannot stand in for.
# Part of the cache key of a guest with scenario packages: how they are installed.
RECIPE = "scenario-packages-installed-2"
# (Service management is left alone: debhelper guards it, and the guest starts no services.)
_NEEDS_SYSTEM = re.compile(r"^\s*(adduser|addgroup|useradd|groupadd|dkms|update-initramfs)\b", re.M)


def _script_lines(text: str) -> list[str]:
    """Shell lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.split("#", 1)[0].strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def alternatives(script: str) -> list[tuple[str, str, str, int]]:
    """(link, name, path, priority) of every ``update-alternatives --install`` (and its --slave links)."""
    out = []
    for line in _script_lines(script):
        if "update-alternatives" not in line or "--install" not in line:
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        i = words.index("--install") if "--install" in words else -1
        if i < 0 or len(words) < i + 5:
            continue
        link, name, path, prio = words[i + 1 : i + 5]
        try:
            priority = int(prio)
        except ValueError:
            continue
        out.append((link, name, path, priority))
        rest = words[i + 5 :]
        while len(rest) >= 4 and rest[0] == "--slave":
            out.append((rest[1], rest[2], rest[3], priority))
            rest = rest[4:]
    return out


def needs_system(script: str) -> list[str]:
    """The commands of ``script`` an unpacked guest cannot stand in for."""
    return sorted({m.group(1) for m in _NEEDS_SYSTEM.finditer("\n".join(_script_lines(script)))})


def base_needed(extra: dict[str, dict[str, str]], base: list[Pin], store: DebStore) -> list[Pin]:
    """The base packages the extra ones (name → control fields) depend on, directly or through each other."""
    by_name = {p.name: p for p in base}
    todo: list[dict[str, str]] = list(extra.values())
    seen: set[str] = set(extra)
    needed: list[Pin] = []
    while todo:
        fields = todo.pop()
        for name in sorted(deb.depends(fields)):
            if name in seen:
                continue
            seen.add(name)
            if name in by_name:
                needed.append(by_name[name])
                todo.append(deb.control(store.verified(by_name[name]))[0])
    return needed


def install(root: Path, extra: list[Pin], base: list[Pin], store: DebStore) -> None:
    """Unpack ``extra`` into ``root`` (the base guest, already slimmed) as installed packages."""
    from . import sysroot

    controls = {pin.name: deb.control(store.verified(pin)) for pin in extra}  # (fields, maintainer scripts)
    needed = base_needed({name: fields for name, (fields, _) in controls.items()}, base, store)
    if needed:
        # What the drop list took from them comes back: they are dependencies of what the user asked for.
        sysroot.unpack_all(needed, store, root, "base packages the scenario's packages need")
    sysroot.unpack_all(extra, store, root, "scenario guest packages")
    chosen: dict[str, tuple[int, str, str]] = {}
    refused = []
    for name, (_, scripts) in controls.items():
        for script in scripts.values():
            bad = needs_system(script)
            if bad:
                refused.append(f"{name} ({', '.join(bad)})")
        for link, name, path, priority in alternatives(scripts.get("postinst", "")):
            if name not in chosen or priority > chosen[name][0]:
                chosen[name] = (priority, link, path)
    if refused:
        raise ProvisionError(
            f"guest package {refused[0]} needs a running system its maintainer scripts set up, which an unpacked "
            "guest (busybox init, no users or services) does not have: leave it out of guest_packages"
            + (f" (also: {', '.join(refused[1:])})" if refused[1:] else "")
        )
    for name, (_, link, path) in sorted(chosen.items()):
        target = root / link.lstrip("/")
        if not (root / path.lstrip("/")).exists() or target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, target)
        log.info(f"alternative {name}: {link} -> {path}")
    link_library_paths(root)


def _conf_dirs(root: Path) -> list[str]:
    dirs = []
    for conf in sorted((root / "etc/ld.so.conf.d").glob("*.conf")):
        for line in conf.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("/"):
                dirs.append(line)
    return dirs


def link_library_paths(root: Path) -> None:
    """Make libraries in ld.so.conf.d folders findable without ldconfig (the guest runs none).

    A package that puts its libraries in a folder of its own names that folder in
    /etc/ld.so.conf.d and relies on ldconfig's cache; the unpacked guest has no
    cache, so each library there gets a link in the architecture's default folder.
    """
    default = {f"/usr/lib/{d.name}" for d in (root / "usr/lib").glob("*-linux-gnu*")} | {f"/lib/{d.name}" for d in (root / "usr/lib").glob("*-linux-gnu*")}
    default |= {"/lib", "/usr/lib", "/usr/local/lib"}
    triplets = sorted(d.name for d in (root / "usr/lib").glob("*-linux-gnu*") if d.is_dir())
    if not triplets:
        return
    target_dir = root / "usr/lib" / triplets[0]
    for folder in _conf_dirs(root):
        if folder.rstrip("/") in default or not (root / folder.lstrip("/")).is_dir():
            continue
        for lib in sorted((root / folder.lstrip("/")).glob("*.so*")):
            link = target_dir / lib.name
            if not (link.exists() or link.is_symlink()):
                os.symlink(f"{folder.rstrip('/')}/{lib.name}", link)
