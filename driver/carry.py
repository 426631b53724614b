"""``venus-repro carry``: the run's components packed for a GPU machine without network.

A GPU machine (a cloud box, a lab machine behind no proxy) often cannot reach
Debian's mirror. ``carry pack OUT`` builds, from the provisioned cache, one
file that holds everything a host-GPU run needs besides the host's own driver:

* a runtime root: the host root's programs QEMU, the render server (the
  profile's GPU virglrenderer, which loads no driver before it forks),
  vulkaninfo, sh and env, the libraries they link and the ones they dlopen
  (QEMU's display modules, glvnd's EGL/GL, the Vulkan loader, glibc's stubs
  NVIDIA's libraries link), and nothing of Mesa, the compilers or the docs:
  the host's driver replaces Mesa there;
* the guest kernel and initramfs, the host builds of the demos (the reference
  frames on the host's driver) and the ring-wake shim;
* a manifest for the nix profile naming them.

``carry unpack FILE DIR`` (on the GPU machine) unpacks it and writes
``DIR/manifest.json``; then ``venus-repro run --profile nix --manifest
DIR/manifest.json --host-vulkan host``. The README's "On a GPU" section has the
whole recipe; ``tests/test_carry.py`` runs a packed carry here.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import shutil
import tarfile
from pathlib import Path

from . import archive, elf, hostvulkan, log
from .errors import UsageError, shown
from .provision import Components

FORMAT = 1
# Programs the runtime root keeps (paths inside it); the guest architecture's QEMU and the GPU render server are added.
PROGRAMS = ("usr/bin/vulkaninfo", "usr/bin/sh", "usr/bin/env",
            "usr/bin/mkdir", "usr/bin/cp", "usr/bin/cat")  # the last three: program steps' scripts (differential checks)
# QEMU modules a Venus run loads: the virtio-gpu devices, the SDL/EGL displays and their GL glue.
QEMU_MODULES = ("hw-display-virtio-gpu*.so", "ui-sdl.so", "ui-opengl.so", "ui-egl-headless.so")
# What those programs dlopen (no ELF header names it): glvnd's dispatch libraries (SDL and
# libepoxy open them), the Vulkan loader (virglrenderer ≥ 1.2 opens it), and glibc's stub
# libraries NVIDIA's driver still links.
DLOPENED = ("libEGL.so.1", "libGL.so.1", "libGLESv2.so.2", "libGLX.so.0", "libGLdispatch.so.0",
            "libvulkan.so.1", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libX11.so.6", "libXext.so.6")  # fmt: skip
# The dynamic linkers programs name in PT_INTERP (no DT_NEEDED names these paths).
INTERPRETERS = ("lib64/ld-linux-x86-64.so.2", "lib/ld-linux-aarch64.so.1")
ROOT_DIRS = ("proc", "sys", "dev", "tmp", "root", "run", "etc")
ROOT_LINKS = ("bin", "sbin", "lib", "lib64")  # merged /usr: links to usr/…
ROOT_FILES = ("etc/ld.so.conf", "etc/ld.so.cache", "etc/passwd", "etc/group")
RENDER_SERVER = "usr/libexec/virgl_render_server"


def _closure(root: Path, starts: list[Path]) -> set[Path]:
    """Every file under ``root`` the ``starts`` need, links and their targets included (paths relative to root)."""
    dirs = hostvulkan.library_dirs(root)
    out: set[Path] = set()
    queue = list(starts)
    while queue:
        path = queue.pop()
        rel = path.relative_to(root)
        if rel in out:
            continue
        out.add(rel)
        if path.is_symlink():
            target = Path(os.readlink(path))
            real = (root / target.relative_to("/")) if target.is_absolute() else (path.parent / target)
            queue.append(Path(os.path.normpath(real)))
            continue
        d = elf.read(path)
        deps, runpath = d.needed, d.runpath
        # A RUNPATH names folders as the program sees them: inside the root.
        search = [Path(d) if d.startswith(str(root)) else root / d.lstrip("/") for d in runpath] + dirs
        for dep in deps:
            found = next((d / dep for d in search if (d / dep).exists() or (d / dep).is_symlink()), None)
            if found is None:
                raise UsageError(f"carry: {rel} needs {dep}, which the host root does not have")
            queue.append(Path(os.path.normpath(found)))
    return out


def _parents_resolved(root: Path, rel: Path) -> Path:
    """``rel`` with its folders' links resolved inside ``root`` (lib/x → usr/lib/x)."""
    parent = Path(os.path.realpath(root / rel.parent)).relative_to(Path(os.path.realpath(root)))
    return parent / rel.name


