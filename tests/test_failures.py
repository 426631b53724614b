"""Failures provoked for real (each one a real QEMU launch) and the finding each must produce."""

from __future__ import annotations

import json

import pytest

from conftest import venus_repro

pytestmark = pytest.mark.vm


def failed_run(tmp_path, *args: str) -> dict:
    proc = venus_repro("run", "--json", "--run-dir", str(tmp_path / "run"), *args)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "fail"
    assert json.loads((tmp_path / "run" / "result.json").read_text())["findings"] == result["findings"]
    return result


def finding_ids(result: dict) -> list[str]:
    return [f["id"] for f in result["findings"]]


def test_render_server_absent(provisioned, tmp_path, no_leftovers):
    result = failed_run(tmp_path, "--host-env", "RENDER_SERVER_EXEC_PATH=/nonexistent/virgl_render_server")
    assert finding_ids(result) == ["render-server-missing"]
    (demo,) = result["demos"]
    assert (demo["outcome"], demo["vk_result"], demo["call"]) == ("error", -1, "vkCreateInstance")
    evidence = " ".join(e["text"] for e in result["findings"][0]["evidence"])
    assert "ctrl 0x10c, error 0x1200" in evidence
    assert "failed to allocate/map ring shmem" in evidence  # Mesa, with VN_DEBUG=init
    codes = {(c["kind"], c["value"]): c["name"] for c in result["codes"]}
    assert codes[("virtio-gpu command", "0x10c")] == "RESOURCE_CREATE_BLOB"


def test_no_gl_display(provisioned, tmp_path, no_leftovers):
    result = failed_run(tmp_path, "--display", "none")
    assert finding_ids(result) == ["no-gl-display"]
    assert "does not have OpenGL support enabled" in result["findings"][0]["evidence"][0]["text"]


def test_venus_without_blob_and_hostmem(provisioned, tmp_path, no_leftovers):
    result = failed_run(tmp_path, "--gpu-options", "venus=on")
    assert finding_ids(result) == ["venus-needs-blob-hostmem"]


def test_host_vulkan_missing(provisioned, tmp_path, no_leftovers):
    result = failed_run(tmp_path, "--host-env", "VK_DRIVER_FILES=/nonexistent/icd.json")
    assert finding_ids(result) == ["host-vulkan-missing"]
    assert result["demos"][0]["vk_result"] == -9


def test_run_prints_findings_under_the_table(provisioned, tmp_path, no_leftovers):
    proc = venus_repro("run", "--run-dir", str(tmp_path / "run"), "--display", "none")
    assert proc.returncode == 1
    assert "finding [no-gl-display]" in proc.stdout and "fix:" in proc.stdout
