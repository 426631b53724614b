"""``venus-repro compare RUN_A RUN_B``: what differs between two runs, most suspicious first.

Differences come from the two ``fingerprint.json`` files (components, machine,
host, scenario, lock) and the two ``result.json`` files (verdicts, outcomes,
checksums, FPS). When one side failed and the other passed, a changed component
is the first suspect; the host and the scenario come after it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UsageError

# Most suspicious first: what the user's environment is made of, then how the
# machine was configured, then what was asked, then the host itself.
RANK = ("components.kernel.page_size", "components.kernel", "components", "machine", "lock_sha256", "profile", "scenario", "host")


def load_run(path: Path) -> tuple[dict, dict]:
    if not path.is_dir():
        raise UsageError(f"{path}: not a run directory")
    try:
        fp = json.loads((path / "fingerprint.json").read_text())
        result = json.loads((path / "result.json").read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no {Path(exc.filename).name} (not a venus-repro run directory?)") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: unreadable run file: {exc}") from None
    return fp, result


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
    diffs = [
        {"what": key, "a": a.get(key), "b": b.get(key)}
        for key in sorted(set(a) | set(b), key=lambda k: (_rank(k), k))
        if a.get(key) != b.get(key)
    ]
    outcomes = []
    if ra.get("verdict") != rb.get("verdict"):
        outcomes.append({"what": "verdict", "a": ra.get("verdict"), "b": rb.get("verdict")})
    for name in ("guest.page_size", "guest.kernel_release"):
        va, vb = flatten(ra).get(name), flatten(rb).get(name)
        if va != vb:
            outcomes.append({"what": name, "a": va, "b": vb})
    da = {d["name"]: d for d in ra.get("demos", [])}
    db = {d["name"]: d for d in rb.get("demos", [])}
    for name in list(da) + [n for n in db if n not in da]:
        x, y = da.get(name, {}), db.get(name, {})
        for field in ("outcome", "checksum"):
            if x.get(field) != y.get(field):
                outcomes.append({"what": f"{name}.{field}", "a": x.get(field), "b": y.get(field)})
        if x.get("fps") and y.get("fps"):
            outcomes.append({"what": f"{name}.fps (b/a)", "a": x["fps"], "b": y["fps"], "ratio": round(y["fps"] / x["fps"], 2)})
    component_diffs = [d for d in diffs if _rank(d["what"]) <= RANK.index("profile")]
    verdict_changed = ra.get("verdict") != rb.get("verdict")
    for d in diffs:
        d["suspect"] = verdict_changed and d in component_diffs
    if not component_diffs:
        summary = "no component differences"
    else:
        summary = f"{len(component_diffs)} component difference(s)" + (
            f"; the verdict changed ({ra.get('verdict')} → {rb.get('verdict')}): suspect {component_diffs[0]['what']} first"
            if verdict_changed
            else ""
        )
    return {"a": str(a_dir), "b": str(b_dir), "summary": summary, "differences": diffs, "outcomes": outcomes}


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
