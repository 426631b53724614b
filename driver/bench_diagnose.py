"""``venus-repro bench --diagnose``: how long diagnosis takes on logs of every shape and size.

Diagnosis reads logs from anywhere (someone's bug report, a run of a broken build), so its
time must be linear in what it is given, whatever that looks like. Measured here on three
shapes, each at 100 KB, 1 MB and 10 MB:

* ``lines``: real log lines (``data/diagnose/sample.log``: noise and the failures diagnosis
  recognises) repeated, each made distinct by a timestamp, as a long log of a failing run;
* ``one-line``: one line without a break (a base64 blob, a minified dump);
* ``binary``: random bytes (NUL bytes, no UTF-8, line breaks where they fall).

The goal (10 MB of any shape in at most 10 s) is reported, not enforced: tests assert only
ratios of times (tests/test_diagnose.py), never a time.
"""

from __future__ import annotations

import base64
import random
import tempfile
import time
from pathlib import Path

from . import diagnose
from .profile import DATA

SHAPES = ("lines", "one-line", "binary")
SIZES = (100_000, 1_000_000, 10_000_000)
GOAL_S = 10.0  # for 10 MB of any shape


def write_input(shape: str, size: int, path: Path, seed: int = 0) -> Path:
    """A log of ``size`` bytes of ``shape`` (see the module's docstring), the same for the same seed."""
    rng = random.Random(seed)
    if shape == "lines":
        sample = [l for l in (DATA / "diagnose" / "sample.log").read_text().splitlines() if l and not l.startswith("#")]
        out, total, n = [], 0, 0
        while total < size:
            line = f"[{n / 1000:12.6f}] {sample[n % len(sample)]}\n"
            out.append(line)
            total += len(line)
            n += 1
        path.write_text("".join(out)[:size])
    elif shape == "one-line":
        path.write_bytes(base64.b64encode(rng.randbytes(size * 3 // 4 + 3))[:size])
    elif shape == "binary":
        path.write_bytes(rng.randbytes(size))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return path


def timed(path: Path) -> tuple[float, float, dict]:
    """(CPU seconds, wall seconds, report) of diagnosing ``path`` in this process."""
    cpu, wall = time.process_time(), time.perf_counter()
    report = diagnose.diagnose([path])
    return time.process_time() - cpu, time.perf_counter() - wall, report


def bench() -> dict:
    """Diagnose every shape at every size; the times, and the goal for 10 MB."""
    with tempfile.TemporaryDirectory(prefix="venus-repro-bench-diagnose-") as tmp:
        timed(write_input("lines", 1000, Path(tmp) / "warm-up"))  # rules and patterns loaded once
        runs = []
        for shape in SHAPES:
            for size in SIZES:
                cpu, wall, report = timed(write_input(shape, size, Path(tmp) / f"{shape}-{size}"))
                runs.append({"shape": shape, "bytes": size, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                             "findings": len(report["findings"]), "cut_lines": len(report["cut_lines"])})  # fmt: skip
    worst = max(r["wall_s"] for r in runs if r["bytes"] == SIZES[-1])
    return {"runs": runs, "goals": [{"goal": "diagnose_10MB_s", "target": GOAL_S, "measured": worst, "met": worst <= GOAL_S}]}


def render(report: dict) -> str:
    from tabulate import tabulate

    base = {r["shape"]: r["cpu_s"] for r in report["runs"] if r["bytes"] == SIZES[0]}
    rows = [
        [r["shape"], f"{r['bytes'] / 1e6:g} MB", f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}",
         f"{r['cpu_s'] / base[r['shape']]:.1f}" if base[r["shape"]] else "-", r["cut_lines"]]
        for r in report["runs"]
    ]  # fmt: skip
    out = [tabulate(rows, headers=["shape", "size", "wall s", "CPU s", "CPU × 100 KB's", "lines cut"], tablefmt="simple")]
    for g in report["goals"]:
        out.append(f"\ngoal: 10 MB of any shape in ≤ {g['target']:g} s: {g['measured']:.2f} s at most, {'met' if g['met'] else 'NOT met'}")
    return "\n".join(out)
