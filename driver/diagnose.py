"""Diagnosis: decode every code in a run's logs and name the failure, its cause and fix.

Input is text from anywhere — a run directory of ours, or log files handed in
from another machine or a bug report. Output is findings (rules in
``data/diagnose/rules.yaml``, each with its evidence lines) and every code seen,
decoded; an unknown code is reported as unknown, never dropped.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Callable

import yaml

try:
    from re import _parser as _sre_parser  # Python 3.11+
except ImportError:  # 3.10
    import sre_parse as _sre_parser

from . import codes
from .errors import UsageError
from .profile import DATA

RUN_FILES = (
    "preflight.log",
    "machine.log",
    "guest-rejected.log",
    "console.log",
    "qemu-stderr.log",
    "qemu-guest-errors.log",
    "render-server.log",
    "qemu-cmdline.txt",
    "guest/dmesg.txt",
    "guest/facts",
)


# A line longer than this is cut to its first MAX_LINE characters for matching, and the report
# says which lines were cut and how long they were. Every rule and code pattern matches within a
# line, and the longest real lines seen are far shorter: the QEMU command line of a run here
# (655 characters), the public trackers' logs in tests/corpus (at most 248), the fixtures (473).
# The cut bounds what one line costs (a pattern with ".*" may rescan a line from each match
# position), so diagnosis is linear in its input however it is shaped: one line of 1 MB (a
# base64 blob, a JSON dump) costs what a 4 KiB line costs, plus reading past the rest of it.
MAX_LINE = 4096


@dataclasses.dataclass(frozen=True)
class Line:
    source: str
    number: int
    text: str
    length: int | None = None  # the line's length when its text was cut to MAX_LINE characters

    def as_dict(self) -> dict:
        out = {"source": self.source, "line": self.number, "text": self.text}
        if self.length is not None:
            out["cut_from"] = self.length
        return out


@dataclasses.dataclass
class Context:
    """What is known beside the logs: page sizes, the accelerator, the GPU device's options, the host driver.

    A run directory says it in result.json, fingerprint.json and environment.json; plain
    logs may say it in a QEMU command line; the command line of diagnose can say it too.
    """

    guest_page_size: int | None = None
    host_page_size: int | None = None
    required_page_size: int | None = None
    required_by: str | None = None
    accel: str | None = None
    # The virtio-gpu-gl device's options as the run passed them ("venus=on,blob=on,hostmem=1G"),
    # and what follows from them (complete()): the hostmem window in bytes, whether blobs are on.
    gpu_options: str | None = None
    hostmem: int | None = None
    blob: bool | None = None
    hostmem_default: str | None = None  # the profile's hostmem (what a run gets without --gpu-options)
    host_driver: str | None = None  # the host's Vulkan driver (fingerprint.json components.host_vulkan)

    def complete(self) -> None:
        """Derive what follows: the GPU options' hostmem and blob; HVF's 16K host pages (Apple Silicon)."""
        if self.gpu_options is not None:
            self.hostmem, self.blob = _gpu_option_values(self.gpu_options)
        if self.accel == "hvf":
            if self.host_page_size is None:
                self.host_page_size = 16384
            if self.required_page_size is None:
                self.required_page_size = 16384
                self.required_by = "HVF on Apple Silicon maps guest memory in 16K pages"


@dataclasses.dataclass
class Finding:
    id: str
    summary: str
    cause: str
    fix: str
    evidence: list[Line]
    sources: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "summary": self.summary,
            "cause": self.cause,
            "fix": self.fix,
            "evidence": [e.as_dict() for e in self.evidence],
            "sources": list(self.sources),
        }


@functools.cache
def rules() -> list[dict]:
    return yaml.safe_load((DATA / "diagnose" / "rules.yaml").read_text())


def _fold(text: str) -> str:
    return " ".join(text.split())


# --- gathering text ---------------------------------------------------------------------


def read_sources(paths: list[Path]) -> tuple[list[Line], Context]:
    """Lines from files and run directories, and the context they reveal.

    Whatever the files hold is text to read: bytes that are not UTF-8 are replaced, a
    line longer than MAX_LINE is cut (``Line.length`` says so), and a run directory's
    logs must be its own plain files (a run directory may come from anyone: a link in it
    could name any file on this host).
    """
    lines: list[Line] = []
    ctx = Context()
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
        if path.is_dir():
            files = _run_files(path)
            if not files and not (path / "result.json").exists():
                raise UsageError(f"{path}: not a venus-repro run directory (no logs or result.json in it)")
            _context_from_result(path / "result.json", ctx)
            _context_from_fingerprint(path / "fingerprint.json", ctx)
            _context_from_environment(path / "environment.json", ctx)
        elif not (stat.S_ISREG(mode := path.stat().st_mode) or stat.S_ISFIFO(mode)):
            raise UsageError(f"{path}: not a file or a pipe (a device or a socket): give diagnose a log file")
        else:
            files = [path]
        for f in files:
            lines += _read_lines(f, str(f.relative_to(path)) if path.is_dir() else str(f))
    _context_from_lines(lines, ctx)
    return lines, ctx


def _run_files(run: Path) -> list[Path]:
    """The logs of run directory ``run`` that exist; a link or a special file among them is an error."""
    if (run / "guest").is_symlink():
        raise UsageError(f"{run / 'guest'}: a link, not a folder: diagnose reads only a run directory's own files")
    files = [run / f for f in RUN_FILES if os.path.lexists(run / f)]
    files += sorted((run / "guest").glob("*.out")) + sorted((run / "guest").glob("*.err"))
    for f in files:
        if f.is_symlink() or not f.is_file():
            raise UsageError(f"{f}: not a plain file (a link, a folder or a device): diagnose reads only a run directory's own files")
    return files


def _read_lines(path: Path, name: str) -> list[Line]:
    """The non-blank lines of ``path`` (numbered as ``str.splitlines`` counts them), each cut to MAX_LINE.

    Read as a stream of chunks, so a file of any size or shape costs time linear in its
    size and memory bounded by the lines kept: a line is not held beyond its cut.
    """
    out: list[Line] = []
    number, line, length = 0, "", 0  # the line being read: its first MAX_LINE characters, its length
    after_cr = False  # the last chunk ended in "\r": a "\n" starting the next one ends no other line
    try:
        with open(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as text:
            while chunk := text.read(1 << 16):
                if after_cr and chunk.startswith("\n"):
                    chunk = chunk[1:]
                after_cr = chunk.endswith("\r")
                for part in chunk.splitlines(keepends=True):
                    body = part.rstrip(_BREAKS)
                    line, length = line + body[: MAX_LINE - len(line)] if len(line) < MAX_LINE else line, length + len(body)
                    if len(body) < len(part):  # the line ends here
                        number += 1
                        if line.strip():
                            out.append(Line(name, number, line, length if length > MAX_LINE else None))
                        line, length = "", 0
            if length:
                number += 1
                if line.strip():
                    out.append(Line(name, number, line, length if length > MAX_LINE else None))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    return out


_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines breaks lines at


def _run_json(path: Path) -> dict | None:
    """A JSON object a run directory holds (its own plain file), or None: a run directory may come from anyone."""
    if not path.is_file() or path.is_symlink():
        return None
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(16 << 20))  # what venus-repro writes there is a few KiB
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _context_from_result(path: Path, ctx: Context) -> None:
    """Page sizes and the accelerator from a run's result.json; a field that is not what venus-repro writes is not used."""
    result = _run_json(path)
    if result is None:
        return
    if result.get("accel") in ("hvf", "kvm", "tcg", "whpx"):
        ctx.accel = result["accel"]
    guest = result.get("guest")
    page = guest.get("page_size") if isinstance(guest, dict) else None
    if _page_size(page):
        ctx.guest_page_size = page
    required = result.get("required_page_size")
    if _page_size(required):
        profile = result.get("profile")
        ctx.required_page_size, ctx.required_by = required, f"profile {profile if isinstance(profile, str) else '?'}"


