"""The verdict table (tabulate) and the failed checks under it."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from .result import RunResult


STDERR_LINES = 8


def _fps(value) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else "-"


def render(result: RunResult) -> str:
    page = result.guest.page_size
    page_s = f"{page // 1024}K" if page else "-"
    boot = result.timings.get("qemu_start_to_init_s")
    boot_s = f"{boot:.1f} s" if boot is not None else "-"
    rows = []
    for d in result.steps:
        if d.kind == "demo":
            outcome = d.outcome if d.outcome == "pass" else f"{d.outcome}: {d.failure or ''}"
            if (d.expected or {}).get("outcome", "pass") != "pass":
                outcome = f"(expected) {outcome}"
            match = {True: "yes", False: "NO", None: "-"}[d.checksum_match]
            rows.append([d.name, outcome, (d.checksum or "-").removeprefix("fnv1a64:"), match, _fps(d.fps), _fps(d.host_fps),
                         page_s, d.device or "-", boot_s, Path(d.frame_png).name if d.frame_png else "-"])  # fmt: skip
        else:
            outcome = d.outcome if d.outcome == "pass" else f"fail: {', '.join(d.failed)}"
            rows.append([d.name, outcome, "-", "-", "-", "-", page_s, "-", boot_s, "-"])
    headers = ["step", "outcome", "checksum", "= host", "FPS", "host FPS", "page", "Vulkan device", "boot", "frame"]
    lines = [tabulate(rows, headers=headers, tablefmt="simple")]
    failed = result.failed_checks
    lines.append("")
    if result.failure:
        lines.append(f"error: {result.failure}")
    for c in failed:
        lines.append(f"FAILED {c.name}: {c.detail}")
    for prog in result.programs:
        # What a failing program said, where a user looks first: its stderr, or its stdout
        # when it wrote nothing there (all of it stays in RUN_DIR/guest/).
        if prog.outcome == "pass":
            continue
        for stream, ext in (("stderr", "err"), ("stdout", "out")):
            tail = [line for line in (getattr(prog, f"{stream}_tail") or "").splitlines() if line.strip()][-STDERR_LINES:]
            if tail:
                lines.append(f"  {prog.name} {stream} (last {len(tail)} lines; guest/{prog.name}.{ext} has it all):")
                lines += [f"    {line}" for line in tail]
                break
    if result.observed_checks is not None and result.verdict == "pass":
        ids = ", ".join(f["id"] for f in result.findings)
        lines.append(f"known failure reproduced as expected ({ids})")
    for f in result.findings:
        lines.append(f"finding [{f['id']}] {f['summary']}")
        lines.append(f"  cause: {f['cause']}")
        lines.append(f"  fix:   {f['fix']}")
    total = result.timings.get("total_s")
    lines.append(
        f"verdict: {result.verdict.upper()}"
        + (f" ({len(failed)} of {len(result.checks)} checks failed)" if failed else "")
        + (f" in {total:.1f} s" if total is not None else "")
        + f" — {result.run_dir}"
    )
    return "\n".join(lines)
