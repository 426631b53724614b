"""``venus-repro run``: provision → host demos → boot → guest demos → verdict.

Every run gets a directory, written on every outcome: console.log,
qemu-stderr.log, qemu-guest-errors.log, render-server.log, qemu-cmdline.txt,
the guest's own output (guest/), the host's (host/), PNG frames and
result.json.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import time
from pathlib import Path

from . import __version__, bundle, demos, diagnose, doctor, fingerprint, log, protocol, sandbox
from .errors import MachineError, UsageError, VenusReproError
from .frames import rgba_to_png
from .machine import Machine
from .profile import Profile, cache_dir
from .scenario import ProgramStep, Scenario
from .provision import GUEST_BIN_DIR, Components, Provisioner, manifest
from .provision.lock import extra_guest_pins, scenario_lock_path
from .verdict import Check, DemoRun, ProgramRun, demo_checks, expected_failure_checks, page_size_check, program_checks

GUEST_OUT = "/out"


@dataclasses.dataclass
class RunOptions:
    profile: Profile
    demos: list[demos.Demo]
    kernel_flavour: str | None = None
    kernel_image: Path | None = None
    run_dir: Path | None = None
    boot_timeout: float = 120.0
    frames: int | None = None
    # Overrides of the machine, for reproducing failures (see Machine).
    display: str | None = None
    gpu_options: str | None = None
    host_env: dict[str, str] = dataclasses.field(default_factory=dict)
    # Preload the vkr_ring_wake shim into the render server under TCG (driver/shims.py).
    ring_wake: bool = True
    # Boot even when preflight fails (to reproduce a failure for a bug report).
    no_preflight: bool = False
    # From a scenario (see scenario.py): guest programs run after the demos,
    # host files put into the guest, the page size required, expected findings.
    programs: list[ProgramStep] = dataclasses.field(default_factory=list)
    min_fps: dict[str, float] = dataclasses.field(default_factory=dict)
    files: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    page_size: int | None = None
    expect_findings: list[str] = dataclasses.field(default_factory=list)
    guest_packages: tuple[str, ...] = ()
    components: dict[str, Path] = dataclasses.field(default_factory=dict)
    scenario: Scenario | None = None

    @classmethod
    def from_scenario(cls, sc: Scenario, profile: Profile, **overrides) -> "RunOptions":
        opts = cls(
            profile=profile,
            demos=[step.demo for step in sc.demos],
            kernel_flavour=sc.kernel_flavour,
            kernel_image=sc.kernel_image,
            display=sc.display,
            gpu_options=sc.gpu_options,
            host_env=dict(sc.host_env),
            ring_wake=sc.ring_wake,
            programs=list(sc.programs),
            min_fps={step.demo.name: step.min_fps for step in sc.demos if step.min_fps is not None},
            files=list(sc.files),
            page_size=sc.page_size,
            expect_findings=list(sc.expect_findings),
            guest_packages=sc.guest_packages,
            components=dict(sc.components),
            scenario=sc,
        )
        return dataclasses.replace(opts, **{k: v for k, v in overrides.items() if v is not None})


def new_run_dir(base: Path | None, profile: Profile) -> Path:
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
        return base
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(os.environ.get("VENUS_REPRO_RUNS", "venus-runs"))
    path = root / f"{stamp}-{profile.name}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{profile.name}-{n}"
    path.mkdir(parents=True)
    latest = root / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(path.name)
    return path.resolve()


def demo_args(demo: demos.Demo, out_dir: str | None, frames: int | None) -> list[str]:
    """The demo's arguments, with ``--frames`` overridden and ``--out`` (if any) added."""
    args = list(demos.with_frames(demo, frames).args)
    return [*args, "--out", out_dir] if out_dir else args


def _save_frame(run: DemoRun, raw: bytes | None, out: Path) -> None:
    r = run.result
    if raw is None or not r.get("width"):
        return
    try:
        run.frame_png = str(rgba_to_png(raw, int(r["width"]), int(r["height"]), out))
    except ValueError as exc:
        log.warn(f"{run.name}: frame not saved: {exc}")


def run_host_demos(c: Components, selected: list[demos.Demo], run_dir: Path, frames: int | None) -> dict[str, DemoRun]:
    """The same demos on host lavapipe, inside the host root: the reference frames."""
    if c.demo_bin is None:
        log.info("this profile has no host builds of the demos: guest frames are not compared")
        return {}
    out = run_dir / "host"
    out.mkdir(exist_ok=True)
    runs = {}
    for demo in selected:
        if demo.expect is not None:
            continue  # a known failure: there is no reference frame to compare
        run = run_host_demo(c, demo, out, frames, save_frame=True)
        raw = out / demo.name / f"{demo.binary}.rgba"
        _save_frame(run, raw.read_bytes() if raw.exists() else None, run_dir / f"{demo.name}-host.png")
        raw.unlink(missing_ok=True)
        log.info(f"host {demo.name}: {run.outcome} {run.result.get('checksum', run.failure())}")
        runs[demo.name] = run
    return runs