def _context_from_fingerprint(path: Path, ctx: Context) -> None:
    """The GPU options QEMU was started with, the host's page size and Vulkan driver, from fingerprint.json."""
    fp = _run_json(path)
    if fp is None:
        return
    machine, host, components = (fp.get(k) if isinstance(fp.get(k), dict) else {} for k in ("machine", "host", "components"))
    if _gpu_options(machine.get("gpu_options")):
        ctx.gpu_options = machine["gpu_options"]
    if _page_size(host.get("page_size")):
        ctx.host_page_size = host["page_size"]
    vulkan = components.get("host_vulkan")
    if isinstance(vulkan, dict):
        # lavapipe (the root's) or an override by its ICD's name; the host's own driver by its library's file name
        name = vulkan.get("driver")
        if name == "host":
            name = next((v.rsplit("/", 1)[-1] for v in (vulkan.get("library"), vulkan.get("icd")) if isinstance(v, str)), None)
        if isinstance(name, str) and _WORDS.fullmatch(name):
            ctx.host_driver = name


def _context_from_environment(path: Path, ctx: Context) -> None:
    """From environment.json: the GPU options when fingerprint.json did not say (a run that stopped before it), the profile's hostmem."""
    env = _run_json(path)
    if env is None:
        return
    machine = env.get("machine") if isinstance(env.get("machine"), dict) else {}
    profile = env.get("profile") if isinstance(env.get("profile"), dict) else {}
    qemu = profile.get("qemu") if isinstance(profile.get("qemu"), dict) else {}
    default = qemu.get("hostmem")
    if isinstance(default, str) and _hostmem_bytes(default) is not None:
        ctx.hostmem_default = default
    if ctx.gpu_options is None:
        if _gpu_options(machine.get("gpu_options")):
            ctx.gpu_options = machine["gpu_options"]
        elif machine.get("gpu_options") is None and ctx.hostmem_default is not None:
            ctx.gpu_options = f"venus=on,blob=on,hostmem={ctx.hostmem_default}"  # what machine.StartCommand passes


