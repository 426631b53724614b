"""The Nix flake, evaluated by the pinned Nix (trixie's nix-bin, provisioned like any component).

Neither GitHub nor a Nix cache is reachable here, so the flake is evaluated
against tests/nix/stub-nixpkgs, a TEST DOUBLE that records what each override
asked for; these tests assert those decisions. That real nixpkgs accepts the
same expressions was checked by hand (README, "Nix").
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from venus_repro import nix, profile
from venus_repro.provision import Provisioner, manifest

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parent.parent
STUB = REPO / "tests" / "nix" / "stub-nixpkgs"
SYSTEMS = ["aarch64-darwin", "aarch64-linux", "x86_64-linux"]
OVERRIDE = ["--override-input", "nixpkgs", f"path:{STUB}", "--no-write-lock-file"]


@pytest.fixture(scope="session")
def nixtool(tmp_path_factory) -> nix.Nix:
    root = Provisioner(profile.load("debian-trixie")).tool_root("nix")
    return nix.Nix(root, tmp_path_factory.mktemp("nix-state"), binds=(REPO,))


def flake_eval(nixtool: nix.Nix, attr: str):
    return json.loads(nixtool.succeed("eval", "--json", *OVERRIDE, f".#{attr}", cwd=REPO))


def expr_eval(nixtool: nix.Nix, expr: str) -> str:
    """Evaluate ``expr`` with ``pkgs`` (the stub for x86_64-linux) and ``repo`` in scope."""
    full = f"let pkgs = import {STUB} {{ system = \"x86_64-linux\"; }}; repo = {REPO}; in {expr}"
    return nixtool.run("eval", "--json", "--impure", "--expr", full, cwd=REPO)


def test_pinned_nix_version(nixtool):
    assert nixtool.version() == "nix (Nix) 2.26.3"


def test_every_nix_file_parses(nixtool):
    files = sorted([REPO / "flake.nix", *REPO.glob("nix/**/*.nix"), *REPO.glob("kernels/*.nix"), *STUB.glob("*.nix")])
    assert len(files) >= 14
    for f in files:
        proc = nixtool.instantiate("--parse", str(f), cwd=REPO)
        assert proc.returncode == 0, f"{f}: {proc.stderr}"


def test_lock_pins_nixpkgs_by_rev_without_an_invented_hash():
    lock = json.loads((REPO / "flake.lock").read_text())
    locked = lock["nodes"]["nixpkgs"]["locked"]
    assert locked["rev"] == "01820a7b5745da585a04e35531c4b86dec8ce4ad"
    assert "narHash" not in locked  # nobody here could compute it (README, "Nix")
    assert lock["nodes"]["root"]["inputs"] == {"nixpkgs": "nixpkgs"}  # the only input


def test_flake_shows_every_output_for_every_system(nixtool):
    shown = json.loads(nixtool.succeed("flake", "show", "--json", "--all-systems", *OVERRIDE, cwd=REPO))
    for system in SYSTEMS:
        packages = set(shown["packages"][system])
        assert {"venus-repro", "qemu", "virglrenderer", "kernel", "guest-initramfs", "manifest", "default"} <= packages
        assert ("moltenvk" in packages) == (system == "aarch64-darwin")
        assert set(shown["apps"][system]) == {"alpine-venus", "default", "test"}
        assert set(shown["checks"][system]) == ({"unit"} if system == "aarch64-darwin" else {"unit", "vm"})
        assert set(shown["devShells"][system]) == {"default"}


def test_flake_check_evaluates_all_systems(nixtool):
    proc = nixtool.run("flake", "check", "--no-build", "--all-systems", *OVERRIDE, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("derivation evaluated to") >= 30


def test_qemu_decisions(nixtool):
    darwin = flake_eval(nixtool, "packages.aarch64-darwin.qemu.overrideArgs")
    assert darwin["openGLSupport"] and darwin["virglSupport"] and darwin["sdlSupport"]
    assert darwin["libgbm"] is None and darwin["libdrm"] is None
    assert darwin["hostCpuTargets"] == ["aarch64-softmmu"]
    linux = flake_eval(nixtool, "packages.x86_64-linux.qemu.overrideArgs")
    assert linux["openGLSupport"] and linux["virglSupport"] and linux["sdlSupport"]
    assert "libgbm" not in linux and "libdrm" not in linux


def test_virglrenderer_has_venus_and_our_patch_everywhere(nixtool):
    name = "venus-import-shm-resources-as-host-pointers-1.3.0.patch"
    assert (REPO / "nix/patches/virglrenderer" / name).is_file()
    for system in SYSTEMS:
        attr = f"packages.{system}.virglrenderer"
        assert flake_eval(nixtool, f"{attr}.overrideArgs.vulkanSupport") is True, system
        (patch,) = flake_eval(nixtool, f"{attr}.patches")
        assert "/nix/store/" in patch and patch.endswith("-source/nix/patches/virglrenderer/" + name)  # from the flake
        thread = "-Drender-server-worker=thread" in flake_eval(nixtool, f"{attr}.mesonFlags")
        assert thread == (system == "aarch64-darwin"), system


def test_patch_option_and_a_version_without_a_patch(nixtool):
    off = expr_eval(nixtool, "(pkgs.callPackage (repo + \"/nix/virglrenderer.nix\") { withFdFallbackPatch = false; }).patches")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout) == []
    newer = expr_eval(
        nixtool,
        "(pkgs.callPackage (repo + \"/nix/virglrenderer.nix\") "
        "{ virglrenderer = pkgs.virglrenderer.overrideAttrs { version = \"9.9.9\"; }; }).patches",
    )
    assert newer.returncode != 0
    assert "no fd-fallback patch for virglrenderer 9.9.9" in newer.stderr


def test_kernel_is_16k_with_virtio_gpu_built_in(nixtool):
    for system in SYSTEMS:
        config = flake_eval(nixtool, f"packages.{system}.kernel.overrideArgs.structuredExtraConfig")
        answers = {k: (v.get("content", v))["tristate"] for k, v in config.items()}
        assert answers["ARM64_16K_PAGES"] == "y" and answers["ARM64_4K_PAGES"] == "n"
        for option in ("DRM_VIRTIO_GPU", "VIRTIO_PCI", "VIRTIO_BLK", "VIRTIO_CONSOLE", "9P_FS"):
            assert answers[option] == "y", (system, option)
        assert answers["MODULE_SIG"] == "n"
    # On macOS the kernel is an aarch64-linux derivation (a Linux builder builds it).
    assert flake_eval(nixtool, "packages.aarch64-darwin.kernel.system") == "aarch64-linux"


def test_alpine_pin():
    text = (REPO / "nix/guest/alpine-minirootfs.nix").read_text()
    hexdigest = "041fa34a81788242df9e78fa69b97ab45b8ec47ddbf88864755610414a7bf3de"  # shared/REFERENCE.md
    sri = "sha256-" + base64.b64encode(bytes.fromhex(hexdigest)).decode()
    assert f'hash = "{sri}";' in text and hexdigest in text
    assert "alpine-minirootfs-3.20.3-aarch64.tar.gz" in text


def test_manifest_for_each_system(nixtool):
    for system in SYSTEMS:
        m = json.loads(flake_eval(nixtool, f"packages.{system}.manifest.text"))
        manifest.validate(m, system)  # the driver's nix profile reads this shape
        assert m["system"] == system and m["page_size"] == 16384
        assert m["vulkaninfo"].endswith("/bin/vulkaninfo")
        assert m["qemu"].endswith("/bin/qemu-system-aarch64")
        assert m["render_server"].endswith("/libexec/virgl_render_server")
        assert m["kernel"].endswith("/Image")
        assert m["initramfs"].endswith("/initrd.cpio")
        assert m["versions"]["fd_fallback_patch"] is True
        if system == "aarch64-darwin":
            assert m["accel"] == "hvf" and m["vulkan_icd"].endswith("/share/vulkan/icd.d/MoltenVK_icd.json")
            assert m["host_demos"] is None and m["ring_wake"] is None
            assert m["virglrenderer"].endswith("/lib/libvirglrenderer.dylib")
        else:
            arch = system.split("-")[0]
            assert m["accel"] == "tcg" and m["vulkan_icd"].endswith(f"/lvp_icd.{arch}.json")
            assert m["host_demos"].endswith("/bin")
            # TCG: the render server gets the ring-wake shim, built from shims/.
            assert m["ring_wake"].endswith("/lib/vkr_ring_wake.so")
            assert m["virglrenderer"].endswith("/lib/libvirglrenderer.so")


def test_guest_initramfs_keeps_the_init_contract(nixtool):
    script = flake_eval(nixtool, "packages.x86_64-linux.guest-initramfs.script")
    assert "driver/guest/init.sh} init" not in script  # interpolated to a store path
    assert "-init.sh init" in script
    assert ": > etc/venus-repro/modules" in script  # virtio-gpu built in: nothing to load
    assert "VK_DRIVER_FILES=" in script and "virtio_icd.json" in script
    # The Debian guest's /init reads the same env file the Nix guest writes.
    assert ". /etc/venus-repro/env" in (REPO / "driver/guest/init.sh").read_text()


def test_apps_run_the_driver_with_the_nix_profile(nixtool):
    for system in SYSTEMS:
        for app in ("alpine-venus", "default", "test"):
            program = flake_eval(nixtool, f"apps.{system}.{app}.program")
            assert program.startswith("/nix/store/") and "/bin/venus-repro-" in program
