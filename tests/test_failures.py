"""Failures provoked for real and the finding each must produce.

Each one is a real QEMU launch: the preflight probe (QEMU realizing the exact
GPU device and display of the run) or, with --no-preflight, the full boot.
"""

from __future__ import annotations

import json
import platform

import pytest

from conftest import demos, venus_repro

pytestmark = pytest.mark.vm

NO_RENDER_SERVER = "RENDER_SERVER_EXEC_PATH=/nonexistent/virgl_render_server"


def failed_run(tmp_path, *args: str) -> dict:
    # One demo is enough to provoke each failure.
    proc = venus_repro("run", "--json", "--run-dir", str(tmp_path / "run"), "--demo", "test_tri", *args)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "fail"
    assert json.loads((tmp_path / "run" / "result.json").read_text())["findings"] == result["findings"]
    return result


def finding_ids(result: dict) -> list[str]:
    return [f["id"] for f in result["findings"]]


def evidence(result: dict) -> str:
    return "\n".join(e["text"] for f in result["findings"] for e in f["evidence"])


def booted(tmp_path) -> bool:
    return (tmp_path / "run" / "console.log").exists()


def test_render_server_absent_is_refused_before_boot(provisioned, tmp_path, no_leftovers):
    result = failed_run(tmp_path, "--host-env", NO_RENDER_SERVER)
    assert not booted(tmp_path)
    assert [c["name"] for c in result["checks"]] == ["preflight: render server"]
    assert finding_ids(result) == ["render-server-missing"]


def test_render_server_absent_in_a_real_boot(provisioned, tmp_path, no_leftovers):
    result = failed_run(tmp_path, "--no-preflight", "--host-env", NO_RENDER_SERVER)
    assert booted(tmp_path)
    # One finding, whichever way virglrenderer's race went (see the rule's cause).
    assert finding_ids(result) == ["render-server-missing"]
    (demo,) = demos(result)
    text = evidence(result)
    codes = {(c["kind"], c["value"]): c["name"] for c in result["codes"]}
    if "virgl could not be initialized" in text:
        # The server died before virglrenderer's first message: no renderer, no capsets.
        assert (demo["outcome"], demo["vk_result"]) == ("error", -3)
        assert "timed out waiting for cap set 0" in text
        assert codes[("VkResult", -3)] == "VK_ERROR_INITIALIZATION_FAILED"
    else:
        # The usual way: Venus is offered, then every blob creation fails.
        assert (demo["outcome"], demo["vk_result"], demo["call"]) == ("error", -1, "vkCreateInstance")
        assert "ctrl 0x10c, error 0x1200" in text
        assert "failed to allocate/map ring shmem" in text  # Mesa, with VN_DEBUG=init
        assert codes[("virtio-gpu command", "0x10c")] == "RESOURCE_CREATE_BLOB"
        assert codes[("VkResult", -1)] == "VK_ERROR_OUT_OF_HOST_MEMORY"


def test_no_gl_display(provisioned, tmp_path, no_leftovers):
    result = failed_run(tmp_path, "--display", "none")
    assert not booted(tmp_path)
    assert finding_ids(result) == ["no-gl-display"]
    assert "does not have OpenGL support enabled" in evidence(result)


def test_no_gl_display_in_a_real_boot(provisioned, tmp_path, no_leftovers):
    # egl-headless on a host without /dev/dri: named for its own cause (no render node).
    result = failed_run(tmp_path, "--no-preflight", "--display", "egl-headless")
    assert finding_ids(result) == ["egl-headless-no-render-node"]
    assert "egl: no drm render node available" in evidence(result)
    assert "QEMU exited" in result["failure"]


def test_venus_without_blob_and_hostmem(provisioned, tmp_path, no_leftovers):
    result = failed_run(tmp_path, "--gpu-options", "venus=on")
    assert finding_ids(result) == ["venus-needs-blob-hostmem"]
    assert "venus requires enabled blob and hostmem options" in evidence(result)


def test_host_vulkan_missing_in_a_real_boot(provisioned, tmp_path, no_leftovers):
    result = failed_run(tmp_path, "--no-preflight", "--host-env", "VK_DRIVER_FILES=/nonexistent/icd.json")
    assert finding_ids(result) == ["host-vulkan-missing"]
    assert demos(result)[0]["vk_result"] == -9
    assert "preflight FAIL host vulkan" in evidence(result)  # preflight saw it too, and said so


def test_run_prints_findings_under_the_table(provisioned, tmp_path, no_leftovers):
    proc = venus_repro("run", "--run-dir", str(tmp_path / "run"), "--display", "none")
    assert proc.returncode == 1
    assert "finding [no-gl-display]" in proc.stdout and "fix:" in proc.stdout


def test_doctor(provisioned, tmp_path):
    proc = venus_repro("doctor", "--json")
    assert proc.returncode == 0, proc.stdout
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["guest page size"]["status"] == "ok"
    assert "16K" in checks["kernel image"]["detail"]
    assert checks["accelerator tcg"]["status"] == "ok"
    if platform.machine() == "x86_64":  # KVM cannot run an arm64 guest here: information, not a warning (issue #25)
        assert checks["accelerator kvm"]["status"] == "info"
        assert [c["name"] for c in checks.values() if c["status"] == "warn"] == []
    assert checks["gpu device and GL display"]["status"] == "ok"
    assert "llvmpipe" in checks["host vulkan"]["detail"]
    bad = venus_repro("doctor", "--display", "none", "--host-env", NO_RENDER_SERVER)
    assert bad.returncode == 1
    assert "[no-gl-display]" in bad.stdout and "[render-server-missing]" in bad.stdout


def test_doctor_warns_about_a_4k_kernel(provisioned, tmp_path):
    proc = venus_repro("doctor", "--json", "--kernel-flavour", "4k")
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["guest page size"]["status"] == "warn"
    assert "requires 16K" in checks["guest page size"]["detail"]