_WORDS = re.compile(r"[\w .,()/+:-]{1,200}")  # a name to show: no line breaks, no control characters
_GPU_OPTIONS = re.compile(r"[\w=,.:-]{1,400}")


def _gpu_options(value) -> bool:
    """Whether ``value`` reads as virtio-gpu device options (key=value,…), not something else a file put there."""
    return isinstance(value, str) and _GPU_OPTIONS.fullmatch(value) is not None


# A QEMU size ("8M", "1G", "256m", "1.5G", "4096"): bytes, or a binary suffix (qemu_strtosz).
_SIZE = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,6}))?([KMGTPE]?)(?:i?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}


def _hostmem_bytes(size: str) -> int | None:
    m = _SIZE.fullmatch(size)
    if not m:
        return None
    whole, frac, unit = m.groups()
    value = (int(whole) * 10 ** len(frac or "") + int(frac or 0)) * _UNITS[unit.upper()] // 10 ** len(frac or "")
    return value if value < 1 << 64 else None


def _gpu_option_values(options: str) -> tuple[int | None, bool | None]:
    """(hostmem in bytes, blob on) of virtio-gpu options; None where the options do not say."""
    hostmem, blob = None, None
    for part in options.split(",")[:64]:
        key, _, value = part.partition("=")
        if key == "hostmem":
            hostmem = _hostmem_bytes(value)
        elif key == "blob":
            blob = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}.get(value.lower())
    return hostmem, blob


def check_gpu_options(options: str, where: str) -> None:
    """``options`` as virtio-gpu options someone typed: one clear error line when they are not."""
    if not _gpu_options(options):
        raise UsageError(f"{where} {options!r}: not virtio-gpu options (key=value,… e.g. venus=on,blob=on,hostmem=1G)")
    for part in options.split(","):
        key, _, value = part.partition("=")
        if key == "hostmem" and _hostmem_bytes(value) is None:
            raise UsageError(f"{where}: hostmem={value} is not a size (bytes, or with K, M, G: 8M, 1G)")


def _page_size(value) -> bool:
    """Whether ``value`` is a page size venus-repro knows (4K, 16K, 64K)."""
    return type(value) is int and value in (4096, 16384, 65536)


_KERNEL_PAGE_SIZE = re.compile(r"KernelPageSize:\s+([0-9]{1,7}) kB")
_PAGE_SIZE_KB = re.compile(r"page_size_kb=([0-9]{1,7})")
_ACCEL = re.compile(r"-accel\s+(hvf|kvm|tcg|whpx)\b")
# The GPU device's options on a QEMU command line (qemu-cmdline.txt, a pasted launch line, preflight's probe).
_GPU_DEVICE = re.compile(r"virtio-(?:gpu|vga)[\w-]*,([\w=,.:-]{0,400}hostmem=[\w=,.:-]{1,400})")


