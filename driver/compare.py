"""``venus-repro compare RUN_A RUN_B``: what differs between two runs, most suspicious first.

Differences come from the two ``fingerprint.json`` files (components, machine,
host, scenario, lock) and the two ``result.json`` files (verdicts, outcomes,
checksums, FPS). When one side failed and the other passed, a changed component
is the first suspect; the host and the scenario come after it.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import registry
from .errors import UsageError
from .result import RunResult

# Most suspicious first: what the user's environment is made of, then how the
# machine was configured, then what was asked, then the host itself.
RANK = ("components.guest_kernel.page_size", "components.guest_kernel", "components", "machine", "lock_sha256", "profile", "scenario", "host")


def load_run(path: Path) -> tuple[dict, RunResult]:
    if not path.is_dir():
        raise UsageError(f"{path}: not a run directory")
    result = RunResult.load(path / "result.json")
    try:
        fp = json.loads((path / "fingerprint.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no fingerprint.json (not a venus-repro run directory?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: unreadable run file: {exc}") from None
    if not isinstance(fp, dict) or not isinstance(fp.get("components", {}), dict):
        raise UsageError(f"{path}/fingerprint.json: not a fingerprint")
    return fp, result


# Fingerprint entries beside the registry's components, and the side of the stack each is on.
# The initramfs holds the guest's components and the demos: apart, it is the test harness's.
_SIDES = {"initramfs": "harness", "ring_wake": "host"}


def side(key: str) -> str | None:
    """host or guest: which side of the stack a difference (``components.<name>…``, ``machine.…``) is on."""
    parts = key.split(".")
    if parts[0] == "machine":
        return "host"
    if parts[0] != "components" or len(parts) < 2:
        return None
    if parts[1] in registry.BY_NAME:
        return registry.BY_NAME[parts[1]].side
    if parts[1] == "demos":
        return "harness"
    return _SIDES.get(parts[1])


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _rank(key: str) -> int:
    for i, prefix in enumerate(RANK):
        if key == prefix or key.startswith(prefix + "."):
            return i
    return len(RANK)


def compare(a_dir: Path, b_dir: Path) -> dict:
    fa, ra = load_run(a_dir)
    fb, rb = load_run(b_dir)
    a, b = flatten({k: v for k, v in fa.items() if k != "sha256"}), flatten({k: v for k, v in fb.items() if k != "sha256"})
    same = same_by_content(fa.get("components") or {}, fb.get("components") or {})
    diffs, provenance = [], []
    for key in sorted(set(a) | set(b), key=lambda k: (_rank(k), k)):
        if a.get(key) == b.get(key):
            continue
        parts = key.split(".")
        entry = {"what": key, "a": a.get(key), "b": b.get(key)}
        # The same component by its bytes (or pins), named or sourced otherwise: a profile's
        # paths and provenance are not a difference (a Mac run against a Linux run, by role).
        (provenance if parts[0] == "components" and len(parts) > 2 and parts[1] in same else diffs).append(entry)
    outcomes = []
    if ra.verdict != rb.verdict:
        outcomes.append({"what": "verdict", "a": ra.verdict, "b": rb.verdict})
    for name in ("page_size", "kernel_release"):
        va, vb = getattr(ra.guest, name), getattr(rb.guest, name)
        if va != vb:
            outcomes.append({"what": f"guest.{name}", "a": va, "b": vb})
    da = {d.name: d for d in ra.steps}
    db = {d.name: d for d in rb.steps}
    for name in list(da) + [n for n in db if n not in da]:
        x, y = da.get(name), db.get(name)
        for field in ("outcome", "checksum"):
            vx, vy = getattr(x, field, None), getattr(y, field, None)
            if vx != vy:
                outcomes.append({"what": f"{name}.{field}", "a": vx, "b": vy})
        if x and y and x.fps and y.fps:
            outcomes.append({"what": f"{name}.fps (b/a)", "a": x.fps, "b": y.fps, "ratio": round(y.fps / x.fps, 2)})
    component_diffs = [d for d in diffs if _rank(d["what"]) <= RANK.index("profile")]
    verdict_changed = ra.verdict != rb.verdict
    for d in diffs:
        d["suspect"] = verdict_changed and d in component_diffs
        d["side"] = side(d["what"])
    sides = sorted({d["side"] for d in component_diffs if d["side"] in ("host", "guest")})
    harness = [d for d in component_diffs if d["side"] == "harness"]
    if not component_diffs:
        summary = "no component differences"
    else:
        where = {("guest",): "guest components", ("host",): "host components", ("guest", "host"): "host and guest components"}.get(tuple(sides), "the test harness only" if harness else "the environment")
        if harness and sides:
            where += " (and the test harness: the guest's demos and initramfs)"
        summary = f"{len(component_diffs)} component difference(s), in the {where}" + (
            f"; the verdict changed ({ra.verdict} → {rb.verdict}): suspect {component_diffs[0]['what']} first"
            if verdict_changed
            else ""
        )
    return {"a": str(a_dir), "b": str(b_dir), "summary": summary, "sides": sides, "differences": diffs, "outcomes": outcomes,
            "same_by_content": sorted(same), "provenance": provenance}  # fmt: skip


def same_by_content(ca: dict, cb: dict) -> set[str]:
    """The components that are the same on both sides by what identifies their content (their sha256s and
    pins), whatever paths or sources name them; a component without such an identity on both sides is not."""
    out = set()
    for name in set(ca) & set(cb):
        x, y = ca[name], cb[name]
        if not (isinstance(x, dict) and isinstance(y, dict)):
            continue
        keys = {k for k in set(x) & set(y) if k.endswith("sha256") and x[k] and y[k]}
        if keys and all(x[k] == y[k] for k in keys):
            out.add(name)
    return out


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 44 else text[:20] + "…" + text[-20:]


def render(report: dict) -> str:
    from tabulate import tabulate

    lines = [f"A: {report['a']}", f"B: {report['b']}", ""]
    if report["differences"]:
        rows = [["!" if d["suspect"] else "", d["what"], _short(d["a"]), _short(d["b"])] for d in report["differences"]]
        lines.append(tabulate(rows, headers=["", "environment", "A", "B"], tablefmt="simple"))
        lines.append("")
    if report["outcomes"]:
        rows = [
            [o["what"], _short(o["a"]), _short(o["b"]) + (f"  (×{o['ratio']})" if "ratio" in o else "")]
            for o in report["outcomes"]
        ]
        lines.append(tabulate(rows, headers=["outcome", "A", "B"], tablefmt="simple"))
        lines.append("")
    lines.append(report["summary"])
    return "\n".join(lines)
