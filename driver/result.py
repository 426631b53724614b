"""``result.json``: the typed result of one run (``RunResult``), versioned, with its JSON schema.

Every command that reads a run (report, compare, bundle, replay, bisect, the
pytest plugin) reads it through ``RunResult.load`` / ``from_json``, never by
string keys into a dict. The schema (``SCHEMA_VERSION``) is derived from these
dataclasses (``schema()``), so the code and the documentation cannot drift;
``driver/data/schema/result.schema.json`` is the published copy (a test keeps it
equal), which any other tool can validate against.

Version 2 (this one) lists the steps in the order they ran (``steps``); version 1
(before 2026-12) had ``demos`` and ``programs`` apart: ``from_json`` reads both.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Optional

from .errors import UsageError

SCHEMA_VERSION = 2
VERDICTS = ("pass", "fail", "error")


@dataclasses.dataclass
class Check:
    """One expected outcome: held or not, and why."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StepResult:
    """One step as it ran, in the scenario's order. Fields of other kinds are null."""

    kind: str  # demo | program
    name: str
    outcome: str  # demo: pass, error, crash, timeout, missing, unsupported; program: pass, fail
    failed: list[str] = dataclasses.field(default_factory=list)  # the step's failed checks, by name
    failure: Optional[str] = None
    exit_status: Optional[int] = None
    duration_s: Optional[float] = None
    # demo steps
    demo: Optional[str] = None
    expected: Optional[dict[str, Optional[str]]] = None
    vk_result: Optional[int] = None
    call: Optional[str] = None
    checksum: Optional[str] = None
    host_checksum: Optional[str] = None
    checksum_match: Optional[bool] = None
    fps: Optional[float] = None
    host_fps: Optional[float] = None
    frames: Optional[int] = None
    size: Optional[str] = None
    device: Optional[str] = None
    driver: Optional[str] = None
    driver_info: Optional[str] = None
    host_device: Optional[str] = None
    frame_png: Optional[str] = None
    host_frame_png: Optional[str] = None
    # program steps
    outputs: Optional[dict[str, Optional[str]]] = None
    stdout_tail: Optional[str] = None
    stderr_tail: Optional[str] = None


@dataclasses.dataclass
class GuestFacts:
    """What the guest said of itself (untrusted text, parsed)."""

    page_size: Optional[int] = None
    kernel_release: Optional[str] = None
    render_node: Optional[str] = None
    uptime_at_finish_s: Optional[float] = None
    machine: Optional[str] = None
    vulkan_icds: Optional[dict[str, str]] = None  # ICD library → sha256, as the guest found them


@dataclasses.dataclass
class ComponentResult:
    """One registry component of the run: where it came from, what it is."""

    source: str  # profile, suite, build, path, host, manifest
    version: str
    detail: Optional[str] = None  # the suite, the build's source, the path
    sha256: Optional[str] = None


@dataclasses.dataclass
class KernelResult:
    flavour: Optional[str] = None
    release: Optional[str] = None
    image: Optional[str] = None
    header_page_size: Optional[int] = None


@dataclasses.dataclass
class ScenarioRef:
    name: str
    sha256: str
    ignored: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PreflightCheck:
    name: str
    status: str  # doctor's: ok, info, warn, fail
    detail: str
    fix: Optional[str] = None


@dataclasses.dataclass
class RunResult:
    """Everything a run found, written as ``result.json`` on every outcome."""

    venus_repro: str
    run_dir: str
    profile: str
    required_page_size: Optional[int]
    scenario: ScenarioRef
    schema: int = SCHEMA_VERSION
    verdict: str = "error"  # pass, fail, error
    failure: Optional[str] = None
    steps: list[StepResult] = dataclasses.field(default_factory=list)
    checks: list[Check] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    guest: GuestFacts = dataclasses.field(default_factory=GuestFacts)
    components: dict[str, ComponentResult] = dataclasses.field(default_factory=dict)
    lock_sha256: Optional[str] = None
    environment_sha256: Optional[str] = None
    kernel: KernelResult = dataclasses.field(default_factory=KernelResult)
    accel: Optional[str] = None
    ring_wake: Optional[bool] = None
    fingerprint_sha256: Optional[str] = None
    preflight: list[PreflightCheck] = dataclasses.field(default_factory=list)
    findings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    codes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # A scenario that expects findings: the checks that ran, beside the one on the findings.
    observed_checks: Optional[list[Check]] = None

    # --- views ---------------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[StepResult]:
        return [s for s in self.steps if s.kind == kind]

    @property
    def demos(self) -> list[StepResult]:
        return self.of_kind("demo")

    @property
    def programs(self) -> list[StepResult]:
        return self.of_kind("program")

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def first_failure(self) -> str | None:
        """The failure signature: the first failed check (or the run's error), as one line."""
        failed = self.failed_checks
        if failed:
            return f"{failed[0].name}: {failed[0].detail}"
        return self.failure

    # --- JSON ------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def from_json(cls, doc: Any, where: str = "result.json") -> "RunResult":
        """The result in ``doc``, checked field by field (it may come from someone else's bundle)."""
        if not isinstance(doc, dict):
            raise UsageError(f"{where}: a result is a JSON object")
        doc = _upgrade(doc)
        if doc.get("schema") != SCHEMA_VERSION:
            raise UsageError(f"{where}: result schema {doc.get('schema')!r}; this venus-repro reads {SCHEMA_VERSION} (and 1)")
        return _build(cls, doc, where)

    @classmethod
    def load(cls, path: Path) -> "RunResult":
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"{path.parent}: no result.json (not a venus-repro run directory?)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read it ({exc})") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: unreadable run file: {exc}") from None
        return cls.from_json(doc, str(path))


