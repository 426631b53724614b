"""The kernel image header parser (arm64 Image, x86 bzImage) and module dependency order."""

import gzip
import struct

import pytest

from venus_repro.errors import ProvisionError, UsageError
from venus_repro.provision import kernel


def image(flags: int, magic: bytes = b"ARM\x64", size: int = 0x1000000) -> bytes:
    head = struct.pack("<IIQQQQQQ", 0x91005A4D, 0, 0, size, flags, 0, 0, 0) + magic + b"\0\0\0\0"
    assert len(head) == 64
    return head + b"\0" * 64


@pytest.mark.parametrize("flags,page", [(0xA, 4096), (0xC, 16384), (0xE, 65536), (0x8, None)])
def test_page_size_from_header_flags(tmp_path, flags, page):
    path = tmp_path / "Image"
    path.write_bytes(image(flags))
    info = kernel.read_image(path)
    assert info.page_size == page
    assert info.image_size == 0x1000000
    assert not info.big_endian and not info.compressed


def test_gzip_compressed_image(tmp_path):
    path = tmp_path / "Image.gz"
    path.write_bytes(gzip.compress(image(0xC)))
    info = kernel.read_image(path)
    assert info.page_size == 16384 and info.compressed


def test_not_an_arm64_image(tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(image(0xC, magic=b"HdrS"))
    with pytest.raises(UsageError, match="not a Linux kernel image"):
        kernel.read_image(path)


def bzimage(magic: bytes = b"HdrS", signature: bytes = b"\x55\xaa") -> bytes:
    """An x86 boot sector as Documentation/arch/x86/boot.rst lays it out: 0x1FE boot flag, 0x202 header magic."""
    head = bytearray(0x400)
    head[0x1FE:0x200] = signature
    head[0x202:0x206] = magic
    struct.pack_into("<H", head, 0x206, 0x020F)  # boot protocol 2.15
    return bytes(head)


def test_an_x86_bzimage_is_an_amd64_kernel_with_4k_pages(tmp_path):
    path = tmp_path / "vmlinuz"
    path.write_bytes(bzimage())
    info = kernel.read_image(path)
    assert (info.arch, info.page_size, info.compressed) == ("amd64", 4096, False)
    assert kernel.read_image(tmp_path.joinpath("a").with_name("vmlinuz")).arch == "amd64"


@pytest.mark.parametrize("data", [bzimage(magic=b"HdrT"), bzimage(signature=b"\0\0"), bzimage()[:0x203]])
def test_an_x86_boot_sector_without_the_header_is_no_kernel(tmp_path, data):
    path = tmp_path / "vmlinuz"
    path.write_bytes(data)
    with pytest.raises(UsageError, match="not a Linux kernel image"):
        kernel.read_image(path)


def test_missing_image(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        kernel.read_image(tmp_path / "nope")


def elf_module(depends: str) -> bytes:
    """A minimal 64-bit little-endian ELF with a .modinfo section."""
    modinfo = f"license=GPL\0depends={depends}\0name=x\0".encode()
    shstr = b"\0.modinfo\0.shstrtab\0"
    data_off = 64
    shstr_off = data_off + len(modinfo)
    shoff = (shstr_off + len(shstr) + 7) & ~7
    hdr = bytearray(64)
    hdr[0:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", hdr, 0x28, shoff)
    struct.pack_into("<HHH", hdr, 0x3A, 64, 3, 2)
    body = bytes(hdr) + modinfo + shstr
    body += b"\0" * (shoff - len(body))
    sections = b"\0" * 64
    sections += struct.pack("<IIQQQQ", 1, 1, 0, 0, data_off, len(modinfo)) + b"\0" * 24
    sections += struct.pack("<IIQQQQ", 10, 3, 0, 0, shstr_off, len(shstr)) + b"\0" * 24
    return body + sections


def test_module_load_order_follows_modinfo(tmp_path):
    mods = {
        "virtio-gpu": "drm,drm_kms_helper,virtio_dma_buf",
        "drm_kms_helper": "drm",
        "drm": "",
        "virtio_dma_buf": "",
        "virtio_blk": "",
    }
    for name, deps in mods.items():
        (tmp_path / f"{name}.ko").write_bytes(elf_module(deps))
    (tmp_path / "modules.builtin").write_text("kernel/drivers/block/virtio_blk.ko\n")
    order = [p.name for p in kernel.modules_in_load_order(tmp_path, ("virtio-gpu", "virtio_blk"))]
    assert order == ["drm.ko", "drm_kms_helper.ko", "virtio_dma_buf.ko", "virtio-gpu.ko"]


def test_missing_module_names_the_chain(tmp_path):
    (tmp_path / "virtio-gpu.ko").write_bytes(elf_module("drm"))
    with pytest.raises(ProvisionError, match="drm .*virtio_gpu"):
        kernel.modules_in_load_order(tmp_path, ("virtio-gpu",))
