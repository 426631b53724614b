"""The nix profile: `--profile nix --manifest FILE` (what the flake's apps call).

The manifest reader's errors are tested on small files; the whole path (a run
whose components come from a manifest, not from provisioning) is tested on a
manifest that names the Debian profile's real components (``root`` = its host
root), since nothing of the flake can be built here.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import pytest

from venus_repro.profile import PINS

from conftest import demos, venus_repro
from venus_repro import sandbox
from venus_repro.machine import StartCommand
from venus_repro.provision import manifest


def image(path: Path, page_kb: int) -> Path:
    """A minimal arm64 Image header with the given page size."""
    head = bytearray(64)
    struct.pack_into("<QQQ", head, 8, 0, 0x100000, {4: 1, 16: 2, 64: 3}[page_kb] << 1)
    head[56:60] = b"ARM\x64"
    path.write_bytes(bytes(head))
    return path


@pytest.fixture
def tree(tmp_path) -> dict:
    """A manifest whose every path exists (in tmp_path as root)."""
    for p in ("bin/qemu-system-aarch64", "libexec/virgl_render_server", "icd.json"):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_text("")
    doc = {
        "format": 1,
        "system": manifest.host_system(),
        "root": str(tmp_path),
        "qemu": "/bin/qemu-system-aarch64",
        "render_server": "/libexec/virgl_render_server",
        "vulkan_icd": "/icd.json",
        "kernel": str(image(tmp_path / "Image", 16)),
        "initramfs": str(tmp_path / "icd.json"),
        "page_size": 16384,
        "accel": "tcg",
        "host_demos": None,
    }
    return doc


def provision(tmp_path: Path, doc) -> tuple[int, str, str]:
    path = tmp_path / "manifest.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    proc = venus_repro("provision", "--profile", "nix", "--manifest", str(path), "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def test_a_good_manifest_gives_its_components(tmp_path, tree):
    code, out, err = provision(tmp_path, tree)
    assert code == 0, err
    info = json.loads(out)
    assert info["profile"] == "nix"
    assert info["host_root"] == tree["root"]
    assert info["kernel"]["page_size"] == 16384 and info["kernel"]["flavour"] == "16k"
    assert info["lock_sha256"] == hashlib.sha256((tmp_path / "manifest.json").read_bytes()).hexdigest()
    assert info["machine"] == {"accel": "tcg", "display": "sdl,gl=on", "smp": 2, "memory": "2G", "hostmem": "1G"}


def test_the_macs_manifest_starts_qemu_as_the_user_does(tmp_path, tree):
    """nix/manifest.nix on darwin: the fork's cocoa window, hostmem=256M, four CPUs (scripts/run-alpine.sh)."""
    tree.update(display="cocoa", hostmem="256M", smp=4)
    code, out, err = provision(tmp_path, tree)
    assert code == 0, err
    assert json.loads(out)["machine"] == {"accel": "tcg", "display": "cocoa", "smp": 4, "memory": "2G", "hostmem": "256M"}
    # and QEMU's command line says so
    path = tmp_path / "manifest.json"
    argv = StartCommand(manifest.components(manifest.profile(path)), tmp_path / "run").qemu_argv()
    assert argv[argv.index("-display") + 1] == "cocoa" and argv[argv.index("-smp") + 1] == "4"
    assert argv[argv.index("-device") + 1] == "virtio-gpu-gl-pci,venus=on,blob=on,hostmem=256M"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.pop("qemu"), "field 'qemu' must be a path"),
        (lambda d: d.update(format=2), "field 'format' must be 1"),
        (lambda d: d.update(page_size=8192), "field 'page_size' must be 4096, 16384 or 65536"),
        (lambda d: d.update(accel="whpx"), "field 'accel' must be one of hvf, kvm, tcg"),
        (lambda d: d.update(hostmem="256"), "field 'hostmem' must be a size such as 256M or 1G"),
        (lambda d: d.update(hostmem="lots"), "field 'hostmem' must be a size such as 256M or 1G"),
        (lambda d: d.update(smp=0), "field 'smp' must be a number of guest CPUs, 1 to 64"),
        (lambda d: d.update(system="aarch64-darwin"), "the manifest is for aarch64-darwin"),
        (lambda d: d.update(render_server="/nope/virgl_render_server"), "render_server /nope/virgl_render_server does not exist"),
        (lambda d: d.update(initramfs="/nonexistent/initrd.cpio"), "initramfs /nonexistent/initrd.cpio does not exist"),
    ],
)
def test_a_bad_manifest_is_one_clear_error(tmp_path, tree, change, message):
    change(tree)
    code, out, err = provision(tmp_path, tree)
    assert code == 2 and out == ""
    assert message in err and str(tmp_path / "manifest.json") in err
    assert len(err.strip().splitlines()) == 1


