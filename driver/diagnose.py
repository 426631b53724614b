"""Diagnosis: decode every code in a run's logs and name the failure, its cause and fix.

Input is text from anywhere — a run directory of ours, or log files handed in
from another machine or a bug report. Output is findings (rules in
``data/diagnose/rules.yaml``, each with its evidence lines) and every code seen,
decoded; an unknown code is reported as unknown, never dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

import yaml

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


@dataclasses.dataclass(frozen=True)
class Line:
    source: str
    number: int
    text: str

    def as_dict(self) -> dict:
        return {"source": self.source, "line": self.number, "text": self.text}


@dataclasses.dataclass
class Context:
    """What is known beside the logs: page sizes and the accelerator."""

    guest_page_size: int | None = None
    host_page_size: int | None = None
    required_page_size: int | None = None
    required_by: str | None = None
    accel: str | None = None

    def complete(self) -> None:
        """Derive what follows from the accelerator (Apple Silicon HVF: 16K host pages)."""
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
    """Lines from files and run directories, and the context they reveal."""
    lines: list[Line] = []
    ctx = Context()
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
        if path.is_dir():
            files = [path / f for f in RUN_FILES if (path / f).exists()]
            files += sorted(path.glob("guest/*.out")) + sorted(path.glob("guest/*.err"))
            if not files and not (path / "result.json").exists():
                raise UsageError(f"{path}: not a venus-repro run directory (no logs or result.json in it)")
            _context_from_result(path / "result.json", ctx)
        else:
            files = [path]
        for f in files:
            try:
                text = f.read_bytes().decode(errors="replace")
            except OSError as exc:
                raise UsageError(f"{f}: cannot read: {exc.strerror}") from None
            name = str(f.relative_to(path)) if path.is_dir() else str(f)
            lines += [Line(name, i, t.rstrip("\r")) for i, t in enumerate(text.splitlines(), 1) if t.strip()]
    _context_from_lines(lines, ctx)
    return lines, ctx


def _context_from_result(path: Path, ctx: Context) -> None:
    if not path.exists():
        return
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError:
        return
    ctx.guest_page_size = (result.get("guest") or {}).get("page_size") or ctx.guest_page_size
    required = result.get("required_page_size")
    if required:
        ctx.required_page_size, ctx.required_by = required, f"profile {result.get('profile')}"


def _context_from_lines(lines: list[Line], ctx: Context) -> None:
    for line in lines:
        if ctx.guest_page_size is None:
            if m := re.search(r"KernelPageSize:\s+(\d+) kB", line.text):
                ctx.guest_page_size = int(m.group(1)) * 1024
            elif m := re.search(r"page_size_kb=(\d+)", line.text):
                ctx.guest_page_size = int(m.group(1)) * 1024
        if ctx.accel is None and (m := re.search(r"-accel\s+(hvf|kvm|tcg|whpx)\b", line.text)):
            ctx.accel = m.group(1)


# --- codes ------------------------------------------------------------------------------

_CODE_PATTERNS = [
    (re.compile(r"ctrl (0x[0-9a-fA-F]+), error (0x[0-9a-fA-F]+)"), ("commands", "responses")),
    (re.compile(r"response (0x[0-9a-fA-F]+) \(command (0x[0-9a-fA-F]+)\)"), ("responses", "commands")),
]


@functools.cache
def _venus_messages() -> list[tuple[re.Pattern, str]]:
    return [(re.compile(k), v) for k, v in codes.venus_messages().items()]


@functools.lru_cache(maxsize=65536)
def codes_in_line(text: str) -> tuple[tuple[str, int | str, str], ...]:
    """Every code ``text`` holds, decoded: (kind, value, name). One home for what a code is.

    Cached: decoding and the undecoded-line check both ask for the same lines.
    """
    out: list[tuple[str, int | str, str]] = []
    for pattern, kinds in _CODE_PATTERNS:
        for m in pattern.finditer(text):
            for kind, raw in zip(kinds, m.groups()):
                value = int(raw, 16)
                out.append((f"virtio-gpu {kind[:-1]}", value, codes.virtio_gpu(kind, value)))
    for value, name, _ in codes.vk_results_in(text):
        out.append(("VkResult", value, name))
    for value, name, _ in codes.hvf_codes_in(text):
        out.append(("Hypervisor.framework", f"0x{value:08x}", name))
    for value, name, _ in codes.errnos_in(text):
        out.append(("errno", value, name))
    for section, value, name in codes.virtio_gpu_names_in(text):
        out.append((f"virtio-gpu {section[:-1]}", value, name))
    for kind, value, meaning in codes.kvm_codes_in(text):
        out.append((kind, value, meaning))
    for pattern, meaning in _venus_messages():
        if m := pattern.search(text):
            out.append(("guest message", m.group(0), meaning))
    for m in re.finditer(r"cap set \d+: id (\d+)", text):
        out.append(("virtio-gpu capset", int(m.group(1)), codes.virtio_gpu("capsets", int(m.group(1)))))
    return tuple(out)


def decode_codes(lines: list[Line]) -> list[dict]:
    found: dict[tuple[str, int | str], dict] = {}
    for line in lines:
        for kind, value, name in codes_in_line(line.text):
            entry = found.setdefault((kind, value), {"kind": kind, "value": value, "name": name, "count": 0, "first": line.as_dict()})
            entry["count"] += 1
    out = sorted(found.values(), key=lambda e: (e["kind"], str(e["value"])))
    for e in out:
        if e["kind"].startswith("virtio-gpu") and e["kind"] != "virtio-gpu capset":
            e["value"] = f"0x{e['value']:x}"
    return out


# --- findings ---------------------------------------------------------------------------


def _matching(lines: list[Line], patterns: list[str]) -> list[Line]:
    """The lines (as written) that a pattern matches in their annotated form (see _annotated)."""
    compiled = [re.compile(p) for p in patterns]
    return [l for l in lines if any(c.search(_annotated(l)) for c in compiled)]


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


@functools.lru_cache(maxsize=65536)
def _annotated(line: Line) -> str:
    """What the rules read of ``line``: its text, then the VkResults it names in canonical form.

    Rules are written against canonical names (VK_ERROR_OUT_OF_HOST_MEMORY, HV_BAD_ARGUMENT,
    EFAULT) and so match every spelling users paste (ERROR_OUT_OF_HOST_MEMORY,
    ErrorOutOfHostMemory, VkResult -1; err -85377021; "Bad address (os error 14)").
    """
    decoded = [f"{name} ({value})" for value, name, _ in sorted(set(codes.vk_results_in(line.text)))]
    decoded += [name for _, name, _ in sorted(set(codes.hvf_codes_in(line.text)))]
    decoded += [name.split(":")[0] for _, name, _ in sorted(set(codes.errnos_in(line.text)))]
    for pattern, kinds in _CODE_PATTERNS:  # "response 0x1200 (command 0x108)" → ERR_UNSPEC GET_CAPSET_INFO
        for m in pattern.finditer(line.text):
            decoded += [codes.virtio_gpu(kind, int(raw, 16)) for kind, raw in zip(kinds, m.groups())]
    decoded += [name for _, _, name in codes.virtio_gpu_names_in(line.text)]
    return f"{line.text}  [decoded: {'; '.join(dict.fromkeys(decoded))}]" if decoded else line.text


def classify(lines: list[Line], ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for rule in rules():
        if rule.get("computed") == "page-size":
            if f := _page_size_finding(rule, ctx):
                findings.append(f)
            continue
        evidence: list[Line] = []
        for group in rule["all"]:
            hits = _matching(lines, group)
            if not hits:
                break
            evidence += hits
        else:
            if rule.get("absent") and _matching(lines, rule["absent"]):
                continue
            evidence += _matching(lines, rule.get("also", []))
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


def candidates(lines: list[Line], found: set[str], limit: int = 3) -> list[dict]:
    """Rules that matched in part: for each, what matched and what was missing (best first)."""
    out = []
    for rule in rules():
        if rule.get("computed") or rule["id"] in found:
            continue
        groups = rule["all"]
        hits = [bool(_matching(lines, g)) for g in groups]
        also = _matching(lines, rule.get("also", []))
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


def undecoded(lines: list[Line]) -> list[Line]:
    """Lines with an error code that no table decodes (shown, never dropped)."""
    return [l for l in lines if _ERROR_WORD.search(l.text) and _CODE_TOKEN.search(l.text) and not codes_in_line(l.text)]


def report_dict(lines: list[Line], ctx: Context) -> dict:
    findings = classify(lines, ctx)
    report = {
        "findings": [f.as_dict() for f in findings],
        "codes": decode_codes(lines),
        "context": dataclasses.asdict(ctx),
        "undecoded": [l.as_dict() for l in undecoded(lines)][:20],
    }
    if not findings:
        report["candidates"] = candidates(lines, set())
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
    return "\n".join(out).rstrip()
