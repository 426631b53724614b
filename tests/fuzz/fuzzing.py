"""What every fuzz target shares: the contract, the sandbox, and inputs built from real ones.

The contract of a reader of untrusted input: it returns a result, or raises one
``VenusReproError`` (the CLI's exit 2) whose message is one line; never any other
exception (the CLI's exit 70, a traceback in a file), never a write outside the folder
it was given, never unbounded time or memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import tarfile
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from venus_repro.errors import VenusReproError

WATCHDOG_S = 60  # one input; generous (a shared, noisy machine), a hang stops here
MAX_RSS_MB = 2048  # the process's peak: an input that makes a reader hold gigabytes fails


class Hang(Exception):
    pass


@contextlib.contextmanager
def watchdog(seconds: float = WATCHDOG_S):
    def fire(*_):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert rss_mb < MAX_RSS_MB, f"peak memory {rss_mb:.0f} MiB"


def contract(call, *args, names: str | None = None, **kwargs):
    """``call(*args)``: its result, or None after one clear error (naming ``names`` when given)."""
    with watchdog():
        try:
            return call(*args, **kwargs)
        except VenusReproError as exc:
            message = str(exc)
            assert message and "\n" not in message, f"not one line: {message!r}"
            assert "Traceback" not in message
            if names is not None:
                assert names in message, f"the error does not name {names}: {message}"
            return None


@contextlib.contextmanager
def sandbox():
    """A fresh folder to work in (also the cwd and TMPDIR), beside a sentinel folder nothing may touch.

    Yields the work folder; afterwards asserts that nothing appeared, changed or was
    removed outside it.
    """
    with tempfile.TemporaryDirectory(prefix="venus-repro-fuzz-") as base:
        base = Path(base)
        outside, work = base / "outside", base / "work"
        outside.mkdir(mode=0o755)
        (outside / "sentinel").write_text("sentinel\n")
        (work / "tmp").mkdir(parents=True)
        before = _snapshot(base, work)
        cwd, tmpdir = os.getcwd(), tempfile.tempdir
        os.chdir(work)
        tempfile.tempdir = str(work / "tmp")
        try:
            yield work
        finally:
            os.chdir(cwd)
            tempfile.tempdir = tmpdir
            after = _snapshot(base, work)
            _make_removable(work)
        assert after == before, f"written outside the folder it was given: {sorted(set(after.items()) ^ set(before.items()))}"


def _snapshot(base: Path, work: Path) -> dict[str, tuple]:
    out = {}
    for root, dirs, files in os.walk(base):
        for name in dirs + files:
            path = Path(root) / name
            if path == work or work in path.parents:
                continue
            st_ = path.lstat()
            out[str(path.relative_to(base))] = (st_.st_mode, st_.st_size, path.read_bytes() if path.is_file() and not path.is_symlink() else None)
    out["."] = (base.lstat().st_mode,)
    return out


def _make_removable(work: Path) -> None:
    """Folders a reader left without write permission, made removable (inside ``work`` only)."""
    for root, dirs, _ in os.walk(work):
        for d in dirs:
            path = Path(root) / d
            if not path.is_symlink():
                path.chmod(0o755)


# --- inputs -------------------------------------------------------------------------------------


@st.composite
def mutated(draw, data: bytes, max_edits: int = 4) -> bytes:
    """``data`` with a few edits: cut short, bytes flipped, inserted, deleted or repeated."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, max_edits))):
        kind = draw(st.sampled_from(["cut", "flip", "insert", "delete", "repeat"]))
        at = draw(st.integers(0, len(out)))
        if kind == "cut":
            del out[at:]
        elif kind == "flip" and at < len(out):
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            out[at:at] = draw(st.binary(max_size=64) | st.sampled_from(INTERESTING_BYTES))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 64))]
        elif kind == "repeat":
            out[at:at] = out[at : at + draw(st.integers(1, 256))] * draw(st.integers(1, 64))
    return bytes(out)