def _context_from_lines(lines: list[Line], ctx: Context) -> None:
    for line in lines:  # (each pattern only where its literal is: most lines have none)
        if ctx.guest_page_size is None and "age" in line.text:
            if m := _KERNEL_PAGE_SIZE.search(line.text) or _PAGE_SIZE_KB.search(line.text):
                ctx.guest_page_size = int(m.group(1)) * 1024
        if ctx.accel is None and "-accel" in line.text and (m := _ACCEL.search(line.text)):
            ctx.accel = m.group(1)
        if ctx.gpu_options is None and "hostmem=" in line.text and (m := _GPU_DEVICE.search(line.text)):
            ctx.gpu_options = m.group(1)


# --- codes ------------------------------------------------------------------------------

_CODE_PATTERNS = [
    (re.compile(r"ctrl (0x[0-9a-fA-F]+), error (0x[0-9a-fA-F]+)"), ("commands", "responses")),
    (re.compile(r"response (0x[0-9a-fA-F]+) \(command (0x[0-9a-fA-F]+)\)"), ("responses", "commands")),
]


@functools.cache
def _venus_messages() -> list[tuple[re.Pattern, str]]:
    return [(re.compile(k), v) for k, v in codes.venus_messages().items()]


Code = tuple[str, "int | str", str]  # (kind, value, name)


@functools.cache
def _matchers() -> tuple[tuple[re.Pattern, Callable[[re.Match], list[Code]], bool], ...]:
    """What a code is, in the order codes are listed: (pattern, the codes a match holds, first match only)."""

    def virtio(kinds: tuple[str, str]) -> Callable[[re.Match], list[Code]]:
        return lambda m: [(f"virtio-gpu {k[:-1]}", int(raw, 16), codes.virtio_gpu(k, int(raw, 16))) for k, raw in zip(kinds, m.groups())]

    def family(name: str, code: Callable[..., Code]):
        return [(p, lambda m, d=decode: [code(*f)] if (f := d(m)) is not None else [], False) for p, decode in codes.matchers()[name]]

    def capset(m: re.Match) -> list[Code]:
        return [("virtio-gpu capset", int(m.group(1)), codes.virtio_gpu("capsets", int(m.group(1))))]

    return (
        *[(p, virtio(kinds), False) for p, kinds in _CODE_PATTERNS],
        *family("vkresult", lambda value, name, _: ("VkResult", value, name)),
        *family("hvf", lambda value, name, _: ("Hypervisor.framework", f"0x{value:08x}", name)),
        *family("errno", lambda value, name, _: ("errno", value, name)),
        *family("virtio_gpu", lambda section, value, name: (f"virtio-gpu {section[:-1]}", value, name)),
        *family("kvm", lambda kind, value, meaning: (kind, value, meaning)),
        *[(p, lambda m, meaning=meaning: [("guest message", m.group(0), meaning)], True) for p, meaning in _venus_messages()],
        (re.compile(r"cap set \d+: id (\d+)"), capset, False),
    )


def codes_in_line(text: str) -> tuple[Code, ...]:
    """Every code ``text`` holds, decoded: (kind, value, name). One home for what a code is."""
    return _codes_of([text])[0]


def _codes_of(texts: list[str] | "_Joined") -> list[tuple[Code, ...]]:
    """codes_in_line of each of ``texts``: each pattern scans them all at once (see _Joined)."""
    joined = texts if isinstance(texts, _Joined) else _Joined(texts)
    found: list[list[Code]] = [[] for _ in joined.texts]
    for pattern, decode, first_only in _matchers():
        for slot in joined.matching(pattern.pattern, pattern.flags):
            ms = pattern.finditer(joined.texts[slot])
            found[slot] += [c for m in itertools.islice(ms, 1 if first_only else None) for c in decode(m)]
    return [tuple(f) for f in found]


def _annotated(text: str, found: tuple[Code, ...]) -> str:
    """What the rules read of a line: its text, then the codes it holds (``found``) in canonical form.

    Rules are written against canonical names (VK_ERROR_OUT_OF_HOST_MEMORY, HV_BAD_ARGUMENT,
    EFAULT, GET_CAPSET_INFO) and so match every spelling users paste (ERROR_OUT_OF_HOST_MEMORY,
    ErrorOutOfHostMemory, VkResult -1; err -85377021; "Bad address (os error 14)";
    "response 0x1200 (command 0x108)").
    """

    def of(kind: str) -> list[tuple]:
        return sorted({(value, name) for k, value, name in found if k == kind})

    decoded = [f"{name} ({value})" for value, name in of("VkResult")]
    decoded += [name for _, name in of("Hypervisor.framework")]
    decoded += [name.split(":")[0] for _, name in of("errno")]
    decoded += [name for kind, _, name in found if kind in ("virtio-gpu command", "virtio-gpu response")]
    return f"{text}  [decoded: {'; '.join(dict.fromkeys(decoded))}]" if decoded else text


