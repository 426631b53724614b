"""Unpack pinned ``.deb`` files into a root directory.

No maintainer scripts run: a root is files only, which is all QEMU, Mesa and
gcc need, and it keeps provisioning free of side effects on the host. Debian
is merged-/usr, so ``bin``, ``sbin`` and ``lib*`` are links into ``usr`` before
anything is unpacked (tar keeps them with ``--keep-directory-symlink``).
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import os
import shutil
import subprocess
from pathlib import Path

from .. import log
from ..errors import ProvisionError
from .apt import Pin
from .store import DebStore

MERGED = ("bin", "sbin", "lib", "lib64")


def _unpack(deb: Path, into: Path) -> None:
    pipe = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(
        ["tar", "-x", "--keep-directory-symlink", "--no-same-owner", "-C", str(into)],
        stdin=pipe.stdout,
        capture_output=True,
        text=True,
    )
    assert pipe.stdout is not None
    pipe.stdout.close()
    if pipe.wait() != 0 or tar.returncode != 0:
        raise ProvisionError(f"could not unpack {deb.name}: {tar.stderr.strip()}")


def unpack_all(pins: list[Pin], store: DebStore, into: Path, what: str) -> None:
    """Unpack every pin into ``into`` (verified by sha256 first), with progress."""
    into.mkdir(parents=True, exist_ok=True)
    for d in MERGED:
        (into / "usr" / d).mkdir(parents=True, exist_ok=True)
        if not (into / d).exists():
            os.symlink(f"usr/{d}", into / d)
    progress = log.Progress(f"unpacking {what}", len(pins), " packages")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = [pool.submit(lambda p: _unpack(store.verified(p), into), p) for p in pins]
        for fut in concurrent.futures.as_completed(futures):
            fut.result()
            progress.advance()


def drop(root: Path, patterns: tuple[str, ...]) -> None:
    """Remove paths matching ``patterns`` (globs relative to ``root``)."""
    for pattern in patterns:
        parent = root / os.path.dirname(pattern)
        if not parent.is_dir():
            continue
        for entry in parent.iterdir():
            if fnmatch.fnmatch(entry.name, os.path.basename(pattern)):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def build_once(final: Path, build) -> Path:
    """Build a directory at ``final`` atomically: ``build(tmp)`` then rename.

    A half-built directory never takes the final name, so an interrupted
    provisioning is simply redone next time.
    """
    if final.exists():
        return final
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Older builds of the same thing (other pins) are no longer wanted.
    stem = final.name.rsplit("-", 1)[0]
    for old in final.parent.glob(f"{stem}-*"):
        if old != final and old.is_dir() and len(old.name) == len(final.name):
            shutil.rmtree(old, ignore_errors=True)
    return final