def test_the_wrong_kernel_is_refused_not_booted(tmp_path, tree):
    """The seed's story: a 4K kernel where 16K is promised is an error, never a silent fallback."""
    tree["kernel"] = str(image(tmp_path / "Image-4k", 4))
    code, _, err = provision(tmp_path, tree)
    assert code == 2
    assert "has 4K pages, but the manifest promises 16K" in err


def test_malformed_and_missing_manifests(tmp_path):
    code, _, err = provision(tmp_path, "{not json")
    assert code == 2 and "malformed JSON" in err
    proc = venus_repro("provision", "--profile", "nix")
    assert proc.returncode == 2 and "the nix profile needs --manifest FILE" in proc.stderr
    proc = venus_repro("provision", "--manifest", str(tmp_path / "manifest.json"))
    assert proc.returncode == 2 and "--manifest belongs to the nix profile" in proc.stderr
    proc = venus_repro("lock", "--profile", "nix", "--manifest", str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "cannot read the manifest" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="private namespaces need root here")
def test_root_slash_runs_on_the_host_in_its_own_pid_namespace():
    """Store paths are self-contained: no chroot, but still a namespace that dies with the command."""
    probe = "import os; print(os.getpid()); print(open('/proc/1/cmdline', 'rb').read().split(b'\\0')[1].decode())"
    proc = sandbox.run(Path("/"), [sys.executable, "-c", probe], timeout=30)
    assert proc.returncode == 0, proc.stderr
    pid, arg = proc.stdout.splitlines()
    assert pid == "1" and arg == "-c"


def debian_manifest(provisioned: dict) -> dict:
    """A manifest naming the Debian profile's provisioned components (``root`` = its host root)."""
    root = provisioned["host_root"]
    return {
        "format": 1,
        "system": manifest.host_system(),
        "root": root,
        "qemu": "/usr/bin/qemu-system-aarch64",
        "render_server": "/usr/libexec/virgl_render_server",
        "vulkan_icd": "/usr/share/vulkan/icd.d/lvp_icd.json",
        "virglrenderer": "/usr/lib/x86_64-linux-gnu/libvirglrenderer.so.1" if os.uname().machine == "x86_64" else "/usr/lib/aarch64-linux-gnu/libvirglrenderer.so.1",
        "vulkaninfo": "/usr/bin/vulkaninfo",
        "egl_vendor": "/usr/share/glvnd/egl_vendor.d/50_mesa.json",
        "kernel": provisioned["kernel"]["path"],
        "initramfs": provisioned["initramfs"],
        "page_size": 16384,
        "accel": "tcg",
        "display": "sdl,gl=on",
        "host_demos": str(Path(provisioned["demos"]) / "host"),
        "ring_wake": provisioned["ring_wake"],
        "versions": {"qemu": "from-manifest", "virglrenderer": "from-manifest"},
        # As nix/manifest.nix writes it: the guest is packed from this lock.
        "guest_pins": {"lock": "debian-trixie.lock.json", "lock_sha256": hashlib.sha256((PINS / "debian-trixie.lock.json").read_bytes()).hexdigest(),
                       "kernel_flavour": "16k"},  # fmt: skip
    }


