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
import re
import shlex
import tarfile
from pathlib import Path

MARKER = "@@VENUS-REPRO"
MARKER_RE = re.compile(r"@@VENUS-REPRO (?P<event>[\w-]+)(?P<fields>[^\r\n]*)")
RESULT_RE = re.compile(r"^VENUS-RESULT (\{.*\})\s*$")
VK_ERR_RE = re.compile(r"^VK err (-?\d+) @ (\S+)\s*$")
EXCHANGE_SIZE = 64 << 20


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
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(EXCHANGE_SIZE)
    return len(data)


def read_exchange(path: Path) -> dict[str, bytes] | None:
    """The guest's ``/out`` from the exchange disk, or None if it wrote nothing.

    The guest overwrites the plan tar with its own; if it never got that far,
    the disk still holds the plan, which is recognised and reported as None.
    """
    try:
        with tarfile.open(path, mode="r:") as tar:
            out = {}
            for member in tar.getmembers():
                if member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    out[member.name.removeprefix("./")] = f.read()
    except (tarfile.TarError, OSError):
        return None
    if "facts" not in out:
        return None
    return out


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


def parse_demo_output(text: str) -> DemoOutput:
    results, errors = [], []
    for line in text.splitlines():
        if m := RESULT_RE.match(line):
            try:
                results.append(json.loads(m.group(1)))
            except json.JSONDecodeError:
                continue
        elif m := VK_ERR_RE.match(line):
            errors.append((int(m.group(1)), m.group(2)))
    return DemoOutput(results, errors)