class _Joined:
    """Texts (lines) joined by line breaks, so a pattern scans them all in one pass.

    ``matching(pattern)`` is the texts that ``re.search(pattern, text)`` matches, found
    without one call per text: where every match must contain one of a few strings
    (``_needles``), ``str.find`` looks for those; otherwise the pattern scans the joined
    text. Either way only the texts it hits are searched on their own, so a pattern means
    here exactly what it means on one line (a match across a line break is none).
    """

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.blob = "\n".join(texts)
        self.starts = list(itertools.accumulate((len(t) + 1 for t in texts[:-1]), initial=0)) if texts else []

    def _slot(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos) - 1

    def _after(self, slot: int) -> int:
        """Where the text after ``slot`` starts (past the end when there is none)."""
        return self.starts[slot + 1] if slot + 1 < len(self.starts) else len(self.blob) + 1

    def matching(self, pattern: str, flags: int = 0) -> list[int]:
        """The slots (in order) whose text ``pattern`` matches."""
        one, scan, needles = _compiled(pattern, flags)
        candidates: set[int] = set()
        if needles is not None:
            for needle in needles:
                pos = self.blob.find(needle)
                while pos != -1:
                    candidates.add(slot := self._slot(pos))
                    pos = self.blob.find(needle, self._after(slot))
        else:
            pos = 0
            while self.texts and (m := scan.search(self.blob, pos)):
                candidates.add(slot := self._slot(m.start()))
                pos = self._after(slot)
        return sorted(slot for slot in candidates if one.search(self.texts[slot]))


@functools.cache
def _compiled(pattern: str, flags: int = 0) -> tuple[re.Pattern, re.Pattern, tuple[str, ...] | None]:
    """``pattern`` as it reads one line; as it scans joined lines; the strings each match holds one of."""
    return re.compile(pattern, flags), re.compile(_literal_first(pattern), flags | re.MULTILINE), _needles(pattern, flags)


_LEADING_BOUNDARY = re.compile(r"\\b(\w)(?![*+?{])")


def _literal_first(pattern: str) -> str:
    """``\\bX…`` as ``X(?<=\\bX)…``: the same matches, found faster (the engine skips ahead to X; see codes.py)."""
    m = _LEADING_BOUNDARY.match(pattern)
    return f"{m.group(1)}(?<=\\b{m.group(1)}){pattern[m.end():]}" if m else pattern


# Shorter strings occur too often to be worth looking for; more than a few are slower to look
# for one by one than the pattern is at scanning the text.
_MIN_NEEDLE, _MAX_NEEDLES = 3, 8


def _needles(pattern: str, flags: int = 0) -> tuple[str, ...] | None:
    """Strings one of which every match of ``pattern`` contains, or None if none is known.

    Read from the parsed pattern: a run of literal characters in a sequence that every
    match goes through, or one such run from each alternative of an alternation.
    Case-insensitive parts give none. (``re``'s parser is internal; if it cannot be
    read, there are no needles and the pattern scans the text itself: slower, not wrong.)
    """
    try:
        tree = _sre_parser.parse(pattern, flags)
        if tree.state.flags & re.IGNORECASE:
            return None
        return _sequence_needles(list(tree))
    except Exception:
        return None


def _sequence_needles(items: list) -> tuple[str, ...] | None:
    p = _sre_parser
    options: list[tuple[str, ...]] = []
    run: list[str] = []
    for op, av in [*items, (None, None)]:
        if op is p.LITERAL:
            run.append(chr(av))
            continue
        if run:
            options.append(("".join(run),))
            run = []
        inner = None
        if op is p.BRANCH:
            alternatives = [_sequence_needles(list(a)) for a in av[1]]
            inner = tuple(dict.fromkeys(n for a in alternatives for n in a)) if all(alternatives) else None
        elif op is p.SUBPATTERN and not av[1] & re.IGNORECASE:
            inner = _sequence_needles(list(av[3]))
        elif op in (p.MAX_REPEAT, p.MIN_REPEAT) and av[0] >= 1:
            inner = _sequence_needles(list(av[2]))
        if inner:
            options.append(inner)
    options = [o for o in options if min(map(len, o)) >= _MIN_NEEDLE and len(o) <= _MAX_NEEDLES]
    # The best: the fewest strings to look for, then the longest shortest one.
    return min(options, key=lambda o: (len(o), -min(map(len, o))), default=None)


