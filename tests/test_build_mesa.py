"""venus-repro build-mesa: a Mesa source tree's Venus ICD, cross-built for the guest.

The source is Debian's own: trixie's Mesa 25.0.7 orig tarball, fetched from the mirror
into the cache by its pin (data/pins/sources.json, checked against its pinned .dsc).
The ``vm``-marked tests here are build tests (they need root for the tool root's chroot,
not a VM); the tarball is built once per session and shared.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import assert_cached, built, venus_repro
from venus_repro import profile, sandbox
from venus_repro.errors import UsageError
from venus_repro.provision import Provisioner, build, sources


def test_mesa_options_follow_what_the_tree_offers(tmp_path):
    """Options are turned off by their type in this tree; options the tree lacks are not given."""
    (tmp_path / "meson.options").write_text(
        "option(\n  'vulkan-drivers',\n  type : 'array',\n  value : ['auto'],\n  choices : ['auto', 'amd', 'virtio'],\n)\n"
        "option('glx', type : 'combo', value : 'auto', choices : ['auto', 'disabled', 'dri'])\n"
        "option('gallium-nine', type : 'feature', value : 'auto')\n"  # boolean in 25.0
        "option('opengl', type : 'boolean', value : true)\n"
        "option('platforms', type : 'array', value : ['auto'], choices : ['auto', 'x11', 'wayland'])\n"
        "option('shader-cache', type : 'feature', value : 'auto')\n"  # not one Venus-only turns off
    )
    got = build._mesa_tree_options(tmp_path)
    assert got == ("-Dplatforms=", "-Dopengl=false", "-Dglx=disabled", "-Dgallium-nine=disabled")
    (tmp_path / "meson.options").write_text("option('vulkan-drivers', type : 'array', choices : ['amd', 'intel'])\n")
    with pytest.raises(UsageError, match="no Venus driver"):
        build._mesa_tree_options(tmp_path)


@pytest.fixture(scope="session")
def mesa_tarball() -> Path:
    return sources.fetch("mesa-trixie")


@pytest.fixture(scope="session")
def mesa_trixie(mesa_tarball) -> dict:
    """Debian trixie's Mesa 25.0.7 built once per session (cold in CI: about 1.5 min on 2 cores)."""
    return built("build-mesa", mesa_tarball)


def _mesa_root() -> Path:
    return Provisioner(profile.load("debian-trixie")).tool_root("mesa-build")


@pytest.mark.vm
def test_the_venus_icd_is_an_aarch64_library_with_the_guests_icd_json(mesa_trixie, mesa_tarball):
    folder = Path(mesa_trixie["folder"])
    lib = Path(mesa_trixie["library"])
    assert lib == folder / "usr/lib/aarch64-linux-gnu/libvulkan_virtio.so"
    head = lib.read_bytes()[:20]
    # ELF, 64-bit, little-endian, a shared object (ET_DYN) for AArch64 (EM_AARCH64 = 183)
    assert head[:4] == b"\x7fELF" and head[4] == 2 and head[5] == 1
    assert int.from_bytes(head[16:18], "little") == 3 and int.from_bytes(head[18:20], "little") == 183
    nm = sandbox.run(_mesa_root(), ["aarch64-linux-gnu-nm", "-D", "--defined-only", str(lib)], binds=[folder])
    assert nm.returncode == 0, nm.stderr
    exported = {line.split()[-1] for line in nm.stdout.splitlines()}
    assert "vk_icdGetInstanceProcAddr" in exported
    # The ICD JSON replaces Debian's (same name) and names where the guest finds the library.
    icd = json.loads((folder / "usr/share/vulkan/icd.d/virtio_icd.json").read_text())
    assert icd["ICD"]["library_path"] == "/usr/lib/aarch64-linux-gnu/libvulkan_virtio.so"
    assert icd["ICD"]["api_version"].startswith("1.")
    info = json.loads((folder / "build.json").read_text())
    assert info["mesa_version"] == "25.0.7" and info["target"] == "aarch64-linux-gnu"
    assert info["source_sha256"] == sources.get("mesa-trixie").orig.sha256 == hashlib.sha256(mesa_tarball.read_bytes()).hexdigest()
    assert info["library_sha256"] == hashlib.sha256(lib.read_bytes()).hexdigest()
    # The build names itself in the driverInfo a guest's vulkaninfo reports (the verdict can tell it from Debian's).
    assert info["driver_info"] == f"Mesa 25.0.7 (git-{info['key'][:10]})" and info["driver_info"].encode() in lib.read_bytes()
    assert {"-Dvulkan-drivers=virtio", "-Dgallium-drivers=", "-Dplatforms=", "-Dllvm=disabled", "-Degl=disabled"} <= set(info["options"])


