"""The verdict table (tabulate) and the failed checks under it."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate


STDERR_LINES = 8


def _fps(value) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else "-"


def render(result: dict) -> str:
    guest = result.get("guest", {})
    page = guest.get("page_size")
    page_s = f"{page // 1024}K" if page else "-"
    boot = result.get("timings", {}).get("qemu_start_to_init_s")
    boot_s = f"{boot:.1f} s" if boot is not None else "-"
    rows = []
    for d in result.get("demos", []):
        outcome = d["outcome"] if d["outcome"] == "pass" else f"{d['outcome']}: {d.get('failure', '')}"
        if d.get("expected", {}).get("outcome", "pass") != "pass":
            outcome = f"(expected) {outcome}"
        png = d.get("frame_png")
        match = {True: "yes", False: "NO", None: "-"}[d.get("checksum_match")]
        rows.append(
            [
                d["name"],
                outcome,
                (d.get("checksum") or "-").removeprefix("fnv1a64:"),
                match,
                _fps(d.get("fps")),
                _fps(d.get("host_fps")),
                page_s,
                d.get("device") or "-",
                boot_s,
                Path(png).name if png else "-",
            ]
        )
    for prog in result.get("programs", []):
        outcome = prog["outcome"] if prog["outcome"] == "pass" else f"fail: {', '.join(prog['failed'])}"
        rows.append([prog["name"], outcome, "-", "-", "-", "-", page_s, "-", boot_s, "-"])
    headers = ["demo", "outcome", "checksum", "= host", "FPS", "host FPS", "page", "Vulkan device", "boot", "frame"]
    lines = [tabulate(rows, headers=headers, tablefmt="simple")]
    failed = [c for c in result.get("checks", []) if not c["ok"]]
    lines.append("")
    if result.get("failure"):
        lines.append(f"error: {result['failure']}")
    for c in failed:
        lines.append(f"FAILED {c['name']}: {c['detail']}")
    for prog in result.get("programs", []):
        # What a failing program said, where a user looks first: its stderr, or its stdout
        # when it wrote nothing there (all of it stays in RUN_DIR/guest/).
        if prog["outcome"] == "pass":
            continue
        for stream, ext in (("stderr", "err"), ("stdout", "out")):
            tail = [line for line in (prog.get(f"{stream}_tail") or "").splitlines() if line.strip()][-STDERR_LINES:]
            if tail:
                lines.append(f"  {prog['name']} {stream} (last {len(tail)} lines; guest/{prog['name']}.{ext} has it all):")
                lines += [f"    {line}" for line in tail]
                break
    if "observed_checks" in result and result["verdict"] == "pass":
        ids = ", ".join(f["id"] for f in result.get("findings", []))
        lines.append(f"known failure reproduced as expected ({ids})")
    for f in result.get("findings", []):
        lines.append(f"finding [{f['id']}] {f['summary']}")
        lines.append(f"  cause: {f['cause']}")
        lines.append(f"  fix:   {f['fix']}")
    total = result.get("timings", {}).get("total_s")
    lines.append(
        f"verdict: {result['verdict'].upper()}"
        + (f" ({len(failed)} of {len(result.get('checks', []))} checks failed)" if failed else "")
        + (f" in {total:.1f} s" if total is not None else "")
        + f" — {result.get('run_dir')}"
    )
    return "\n".join(lines)