class _Index:
    """The lines, each distinct text decoded once, and the distinct texts joined (raw and as the rules read them)."""

    def __init__(self, lines: list[Line]):
        self.lines = lines
        slots: dict[str, int] = {}
        self.where: list[list[int]] = []  # slot → the positions in ``lines`` holding that text
        for n, line in enumerate(lines):
            slot = slots.setdefault(line.text, len(slots))
            if slot == len(self.where):
                self.where.append([])
            self.where[slot].append(n)
        self.texts = _Joined(list(slots))
        self.codes = _codes_of(self.texts)
        self.annotated = _Joined([_annotated(t, c) for t, c in zip(self.texts.texts, self.codes)])
        self._hits: dict[str, list[int]] = {}

    def lines_of(self, slots) -> list[Line]:
        """The lines (as written, in order) holding the texts of ``slots``."""
        return [self.lines[n] for n in sorted(n for slot in slots for n in self.where[slot])]

    def matching(self, patterns: list[str]) -> list[Line]:
        """The lines that one of ``patterns`` matches in their annotated form."""
        for p in patterns:
            if p not in self._hits:
                self._hits[p] = self.annotated.matching(p)
        return self.lines_of({slot for p in patterns for slot in self._hits[p]})


def decode_codes(index: _Index) -> list[dict]:
    found: dict[tuple[str, int | str], dict] = {}
    for slot, held in enumerate(index.codes):  # slots come in the order their first line does
        for kind, value, name in held:
            first = index.lines[index.where[slot][0]]
            entry = found.setdefault((kind, value), {"kind": kind, "value": value, "name": name, "count": 0, "first": first.as_dict()})
            entry["count"] += len(index.where[slot])
    out = sorted(found.values(), key=lambda e: (e["kind"], str(e["value"])))
    for e in out:
        if e["kind"].startswith("virtio-gpu") and e["kind"] != "virtio-gpu capset":
            e["value"] = f"0x{e['value']:x}"
    return out


# --- findings ---------------------------------------------------------------------------


def _page_size_finding(rule: dict, ctx: Context) -> Finding | None:
    g, r = ctx.guest_page_size, ctx.required_page_size
    if not g or not r or g == r:
        return None
    fields = {"guest_kb": g // 1024, "required_kb": r // 1024, "why": ctx.required_by}
    evidence = [Line("context", 0, f"guest page size {g} bytes; required {r} bytes ({ctx.required_by})")]
    return Finding(
        rule["id"],
        _fold(rule["summary"].format(**fields)),
        _fold(rule["cause"].format(**fields)),
        _fold(rule["fix"].format(**fields)),
        evidence,
    )


# What Mesa's Venus maps into the hostmem window before a program maps anything of its own
# (Mesa 25.0, src/virtio/vulkan/vn_instance.c): the instance's ring (vn_instance_init_ring: a
# 128 KiB buffer plus its head, tail, status and extra fields: 131,268 bytes), its reply pool
# (reply_shmem_pool, 1 MiB, at vkCreateInstance) and its command-stream pool (cs_shmem_pool,
# 8 MiB, the first time a command buffer is recorded: vkBeginCommandBuffer). Each is a blob
# resource mapped into the window (RESOURCE_MAP_BLOB); so are every fence and semaphore
# feedback buffer and every HOST_VISIBLE allocation the program maps.
VENUS_RING, VENUS_REPLY_POOL, VENUS_CS_POOL = 131_268, 1 << 20, 8 << 20
VENUS_FLOOR = VENUS_RING + VENUS_REPLY_POOL + VENUS_CS_POOL
# Below this a Vulkan memory error is put down to the window: above the floor, what is left is
# the program's (a 1080p RGBA image alone is 8 MiB, and a command stream that outgrows 8 MiB
# takes a 16 MiB pool beside the old one until its submissions retire). 256 MiB is the least
# the fixes here recommend (venus-needs-blob-hostmem; UTM and krunkit users on macOS run more).
HOSTMEM_ENOUGH = 256 << 20
_FAILED_CALL = re.compile(r"@ (vk\w{2,60})|\"call\": \"(vk\w{2,60})\"|\b(vk[A-Z]\w{2,60}) failed")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f}".rstrip("0").rstrip(".") + " MiB"


