"""venus-repro build-qemu: a QEMU source tree built for the host root, with what Venus needs.

The source is Debian's own: trixie's QEMU 10.0.13 orig tarball, fetched from the mirror
into the cache by its pin (data/pins/sources.json, checked against its pinned .dsc).
The ``vm``-marked tests here are build tests (they need root for the roots' chroot; QEMU
is only started paused, no guest boots); the tarball is built once per session and shared.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from conftest import assert_cached, built, venus_repro
from venus_repro import profile, sandbox
from venus_repro.profile import host_debian_arch
from venus_repro.provision import Provisioner, sources


@pytest.fixture(scope="session")
def qemu_tarball() -> Path:
    return sources.fetch("qemu-trixie")


@pytest.fixture(scope="session")
def qemu_trixie(qemu_tarball) -> dict:
    """Debian trixie's QEMU 10.0.13 built once per session (cold in CI: about 9 min on 2 cores)."""
    return built("build-qemu", qemu_tarball)


def _in_host_root(build: dict, *args: str, **kw) -> subprocess.CompletedProcess:
    """The built QEMU run inside the profile's host root (its libraries: the same suite's)."""
    prov = Provisioner(profile.load("debian-trixie"))
    root = prov.host_root(prov.lock.pins(f"host-{host_debian_arch()}"))
    return sandbox.run(root, [build["binary"], *args], binds=[Path(build["folder"])], timeout=60, **kw)


@pytest.mark.vm
def test_the_built_qemu_has_venus_gpu_and_the_sdl_display(qemu_trixie, qemu_tarball):
    info = json.loads((Path(qemu_trixie["folder"]) / "build.json").read_text())
    assert info["qemu_version"] == "10.0.13"
    assert info["source_sha256"] == sources.get("qemu-trixie").orig.sha256 == hashlib.sha256(qemu_tarball.read_bytes()).hexdigest()
    assert info["binary_sha256"] == hashlib.sha256(Path(qemu_trixie["binary"]).read_bytes()).hexdigest()
    assert {"--target-list=aarch64-softmmu", "--enable-virglrenderer", "--enable-opengl", "--enable-sdl"} <= set(info["options"])
    devices = _in_host_root(qemu_trixie, "-device", "help")
    assert devices.returncode == 0, devices.stderr
    assert '"virtio-gpu-gl-pci"' in devices.stdout and '"virtio-blk-pci"' in devices.stdout
    displays = _in_host_root(qemu_trixie, "-display", "help")
    assert displays.returncode == 0 and "sdl" in displays.stdout.split(), displays.stdout
    version = _in_host_root(qemu_trixie, "--version")
    assert version.stdout.startswith("QEMU emulator version 10.0.13"), version.stdout


@pytest.mark.vm
def test_the_built_qemu_realizes_venus_with_a_gl_display(qemu_trixie):
    """The profile's machine with Venus and an SDL GL display starts (paused) and quits cleanly.

    QEMU reads the monitor only once every device has realized and the display has opened
    (as machine.StartCommand.probe relies on), so exit status 0 proves them all.
    """
    args = ["-M", "virt", "-accel", "tcg", "-cpu", "max", "-nodefaults", "-S", "-monitor", "stdio", "-serial", "none",
            "-nic", "none", "-device", "virtio-gpu-gl-pci,venus=on,blob=on,hostmem=64M", "-display", "sdl,gl=on"]  # fmt: skip
    prov = Provisioner(profile.load("debian-trixie"))
    root = prov.host_root(prov.lock.pins(f"host-{host_debian_arch()}"))
    cmd = sandbox.command(root, [qemu_trixie["binary"], *args], binds=[Path(qemu_trixie["folder"])], env={"SDL_VIDEODRIVER": "offscreen"})
    proc = subprocess.run(cmd, input="quit\n", capture_output=True, text=True, timeout=60, preexec_fn=sandbox.die_with_parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(qemu)" in proc.stdout


@pytest.mark.vm
def test_a_second_build_qemu_is_the_cached_product(qemu_trixie, qemu_tarball):
    took = assert_cached("build-qemu", qemu_tarball, qemu_trixie)
    print(f"build-qemu 10.0.13: cold {qemu_trixie['seconds']:.0f} s, cached {took:.1f} s")


@pytest.mark.vm
def test_the_demos_pass_on_the_built_qemu(qemu_trixie, qemu_tarball, provisioned, tmp_path, no_leftovers):
    """The VMM from source, as a registry component: the same demos, frames equal to the host's, on that binary."""
    run_dir = tmp_path / "run"
    proc = venus_repro("run", "--json", "--run-dir", str(run_dir), "--component", f"qemu=build:{qemu_tarball}", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert all(d["checksum_match"] for d in result["steps"] if d["kind"] == "demo")
    qemu = result["components"]["qemu"]
    assert qemu["source"] == "build" and qemu["version"].startswith("10.0.13 (build ")
    fp = json.loads((run_dir / "fingerprint.json").read_text())["components"]["qemu"]
    assert fp["binary"] == qemu_trixie["binary"] and fp["binary_sha256"] == qemu_trixie["binary_sha256"]
    assert fp["build"]["source_sha256"] == qemu_trixie["source_sha256"]
    assert qemu_trixie["binary"] in (run_dir / "qemu-cmdline.txt").read_text()