def _add(tar: tarfile.TarFile, source: Path, name: str) -> None:
    info = tar.gettarinfo(str(source), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isreg():
        with open(source, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)


def pack(c: Components, out: Path) -> dict:
    """Write ``out`` (a .tar.xz): the runtime root, guest, demos, shim and manifest template.

    ``c`` are a host-GPU run's components (``--host-vulkan host``): its root
    already holds the virglrenderer a host GPU driver runs with.
    """
    root = c.host_root
    starts = [root / p for p in (c.qemu.lstrip("/"), *PROGRAMS, RENDER_SERVER)] + [root / p for p in INTERPRETERS if (root / p).exists()]
    starts += [p for pattern in QEMU_MODULES for p in sorted(root.glob(f"usr/lib/*/qemu/{pattern}"))]
    dirs = hostvulkan.library_dirs(root)
    for name in DLOPENED:
        found = hostvulkan.find_library(name, dirs)
        if found is None:
            raise UsageError(f"carry: the host root has no {name}")
        starts.append(found)
    demos = sorted(p for p in c.demo_bin.iterdir() if p.is_file()) if c.demo_bin else []
    # What the demos and the shim link comes from the host root.
    for path in [*demos, *([c.ring_wake] if c.ring_wake else [])]:
        for dep in elf.read(path).needed:
            found = hostvulkan.find_library(dep, dirs)
            if found is None:
                raise UsageError(f"carry: {path.name} needs {dep}, which the host root does not have")
            starts.append(found)
    files = {_parents_resolved(root, rel) for rel in _closure(root, starts)}
    (lib,) = sorted(root.glob("usr/lib/*/libvirglrenderer.so.1")) or [None]
    if lib is None:
        raise UsageError("carry: the host root has no libvirglrenderer.so.1")
    manifest = {
        "format": 1,
        "root": "@CARRY@/root",
        "qemu": c.qemu,
        "render_server": f"/{RENDER_SERVER}",
        "virglrenderer": f"/{lib.relative_to(root)}",
        "vulkaninfo": "/usr/bin/vulkaninfo",
        # The root has no Mesa: the ICD is a placeholder the host's driver replaces
        # (--host-vulkan host); lavapipe would find no library.
        "vulkan_icd": "/usr/share/vulkan/icd.d/none.json",
        "kernel": "@CARRY@/guest/vmlinuz",
        "initramfs": "@CARRY@/guest/initrd.img",
        "host_demos": "@CARRY@/demos" if demos else None,
        "ring_wake": f"@CARRY@/shim/{c.ring_wake.name}" if c.ring_wake else None,
        "page_size": c.kernel.page_size,
        # The GPU machine decides: KVM where it can run this guest (an amd64 guest on an x86 host), else TCG.
        "accel": "auto",
        "guest_arch": c.profile.guest_arch,
        # A GPU machine has cores to spare: QEMU's multi-threaded TCG gives the guest's
        # demo and Venus's ring their own vCPUs (GPU.md measured with 4).
        "smp": 4,
        "system": "x86_64-linux" if c.host_arch == "amd64" else "aarch64-linux",
        # A component from another suite says which (the manifest has no other place for it).
        "versions": {**{k: v + (f" ({c.origins[k][1]})" if c.origins.get(k, ("", None))[0] in ("suite", "mixed") else "") for k, v in c.versions.items()},
                     "host_vulkan": "none (host driver)"},  # fmt: skip
    }
    tmp = out.with_name(f".{out.name}.partial")
    with log.nested(f"packing {len(files)} root files, the guest and {len(demos)} demos into {out}"):
        with lzma.open(tmp, "wb", preset=6) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
            for d in ROOT_DIRS:
                info = tarfile.TarInfo(f"root/{d}")
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
                tar.addfile(info)
            for link in ROOT_LINKS:
                if (root / link).is_symlink():
                    _add(tar, root / link, f"root/{link}")
            for rel in [*(Path(f) for f in ROOT_FILES), *sorted(files)]:
                if (root / rel).exists() or (root / rel).is_symlink():
                    _add(tar, root / rel, f"root/{rel}")
            none = json.dumps({"file_format_version": "1.0.0", "ICD": {"library_path": "none", "api_version": "1.0.0"}}).encode()
            info = tarfile.TarInfo("root/usr/share/vulkan/icd.d/none.json")
            info.size = len(none)
            tar.addfile(info, io.BytesIO(none))
            _add(tar, c.kernel.path, "guest/vmlinuz")
            _add(tar, c.initramfs, "guest/initrd.img")
            for demo in demos:
                _add(tar, demo, f"demos/{demo.name}")
            if c.ring_wake:
                _add(tar, c.ring_wake, f"shim/{c.ring_wake.name}")
            data = (json.dumps(manifest, indent=2) + "\n").encode()
            info = tarfile.TarInfo("manifest.template.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return {"carry": str(out), "bytes": out.stat().st_size, "root_files": len(files), "demos": len(demos)}


# A carry is someone else's data too: limits on what unpacking it may write (one is ~50 MB packed).
MAX_MEMBERS = 100_000
MAX_BYTES = 8 << 30


def _check_members(carry: Path, members: list[tarfile.TarInfo]) -> None:
    """Members that stay inside the destination: plain names, files, folders and links only.

    A link may point anywhere inside ``root/`` (absolute: as the runtime root sees it, where it
    is the root), nowhere outside the carry, and nothing is unpacked through a link. The
    files unpack writes or changes afterwards (manifest.json, root/tmp) may not be links.
    """
    links = {m.name.rstrip("/") for m in members if m.issym()}
    for m in members:
        name = m.name.rstrip("/")
        parts = Path(name).parts
        if not archive.plain_name(m.name) or not (m.isreg() or m.isdir() or m.issym()):
            raise UsageError(f"{carry}: refusing member {shown(m.name)!r} (outside the destination, or not a file, folder or link)")
        if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
            raise UsageError(f"{carry}: refusing member {shown(m.name)!r} (it lies behind a link)")
        if name in ("manifest.json", "manifest.template.json", "root", "root/tmp") and m.issym() or name == "manifest.json":
            raise UsageError(f"{carry}: refusing member {shown(m.name)!r} (unpack writes it)")
        if m.issym():
            target = Path(m.linkname)
            inside = parts[0] == "root" and (target.is_absolute() or _within(Path(*parts[:-1]) / target, "root"))
            if not inside and not (not target.is_absolute() and _within(Path(*parts[:-1]) / target, "")):
                raise UsageError(f"{carry}: refusing link {shown(m.name)!r} -> {shown(m.linkname)!r} (it leads out of the carry)")


def _within(path: Path, top: str) -> bool:
    """Whether relative ``path``, normalised, stays inside folder ``top`` ("" for the whole carry)."""
    norm = os.path.normpath(path)
    return not norm.startswith("..") and not os.path.isabs(norm) and (not top or norm == top or norm.startswith(top + "/"))


def unpack(carry: Path, dest: Path) -> Path:
    """Unpack ``carry`` into ``dest``; write ``dest/manifest.json`` (absolute paths). Returns it."""
    if not carry.is_file():
        raise UsageError(f"{carry}: no such carry file (make one with `venus-repro carry pack OUT`)")
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"{dest} is not empty: unpack a carry into a new folder")
    created = not dest.exists()
    try:
        with archive.open_tar(carry, lzma.open, "a carry", MAX_BYTES, MAX_MEMBERS) as (tar, members):
            _check_members(carry, members)  # all checked before anything is written
            if not any(m.name == "manifest.template.json" and m.isreg() for m in members):
                raise UsageError(f"{carry}: not a carry (no manifest.template.json)")
            dest.mkdir(parents=True, exist_ok=True)
            extra = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
            tar.extractall(dest, members=members, **extra)
        return _write_manifest(carry, dest)
    except UsageError:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _write_manifest(carry: Path, dest: Path) -> Path:
    """``dest/manifest.json`` from the carry's template, checked as the nix profile checks a manifest."""
    from .provision import manifest as nix_manifest

    template, tmp = dest / "manifest.template.json", dest / "root" / "tmp"
    if template.is_symlink() or not template.is_file() or tmp.is_symlink() or not tmp.is_dir():
        raise UsageError(f"{carry}: not a carry (manifest.template.json must be a file and root/tmp a folder)")
    try:
        text = template.read_bytes()[: nix_manifest.MAX_BYTES].decode().replace("@CARRY@", str(dest.resolve()))
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{carry}: manifest.template.json is not JSON ({' '.join(str(exc).split())})") from None
    nix_manifest.validate(doc, f"{carry}: manifest.template.json")
    manifest = dest / "manifest.json"
    manifest.write_text(text)
    tmp.chmod(0o1777)
    return manifest