def run_host_demo(
    c: Components, demo: demos.Demo, out: Path, frames: int | None, save_frame: bool, name: str | None = None
) -> DemoRun:
    """One demo on host lavapipe inside the host root; its output goes to ``out/<name>.out/.err``."""
    name = name or demo.name
    start = time.monotonic()
    proc = sandbox.run(
        c.host_root,
        [str(c.demo_bin / demo.binary), *demo_args(demo, str(out / name) if save_frame else None, frames)],
        binds=[c.demo_bin, out],
        env={"VK_DRIVER_FILES": c.vulkan_icd},
        timeout=demo.timeout,
    )
    (out / f"{name}.out").write_text(proc.stdout)
    (out / f"{name}.err").write_text(proc.stderr)
    return DemoRun(name, proc.returncode, protocol.parse_demo_output(proc.stdout), time.monotonic() - start)


def guest_demo_step(demo: demos.Demo, name: str, out_dir: str | None, frames: int | None) -> protocol.Step:
    """The plan line that runs ``demo`` in the guest as step ``name``.

    VN_DEBUG=init makes Mesa's Venus driver say why it fails to initialise
    (e.g. "failed to allocate/map ring shmem"), which diagnosis reads.
    """
    argv = ["env", "VN_DEBUG=init", f"/{GUEST_BIN_DIR}/{demo.binary}", *demo_args(demo, out_dir, frames)]
    return protocol.Step(name, demo.timeout, argv)


def guest_demo_run(out: dict[str, bytes], name: str) -> DemoRun:
    """What step ``name`` left in the guest's /out: exit status, result lines, duration."""
    status = out.get(f"{name}.status")
    timing = out.get(f"{name}.time", b"").split()
    return DemoRun(
        name,
        int(status) if status is not None else None,
        protocol.parse_demo_output(out.get(f"{name}.out", b"").decode(errors="replace")),
        round(float(timing[1]) - float(timing[0]), 2) if len(timing) == 2 else None,
    )


def boot_and_run(
    c: Components, machine: Machine, opts: RunOptions, run_dir: Path, timings: dict
) -> tuple[dict, dict, str | None]:
    """Boot the guest, run the plan, collect /out. Returns (facts, {step: DemoRun|ProgramRun}, failure)."""
    exchange = machine.exchange
    assert exchange is not None
    steps = [guest_demo_step(d, d.name, f"{GUEST_OUT}/{d.name}", opts.frames) for d in opts.demos]
    steps += [
        protocol.Step(p.name, p.timeout, ["env", *(f"{k}={v}" for k, v in p.env), *p.argv]) for p in opts.programs
    ]
    files = {f"files/{dest}": src.read_bytes() for src, dest in opts.files}
    machine.exchange_in = protocol.write_exchange(exchange, steps, files)
    failure = None
    try:
        with machine:
            machine.start()
            machine.wait_for_marker("init", opts.boot_timeout)
            timings["qemu_start_to_init_s"] = round(machine.elapsed(), 2)
            machine.wait_for_marker("gpu", 60)
            for step in [*opts.demos, *opts.programs]:
                machine.wait_for_marker("step-start", 60)
                end = machine.wait_for_marker("step-end", step.timeout + 30)
                log.info(f"guest {end.get('name')}: exit status {end.get('status')}")
            machine.wait_for_marker("poweroff", 60)
            machine.wait_for_shutdown(30)
            timings["vm_s"] = round(machine.elapsed(), 2)
    except MachineError as exc:
        failure = str(exc)
        tail = machine.stderr_tail()
        if tail:
            failure += "; QEMU said: " + " | ".join(tail[-3:])
        timings["vm_s"] = round(machine.elapsed(), 2)
    out = protocol.read_exchange(exchange) or {}
    exchange.unlink(missing_ok=True)
    guest_dir = run_dir / "guest"
    guest_dir.mkdir(exist_ok=True)
    for name, data in out.items():
        if not name.endswith(".rgba"):
            (guest_dir / name).write_bytes(data)
    facts = protocol.parse_facts(out.get("facts", b"").decode(errors="replace"))
    runs = {}
    for demo in opts.demos:
        run = guest_demo_run(out, demo.name)
        _save_frame(run, out.get(f"{demo.name}/{demo.binary}.rgba"), run_dir / f"{demo.name}-guest.png")
        runs[demo.name] = run
    for prog in opts.programs:
        status = out.get(f"{prog.name}.status")
        runs[prog.name] = ProgramRun(
            prog.name,
            int(status) if status is not None else None,
            out.get(f"{prog.name}.out", b"").decode(errors="replace"),
            out.get(f"{prog.name}.err", b"").decode(errors="replace"),
        )
    if failure is None and not out:
        failure = "the guest wrote no results to the exchange disk"
    return facts, runs, failure


