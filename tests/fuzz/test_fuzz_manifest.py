"""Fuzz: the nix profile's manifest.json (driver/provision/manifest.py read/validate)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import contract, mutated, mutated_doc, sandbox
from venus_repro.provision import manifest

pytestmark = pytest.mark.fuzz

# A manifest as nix/manifest.nix writes one; paths are made to exist in the sandbox.
DOC = {
    "format": 1, "root": None, "qemu": "/store/bin/qemu-system-aarch64", "render_server": "/store/libexec/virgl_render_server",
    "vulkan_icd": "/store/share/vulkan/icd.d/lvp_icd.json", "virglrenderer": "/store/lib/libvirglrenderer.so.1",
    "vulkaninfo": "/store/bin/vulkaninfo", "egl_vendor": None, "kernel": "@/guest/Image", "initramfs": "@/guest/initrd",
    "host_demos": "@/demos", "ring_wake": None, "page_size": 16384, "accel": "tcg", "smp": 2, "hostmem": "1G",
    "display": "sdl,gl=on", "system": manifest.host_system(), "versions": {"qemu": "10.0.6", "virglrenderer": "1.1.1"},
}  # fmt: skip


def _text(doc) -> bytes:
    try:
        return json.dumps(doc).encode()
    except ValueError:  # an integer of more than 4300 digits: json.dumps refuses to write it
        return b"{}"


manifests = st.one_of(mutated_doc(DOC).map(_text), mutated(json.dumps(DOC).encode()))


@given(manifests)
def test_a_manifest_is_a_checked_mapping_or_one_error_naming_it(data):
    with sandbox() as work:
        store = work / "store"
        for key in ("qemu", "render_server", "vulkan_icd", "virglrenderer", "vulkaninfo"):
            (store / DOC[key].removeprefix("/store/")).parent.mkdir(parents=True, exist_ok=True)
            (store / DOC[key].removeprefix("/store/")).write_text("x")
        for rel in ("guest/Image", "guest/initrd", "demos/test_tri"):
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text("x")
        text = data.replace(b'"/store/', f'"{store}/'.encode()).replace(b'"@/', f'"{work}/'.encode())
        path = work / "manifest.json"
        path.write_bytes(text)
        doc = contract(manifest.read, path, names=str(path))
        if doc is not None:
            assert doc["format"] == 1 and doc["accel"] in ("hvf", "kvm", "tcg") and doc["page_size"] in (4096, 16384, 65536)
            assert all(isinstance(doc[k], str) for k in ("qemu", "render_server", "vulkan_icd", "kernel", "initramfs"))
            versions = doc.get("versions") or {}
            assert isinstance(versions, dict) and all(isinstance(v, (str, bool)) for v in versions.values())  # nix/manifest.nix writes one flag