INTERESTING_BYTES = [b"\x00", b"\xff\xfe", b"\r", b"\n" * 3, b"\x85", "\u2028".encode(), b"9" * 5000,
                     b"-1", b"1e999", b"NaN", b"[" * 200, b"{" * 200, b"*a", b"&a ", b"'", b'"', b"\\",
                     b"..", b"/", b"/etc/passwd", b"\t", b" " * 500]  # fmt: skip

# Values of the wrong type, size or depth, for any field of a JSON or YAML document.
odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**4000),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50), st.text(min_size=5000, max_size=20000),
    st.sampled_from(["", "..", "/", "/etc/passwd", "../../../../etc/passwd", "a\x00b", "16K", "debian-trixie", "-1"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(1, 300).map(lambda n: json.loads("[" * n + "]" * n)),
)  # fmt: skip


@st.composite
def mutated_doc(draw, doc):
    """``doc`` (parsed JSON or YAML) with fields removed, added or given odd values, at any depth."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["replace", "delete", "add"]))
        parent, key = _at(doc, path[:-1]), path[-1] if path else None
        if not path:
            doc = draw(odd_values) if kind == "replace" else doc
        elif kind == "replace":
            parent[key] = draw(odd_values)
        elif kind == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(odd_values)
        else:
            parent.append(draw(odd_values))
    return doc


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


# Tar members as someone else's archive may hold them: odd names and kinds.
odd_names = st.one_of(
    st.sampled_from(["..", "../x", "a/../../x", "/etc/passwd", "/tmp/x", "./", ".", "", "a//b", "a/./b",
                     "x" * 300, "a/" * 40 + "b", "é", "a\\b", "-rf", "manifest.json", "run", "run/scenario.yaml",
                     "profile", "root/tmp", "manifest.template.json", "facts", "./facts"]),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=40),
)  # fmt: skip
KINDS = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
         "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE, "contiguous": tarfile.CONTTYPE}  # fmt: skip


@st.composite
def odd_member(draw, names=odd_names):
    info = tarfile.TarInfo(draw(names))
    info.type = KINDS[draw(st.sampled_from(list(KINDS)))]
    info.mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o000, 0o777, 0o1777]))
    data = b""
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = draw(st.sampled_from(["/etc/passwd", "../../outside/sentinel", "..", "/", "x", "run", "../" * 20]) | odd_names)
    elif info.type in (tarfile.REGTYPE, tarfile.CONTTYPE):
        data = draw(st.binary(max_size=256))
    info.size = len(data)
    return info, data


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            try:
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
            except ValueError:  # a name tarfile itself cannot write (GNU format refuses some)
                continue
    return buf.getvalue()


def members_of(tar_data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(tar_data)) as tar:
        for m in tar:
            out.append((m, tar.extractfile(m).read() if m.isreg() else b""))
    return out


@st.composite
def edited_members(draw, members: list[tuple[tarfile.TarInfo, bytes]], replace: dict | None = None):
    """``members`` with some dropped, some odd ones added, and some contents replaced (``replace``: name → strategy)."""
    out = [m for m in members if not draw(st.booleans()) or draw(st.integers(0, 9)) > 0]
    for _ in range(draw(st.integers(0, 3))):
        out.insert(draw(st.integers(0, len(out))), draw(odd_member()))
    for i, (info, data) in enumerate(out):
        if replace and info.name in replace and draw(st.booleans()):
            data = draw(replace[info.name])
            info = _copy(info)
            info.size = len(data)
            out[i] = (info, data)
    return out


def _copy(info: tarfile.TarInfo) -> tarfile.TarInfo:
    new = tarfile.TarInfo(info.name)
    for attr in ("mode", "uid", "gid", "mtime", "type", "linkname", "uname", "gname"):
        setattr(new, attr, getattr(info, attr))
    return new