def _upgrade(doc: dict) -> dict:
    """A version-1 result (demos and programs apart, components as versions) in version 2's shape."""
    if "schema" in doc:
        return doc
    doc = dict(doc)
    steps = []
    for d in doc.pop("demos", None) or []:
        if isinstance(d, dict):
            d = {**d, "kind": "demo", "demo": d.get("name"), "exit_status": d.get("guest_exit_status"),
                 "duration_s": d.get("guest_duration_s")}  # fmt: skip
            steps.append({k: v for k, v in d.items() if k not in ("guest_exit_status", "guest_duration_s")})
    for p in doc.pop("programs", None) or []:
        if isinstance(p, dict):
            steps.append({**p, "kind": "program"})
    doc["steps"] = steps
    versions = doc.get("components") or {}
    if isinstance(versions, dict):
        doc["lock_sha256"] = versions.get("lock_sha256")
        doc["components"] = {k: {"source": "profile", "version": str(v)} for k, v in versions.items() if k != "lock_sha256"}
    doc["schema"] = SCHEMA_VERSION
    return doc


# --- typed reading and the schema, both from the dataclasses' hints --------------------------


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(tp) -> tuple[bool, Any]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0]
    return False, tp


def _value(tp, value, where: str):
    nullable, tp = _optional(tp)
    if value is None:
        if nullable:
            return None
        raise UsageError(f"{where}: must not be null")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise UsageError(f"{where}: must be a list")
        (item,) = typing.get_args(tp)
        return [_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: must be an object")
        _, item = typing.get_args(tp)
        return {str(k): _value(item, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp in (int, float) and isinstance(value, bool)):
        raise UsageError(f"{where}: must be a {tp.__name__}, not {type(value).__name__}")
    return value


def _build(cls, doc, where: str):
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: must be an object")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in doc:
            kwargs[f.name] = _value(hints[f.name], doc[f.name], f"{where}: {f.name}" if ":" not in where else f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise UsageError(f"{where}: missing field '{f.name}'")
    return cls(**kwargs)


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _schema_of(tp, defs: dict) -> dict:
    nullable, tp = _optional(tp)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}
            defs[tp.__name__] = _object_schema(tp, defs)
        out: dict = {"$ref": f"#/$defs/{tp.__name__}"}
    elif origin is list:
        out = {"type": "array", "items": _schema_of(typing.get_args(tp)[0], defs)}
    elif origin is dict:
        out = {"type": "object", "additionalProperties": _schema_of(typing.get_args(tp)[1], defs)}
    elif tp is Any:
        out = {}
    else:
        out = {"type": _JSON_TYPES[tp]}
    if nullable:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _object_schema(cls, defs: dict) -> dict:
    hints = _hints(cls)
    props = {f.name: _schema_of(hints[f.name], defs) for f in dataclasses.fields(cls)}
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    out = {"type": "object", "description": (cls.__doc__ or "").strip().splitlines()[0], "properties": props}
    if required:
        out["required"] = required
    return out


def schema() -> dict:
    """The JSON schema (draft 2020-12) of result.json, from the dataclasses above."""
    defs: dict = {}
    top = _object_schema(RunResult, defs)
    top["properties"]["schema"] = {"const": SCHEMA_VERSION}
    top["properties"]["verdict"] = {"enum": list(VERDICTS)}
    top["required"] = sorted(set(top.get("required", [])) | {"schema", "verdict", "steps", "checks"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://venus-repro/result/{SCHEMA_VERSION}",
        "title": "venus-repro result.json",
        **top,
        "$defs": defs,
    }
