"""Unpack pinned ``.deb`` files into a root directory (``deb.unpack``: Python, no dpkg).

No maintainer scripts run: a root is files only, which is all QEMU, Mesa and
gcc need, and it keeps provisioning free of side effects on the host. Debian
is merged-/usr, so ``bin``, ``sbin`` and ``lib*`` are links into ``usr`` before
anything is unpacked (tar keeps them with ``--keep-directory-symlink``).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import fcntl
import fnmatch
import json
import os
import shutil
import stat
from pathlib import Path

from .. import log, sandbox
from . import deb
from .apt import Pin
from .store import DebStore, sha256_file

MERGED = ("bin", "sbin", "lib", "lib64")


def unpack_all(pins: list[Pin], store: DebStore, into: Path, what: str) -> None:
    """Unpack every pin into ``into`` (verified by sha256 first), with progress."""
    into.mkdir(parents=True, exist_ok=True)
    for d in MERGED:
        (into / "usr" / d).mkdir(parents=True, exist_ok=True)
        if not (into / d).exists():
            os.symlink(f"usr/{d}", into / d)
    progress = log.Progress(f"unpacking {what}", len(pins), " packages")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = [pool.submit(lambda p: deb.unpack(store.verified(p), into), p) for p in pins]
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


@contextlib.contextmanager
def _registry(cache: Path):
    """The cache's registry of products in use, under an exclusive lock (short sections only)."""
    folder = cache / "in-use"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


def use(final: Path) -> None:
    """Record that this process uses product ``final`` (cache/<kind>/<name>), so no other run prunes it."""
    with _registry(final.parent.parent) as folder:
        mine = folder / str(os.getpid())
        if not mine.exists():
            atexit.register(mine.unlink, missing_ok=True)
        listed = set(mine.read_text().split("\n")) if mine.exists() else set()
        if str(final) not in listed:
            with open(mine, "a") as f:
                f.write(f"{final}\n")


# Every product carries the record of what it was built as: each file's size,
# mtime and sha256, each link's target. It is checked before every use.
PRODUCT_RECORD = ".venus-repro-product.json"
# What this process found when it checked products: (product, problems or []).
checked: list[tuple[Path, list[str]]] = []


def _seal(tmp: Path) -> None:
    files, links = {}, {}
    for path in sorted(tmp.rglob("*")):
        rel = str(path.relative_to(tmp))
        if path.is_symlink():
            links[rel] = os.readlink(path)
        elif path.is_file():
            st = path.stat()
            files[rel] = [st.st_size, st.st_mtime_ns, sha256_file(path)]
    (tmp / PRODUCT_RECORD).write_text(json.dumps({"format": 1, "files": files, "links": links}))


def verify(final: Path) -> list[str]:
    """What differs in product ``final`` from its record (empty: intact).

    A size/mtime-keyed check: a file whose size and mtime match its record is
    taken as is; any other is hashed again. Extra files (bind-mount targets the
    sandbox creates in a root) are not counted.
    """
    try:
        doc = json.loads((final / PRODUCT_RECORD).read_text())
        files, links = doc["files"], doc["links"]
    except (OSError, ValueError, KeyError, TypeError):
        return ["no integrity record (built by an older venus-repro, or damaged)"]
    problems = []
    for rel, (size, mtime, digest) in files.items():
        path = final / rel
        try:
            st = path.lstat()
        except OSError:
            problems.append(f"{rel} is missing")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{rel} is no longer a file")
        elif (st.st_size, st.st_mtime_ns) != (size, mtime) and (st.st_size != size or sha256_file(path) != digest):
            problems.append(f"{rel} changed")
    for rel, target in links.items():
        try:
            if os.readlink(final / rel) != target:
                problems.append(f"{rel} points elsewhere")
        except OSError:
            problems.append(f"{rel} is missing")
    return problems


def reuse(final: Path) -> bool:
    """Whether product ``final`` is built and intact; either way this process now uses it.

    A damaged product is removed (and so rebuilt by the caller), never used.
    """
    use(final)
    if not final.exists():
        return False
    problems = verify(final)
    checked.append((final, problems))
    if not problems:
        os.utime(final)  # the product's last use: what pruning keeps the newest of
        return True
    shown = "; ".join(problems[:3]) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")
    log.warn(f"cached {final.parent.name}/{final.name} is damaged ({shown}): rebuilding it")
    shutil.rmtree(final)
    return False


def _in_use_by_others(folder: Path) -> set[str]:
    used: set[str] = set()
    for entry in folder.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if sandbox.process_alive(int(entry.name)):
            used.update(entry.read_text().split("\n"))
        else:
            entry.unlink(missing_ok=True)  # a run that ended (or was killed) uses nothing
    return used


def build_once(final: Path, build) -> Path:
    """Build a directory at ``final`` atomically: ``build(tmp)`` then rename.

    A half-built directory never takes the final name, so an interrupted
    provisioning is simply redone next time. The product is recorded as in use
    by this process first (``use``), and older builds of the same thing are
    pruned only where no other live run has recorded them: two runs sharing a
    cache never delete what the other is about to boot.
    """
    if reuse(final):
        return final
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        build(tmp)
        _seal(tmp)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune(final)
    return final


# How many builds of one kind (one name stem: host-amd64, initrd-16k, …) the cache keeps:
# a profile each for trixie, forky and sid and a mixed one (a bisect alternates between
# its endpoints' builds), not every lock refresh there ever was.
KEEP = 4


def prune(final: Path) -> None:
    """Remove the builds of ``final``'s kind beyond the KEEP used last, where no live run uses them.

    This process's own count as in use: a bisect keeps everything it built.
    """
    stem = final.name.rsplit("-", 1)[0]
    with _registry(final.parent.parent) as folder:
        used = _in_use_by_others(folder) | set((folder / str(os.getpid())).read_text().split("\n") if (folder / str(os.getpid())).exists() else ())
        same = [p for p in final.parent.glob(f"{stem}-*") if p.is_dir() and len(p.name) == len(final.name) and p != final]
        same.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for old in same[KEEP - 1 :]:
            if str(old) not in used:
                shutil.rmtree(old, ignore_errors=True)