@pytest.mark.vm
def test_a_run_from_a_manifest(provisioned, tmp_path, no_leftovers):
    """The driver's nix path end to end: every component named by a manifest, none provisioned."""
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(debian_manifest(provisioned)))
    run_dir = tmp_path / "run"
    proc = venus_repro("run", "--profile", "nix", "--manifest", str(path), "--json", "--run-dir", str(run_dir))
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass", result["checks"]
    assert result["profile"] == "nix"
    assert result["components"]["qemu"] == {"source": "manifest", "version": "from-manifest", "detail": None, "sha256": None}
    assert result["lock_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [d["checksum"] == d["host_checksum"] for d in demos(result)] == [True, True, True]
    assert not [p for p in result["preflight"] if p["status"] == "fail"], result["preflight"]
    fp = json.loads((run_dir / "fingerprint.json").read_text())
    assert fp["components"]["qemu"]["binary"] == "/usr/bin/qemu-system-aarch64"
    assert fp["components"]["ring_wake"]["sha256"] != "off"
    assert fp["components"]["host_vulkan"]["library_sha256"]  # found through the ICD's library_path
    assert "vkr_ring_wake active" in (run_dir / "render-server.log").read_text()
    assert "__EGL_VENDOR_LIBRARY_FILENAMES=/usr/share/glvnd/egl_vendor.d/50_mesa.json" in (run_dir / "qemu-cmdline.txt").read_text()


@pytest.fixture
def nix_run(provisioned, tmp_path) -> tuple[Path, Path]:
    """A real nix-profile run: a manifest naming the Debian profile's components, as above."""
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(debian_manifest(provisioned)))
    run_dir = tmp_path / "mac-like-run"
    proc = venus_repro("run", "--profile", "nix", "--manifest", str(path), "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path, run_dir


@pytest.mark.vm
def test_a_nix_profile_run_is_bundled_and_replays_on_both_profiles(nix_run, tmp_path, no_leftovers):
    import tarfile

    path, run_dir = nix_run
    proc = venus_repro("bundle", str(run_dir), "-o", str(tmp_path / "mac.tar.gz"))
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(tmp_path / "mac.tar.gz") as t:
        names = set(t.getnames())
        bundled = json.loads(t.extractfile("manifest.json").read())
        stores = json.loads(t.extractfile("nix/store-paths.json").read())
    assert {"nix/manifest.json", "nix/store-paths.json", "profile/debian-trixie.yaml", "profile/debian-trixie.lock.json",
            "run/result.json", "run/fingerprint.json", "run/scenario.yaml", "run/environment.json"} <= names  # fmt: skip
    assert bundled["nix"]["guest_pins_match"] is True and bundled["profile"] == "debian-trixie"
    assert stores["qemu"]["path"] == "/usr/bin/qemu-system-aarch64" and len(stores["kernel"]["sha256"]) == 64
    # On the Debian profile (a Linux machine without Nix): the same guest pins on this host's stack.
    proc = venus_repro("replay", "--json", str(tmp_path / "mac.tar.gz"), "--run-dir", str(tmp_path / "on-debian"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["reproduced"] and out["result"]["profile"] == "debian-trixie" and "left_out" in out
    comparison = out["comparison"]
    assert "guest" not in comparison["sides"], comparison["summary"]
    assert {"guest_kernel", "guest_mesa", "guest_base"} <= set(comparison["same_by_content"])
    # On the nix profile with the same manifest: no store path differs.
    proc = venus_repro("replay", "--json", str(tmp_path / "mac.tar.gz"), "--profile", "nix", "--manifest", str(path), "--run-dir", str(tmp_path / "on-nix"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["reproduced"] and out["store_paths"] == [] and out["comparison"]["summary"] == "no component differences"
    # A bundle of a Debian-profile run takes no manifest: one clear error.
    proc = venus_repro("replay", str(tmp_path / "mac.tar.gz"), "--manifest", str(path))
    assert proc.returncode == 2 and "--profile nix and --manifest FILE go together" in proc.stderr


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.vm
def test_a_mac_run_lines_up_by_role_with_a_linux_run(nix_run, tmp_path):
    """The darwin run (its fields from the flake's aarch64-darwin manifest): the host differs, the guest is the same."""
    _, run_dir = nix_run
    proc = venus_repro("compare", "--json", str(FIXTURES / "darwin-run"), str(run_dir))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["sides"] == ["host"] and "in the host components" in report["summary"], report["summary"]
    assert {"guest_kernel", "guest_mesa", "guest_base"} <= set(report["same_by_content"])
    host = {d["what"].split(".")[1] for d in report["differences"] if d["side"] == "host"}
    assert {"qemu", "virglrenderer", "host_vulkan"} <= host
    assert report["differences"][0]["suspect"]  # the verdict changed: fail on the Mac, pass here
