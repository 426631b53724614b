"""venus-repro carry: the components packed for a GPU machine without network, run from the pack.

The H200 run (README "On a GPU") used exactly this: ``carry pack`` here,
``scripts/gpu-machine.sh`` there. CI has no GPU, so the pack is run here with a
vendor-like driver from outside the root: lavapipe and Mesa's EGL copied into a
folder of their own with every library they need that the packed root lacks
(the packed root has no Mesa at all, as NVIDIA's driver needs none).
"""

from __future__ import annotations

import io
import json
import lzma
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import demos, venus_repro
from venus_repro import carry


def _vendor_outside(full_root: Path, packed_root: Path, vendor: Path) -> dict[str, str]:
    """lavapipe + Mesa EGL, and what they link that ``packed_root`` lacks, flattened into ``vendor/lib``."""
    lib = vendor / "lib"
    lib.mkdir(parents=True)
    lvp = full_root / "usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
    egl = full_root / "usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0"
    for rel in carry._closure(full_root, [lvp, egl]):
        rel = carry._parents_resolved(full_root, rel)
        src = full_root / rel
        if (packed_root / rel).exists() or (lib / src.name).exists():
            continue
        if src.is_symlink():
            (lib / src.name).symlink_to(Path(os.readlink(src)).name)
        else:
            shutil.copyfile(src, lib / src.name)
    # Named as a vendor names them: one release for the Vulkan and EGL libraries.
    shutil.copyfile(lvp, lib / "libvulkan_vendor.so.25.0.7")
    (lib / "libvulkan_vendor.so.1").symlink_to("libvulkan_vendor.so.25.0.7")
    shutil.copyfile(egl.resolve(), lib / "libEGL_vendor.so.25.0.7")
    (lib / "libEGL_vendor.so.0").symlink_to("libEGL_vendor.so.25.0.7")
    icd, egl_json = vendor / "vendor_icd.json", vendor / "10_vendor.json"
    icd.write_text(json.dumps({"file_format_version": "1.0.0", "ICD": {"library_path": str(lib / "libvulkan_vendor.so.1"), "api_version": "1.4.305"}}))
    egl_json.write_text(json.dumps({"file_format_version": "1.0.0", "ICD": {"library_path": str(lib / "libEGL_vendor.so.0")}}))
    return {"VK_DRIVER_FILES": str(icd), "__EGL_VENDOR_LIBRARY_FILENAMES": str(egl_json)}


@pytest.mark.vm
def test_a_packed_carry_runs_the_demos_on_a_driver_from_outside_its_root(provisioned, tmp_path, no_leftovers):
    pack = tmp_path / "carry.tar.xz"
    proc = venus_repro("carry", "pack", str(pack), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    assert pack.is_file() and info["bytes"] < 48e6, info  # it must travel in a 64 MiB call with room to spare

    dest = tmp_path / "unpacked"
    proc = venus_repro("carry", "unpack", str(pack), str(dest))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    packed = dest / "root"
    # No Mesa in the packed root; the GPU render server (no driver preload) in place of 1.1's.
    assert not list(packed.glob("usr/lib/*/libvulkan_lvp.so")) and not list(packed.glob("usr/lib/*/libgallium*"))
    assert "(forky)" in manifest["versions"]["virglrenderer"] and manifest["smp"] == 4

    env = {**os.environ, **_vendor_outside(Path(provisioned["host_root"]), packed, tmp_path / "vendor")}
    run_dir = tmp_path / "run"
    proc = venus_repro(
        "run", "--profile", "nix", "--manifest", str(dest / "manifest.json"), "--host-vulkan", "host",
        "--run-dir", str(run_dir), "--json", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass" and demos(result)
    assert all(d["checksum_match"] for d in demos(result))
    preflight = (run_dir / "preflight.log").read_text()
    assert "OK render server preload" in preflight


def _tar_xz(path: Path, members: list[tuple[str, bytes | None, str | None]]) -> None:
    with lzma.open(path, "wb") as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))


@pytest.mark.parametrize(
    "members,message",
    [
        ([("../escape", b"x", None)], "refusing member '../escape'"),
        ([("/etc/evil", b"x", None)], "refusing member '/etc/evil'"),
        ([("guest/link", None, "/etc/passwd")], "refusing link 'guest/link'"),
        ([("root/usr/bin/x", b"x", None)], "no manifest.template.json"),
    ],
)
def test_a_hostile_or_broken_carry_is_one_clear_error(tmp_path, members, message):
    pack = tmp_path / "carry.tar.xz"
    _tar_xz(pack, members)
    proc = venus_repro("carry", "unpack", str(pack), str(tmp_path / "dest"))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "escape").exists()


def test_not_a_carry_and_a_used_folder_are_refused(tmp_path):
    (tmp_path / "notes.tar.xz").write_text("plain text")
    proc = venus_repro("carry", "unpack", str(tmp_path / "notes.tar.xz"), str(tmp_path / "d1"))
    assert proc.returncode == 2 and "not a carry" in proc.stderr
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").touch()
    _tar_xz(tmp_path / "ok.tar.xz", [("manifest.template.json", b"{}", None)])
    proc = venus_repro("carry", "unpack", str(tmp_path / "ok.tar.xz"), str(tmp_path / "used"))
    assert proc.returncode == 2 and "is not empty" in proc.stderr
