"""Fuzz: archives from someone else: a bundle (driver/bundle.py: unpack and replay's reading) and a carry
pack (driver/carry.py unpack).

Each starts from a real one (a bundle that ``bundle`` packs of a run directory; a carry
with the members ``carry pack`` writes) and is broken at every level: the compressed
bytes, the tar's bytes, its members (odd names and kinds: links, devices, '..', absolute
names, duplicates) and the documents inside (manifest.json, the scenario, the profile).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import lzma
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import contract, edited_members, members_of, mutated, mutated_doc, sandbox, tar_bytes
from venus_repro import bundle, carry, profile, scenario

pytestmark = pytest.mark.fuzz


@functools.cache
def seed_bundle() -> bytes:
    """A bundle as ``venus-repro bundle`` packs a run of the built-in venus-demos scenario."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "20261203-120000-debian-trixie"
        (run / "guest").mkdir(parents=True)
        sc = scenario.load("venus-demos")
        (run / "scenario.yaml").write_text(scenario.dump(sc))
        (run / "result.json").write_text(json.dumps({"verdict": "fail", "profile": "debian-trixie", "guest": {"page_size": 16384}}))
        (run / "console.log").write_text("@@VENUS-REPRO init uptime=1.2\n")
        (run / "guest" / "facts").write_text("page_size_kb=16\n")
        bundle._pack(run, Path(tmp) / "b.tar.gz", profile.load("debian-trixie"))
        return (Path(tmp) / "b.tar.gz").read_bytes()


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def _json(doc) -> bytes:
    try:
        return json.dumps(doc).encode()
    except ValueError:
        return b"{}"


def _yaml_text(path_in_bundle: str):
    text = {m.name: d for m, d in members_of(gzip.decompress(seed_bundle()))}[path_in_bundle]
    return mutated(text)


@st.composite
def bundles(draw) -> bytes:
    members = members_of(gzip.decompress(seed_bundle()))
    kind = draw(st.sampled_from(["members", "tar bytes", "gzip bytes"]))
    if kind == "gzip bytes":
        return draw(mutated(seed_bundle()))
    if kind == "tar bytes":
        return _gz(draw(mutated(tar_bytes(members))))
    replace = {
        "manifest.json": mutated_doc({"format": 1, "profile": "debian-trixie", "run": "20261203-120000-debian-trixie"}).map(_json),
        "run/scenario.yaml": _yaml_text("run/scenario.yaml"),
        "profile/debian-trixie.yaml": _yaml_text("profile/debian-trixie.yaml"),
    }
    return _gz(tar_bytes(draw(edited_members(members, replace))))


@given(bundles(), st.booleans())
def test_a_bundle_is_read_or_one_error_naming_it(data, trust):
    with sandbox() as work:
        path = work / "b.venus-bundle.tar.gz"
        path.write_bytes(data)
        into = work / "unpacked"
        into.mkdir()
        read = contract(bundle.read, path, into, trust, names=str(path))
        for p in into.rglob("*"):
            assert not p.is_symlink() and (p.is_file() or p.is_dir()), p
        if read is not None:
            original, prof, sc, _ = read
            assert original == into / "run" and (original / "scenario.yaml").is_file()
            assert prof.name and sc.steps


# --- carry packs ------------------------------------------------------------------------------


def _member(name: str, data: bytes = b"", kind=tarfile.REGTYPE, linkname: str = "", mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.size = kind, linkname, mode, len(data)
    return info, data


TEMPLATE = {
    "format": 1, "root": "@CARRY@/root", "qemu": "/usr/bin/qemu-system-aarch64", "render_server": "/usr/libexec/virgl_render_server",
    "virglrenderer": "/usr/lib/x86_64-linux-gnu/libvirglrenderer.so.1", "vulkaninfo": "/usr/bin/vulkaninfo",
    "vulkan_icd": "/usr/share/vulkan/icd.d/none.json", "kernel": "@CARRY@/guest/vmlinuz", "initramfs": "@CARRY@/guest/initrd.img",
    "host_demos": "@CARRY@/demos", "ring_wake": None, "page_size": 16384, "accel": "tcg", "smp": 4, "system": "x86_64-linux",
    "versions": {"qemu": "10.0.6"},
}  # fmt: skip
CARRY = [
    *(_member(f"root/{d}", kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755) for d in carry.ROOT_DIRS),
    _member("root/bin", kind=tarfile.SYMTYPE, linkname="usr/bin"),
    _member("root/usr/bin/qemu-system-aarch64", b"\x7fELF", mode=0o755),
    _member("root/usr/lib/x86_64-linux-gnu/libvirglrenderer.so.1.8.1", b"\x7fELF"),
    _member("root/usr/lib/x86_64-linux-gnu/libvirglrenderer.so.1", kind=tarfile.SYMTYPE, linkname="libvirglrenderer.so.1.8.1"),
    _member("root/lib64/ld-linux-x86-64.so.2", kind=tarfile.SYMTYPE, linkname="/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
    _member("guest/vmlinuz", b"MZ"), _member("guest/initrd.img", b"070701"), _member("demos/test_tri", b"\x7fELF", mode=0o755),
    _member("manifest.template.json", json.dumps(TEMPLATE, indent=2).encode()),
]  # fmt: skip


@st.composite
def carries(draw) -> bytes:
    kind = draw(st.sampled_from(["members", "tar bytes", "xz bytes"]))
    if kind == "xz bytes":
        return draw(mutated(lzma.compress(tar_bytes(CARRY))))
    if kind == "tar bytes":
        return lzma.compress(draw(mutated(tar_bytes(CARRY))))
    members = draw(edited_members(CARRY, {"manifest.template.json": mutated_doc(TEMPLATE).map(_json)}))
    return lzma.compress(tar_bytes(members))


@given(carries())
def test_a_carry_is_unpacked_inside_its_folder_or_one_error_naming_it(data):
    with sandbox() as work:
        path = work / "carry.tar.xz"
        path.write_bytes(data)
        dest = work / "unpacked"
        manifest = contract(carry.unpack, path, dest, names=str(path))
        if manifest is not None:
            assert manifest == dest / "manifest.json" and not manifest.is_symlink()
            doc = json.loads(manifest.read_text())
            assert isinstance(doc, dict) and doc["format"] == 1
            assert not (dest / "root" / "tmp").is_symlink()