def _write_fingerprint(run_dir: Path, fp: dict, result: dict) -> None:
    (run_dir / "fingerprint.json").write_text(json.dumps(fp, indent=2) + "\n")
    result["fingerprint_sha256"] = fp["sha256"]


def _execute(opts: RunOptions, run_dir: Path, result: dict, timings: dict) -> None:
    """The body of a run; fills ``result`` as far as it gets."""
    profile = opts.profile
    t = time.monotonic()
    if profile.manifest is not None:
        if opts.guest_packages:
            raise UsageError("the nix profile takes no guest packages: its guest is the flake's initramfs")
        c = manifest.components(profile, opts.kernel_flavour, opts.kernel_image)
    else:
        prov = Provisioner(profile)
        extra = extra_guest_pins(profile, prov.lock, opts.guest_packages, opts.scenario.path if opts.scenario else None)
        if extra:
            shutil.copyfile(scenario_lock_path(opts.scenario.path), run_dir / "scenario.lock.json")
        c = prov.provision(opts.kernel_flavour, opts.kernel_image, extra)
    timings["provision_s"] = round(time.monotonic() - t, 2)
    result["components"] = {**c.versions, "lock_sha256": c.lock_digest}
    result["kernel"] = {
        "flavour": c.kernel_flavour,
        "release": c.kernel_release,
        "image": str(c.kernel.path),
        "header_page_size": c.kernel.page_size,
    }
    machine = Machine(
        c,
        run_dir,
        exchange=run_dir / "exchange.img",
        display=opts.display,
        gpu_options=opts.gpu_options,
        env=opts.host_env,
        overrides=opts.components,
        ring_wake=opts.ring_wake,
    )
    result["ring_wake"] = machine.ring_wake is not None
    result["accel"] = c.accel
    fp = fingerprint.fingerprint(c, machine, cache_dir(), opts.scenario)
    _write_fingerprint(run_dir, fp, result)
    with log.nested("preflight"):
        t = time.monotonic()
        pre = doctor.preflight(c, machine, c.accel)
        doctor.write_log(pre, run_dir / "preflight.log")
        timings["preflight_s"] = round(time.monotonic() - t, 2)
        for ch in pre:
            if ch.status != doctor.OK:
                log.warn(ch.line())
    result["preflight"] = [ch.as_dict() for ch in pre]
    refused = [ch for ch in pre if ch.status == doctor.FAIL]
    if refused and not opts.no_preflight:
        log.info(f"not booting: {len(refused)} preflight check(s) failed (--no-preflight boots anyway)")
        result["checks"] = [Check(f"preflight: {ch.name}", False, ch.detail).as_dict() for ch in refused]
        result["verdict"] = "fail"
        return
    with log.nested("running the demos on host lavapipe (reference frames)"):
        t = time.monotonic()
        host = run_host_demos(c, opts.demos, run_dir, opts.frames)
        timings["host_demos_s"] = round(time.monotonic() - t, 2)
    with log.nested(f"booting the guest ({c.kernel_flavour} kernel) and running {len(opts.demos)} demo(s)"):
        facts, guest, failure = boot_and_run(c, machine, opts, run_dir, timings)
    result["failure"] = failure
    page_kb = facts.get("page_size_kb", "")
    page = int(page_kb) * 1024 if page_kb.isdigit() else None
    result["guest"] = {
        "page_size": page,
        "kernel_release": facts.get("kernel_release"),
        "render_node": facts.get("render_node"),
        "uptime_at_finish_s": float(facts["finished_uptime"]) if "finished_uptime" in facts else None,
    }
    required = opts.page_size or profile.page_size
    checks = [page_size_check(page, required, f"{c.kernel_flavour}: {c.kernel_release or c.kernel.path}")]
    for demo in opts.demos:
        g = guest[demo.name]
        h = host.get(demo.name) or DemoRun(demo.name, None, protocol.parse_demo_output(""))
        checks += expected_failure_checks(g, demo.expect) if demo.expect else demo_checks(g, h if c.demo_bin else None)
        floor = opts.min_fps.get(demo.name)
        if floor is not None and g.outcome == "pass":
            fps = float(g.result.get("fps", 0))
            checks.append(Check(f"{demo.name}: at least {floor:g} FPS", fps >= floor, f"{fps:.0f} FPS in the guest"))
        result["demos"].append(
            {
                "name": demo.name,
                "outcome": g.outcome,
                "expected": dataclasses.asdict(demo.expect) if demo.expect else {"outcome": "pass"},
                "failure": g.failure() or None,
                "vk_result": g.vk_result,
                "call": g.failed_call,
                "checksum": g.result.get("checksum"),
                "host_checksum": h.result.get("checksum"),
                "checksum_match": (g.result.get("checksum") == h.result.get("checksum"))
                if g.outcome == "pass" and h.outcome == "pass"
                else None,
                "fps": g.result.get("fps"),
                "host_fps": h.result.get("fps"),
                "frames": g.result.get("frames"),
                "size": f"{g.result.get('width')}x{g.result.get('height')}" if g.result else None,
                "device": g.result.get("device"),
                "driver": g.result.get("driver"),
                "host_device": h.result.get("device"),
                "guest_exit_status": g.exit_status,
                "guest_duration_s": g.duration_s,
                "frame_png": g.frame_png,
                "host_frame_png": h.frame_png,
            }
        )
    reported = {r.result.get("driver_info") for r in guest.values() if isinstance(r, DemoRun) and r.result.get("driver_info")}
    if len(reported) == 1:
        # The guest's own word on its Mesa ("Mesa 25.0.7-2+deb13u1"), over the lock's.
        fp["components"]["guest_mesa"]["version"] = reported.pop().removeprefix("Mesa ")
        _write_fingerprint(run_dir, fingerprint.seal(fp), result)
    for prog in opts.programs:
        pr = guest[prog.name]
        pchecks = program_checks(pr, prog)
        checks += pchecks
        failed = [ch.name.split(": ", 1)[1] for ch in pchecks if not ch.ok]
        result["programs"].append({**pr.as_dict(), "outcome": "fail" if failed else "pass", "failed": failed})
    if failure:
        checks.append(Check("the guest ran to completion", False, failure))
    result["checks"] = [ch.as_dict() for ch in checks]
    result["verdict"] = "pass" if all(ch.ok for ch in checks) else "fail"


