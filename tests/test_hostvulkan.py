"""--host-vulkan host: the host's own GPU driver, found from its ICD/EGL files and bound into the root.

CI has no GPU. The discovery tests build fake host trees (ICD and EGL vendor
files, ld.so.conf, libraries); the end-to-end tests make a real Vulkan driver
look like a vendor's: lavapipe, copied out of the root under another name into
a folder the root doesn't have, with its own ICD and EGL files. Everything the
binding does for NVIDIA's driver (staging its libraries, rewriting the ICD,
LD_LIBRARY_PATH, the EGL vendor, the render-server preload check) then runs
for real, and the guest's frames must equal the host's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import demos, venus_repro
from venus_repro import hostvulkan
from venus_repro.errors import UsageError


def _icd(path: Path, library: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"file_format_version": "1.0.0", "ICD": {"library_path": library, "api_version": "1.4.312"}}))
    return path


def _lib(path: Path, source: Path | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copyfile(source, path)
    else:
        path.write_bytes(b"not an ELF")
    return path


def _host(tmp_path: Path) -> Path:
    """A host like the H200's: NVIDIA's files under /usr/local/nvidia, named in ld.so.conf.d."""
    host = tmp_path / "host"
    (host / "etc/ld.so.conf.d").mkdir(parents=True)
    (host / "etc/ld.so.conf").write_text("# comment\ninclude /etc/ld.so.conf.d/*.conf\n")
    (host / "etc/ld.so.conf.d/nvidia.conf").write_text("/usr/local/nvidia/lib64\n")
    lib = host / "usr/local/nvidia/lib64"
    _lib(lib / "libGLX_nvidia.so.580.159.04")
    (lib / "libGLX_nvidia.so.0").symlink_to("libGLX_nvidia.so.580.159.04")
    _lib(lib / "libEGL_nvidia.so.580.159.04")
    (lib / "libEGL_nvidia.so.0").symlink_to("libEGL_nvidia.so.580.159.04")
    _lib(lib / "libnvidia-glcore.so.580.159.04")  # a companion it dlopens
    _lib(lib / "libnvidia-egl-wayland.so.1.1.19")  # another release: not the driver's
    _icd(host / "usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json", "libGLX_nvidia.so.0")
    _icd(host / "usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json", "libEGL_nvidia.so.0")
    _icd(host / "usr/share/glvnd/egl_vendor.d/50_mesa.json", "libEGL_mesa.so.0")
    _lib(host / "usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0")
    # lavapipe on the host too: a software renderer, never "the host's GPU driver".
    _icd(host / "usr/share/vulkan/icd.d/lvp_icd.x86_64.json", "/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so")
    _lib(host / "usr/lib/x86_64-linux-gnu/libvulkan_lvp.so")
    return host


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/share/vulkan/icd.d").mkdir(parents=True)
    return root


def test_nvidia_in_its_own_tree_is_found_through_the_callers_environment_and_staged(tmp_path):
    host, root = _host(tmp_path), _root(tmp_path)
    env = {
        "VK_DRIVER_FILES": "/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json",
        "__EGL_VENDOR_LIBRARY_FILENAMES": "/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json",
    }
    d = hostvulkan.discover(root, env, host)
    assert d.nvidia and d.release == "580.159.04" and d.root_icd is None
    assert d.egl is not None and d.egl.json_path.name == "10_nvidia.json"
    names = {n for n, _ in d.files}
    # The ICD's and EGL's libraries under the names they are asked by, the companion of
    # the same release under its own; not the other release's library.
    assert {"libGLX_nvidia.so.0", "libEGL_nvidia.so.0", "libnvidia-glcore.so.580.159.04"} <= names
    assert "libnvidia-egl-wayland.so.1.1.19" not in names

    run_dir = tmp_path / "run"
    staged = hostvulkan.stage(d, run_dir, root)
    icd = json.loads(Path(staged.icd).read_text())
    assert icd["ICD"]["library_path"] == str(run_dir / "host-vulkan/lib/libGLX_nvidia.so.0")
    assert icd["ICD"]["api_version"] == "1.4.312"
    assert json.loads(Path(staged.egl).read_text())["ICD"]["library_path"].endswith("/host-vulkan/lib/libEGL_nvidia.so.0")
    assert staged.lib_dir == run_dir / "host-vulkan/lib"
    # One bind per file, from the real file onto a placeholder in the run directory.
    assert all(target.is_file() and target.parent == staged.lib_dir and source.exists() for source, target in staged.mounts)
    sources = {s.name for s, _ in staged.mounts}
    assert "libGLX_nvidia.so.580.159.04" in sources  # the link's target, not the link
    assert hostvulkan.device_nodes(d, tmp_path / "dev") == []


def test_the_loader_search_path_finds_the_driver_and_passes_over_software_and_stale_files(tmp_path):
    host, root = _host(tmp_path), _root(tmp_path)
    # Where a distribution puts NVIDIA's ICD: /usr/share/vulkan/icd.d, library by bare name via ld.so.conf.
    shutil.copyfile(host / "usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json", host / "usr/share/vulkan/icd.d/nvidia_icd.json")
    _icd(host / "etc/vulkan/icd.d/stale_icd.json", "libgone.so.1")
    (host / "etc/vulkan/icd.d/broken.json").write_text("{not json")
    found, skipped = hostvulkan.icd_candidates({}, host)
    assert [v.json_path.name for v in found] == ["nvidia_icd.json"]
    assert any("lvp_icd" in s and "software" in s for s in skipped)
    assert any("stale_icd" in s and "libgone.so.1 is not installed" in s for s in skipped)
    assert any("broken.json" in s for s in skipped)
    d = hostvulkan.discover(root, {}, host)
    # Only Mesa's EGL vendor is on glvnd's search path here, and it is not the driver's:
    # QEMU's display stays on the root's Mesa EGL.
    assert d.egl is None
    assert d.icd.library == host / "usr/local/nvidia/lib64/libGLX_nvidia.so.0"


def test_a_mesa_gpu_driver_the_root_ships_is_the_roots_pinned_copy(tmp_path):
    host, root = _host(tmp_path), _root(tmp_path)
    _lib(host / "usr/lib/x86_64-linux-gnu/libvulkan_radeon.so")
    _icd(host / "usr/share/vulkan/icd.d/radeon_icd.x86_64.json", "/usr/lib/x86_64-linux-gnu/libvulkan_radeon.so")
    _icd(root / "usr/share/vulkan/icd.d/radeon_icd.x86_64.json", "/usr/lib/x86_64-linux-gnu/libvulkan_radeon.so")
    d = hostvulkan.discover(root, {"VK_DRIVER_FILES": "/usr/share/vulkan/icd.d/radeon_icd.x86_64.json"}, host)
    assert d.root_icd == "/usr/share/vulkan/icd.d/radeon_icd.x86_64.json" and d.files == ()
    staged = hostvulkan.stage(d, tmp_path / "run", root)
    assert staged.icd == d.root_icd and staged.mounts == () and staged.lib_dir is None
    (tmp_path / "dev/dri").mkdir(parents=True)
    (tmp_path / "dev/dri/renderD128").touch()
    assert hostvulkan.device_nodes(d, tmp_path / "dev") == [str(tmp_path / "dev/dri/renderD128")]


@pytest.mark.parametrize(
    "setup,message",
    [
        ("none", "this host has no Vulkan GPU driver"),
        ("two", "several Vulkan GPU drivers"),
        ("software-only", "passed over"),
    ],
)
def test_no_driver_or_an_ambiguous_one_is_one_clear_error(tmp_path, setup, message):
    host, root = _host(tmp_path), _root(tmp_path)
    shutil.rmtree(host / "usr/local/nvidia/share")
    if setup == "two":
        _icd(host / "etc/vulkan/icd.d/nvidia_icd.json", "libGLX_nvidia.so.0")
        _lib(host / "usr/lib/x86_64-linux-gnu/libvulkan_intel.so")
        _icd(host / "usr/share/vulkan/icd.d/intel_icd.x86_64.json", "/usr/lib/x86_64-linux-gnu/libvulkan_intel.so")
    with pytest.raises(UsageError) as exc:
        hostvulkan.discover(root, {}, host)
    assert message in str(exc.value)
    assert "VK_DRIVER_FILES" in str(exc.value) or "--host-vulkan lavapipe" in str(exc.value)


def test_dt_needed_is_read_from_real_elf_files():
    import sys

    needed = hostvulkan.needed(Path(sys.executable).resolve())
    assert any(n.startswith("libc.so") for n in needed) or any(n.startswith("libpython") for n in needed)
    assert hostvulkan.needed(Path(__file__)) == []


# --- for real: a renamed lavapipe as the host's "vendor" driver -------------------------------


def _vendor_driver(tmp_path: Path, root: Path, library_name: str) -> dict[str, str]:
    """lavapipe and Mesa's EGL copied out of the root under a vendor's names; the environment naming them."""
    vendor = tmp_path / "vendor"
    lib = vendor / "lib64"
    lib.mkdir(parents=True)
    real = library_name.split(".so")[0] + ".so.25.0.7"  # libGLX_nvidia.so.0 -> libGLX_nvidia.so.580.159.04
    shutil.copyfile(root / "usr/lib/x86_64-linux-gnu/libvulkan_lvp.so", lib / real)
    (lib / library_name).symlink_to(real)
    egl_real = (root / "usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0").resolve()
    shutil.copyfile(egl_real, lib / "libEGL_vendor.so.25.0.7")
    (lib / "libEGL_vendor.so.0").symlink_to("libEGL_vendor.so.25.0.7")
    icd = _icd(vendor / "share/vulkan/icd.d/vendor_icd.json", str(lib / library_name))
    egl = _icd(vendor / "share/glvnd/egl_vendor.d/10_vendor.json", str(lib / "libEGL_vendor.so.0"))
    return {"VK_DRIVER_FILES": str(icd), "__EGL_VENDOR_LIBRARY_FILENAMES": str(egl)}


@pytest.mark.vm
def test_a_vendor_driver_bound_from_the_host_passes_the_demos_with_frames_equal(provisioned, tmp_path, no_leftovers):
    import os

    root = Path(provisioned["host_root"])
    env = {**os.environ, **_vendor_driver(tmp_path, root, "libvulkan_vendor.so.1")}
    run_dir = tmp_path / "run"
    proc = venus_repro("run", "--host-vulkan", "host", "--run-dir", str(run_dir), "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass"
    assert demos(result)
    for demo in demos(result):
        assert demo["checksum_match"] and demo["checksum"] == demo["host_checksum"], demo
    fp = json.loads((run_dir / "fingerprint.json").read_text())["components"]
    assert fp["host_vulkan"]["mode"] == "host" and fp["host_vulkan"]["release"] == "25.0.7"
    assert fp["host_vulkan"]["icd"] == env["VK_DRIVER_FILES"]
    # The pinned later virglrenderer (no driver preload), not the root's 1.1.
    assert (fp["virglrenderer"]["source"], fp["virglrenderer"]["detail"]) == ("suite", "forky") and fp["virglrenderer"]["version"].startswith("1.3")
    preflight = (run_dir / "preflight.log").read_text()
    assert "OK render server preload" in preflight and "only in its workers" in preflight
    # The render server really ran the staged vendor library.
    staged = json.loads((run_dir / "host-vulkan/icd.json").read_text())
    assert staged["ICD"]["library_path"] == str(run_dir / "host-vulkan/lib/libvulkan_vendor.so.1")


@pytest.mark.vm
def test_an_nvidia_driver_with_a_preloading_render_server_is_refused_before_boot(provisioned, tmp_path, no_leftovers):
    """virglrenderer 1.1 initialises the host driver before it forks: NVIDIA's fails every guest vkCreateDevice."""
    import os

    root = Path(provisioned["host_root"])
    env = {**os.environ, **_vendor_driver(tmp_path, root, "libGLX_nvidia.so.0")}
    run_dir = tmp_path / "run"
    proc = venus_repro(
        "run", "--host-vulkan", "host", "--run-dir", str(run_dir), "--json",
        "--virglrenderer", str(root / "usr/lib/x86_64-linux-gnu/libvirglrenderer.so.1"),
        "--render-server", str(root / "usr/libexec/virgl_render_server"),
        env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "fail" and not demos(result)
    check = next(c for c in result["preflight"] if c["name"] == "render server preload")
    assert check["status"] == "fail" and "vulkan-preload=false" in check["fix"]
    assert not (run_dir / "console.log").exists()  # refused before boot


@pytest.mark.vm
def test_no_gpu_driver_on_this_host_is_one_clear_error(provisioned, tmp_path):
    import os

    env = {**os.environ, "VK_DRIVER_FILES": str(tmp_path / "missing_icd.json")}
    proc = venus_repro("run", "--host-vulkan", "host", "--run-dir", str(tmp_path / "run"), env=env)
    assert proc.returncode == 2, proc.stderr
    assert "no Vulkan GPU driver" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.vm
def test_the_render_server_preload_probe_tells_virglrenderer_1_1_from_the_pinned_1_3(provisioned, tmp_path, no_leftovers):
    """Asked for a context, 1.1's server has the host driver mapped in its main process; forky's 1.3.0 does not."""
    from venus_repro import doctor, registry
    from venus_repro.environment import Environment
    from venus_repro.machine import StartCommand
    from venus_repro.provision import components, load_profile

    profile = load_profile("debian-trixie")
    c, _ = components(Environment(profile))
    assert doctor.render_server_preloads(StartCommand(c, tmp_path / "a")) is True
    gpu = Environment(profile).with_sources(virglrenderer=registry.Source("suite", suite=profile.gpu_renderer[0], exact=True))
    c13, env = components(gpu)
    assert c13.versions["virglrenderer"].startswith("1.3.") and env.describe(registry.spec("virglrenderer")) == ("suite", "forky")
    assert doctor.render_server_preloads(StartCommand(c13, tmp_path / "b")) is False
