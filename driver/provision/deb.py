"""Unpack a ``.deb`` in Python: no dpkg-deb, no GNU tar, so it runs wherever Python does.

A ``.deb`` is an ``ar`` archive whose ``data.tar.*`` member holds the files.
They are written as GNU tar with ``--keep-directory-symlink --no-same-owner``
writes them as root: modes exactly as packed (set-id bits too), no owners,
hardlinks and symlinks as such, directories that already exist as links to
directories (Debian's merged /usr: ``bin -> usr/bin``) kept, device nodes left
out. This is the one unpacker for every root and for the guest the Nix flake
assembles on macOS (tests compare it with dpkg-deb and tar, file by file).
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath

from ..errors import ProvisionError

_COMPRESSION = {"data.tar.xz": "r:xz", "data.tar.gz": "r:gz", "data.tar.bz2": "r:bz2", "data.tar": "r:"}


def _member(deb: Path, prefix: str) -> tuple[str, bytes]:
    """The name and bytes of the package's ``<prefix>*`` ar member (data.tar.xz, control.tar.gz…)."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ProvisionError(f"{deb.name}: not a Debian package (no ar header)")
        while header := f.read(60):
            if len(header) < 60 or header[58:60] != b"`\n":
                break
            name = header[:16].decode(errors="replace").strip().rstrip("/")
            size = int(header[48:58].decode().strip() or 0)
            data = f.read(size)
            if size % 2:
                f.read(1)
            if name.startswith(prefix):
                if name.replace(prefix, "data.tar", 1) not in _COMPRESSION:
                    raise ProvisionError(f"{deb.name}: {name} is compressed in a way this unpacker does not read")
                return name, data
    raise ProvisionError(f"{deb.name}: no {prefix} member")


def data_tar(deb: Path) -> tuple[str, bytes]:
    """The name and bytes of the package's ``data.tar*`` member."""
    return _member(deb, "data.tar")


def control(deb: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The package's control fields and its maintainer scripts (postinst, preinst, …) as text."""
    name, data = _member(deb, "control.tar")
    fields: dict[str, str] = {}
    scripts: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode=_COMPRESSION[name.replace("control.tar", "data.tar", 1)]) as tar:
        for member in tar.getmembers():
            base = PurePosixPath(member.name).name
            if not member.isfile() or base not in ("control", "preinst", "postinst", "prerm", "postrm"):
                continue
            text = tar.extractfile(member).read().decode(errors="replace")  # type: ignore[union-attr]
            if base == "control":
                key = None
                for line in text.splitlines():
                    if line[:1] in (" ", "\t") and key:
                        fields[key] += "\n" + line.strip()
                    elif ":" in line:
                        key, value = line.split(":", 1)
                        fields[key] = value.strip()
            else:
                scripts[base] = text
    return fields, scripts


def depends(fields: dict[str, str]) -> set[str]:
    """Every package name in Depends and Pre-Depends (each alternative of an "a | b")."""
    names = set()
    for key in ("Pre-Depends", "Depends"):
        for clause in fields.get(key, "").split(","):
            for alt in clause.split("|"):
                word = alt.strip().split(" ", 1)[0].split(":", 1)[0]
                if word:
                    names.add(word)
    return names


def file_names(deb: Path) -> list[str]:
    """The regular files and links the package ships, as paths in a merged-/usr root (``usr/lib/…``)."""
    name, data = data_tar(deb)
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode=_COMPRESSION[name]) as tar:
        for m in tar:
            parts = PurePosixPath(m.name).parts
            if m.isdir() or not parts or ".." in parts:
                continue
            parts = parts[1:] if parts[0] == "." else parts
            if parts and parts[0] in ("bin", "sbin", "lib", "lib64"):
                parts = ("usr", *parts)
            out.append("/".join(parts))
    return out


def _target(into: Path, name: str) -> Path | None:
    """Where member ``name`` goes under ``into`` (PurePosixPath drops "." parts); None for the root or an escape."""
    parts = PurePosixPath(name).parts
    if not parts or parts[0] == "/" or ".." in parts:
        return None
    return into.joinpath(*parts)


def _clear(path: Path) -> None:
    """Make room for a file or link at ``path`` (as tar replaces what is there, but never a directory)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()


def unpack(deb: Path, into: Path) -> None:
    name, data = data_tar(deb)
    delayed: list[tuple[Path, int]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode=_COMPRESSION[name]) as tar:
            for m in tar:
                path = _target(into, m.name)
                if path is None:
                    continue
                if m.isdir():
                    if not path.is_dir():  # a link to a directory stays (merged /usr)
                        _clear(path)
                        path.mkdir(parents=True, exist_ok=True)
                    if not path.is_symlink():
                        delayed.append((path, m.mode))  # after its contents, as tar does
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                if m.issym():
                    _clear(path)
                    os.symlink(m.linkname, path)
                elif m.islnk():
                    source = _target(into, m.linkname)
                    if source is None:
                        raise ProvisionError(f"{deb.name}: hard link {m.name} -> {m.linkname} leaves the root")
                    _clear(path)
                    os.link(source, path)
                elif m.isfile():
                    _clear(path)
                    f = tar.extractfile(m)
                    assert f is not None
                    with open(path, "wb") as out:
                        while chunk := f.read(1 << 20):
                            out.write(chunk)
                    os.chmod(path, m.mode)
                # device nodes and fifos: not wanted in a root (devtmpfs provides /dev)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ProvisionError(f"could not unpack {deb.name}: {exc}") from None
    for path, mode in reversed(delayed):
        os.chmod(path, mode)