def run(opts: RunOptions) -> dict:
    t0 = time.monotonic()
    profile = opts.profile
    run_dir = new_run_dir(opts.run_dir, profile)
    log.info(f"run directory: {run_dir}")
    bundle.save_scenario(opts, run_dir)
    timings: dict[str, float] = {}
    result: dict = {
        "venus_repro": __version__,
        "verdict": "error",
        "run_dir": str(run_dir),
        "profile": profile.name,
        "required_page_size": opts.page_size or profile.page_size,
        "scenario": {"name": opts.scenario.name, "sha256": opts.scenario.digest} if opts.scenario else None,
        "demos": [],
        "programs": [],
        "checks": [],
        "timings": timings,
        "failure": None,
    }
    try:
        _execute(opts, run_dir, result, timings)
    except VenusReproError as exc:
        result["failure"] = str(exc)
        result["verdict"] = "error"
        raise
    finally:
        timings["total_s"] = round(time.monotonic() - t0, 2)
        (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["verdict"] != "pass" or opts.expect_findings:
        # Diagnose from what the run left on disk, exactly as `venus-repro diagnose RUN_DIR` would.
        report = diagnose.diagnose([run_dir], diagnose.Context(host_page_size=os.sysconf("SC_PAGE_SIZE"), accel=result.get("accel", "tcg")))
        result["findings"], result["codes"] = report["findings"], report["codes"]
    if opts.expect_findings:
        # A known bug kept as a scenario: it must keep failing with these findings.
        found = [f["id"] for f in result.get("findings", [])]
        missing = [f for f in opts.expect_findings if f not in found]
        result["observed_checks"] = result["checks"]
        detail = f"found {', '.join(found) or 'none'}"
        if missing:
            detail = f"missing {', '.join(missing)} ({detail}); if the bug is fixed, update the scenario"
        result["checks"] = [Check("expected findings", not missing, detail).as_dict()]
        result["verdict"] = "fail" if missing or result["verdict"] == "error" else "pass"
    if result["verdict"] != "pass" or opts.expect_findings:
        (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
