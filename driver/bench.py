"""``venus-repro bench``: Venus efficiency, zero-copy gain and time-to-verdict.

Measured side by side on a noisy machine, so every figure is a median with its
min and max:

1. time-to-verdict: a normal warm ``run`` of the default demos, with its
   breakdown (preflight, host reference runs, boot to /init, guest demos);
2. efficiency: one boot; each demo runs alternately in the guest and on the
   host (same binary source, same host driver, same size and frame count),
   ``repeat`` rounds. The guest waits at a ``sync`` plan line while the host
   half runs, so the two never compete for the CPU.

Writes ``bench.json`` and ``bench.png`` in the run directory. No assertion
about speed is made anywhere in the tests: goals are reported, not enforced.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from . import demos, doctor, hostvulkan, log, protocol, registry, scenario
from .environment import Environment, resolve
from .errors import VenusReproError
from .machine import Machine, StartCommand
from .profile import Profile
from .provision import Components, Provisioner, components
from .run import RunOptions, boot_and_collect, run
from .steps import DemoStep, run_host_demo
from .verdict import DemoRun

DEFAULT_DEMOS = ["test_tri", "vkcube_anim", "vkcube_zerocopy", "vkcube_copyback"]
GOALS = {
    "time_to_verdict_s": 12.0,
    "cold_setup_s": 180.0,
    "efficiency_vkcube_anim": 0.85,
    "efficiency_test_tri": 0.6,
    "zero_copy_vs_copyback": 1.2,
}


def spread(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "values": [round(v, 3) for v in values],
    }


def _rounds(c: Components, selected: list[demos.Demo], repeat: int, out: Path) -> tuple[dict, list[dict]]:
    """One boot, ``repeat`` rounds of guest/host pairs.

    Returns ({demo: {"guest": [...], "host": [...]}} of the rounds that passed on
    both sides, [failed rounds]). A failed round is recorded and skipped, not
    fatal: one rare hang must not cost the whole measurement.
    """
    out.mkdir(parents=True, exist_ok=True)
    host_out = out / "host"
    host_out.mkdir(exist_ok=True)
    plan: list[protocol.Step | protocol.Sync] = []
    steps = {d.name: DemoStep(d) for d in selected}
    for r in range(repeat):
        for d in selected:
            name = f"{d.name}-r{r}"
            plan.append(protocol.Sync(name))
            plan.append(steps[d.name].guest_plan(None, name=name, out=False)[0])
    start = StartCommand(c, out)
    host_fps: dict[str, float] = {}
    host_failed: dict[str, DemoRun] = {}

    def drive(machine: Machine) -> None:
        for r in range(repeat):
            for d in selected:
                sync = machine.wait_for_marker("sync", 60)
                host = run_host_demo(start, steps[d.name], host_out, save_frame=False, name=sync.get("name"))
                if host.outcome == "pass":
                    host_fps[host.name] = float(host.result["fps"])
                else:
                    host_failed[host.name] = host
                machine.send_console("go")
                end = machine.wait_for_marker("step-end", d.timeout + 30)
                log.info(f"round {r + 1}/{repeat} {d.name}: host {host.outcome}, guest exit status {end.get('status')}")

    exchange, failure = boot_and_collect(start, plan, {}, drive, 120, out, {})
    if failure is not None:
        raise VenusReproError(f"bench: the efficiency rounds failed: {failure}; see {out}")
    fps: dict[str, dict[str, list[float]]] = {d.name: {"guest": [], "host": []} for d in selected}
    failures = []
    for r in range(repeat):
        for d in selected:
            name = f"{d.name}-r{r}"
            guest = steps[d.name].collect(exchange, None, name=name)
            if guest.outcome != "pass" or name not in host_fps:
                side = "guest" if guest.outcome != "pass" else "host"
                run_ = guest if side == "guest" else host_failed.get(name)
                detail = run_.failure() if run_ is not None else "failed on the host"
                failures.append({
                    "demo": d.name, "round": r + 1, "side": side, "detail": detail, "log": str(out / "guest" / f"{name}.err"),
                    "unsupported": run_ is not None and run_.outcome == "unsupported",
                })  # fmt: skip
                log.warn(f"round {r + 1} {d.name}: {side} {detail}; round left out")
                continue
            fps[d.name]["guest"].append(float(guest.result["fps"]))
            fps[d.name]["host"].append(host_fps[name])
    return fps, failures


def bench(
    profile: Profile, selected: list[demos.Demo], repeat: int, frames: int | None, run_dir: Path, cold: bool, host_vulkan: str = hostvulkan.LAVAPIPE
) -> dict:
    report: dict = {"profile": profile.name, "repeat": repeat, "frames": frames, "run_dir": str(run_dir), "host_vulkan": host_vulkan}
    selected = [demos.with_frames(d, frames) for d in selected]
    if cold:
        with log.nested("cold set-up: provisioning into an empty cache"):
            tmp = Path(tempfile.mkdtemp(prefix="venus-repro-cold-"))
            try:
                t = time.monotonic()
                prov = Provisioner(profile, cache=tmp)
                prov.provision(resolve(Environment(profile), prov))
                report["cold_setup_s"] = round(time.monotonic() - t, 1)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    with log.nested("time to verdict (a warm run of the default demos)"):
        verdicts = []
        report["failed_verdict_runs"] = []
        for i in range(max(1, min(repeat, 3))):
            default = scenario.load("venus-demos").override(profile=profile.name, host_vulkan=host_vulkan)
            result = run(RunOptions(default, profile, run_dir=run_dir / f"verdict-{i}"))
            if result.verdict == "pass":
                verdicts.append(result.timings)
            else:
                ids = [f["id"] for f in result.findings]
                log.warn(f"verdict run {i + 1} failed ({', '.join(ids) or 'no finding'}); left out of the timings")
                report["failed_verdict_runs"].append({"run_dir": result.run_dir, "findings": ids})
        if not verdicts:
            raise VenusReproError(f"bench: every verdict run failed; see {run_dir}")
    report["time_to_verdict"] = {
        key: spread([t[key] for t in verdicts])
        for key in ("total_s", "preflight_s", "host_demos_s", "qemu_start_to_init_s", "vm_s")
    }
    env = Environment(profile, sources=(("host_vulkan", registry.Source(registry.HOST)),) if host_vulkan == hostvulkan.HOST else ())
    c, _ = components(env)
    failed = [ch for ch in doctor.preflight(c, StartCommand(c, run_dir)) if ch.status == doctor.FAIL]
    if failed:
        raise VenusReproError(f"bench: preflight failed: {failed[0].line()}")
    with log.nested(f"efficiency: {repeat} rounds of {', '.join(d.name for d in selected)} (guest and host alternately)"):
        fps, report["failed_rounds"] = _rounds(c, selected, repeat, run_dir / "rounds")
    report["demos"] = {}
    for name, pair in fps.items():
        if not pair["guest"]:
            failed = [f for f in report["failed_rounds"] if f["demo"] == name]
            if failed and all(f["unsupported"] for f in failed):
                # The host's driver lacks what the demo needs (vkcube_zerocopy on NVIDIA): no figure, said why.
                report.setdefault("unsupported", {})[name] = failed[0]["detail"]
                continue
            raise VenusReproError(f"bench: {name} failed in every round; see {run_dir / 'rounds'}")
        ratios = [g / h for g, h in zip(pair["guest"], pair["host"])]
        report["demos"][name] = {
            "guest_fps": spread(pair["guest"]),
            "host_fps": spread(pair["host"]),
            "efficiency": spread(ratios),
        }
    if "vkcube_zerocopy" in fps and "vkcube_copyback" in fps:
        zc, cb = fps["vkcube_zerocopy"]["guest"], fps["vkcube_copyback"]["guest"]
        if zc and cb:
            report["zero_copy_vs_copyback"] = spread([z / c for z, c in zip(zc, cb)])
    report["goals"] = goals(report)
    return report


def goals(report: dict) -> list[dict]:
    measured = {
        "time_to_verdict_s": report["time_to_verdict"]["total_s"]["median"],
        "cold_setup_s": report.get("cold_setup_s"),
        "efficiency_vkcube_anim": report["demos"].get("vkcube_anim", {}).get("efficiency", {}).get("median"),
        "efficiency_test_tri": report["demos"].get("test_tri", {}).get("efficiency", {}).get("median"),
        "zero_copy_vs_copyback": report.get("zero_copy_vs_copyback", {}).get("median"),
    }
    out = []
    for key, target in GOALS.items():
        value = measured[key]
        lower_is_better = key.endswith("_s")
        met = None if value is None else (value <= target if lower_is_better else value >= target)
        out.append({"goal": key, "target": target, "measured": value, "met": met})
    return out


def render(report: dict) -> str:
    from tabulate import tabulate

    def cell(s: dict, fmt: str = ".0f") -> str:
        return f"{s['median']:{fmt}} [{s['min']:{fmt}}–{s['max']:{fmt}}]"

    rows = [
        [name, cell(d["guest_fps"]), cell(d["host_fps"]), cell(d["efficiency"], ".2f")]
        for name, d in report["demos"].items()
    ]
    lines = [tabulate(rows, headers=["demo", "guest FPS", "host FPS", "guest/host"], tablefmt="simple")]
    if "zero_copy_vs_copyback" in report:
        lines.append(f"\nzero-copy / copy-back (guest FPS): {cell(report['zero_copy_vs_copyback'], '.2f')}")
    t = report["time_to_verdict"]
    lines.append(
        f"time to verdict: {cell(t['total_s'], '.1f')} s (boot to /init {cell(t['qemu_start_to_init_s'], '.1f')} s, "
        f"VM {cell(t['vm_s'], '.1f')} s, host references {cell(t['host_demos_s'], '.1f')} s, "
        f"preflight {cell(t['preflight_s'], '.2f')} s)"
    )
    for name, why in report.get("unsupported", {}).items():
        lines.append(f"{name}: not measured, unsupported ({why})")
    if "cold_setup_s" in report:
        lines.append(f"cold set-up (empty cache): {report['cold_setup_s']:.0f} s")
    lines.append("")
    goal_rows = [
        [g["goal"], g["target"], "-" if g["measured"] is None else g["measured"], {True: "yes", False: "NO", None: "not measured"}[g["met"]]]
        for g in report["goals"]
    ]
    lines.append(tabulate(goal_rows, headers=["goal", "target", "measured (median)", "met"], tablefmt="simple"))
    for f in report.get("failed_rounds", []):
        lines.append(f"round {f['round']} of {f['demo']} left out: {f['side']} {f['detail']} ({f['log']})")
    lines.append(f"\nmedian [min–max] over {report['repeat']} rounds; {report['run_dir']}")
    return "\n".join(lines)


def plotting_available() -> bool:
    """Whether ``plot`` can draw (matplotlib, the ``bench`` extra): asked before anything is measured."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    names = list(report["demos"])
    med = [report["demos"][n]["efficiency"]["median"] for n in names]
    lo = [m - report["demos"][n]["efficiency"]["min"] for m, n in zip(med, names)]
    hi = [report["demos"][n]["efficiency"]["max"] - m for m, n in zip(med, names)]
    ax1.bar(names, med, yerr=[lo, hi], capsize=6, color="#4a7fb5")
    for goal, label in ((GOALS["efficiency_vkcube_anim"], "cube goal"), (GOALS["efficiency_test_tri"], "triangle goal")):
        ax1.axhline(goal, linestyle="--", linewidth=1, color="#999999")
        ax1.text(-0.45, goal, label, va="bottom", ha="left", fontsize=8, color="#666666")
    ax1.set_ylabel("guest FPS / host FPS (median, min–max)")
    ax1.set_title(f"Venus efficiency, {report['repeat']} rounds")
    ax1.set_ylim(0, max(1.0, max(m + h for m, h in zip(med, hi)) * 1.1))
    ax1.tick_params(axis="x", labelrotation=15)
    t = report["time_to_verdict"]
    boot = t["qemu_start_to_init_s"]["median"]
    parts = {
        "preflight": t["preflight_s"]["median"],
        "host references": t["host_demos_s"]["median"],
        "boot to /init": boot,
        "guest demos + power-off": t["vm_s"]["median"] - boot,
    }
    parts["other"] = max(0.0, t["total_s"]["median"] - sum(parts.values()))
    left = 0.0
    colors = ["#8c8c8c", "#e0a040", "#4a7fb5", "#5aa05a", "#c8c8c8"]
    for (label, value), color in zip(parts.items(), colors):
        ax2.barh(["warm run"], [value], left=left, color=color, label=f"{label} {value:.1f} s")
        left += value
    ax2.axvline(GOALS["time_to_verdict_s"], linestyle="--", linewidth=1, color="#999999")
    ax2.set_xlabel("seconds (medians)")
    ax2.set_title(f"time to verdict: {t['total_s']['median']:.1f} s")
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