@pytest.mark.vm
def test_the_venus_icd_needs_only_libraries_the_guest_has(mesa_trixie):
    """Every DT_NEEDED of the ICD is in the profile's guest userland (it runs there, not in the build root)."""
    lib = Path(mesa_trixie["library"])
    proc = sandbox.run(_mesa_root(), ["aarch64-linux-gnu-readelf", "-d", str(lib)], binds=[lib.parent])
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", proc.stdout))
    assert "libdrm.so.2" in needed and not any("GL" in n or "LLVM" in n for n in needed), needed
    prov = Provisioner(profile.load("debian-trixie"))
    guest = prov.guest_root(prov.lock.pins("guest-arm64"))
    missing = [n for n in needed if not (guest / "usr/lib/aarch64-linux-gnu" / n).exists()]
    assert not missing, missing


@pytest.mark.vm
def test_a_second_build_mesa_is_the_cached_product(mesa_trixie, mesa_tarball):
    took = assert_cached("build-mesa", mesa_tarball, mesa_trixie)
    print(f"build-mesa 25.0.7: cold {mesa_trixie['seconds']:.0f} s, cached {took:.1f} s")


@pytest.mark.vm
def test_a_mesa_tree_that_fails_to_compile_is_one_provision_error_naming_the_log(mesa_trixie, mesa_tarball, tmp_path):
    """A source folder (a checkout) that does not compile: exit 2, the compiler's error, the log kept.

    The file broken is one of the first compiled (util's blake3), so the build stops within a minute.
    """
    subprocess.run(["tar", "-xf", str(mesa_tarball), "-C", str(tmp_path)], check=True)
    (tree,) = tmp_path.glob("mesa-*")
    broken = tree / "src/util/blake3/blake3_dispatch.c"
    broken.write_text("#error venus-repro: this tree does not compile\n" + broken.read_text())
    proc = venus_repro("build-mesa", str(tree), timeout=3600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    error = proc.stderr[proc.stderr.index("venus-repro: error:"):]
    assert "this tree does not compile" in error and "the whole log: " in error
    log_path = Path(error.split("the whole log: ", 1)[1].split()[0])
    assert log_path.is_file() and "this tree does not compile" in log_path.read_text()
    shutil.rmtree(tree)


@pytest.mark.vm
def test_an_option_this_mesa_tree_lacks_is_one_provision_error(mesa_tarball):
    proc = venus_repro("build-mesa", str(mesa_tarball), "-D", "no-such-option=true", timeout=3600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "no-such-option" in proc.stderr[proc.stderr.index("venus-repro: error:"):]


@pytest.mark.vm
def test_the_demos_pass_on_the_built_guest_mesa_and_the_guest_says_it_ran_it(mesa_trixie, mesa_tarball, provisioned, tmp_path, no_leftovers):
    """The guest's Venus driver from source: frames equal to the host's, and the guest's own facts name that build."""
    proc = venus_repro("run", "--json", "--run-dir", str(tmp_path / "run"), "--component", f"guest_mesa=build:{mesa_tarball}", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    demos = [d for d in result["steps"] if d["kind"] == "demo"]
    assert demos and all(d["checksum_match"] for d in demos)
    assert {d["driver_info"] for d in demos} == {mesa_trixie["driver_info"]} != {"Mesa 25.0.7-2+deb13u1"}
    assert result["guest"]["vulkan_icds"]["libvulkan_virtio.so"] == mesa_trixie["library_sha256"]
    checks = {c["name"]: c["ok"] for c in result["checks"]}
    assert checks["guest Mesa: the guest holds this build's ICD"] and checks["guest Mesa: the demos ran on this build"]
    mesa = result["components"]["guest_mesa"]
    assert mesa["source"] == "build" and mesa["version"].startswith("25.0.7 (build ")
