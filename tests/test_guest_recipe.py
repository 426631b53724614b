"""The guest as the Nix flake assembles it on a Mac with no Linux builder, proven here.

On macOS nothing may be compiled *for* Linux by a Linux builder, so the flake's guest
is fetched and unpacked, never built: the kernel and userland are the lock's Debian
packages (fixed-output fetches by sha256), unpacked and packed by the driver's own
code (``venus-repro unpack`` / ``guest-initramfs``: Python, no dpkg, no root), and the
demos are cross-built by zig. These tests run that recipe here and hold it to what the
Debian profile boots.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import venus_repro
from test_nix_profile import debian_manifest
from venus_repro import demos, profile
from venus_repro.provision import deb
from venus_repro.provision.lock import Lock

pytestmark = pytest.mark.vm

LOCK = Lock.load(profile.load("debian-trixie"))
GUEST_SETS = ("guest-arm64", "kernel-16k")


def _tree(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _merged_usr(root: Path) -> Path:
    for d in ("bin", "sbin", "lib", "lib64"):
        (root / "usr" / d).mkdir(parents=True, exist_ok=True)
        os.symlink(f"usr/{d}", root / d)
    return root


def test_the_python_unpacker_equals_dpkg_deb_and_tar(provisioned, tmp_path):
    """dpkg-deb | tar --keep-directory-symlink is the oracle, for every guest and kernel package."""
    debs = Path(provisioned["host_root"]).parent.parent / "debs"
    ours, oracle = _merged_usr(tmp_path / "ours"), _merged_usr(tmp_path / "oracle")
    pins = [p for s in GUEST_SETS for p in LOCK.pins(s)]
    for pin in pins:
        path = debs / pin.deb_name
        deb.unpack(path, ours)
        pipe = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(path)], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "--keep-directory-symlink", "--no-same-owner", "-C", str(oracle)], stdin=pipe.stdout, check=True)
        pipe.wait()
    a, b = _tree(ours), _tree(oracle)
    assert len(a) > 7000
    assert a == b, sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[:10]


@pytest.fixture(scope="module")
def debs_only_cache(provisioned, tmp_path_factory) -> Path:
    """A cache holding nothing but the guest's pinned .debs: what the Nix derivation starts from."""
    cache = tmp_path_factory.mktemp("nix-like-cache")
    (cache / "debs").mkdir()
    source = Path(provisioned["host_root"]).parent.parent / "debs"
    for pin in (p for s in GUEST_SETS for p in LOCK.pins(s)):
        os.symlink(source / pin.deb_name, cache / "debs" / pin.deb_name)
    return cache


def _recipe(cache: Path, guest_bins: Path, out: Path) -> None:
    proc = venus_repro("guest-initramfs", "--demos", str(guest_bins), "-o", str(out), env={**os.environ, "VENUS_REPRO_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_recipe_gives_the_debian_profiles_guest_byte_for_byte(provisioned, debs_only_cache, tmp_path):
    _recipe(debs_only_cache, Path(provisioned["demos"]) / "guest", tmp_path / "guest")
    assert (tmp_path / "guest" / "initrd.cpio").read_bytes() == Path(provisioned["initramfs"]).read_bytes()
    assert (tmp_path / "guest" / "vmlinuz").read_bytes() == Path(provisioned["kernel"]["path"]).read_bytes()
    assert not (debs_only_cache / "apt").exists()  # nothing was fetched: the pinned .debs were all it needed


def test_zig_cross_built_demos_pass_in_the_recipes_guest(provisioned, debs_only_cache, tmp_path, no_leftovers):
    """The guest demos as the flake builds them on macOS: zig cc for aarch64-linux-gnu, then the recipe."""
    host_root = Path(provisioned["host_root"])
    guest_root = next(p for p in (Path(provisioned["host_root"]).parent.parent / "guest").glob("root-*") if p.is_dir())
    include = tmp_path / "include"  # the Vulkan headers only: zig brings libc and the kernel's UAPI (drm/virtgpu_drm.h)
    include.mkdir()
    for d in ("vulkan", "vk_video"):
        os.symlink(host_root / "usr/include" / d, include / d)
    zig = f"{sys.executable} -m ziglang cc -target aarch64-linux-gnu.2.41 -isystem {include}"
    bins = tmp_path / "bin"
    bins.mkdir()
    shaders = Path(provisioned["demos"]) / "shaders"  # glslangValidator's output, as the flake's glslang makes it
    libvulkan = guest_root / "usr/lib/aarch64-linux-gnu/libvulkan.so.1"
    script = "\n".join(["set -e", *demos.compile_script(zig, bins, shaders, str(libvulkan))])
    env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(tmp_path / "zig-cache"), "ZIG_LOCAL_CACHE_DIR": str(tmp_path / "zig-cache")}
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in bins.iterdir()) == sorted({d.binary for d in demos.catalogue().values()})
    _recipe(debs_only_cache, bins, tmp_path / "guest")
    doc = debian_manifest(provisioned)
    doc.update(kernel=str(tmp_path / "guest" / "vmlinuz"), initramfs=str(tmp_path / "guest" / "initrd.cpio"))
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    proc = venus_repro("run", "--profile", "nix", "--manifest", str(tmp_path / "manifest.json"), "--json", "--run-dir", str(tmp_path / "run"))
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass", [c for c in result["checks"] if not c["ok"]]
    assert all(d["checksum"] == d["host_checksum"] for d in [s for s in result["steps"] if s["kind"] == "demo"])


def test_unpack_command(provisioned, tmp_path):
    pin = next(p for p in LOCK.pins("guest-arm64") if p.name == "libvulkan1")
    deb_path = Path(provisioned["host_root"]).parent.parent / "debs" / pin.deb_name
    proc = venus_repro("unpack", str(deb_path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/usr/lib/aarch64-linux-gnu/libvulkan.so.1").is_symlink()
    proc = venus_repro("unpack", str(tmp_path / "missing.deb"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "no such .deb" in proc.stderr
    shutil.rmtree(tmp_path / "out")