def _hostmem_finding(rule: dict, index: _Index, ctx: Context) -> Finding | None:
    """A Vulkan memory error in a run whose hostmem window cannot hold what Venus maps."""
    size = ctx.hostmem
    if size is None or size >= HOSTMEM_ENOUGH:
        return None
    hits: list[Line] = []
    for group in rule["all"]:
        found = index.matching(group)
        if not found:
            return None
        hits += found
    calls = list(dict.fromkeys(c for l in hits for m in _FAILED_CALL.finditer(l.text) for c in m.groups() if c))[:6]
    ours = ctx.hostmem_default is not None and (_hostmem_bytes(ctx.hostmem_default) or 0) >= HOSTMEM_ENOUGH
    default, why = (ctx.hostmem_default, "the profile's hostmem") if ours else ("1G", "venus-repro's default")
    if size < VENUS_FLOOR:
        verdict = (f"{_mib(size)} cannot hold even those {_mib(VENUS_FLOOR)}: no program that records a command "
                   "buffer can run" + ("; not even the ring fits, so vkCreateInstance fails" if size < VENUS_RING else ""))
    else:
        verdict = f"{_mib(size)} leaves {_mib(size - VENUS_FLOOR)} for what the program maps"
    fields = {
        "hostmem": _mib(size), "floor": _mib(VENUS_FLOOR), "verdict": verdict, "raise_to": default, "raise_why": why,
        "calls": ", ".join(calls) if calls else "Vulkan calls", "options": ctx.gpu_options or f"hostmem={_mib(size)}",
        "threshold": _mib(HOSTMEM_ENOUGH),
    }
    evidence = [Line("context", 0, f"gpu options {fields['options']}: hostmem window {size:,} bytes ({_mib(size)})")]
    return Finding(
        rule["id"], _fold(rule["summary"].format(**fields)), _fold(rule["cause"].format(**fields)),
        _fold(rule["fix"].format(**fields)), (evidence + list(dict.fromkeys(hits)))[:12], tuple(rule.get("sources", ())),
    )  # fmt: skip


