"""The guest protocol: what /init (``guest/init.sh``) and the demos promise.

* Console markers ``@@VENUS-REPRO <event> key=value …`` report boot milestones.
* The exchange disk carries a tar both ways: the plan in, ``/out`` back.
* Demo output lines: ``VENUS-RESULT {json}`` and ``VK err <VkResult> @ <call>``.

Only these structured forms are parsed; free text is kept for people and for
diagnosis, never for the verdict.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import uuid
import shlex
import tarfile
from pathlib import Path

from .errors import UsageError
from .sandbox import process_alive

MARKER = "@@VENUS-REPRO"
MARKER_RE = re.compile(r"@@VENUS-REPRO (?P<event>[\w-]+)(?P<fields>[^\r\n]*)")
RESULT_RE = re.compile(r"^VENUS-RESULT (\{.*\})\s*$")
VK_ERR_RE = re.compile(r"^VK err (-?\d+) @ (\S+)\s*$")
EXCHANGE_SIZE = 64 << 20
# What the guest may send back (it is untrusted): plain files and folders under
# /out with plain names, at most this many, this deep, this large in all.
MAX_MEMBERS = 10_000
MAX_DEPTH = 4
MAX_TOTAL = EXCHANGE_SIZE
_SEGMENT = re.compile(r"[\w][\w.+-]*")
NAME_MAX = 255  # bytes in one file name (Linux): a longer one cannot be written


def parse_fields(text: str) -> dict[str, str]:
    """``a=1 b="x y"`` → {"a": "1", "b": "x y"} (shell-style quoting)."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    return dict(w.split("=", 1) for w in words if "=" in w)


def parse_marker(line: str) -> tuple[str, dict[str, str]] | None:
    m = MARKER_RE.search(line)
    if not m:
        return None
    return m.group("event"), parse_fields(m.group("fields"))


@dataclasses.dataclass
class Step:
    """One command the guest runs: ``step <name> <timeout> <command…>``."""

    name: str
    timeout: int
    argv: list[str]

    def line(self) -> str:
        if not re.fullmatch(r"[\w.-]+", self.name):
            raise ValueError(f"step name {self.name!r} must be a plain word")
        # init.sh splits the command on whitespace; no shell quoting survives.
        if any(not a or re.search(r"\s", a) for a in self.argv):
            raise ValueError(f"step {self.name}: arguments may not be empty or contain spaces")
        return f"step {self.name} {self.timeout} {' '.join(self.argv)}\n"


@dataclasses.dataclass
class Sync:
    """``sync <name>``: the guest reports the marker and waits for a console line."""

    name: str

    def line(self) -> str:
        if not re.fullmatch(r"[\w.-]+", self.name):
            raise ValueError(f"sync name {self.name!r} must be a plain word")
        return f"sync {self.name}\n"


def new_exchange_path(cache: Path) -> Path:
    """A fresh exchange image path under ``cache/exchanges``, named after this process.

    Images whose process is gone (a run killed with SIGKILL cannot clean up)
    are removed here, by the next run.
    """
    folder = cache / "exchanges"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.img"):
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            old.unlink(missing_ok=True)
    return folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.img"


def write_exchange(path: Path, steps: list[Step | Sync], files: dict[str, bytes] | None = None) -> int:
    """Create the exchange disk image: a tar with ``plan`` (and ``files``), zero-padded.

    Returns the tar's size: the guest reads only that much (``vr.xchg_in=`` on
    the kernel command line), since reading the whole disk costs ~1 s under TCG.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        entries = {"plan": "".join(s.line() for s in steps).encode(), **(files or {})}
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    if len(data) > EXCHANGE_SIZE:
        raise UsageError(
            f"the plan and the files for the guest take {len(data) / 2**20:.1f} MiB, more than the "
            f"{EXCHANGE_SIZE >> 20} MiB exchange disk: put less into the guest"
        )
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(EXCHANGE_SIZE)
    return len(data)


@dataclasses.dataclass
class Exchange:
    """What the guest wrote back: the files it may send, and what was refused (untrusted input).

    From the console, for when ``files`` is cut short or never came back:
    ``announced``, the facts the guest said at boot (see announced_facts), and
    ``started``, the steps it began.
    """

    files: dict[str, bytes]
    rejected: list[str]
    announced: dict[str, str] = dataclasses.field(default_factory=dict)
    started: set[str] = dataclasses.field(default_factory=set)

    def facts(self) -> dict[str, str]:
        """The guest's facts: its facts file, over what it announced at boot."""
        return {**self.announced, **parse_facts(self.files.get("facts", b"").decode(errors="replace"))}


# The console's "facts" marker fields, under the names of the facts file.
_ANNOUNCED = {"kernel": "kernel_release", "page_size_kb": "page_size_kb"}


def announced_facts(markers: list[tuple[float, str, dict[str, str]]]) -> dict[str, str]:
    """The facts of the guest's first "facts" marker (init.sh says it before any step runs).

    So a guest that hangs or dies after boot, and never writes its exchange
    back, still says which kernel it booted and with what page size: the check
    this project exists for does not depend on the rest of the run.
    """
    for _, event, fields in markers:
        if event == "facts":
            return {name: fields[key] for key, name in _ANNOUNCED.items() if key in fields}
    return {}


