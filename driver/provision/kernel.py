"""The guest kernel: what its image says about itself, and its modules.

The arm64 boot protocol (Documentation/arch/arm64/booting.rst) puts a 64-byte
header at the start of every Image: the magic ``ARM\\x64`` at offset 56 and
64-bit little-endian flags at offset 24 — bit 0 big-endian, bits 1–2 the page
size (1 = 4K, 2 = 16K, 3 = 64K). Reading it is how venus-repro refuses to boot
the wrong kernel instead of finding out from a Vulkan error.

An x86 bzImage (Documentation/arch/x86/boot.rst) has the magic ``HdrS`` at
offset 0x202 and the boot protocol version after it; x86-64 pages are 4K.
"""

from __future__ import annotations

import dataclasses
import gzip
import lzma
import re
import struct
from pathlib import Path

from ..errors import ProvisionError, UsageError

ARM64_MAGIC = b"ARM\x64"
PAGE_SIZES = {1: 4096, 2: 16384, 3: 65536}
BZIMAGE_MAGIC = b"HdrS"  # at 0x202 of an x86 boot sector


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    path: Path
    page_size: int | None  # None: "unspecified" (flags bits 1–2 == 0, pre-3.x kernels)
    big_endian: bool
    image_size: int
    compressed: bool
    arch: str = "arm64"  # the Debian architecture it boots (profile.ARCHES)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        return d


def read_image(path: Path) -> ImageInfo:
    """Parse the header of ``path``: an arm64 Image (plain or gzip-compressed) or an x86 bzImage."""
    if not path.exists():
        raise UsageError(f"kernel image {path} does not exist")
    if not path.is_file():
        raise UsageError(f"kernel image {path} is not a file")
    with open(path, "rb") as f:
        head = f.read(0x210)
    if len(head) >= 0x206 and head[0x202:0x206] == BZIMAGE_MAGIC and head[0x1FE:0x200] == b"\x55\xaa":
        return ImageInfo(path=path, page_size=4096, big_endian=False, image_size=path.stat().st_size, compressed=False, arch="amd64")
    head = head[:64]
    compressed = head[:2] == b"\x1f\x8b"
    if compressed:
        with gzip.open(path, "rb") as f:
            head = f.read(64)
    if len(head) < 64 or head[56:60] != ARM64_MAGIC:
        raise UsageError(
            f"{path} is not a Linux kernel image (neither an arm64 Image: 'ARM\\x64' at offset 56, "
            "nor an x86 bzImage: 'HdrS' at 0x202); pass the guest kernel's Image/vmlinuz"
        )
    _text_offset, image_size, flags = struct.unpack_from("<QQQ", head, 8)
    return ImageInfo(
        path=path,
        page_size=PAGE_SIZES.get((flags >> 1) & 3),
        big_endian=bool(flags & 1),
        image_size=image_size,
        compressed=compressed,
    )


# --- modules -----------------------------------------------------------------------------


def module_name(path: Path) -> str:
    """``virtio-gpu.ko.xz`` → ``virtio_gpu`` (the kernel treats - and _ alike)."""
    return path.name.split(".ko")[0].replace("-", "_")


def read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        raise ProvisionError(f"{path.name}: zstd-compressed modules are not supported yet")
    return data


def modinfo_depends(elf: bytes) -> list[str]:
    """The ``depends=`` list from an ELF module's ``.modinfo`` section."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise ProvisionError("not a 64-bit ELF kernel module")
    endian = "<" if elf[5] == 1 else ">"
    shoff = struct.unpack_from(endian + "Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", elf, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, off, size = struct.unpack_from(endian + "IIQQQQ", elf, shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, off, size = section(i)
        end = elf.index(b"\0", stroff + name)
        if elf[stroff + name : end] == b".modinfo":
            for field in elf[off : off + size].split(b"\0"):
                if field.startswith(b"depends="):
                    deps = field[len(b"depends=") :].decode()
                    return [d.replace("-", "_") for d in deps.split(",") if d]
            return []
    raise ProvisionError("kernel module has no .modinfo section")


def modules_in_load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """``wanted`` modules and their dependencies, dependencies first.

    Built-in modules (listed in ``modules.builtin``) need no loading and are
    skipped, so the same list works for kernels that build some of them in.
    """
    index = {module_name(p): p for p in modules_dir.rglob("*.ko*")}
    builtin = set()
    builtin_list = modules_dir / "modules.builtin"
    if builtin_list.exists():
        builtin = {module_name(Path(line)) for line in builtin_list.read_text().split()}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name not in index:
            raise ProvisionError(
                f"kernel module {name} (needed by {' → '.join(chain) or 'the profile'}) "
                f"is neither built in nor under {modules_dir}"
            )
        seen.add(name)
        for dep in modinfo_depends(read_module(index[name])):
            visit(dep, chain + (name,))
        order.append(index[name])

    for want in wanted:
        visit(want.replace("-", "_"), ())
    return order


def is_image(path: Path) -> bool:
    """Whether ``path`` is a kernel image (read_image), by its header, not its name."""
    try:
        read_image(path)
        return True
    except (UsageError, OSError, EOFError, gzip.BadGzipFile):
        return False


def find_in(unpacked: Path) -> tuple[Path, Path]:
    """(the Image, its modules folder) in unpacked kernel packages, found by what they contain.

    Debian puts the Image at /boot/vmlinuz-<release> (trixie) or, where a suite
    splits the kernel (forky, sid: linux-binary-<abi>), under
    /usr/lib/modules/<release>/; the modules folder is the one holding
    ``modules.order``. Exactly one of each, or one clear error.
    """
    candidates = [p for p in sorted(unpacked.rglob("*")) if p.is_file() and not p.is_symlink()
                  and p.stat().st_size > 1 << 20 and ("vmlinu" in p.name or p.name.startswith("Image")) and is_image(p)]  # fmt: skip
    if len(candidates) != 1:
        found = ", ".join(str(p.relative_to(unpacked)) for p in candidates) or "none"
        raise ProvisionError(f"the kernel packages hold {len(candidates)} kernel images ({found}); expected one")
    folders = sorted({p.parent for p in unpacked.rglob("modules.order")})
    if len(folders) != 1:
        raise ProvisionError(f"the kernel packages hold {len(folders)} module folders (modules.order); expected one")
    return candidates[0], folders[0]


def kernel_release(modules_root: Path) -> str:
    dirs = [d for d in modules_root.iterdir() if d.is_dir() and re.match(r"\d", d.name)]
    if len(dirs) != 1:
        raise ProvisionError(f"expected one kernel release under {modules_root}, found {len(dirs)}")
    return dirs[0].name