def classify(index: _Index, ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for rule in rules():
        if rule.get("computed") == "page-size":
            if f := _page_size_finding(rule, ctx):
                findings.append(f)
            continue
        if rule.get("computed") == "hostmem":
            if f := _hostmem_finding(rule, index, ctx):
                findings.append(f)
            continue
        evidence: list[Line] = []
        for group in rule["all"]:
            hits = index.matching(group)
            if not hits:
                break
            evidence += hits
        else:
            if rule.get("absent") and index.matching(rule["absent"]):
                continue
            evidence += index.matching(rule.get("also", []))
            unique = list(dict.fromkeys(evidence))
            cause = _fold(rule["cause"])
            if rule["id"] == "map-blob-failed":
                cause += _page_size_note(ctx)
            findings.append(Finding(rule["id"], _fold(rule["summary"]), cause, _fold(rule["fix"]), unique[:12], tuple(rule.get("sources", ()))))
    ids = {f.id for f in findings}
    by_id = {r["id"]: r for r in rules()}
    return [f for f in findings if not (set(by_id[f.id].get("unless", [])) & ids)]


def _page_size_note(ctx: Context) -> str:
    g, h = ctx.guest_page_size, ctx.host_page_size
    if g and h:
        verdict = "a mismatch: this is the likely cause" if g < h else "equal, so page size is not the cause here"
        return f" Here: guest {g // 1024}K pages, host {h // 1024}K pages ({ctx.accel or 'accelerator unknown'}) — {verdict}."
    if g:
        return f" Here the guest runs with {g // 1024}K pages; the host page size is not in these logs."
    return (
        " The logs do not show the guest's or the host's page size: check the kernel with "
        "`venus-repro doctor --kernel IMAGE` (or grep KernelPageSize /proc/self/smaps in the guest)."
    )


def diagnose(paths: list[Path], ctx_overrides: Context | None = None) -> dict:
    lines, ctx = read_sources(paths)
    if ctx_overrides is not None:
        for field in dataclasses.fields(Context):
            value = getattr(ctx_overrides, field.name)
            if value is not None:
                setattr(ctx, field.name, value)
    ctx.complete()
    return report_dict(lines, ctx)


def candidates(index: _Index, found: set[str], limit: int = 3) -> list[dict]:
    """Rules that matched in part: for each, what matched and what was missing (best first)."""
    out = []
    for rule in rules():
        if rule.get("computed") or rule["id"] in found:
            continue
        groups = rule["all"]
        hits = [bool(index.matching(g)) for g in groups]
        also = index.matching(rule.get("also", []))
        if not any(hits) and not also:
            continue
        missing = [" | ".join(g) for g, hit in zip(groups, hits) if not hit]
        score = sum(hits) / len(groups) + (0.1 if also else 0)
        out.append({"id": rule["id"], "summary": _fold(rule["summary"]), "score": round(score, 2), "missing": missing})
    return sorted(out, key=lambda c: -c["score"])[:limit]


# A line that carries an error code: an error word and a number, a hex value or an
# identifier in capitals. If nothing in codes_in_line decodes it, diagnosis says so.
_ERROR_WORD = re.compile(r"(?i)(?:\b|_)(?:error|err|fail(?:ed|ure)?|ret|rc|status|returned|refused|rejected|abort(?:ed)?)(?:\b|_)")
_CODE_TOKEN = re.compile(r"(?<![\w.])-\d+\b|\b0x[0-9a-fA-F]{3,}\b|\b[A-Z][A-Z0-9]*_[A-Z0-9_]{3,}\b")


def undecoded(index: _Index) -> list[Line]:
    """Lines with an error code that no table decodes (shown, never dropped)."""
    words = index.texts.matching(_ERROR_WORD.pattern)
    return index.lines_of(i for i in words if not index.codes[i] and _CODE_TOKEN.search(index.texts.texts[i]))


def report_dict(lines: list[Line], ctx: Context) -> dict:
    index = _Index(lines)
    findings = classify(index, ctx)
    report = {
        "findings": [f.as_dict() for f in findings],
        "codes": decode_codes(index),
        "context": dataclasses.asdict(ctx),
        "undecoded": [l.as_dict() for l in undecoded(index)[:20]],
        # Lines longer than MAX_LINE: only their first MAX_LINE characters were read for matching.
        "cut_lines": [{"source": l.source, "line": l.number, "length": l.length} for l in lines if l.length is not None],
    }
    if not findings:
        report["candidates"] = candidates(index, set())
    return report


def render(report: dict) -> str:
    out = []
    if not report["findings"]:
        if report.get("undecoded"):
            out.append("no rule matched, and these lines hold codes venus-repro cannot decode:")
            out += [f"  > {u['source']}:{u['line']}: {u['text'][:160]}" for u in report["undecoded"]]
        elif report.get("codes"):
            out.append("no known failure recognised; the codes these logs hold are decoded below")
        else:
            out.append("no known failure recognised in these logs")
        for c in report.get("candidates", []):
            out.append(f"nearest: [{c['id']}] {c['summary']}")
            if c["missing"]:
                out.append(f"  not seen: {c['missing'][0][:150]}")
        out.append("")
    for f in report["findings"]:
        out.append(f"[{f['id']}] {f['summary']}")
        out.append(f"  cause: {f['cause']}")
        out.append(f"  fix:   {f['fix']}")
        for e in f["evidence"][:6]:
            where = f"{e['source']}:{e['line']}" if e["line"] else e["source"]
            out.append(f"  > {where}: {e['text'][:160]}")
        if f.get("sources"):
            out.append(f"  see:   {', '.join(f['sources'][:2])}")
        out.append("")
    if report["codes"]:
        out.append("codes seen:")
        for c in report["codes"]:
            value = c["value"]
            out.append(f"  {c['kind']:<22} {value!s:>12}  {c['name']}  (×{c['count']})")
    if cut := report.get("cut_lines"):
        where = ", ".join(f"{c['source']}:{c['line']} ({c['length']:,} characters)" for c in cut[:3])
        more = f" and {len(cut) - 3} more" if len(cut) > 3 else ""
        lines = "1 line" if len(cut) == 1 else f"{len(cut)} lines"
        out += ["", f"note: {lines} longer than {MAX_LINE} characters cut to their first {MAX_LINE} for matching: {where}{more}"]
    return "\n".join(out).rstrip()