def started_steps(markers: list[tuple[float, str, dict[str, str]]]) -> set[str]:
    """The steps the guest began ("step-start" markers)."""
    return {fields["name"] for _, event, fields in markers if event == "step-start" and "name" in fields}


def safe_member_name(name: str) -> str | None:
    """``name`` as a relative path of plain segments (``a/b.txt``), or None if it may not be written.

    ``.`` (the archive's own root, as busybox tar writes it) is "".
    """
    name = name.removeprefix("./").rstrip("/")
    if name in ("", "."):
        return ""
    parts = name.split("/")
    if len(parts) > MAX_DEPTH or not all(_SEGMENT.fullmatch(p) and len(p.encode()) <= NAME_MAX for p in parts):
        return None
    return "/".join(parts)


def read_exchange(path: Path) -> Exchange | None:
    """The guest's ``/out`` from the exchange disk, or None if it wrote nothing.

    The guest overwrites the plan tar with its own; if it never got that far,
    the disk still holds the plan, which is recognised and reported as None.
    Nothing the guest wrote is trusted: only regular files (and folders) with
    plain relative names are taken, within the limits above; everything else
    is listed in ``rejected`` and never written anywhere.
    """
    files: dict[str, bytes] = {}
    rejected: list[str] = []
    total = 0
    try:
        with tarfile.open(path, mode="r:") as tar:
            for n, member in enumerate(tar):
                if n >= MAX_MEMBERS:
                    rejected.append(f"more than {MAX_MEMBERS} entries: the rest were not read")
                    break
                name = safe_member_name(member.name)
                if name is None:
                    rejected.append(f"{member.name!r}: not a plain relative name (absolute, '..', odd characters, longer than {NAME_MAX} bytes or deeper than {MAX_DEPTH})")
                    continue
                if member.isdir():
                    continue
                if not name:
                    rejected.append(f"{member.name!r}: not a plain relative name")
                    continue
                if not member.isfile() or member.issparse():
                    kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                    rejected.append(f"{member.name!r}: {kind}")
                    continue
                if total + member.size > MAX_TOTAL:
                    rejected.append(f"{member.name!r}: {member.size} bytes would pass the {MAX_TOTAL >> 20} MiB limit")
                    continue
                f = tar.extractfile(member)
                if f is None:
                    continue
                data = f.read(member.size)
                if len(data) != member.size:
                    rejected.append(f"{member.name!r}: cut short ({len(data)} of {member.size} bytes)")
                    continue
                files[name] = data
                total += len(data)
    except (tarfile.TarError, OSError):
        if not files:
            return None
        rejected.append("the archive ends early or is damaged: what came before was kept")
    if "facts" not in files:
        return None
    return Exchange(files, rejected)


def save_guest_files(exchange: Exchange, into: Path, skip_suffix: str = ".rgba") -> None:
    """Write the guest's files under ``into`` (only there: names were checked by read_exchange).

    Raw demo frames (``*.rgba`` outside a step's declared outputs, ``<step>.files/``)
    are left out: the run keeps them as PNG.
    """
    root = into.resolve()
    for name, data in exchange.files.items():
        if name.endswith(skip_suffix) and not name.split("/", 1)[0].endswith(".files"):
            continue
        target = (root / name).resolve()
        if root not in target.parents:  # belt and braces: read_exchange already refused such names
            exchange.rejected.append(f"{name!r}: outside the run directory")
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise IsADirectoryError(name)
            target.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            exchange.rejected.append(f"{name!r}: a file and a folder of the same name")


def parse_facts(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclasses.dataclass
class DemoOutput:
    """What one demo run said, from its structured lines only."""

    results: list[dict]
    vk_errors: list[tuple[int, str]]

    @property
    def result(self) -> dict | None:
        return self.results[-1] if self.results else None


# The fields of a VENUS-RESULT line and their types; anything else a (possibly
# hostile) guest writes there is dropped, so no later arithmetic can trip on it.
_RESULT_NUMBERS = ("fps", "width", "height", "frames", "vk_result")
_RESULT_STRINGS = ("outcome", "checksum", "device", "driver", "driver_info", "call", "demo")


def _number(value) -> bool:
    """A finite float, or an integer a float and a C long can hold (a guest may write 10**300)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _result(doc) -> dict | None:
    if not isinstance(doc, dict):
        return None
    out = {}
    for key, value in doc.items():
        if key in _RESULT_NUMBERS and _number(value):
            out[key] = value
        elif key in _RESULT_STRINGS and isinstance(value, str):
            out[key] = value
        elif key not in _RESULT_NUMBERS + _RESULT_STRINGS and (isinstance(value, (str, bool)) or _number(value)):
            out[key] = value
    return out


def parse_demo_output(text: str) -> DemoOutput:
    results, errors = [], []
    for line in text.splitlines():
        if m := RESULT_RE.match(line):
            try:
                doc = _result(json.loads(m.group(1)))
            except (ValueError, RecursionError):  # not JSON, or an integer of more than 4300 digits
                continue
            if doc is not None:
                results.append(doc)
        elif m := VK_ERR_RE.match(line):
            errors.append((int(m.group(1)), m.group(2)))
    return DemoOutput(results, errors)
