"""What a 64-bit little-endian ELF object says of its linking: a small reader, no tools needed.

``read(path)`` gives the libraries it needs (``DT_NEEDED``), where it looks for
them (``DT_RUNPATH``/``DT_RPATH``), its own ``DT_SONAME``, the symbol versions
it needs from each library (``.gnu.version_r``) and the ones it defines
(``.gnu.version_d``). That is what the dynamic linker will ask of a root, so a
mixed root that cannot run (a library missing, or too old: ``GLIBC_2.42`` not
defined) is found before anything boots (``check_root``).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

_DT = {"NULL": 0, "NEEDED": 1, "STRTAB": 5, "STRSZ": 10, "SONAME": 14, "RPATH": 15, "RUNPATH": 29,
       "VERDEF": 0x6FFFFFFC, "VERDEFNUM": 0x6FFFFFFD, "VERNEED": 0x6FFFFFFE, "VERNEEDNUM": 0x6FFFFFFF}  # fmt: skip
_MAX = 1 << 22


@dataclasses.dataclass(frozen=True)
class Dynamic:
    needed: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()  # $ORIGIN expanded
    soname: str | None = None
    version_needs: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (library, versions it must define)
    version_defs: tuple[str, ...] = ()


def read(path: Path) -> Dynamic:
    """The dynamic section of ``path`` (an empty Dynamic for anything that is no such ELF object)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return Dynamic()
            (phoff,) = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            if phnum > 256 or phentsize < 56:
                return Dynamic()
            f.seek(phoff)
            phdrs = f.read(phentsize * phnum)
            loads, dyn_at = [], None
            for i in range(phnum):
                if (i + 1) * phentsize > len(phdrs):
                    return Dynamic()
                p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from("<IIQQQQQQ", phdrs, i * phentsize)
                if p_type == 1:
                    loads.append((p_vaddr, p_offset, p_filesz))
                elif p_type == 2:
                    dyn_at = (p_offset, p_filesz)
            if dyn_at is None or dyn_at[1] > 1 << 20:
                return Dynamic()

            def file_offset(vaddr: int) -> int | None:
                return next((off + vaddr - va for va, off, sz in loads if va <= vaddr < va + sz), None)

            def read_at(vaddr: int, size: int) -> bytes:
                off = file_offset(vaddr)
                if off is None or size > _MAX:
                    return b""
                f.seek(off)
                return f.read(size)

            f.seek(dyn_at[0])
            dyn = f.read(dyn_at[1])
            tags: dict[int, list[int]] = {}
            for i in range(0, len(dyn) - 15, 16):
                tag, val = struct.unpack_from("<qQ", dyn, i)
                if tag == 0:
                    break
                tags.setdefault(tag, []).append(val)
            if _DT["STRTAB"] not in tags:
                return Dynamic()
            table = read_at(tags[_DT["STRTAB"]][0], min(tags.get(_DT["STRSZ"], [0])[0], _MAX))

            def string(o: int) -> str | None:
                end = table.find(b"\0", o)
                return table[o:end].decode(errors="replace") if 0 <= o < len(table) and end >= 0 else None

            needs = _verneed(read_at, tags, string)
            defs = _verdef(read_at, tags, string)
    except OSError:
        return Dynamic()
    origin = str(path.parent)
    paths = [string(o) for o in tags.get(_DT["RUNPATH"], []) + tags.get(_DT["RPATH"], [])]
    runpath = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for p in paths if p for d in p.split(":") if d]
    soname = string(tags[_DT["SONAME"]][0]) if _DT["SONAME"] in tags else None
    needed = [n for n in map(string, tags.get(_DT["NEEDED"], [])) if n]
    return Dynamic(tuple(needed), tuple(runpath), soname, tuple(needs), tuple(defs))


def _verneed(read_at, tags, string) -> list[tuple[str, tuple[str, ...]]]:
    if _DT["VERNEED"] not in tags:
        return []
    count = tags.get(_DT["VERNEEDNUM"], [0])[0]
    base = tags[_DT["VERNEED"]][0]
    out, offset = [], 0
    for _ in range(min(count, 512)):
        entry = read_at(base + offset, 16)
        if len(entry) < 16:
            break
        _version, cnt, file_, aux, nxt = struct.unpack_from("<HHIII", entry)
        names, aoff = [], base + offset + aux
        for _ in range(min(cnt, 512)):
            a = read_at(aoff, 16)
            if len(a) < 16:
                break
            _hash, _flags, _other, name, anext = struct.unpack_from("<IHHII", a)
            if (n := string(name)) is not None:
                names.append(n)
            if not anext:
                break
            aoff += anext
        if (lib := string(file_)) is not None:
            out.append((lib, tuple(names)))
        if not nxt:
            break
        offset += nxt
    return out


def _verdef(read_at, tags, string) -> list[str]:
    if _DT["VERDEF"] not in tags:
        return []
    count = tags.get(_DT["VERDEFNUM"], [0])[0]
    base = tags[_DT["VERDEF"]][0]
    out, offset = [], 0
    for _ in range(min(count, 4096)):
        entry = read_at(base + offset, 20)
        if len(entry) < 20:
            break
        _version, _flags, _ndx, _cnt, _hash, aux, nxt = struct.unpack_from("<HHHHIII", entry)
        a = read_at(base + offset + aux, 8)
        if len(a) == 8 and (n := string(struct.unpack_from("<I", a)[0])) is not None:
            out.append(n)
        if not nxt:
            break
        offset += nxt
    return out


# --- a root as the dynamic linker sees it -----------------------------------------------------


def find(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        candidate = d / name
        if candidate.exists():
            return candidate
    return None


def inside(root: Path, p: str) -> Path:
    return root / p.lstrip("/") if not p.startswith(str(root)) else Path(p)


@dataclasses.dataclass(frozen=True)
class Unrunnable:
    """One thing the dynamic linker would refuse: ``file`` needs ``library`` (at ``version``), which the root lacks."""

    file: str  # as seen inside the root
    library: str
    version: str | None  # None: the library itself is missing
    provider: str | None = None  # the root's file that lacks the version


def check_root(root: Path, files: list[Path], library_dirs: list[Path]) -> list[Unrunnable]:
    """What the dynamic linker would refuse when ``files`` (paths in ``root``) are run or loaded there.

    A library is looked for where the linker looks (its RUNPATH, the library
    folders); one found only in a private folder (/usr/lib/<triplet>/systemd/)
    counts as there: the program that loads both names that folder, and the
    linker reuses an object already loaded by its soname.
    """
    problems: list[Unrunnable] = []
    cache: dict[Path, Dynamic] = {}
    anywhere = {p.name: p for p in files}

    def dyn(p: Path) -> Dynamic:
        real = Path(os.path.realpath(p))
        if real not in cache:
            cache[real] = read(real)
        return cache[real]

    for path in files:
        d = dyn(path)
        if not d.needed:
            continue
        search = [inside(root, r) for r in d.runpath] + library_dirs
        wanted = dict(d.version_needs)
        for lib in d.needed:
            found = find(lib, search) or anywhere.get(lib)
            rel = "/" + str(path.relative_to(root))
            if found is None:
                problems.append(Unrunnable(rel, lib, None))
                continue
            defined = set(dyn(found).version_defs)
            for version in wanted.get(lib, ()):
                if version not in defined:
                    problems.append(Unrunnable(rel, lib, version, "/" + str(Path(os.path.realpath(found)).relative_to(Path(os.path.realpath(root))))))
    return problems
