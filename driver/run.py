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
from typing import Callable

from . import __version__, diagnose, doctor, fingerprint, log, protocol, sandbox, scenario, verdict
from .demos import Demo
from .errors import MachineError, Terminated, UsageError, VenusReproError
from .frames import rgba_to_png
from .machine import Machine, StartCommand
from .profile import Profile, cache_dir
from .provision import GUEST_BIN_DIR, check_inputs, components
from .provision.lock import scenario_lock_path
from .scenario import Scenario
from .verdict import Check, DemoRun, ProgramRun

GUEST_OUT = "/out"


@dataclasses.dataclass
class RunOptions:
    """One run: the scenario (command-line overrides already applied) and how to run it."""

    scenario: Scenario
    profile: Profile
    run_dir: Path | None = None
    boot_timeout: float = 120.0
    # Boot even when preflight fails (to reproduce a failure for a bug report).
    no_preflight: bool = False

    def __post_init__(self) -> None:
        # Bad input is refused here, before a run directory exists.
        check_inputs(self.profile, self.scenario.kernel_flavour, self.scenario.kernel_image, self.scenario.guest_packages, self.scenario.path)


CLAIM = ".venus-repro-run"


def claim(path: Path) -> Path:
    """Make ``path`` this run's directory, atomically: a second run refuses it (one clear error)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise UsageError(f"{path} already holds a run (or one is writing there): choose another --run-dir") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    if (path / "result.json").exists():
        raise UsageError(f"{path} already holds a run (result.json): choose another --run-dir")
    return path


def new_run_dir(base: Path | None, profile: Profile) -> Path:
    if base is not None:
        return claim(base)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(os.environ.get("VENUS_REPRO_RUNS", "venus-runs"))
    root.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = root / (f"{stamp}-{profile.name}" + (f"-{n}" if n > 1 else ""))
        try:
            path.mkdir()
            break
        except FileExistsError:
            n += 1
    claim(path)
    latest = root / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(path.name)
    return path.resolve()


def demo_args(demo: Demo, out_dir: str | None) -> list[str]:
    """The demo's arguments, with ``--out`` (if any) added."""
    return [*demo.args, "--out", out_dir] if out_dir else list(demo.args)


def _save_frame(run: DemoRun, raw: bytes | None, out: Path) -> None:
    r = run.result
    if raw is None or not r.get("width"):
        return
    try:
        run.frame_png = str(rgba_to_png(raw, int(r["width"]), int(r["height"]), out))
    except ValueError as exc:
        log.warn(f"{run.name}: frame not saved: {exc}")


def run_host_demos(start: StartCommand, selected: list[Demo], run_dir: Path) -> dict[str, DemoRun] | None:
    """The same demos on the host's Vulkan driver, inside the host root: the reference frames."""
    if start.c.demo_bin is None:
        log.info("this profile has no host builds of the demos: guest frames are not compared")
        return None
    out = run_dir / "host"
    out.mkdir(exist_ok=True)
    runs = {}
    for demo in selected:
        if demo.expect is not None:
            continue  # a known failure: there is no reference frame to compare
        run = run_host_demo(start, demo, out, save_frame=True)
        raw = out / demo.name / f"{demo.binary}.rgba"
        _save_frame(run, raw.read_bytes() if raw.exists() else None, run_dir / f"{demo.name}-host.png")
        raw.unlink(missing_ok=True)
        log.info(f"host {demo.name}: {run.outcome} {run.result.get('checksum', run.failure())}")
        runs[demo.name] = run
    return runs


def run_host_programs(start: StartCommand, programs, run_dir: Path) -> dict[str, ProgramRun]:
    """The program steps that ask for a differential check, run the same way on the host's driver.

    The step's script runs in the host root (its programs must exist there by
    the same name; $VENUS_REPRO_DEMOS names the host builds of the demos), its
    declared outputs are copied to ``host/<step>.files``, beside the guest's.
    """
    c = start.c
    out = run_dir / "host"
    out.mkdir(exist_ok=True)
    runs = {}
    for p in programs:
        if p.compare_host is None:
            continue
        env = (("VENUS_REPRO_DEMOS", str(c.demo_bin)),) if c.demo_bin else ()
        proc = sandbox.run(
            c.host_root, ["sh", "-c", p.script(out=str(out), env=env)],
            binds=[*([c.demo_bin] if c.demo_bin else []), out, *start.vulkan_binds()], mounts=start.vulkan_mounts,
            env=start.vulkan_environment(), timeout=p.timeout,
        )  # fmt: skip
        (out / f"{p.name}.out").write_text(proc.stdout)
        (out / f"{p.name}.err").write_text(proc.stderr)
        outputs = {}
        for path in p.outputs:
            copy = out / f"{p.name}.files" / path.rsplit("/", 1)[-1]
            outputs[path] = str(copy) if copy.is_file() else None
        status = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        runs[p.name] = ProgramRun(p.name, status, proc.stdout, proc.stderr, outputs)
        log.info(f"host {p.name}: exit status {status}")
    return runs


def run_host_demo(start: StartCommand, demo: Demo, out: Path, save_frame: bool, name: str | None = None) -> DemoRun:
    """One demo on the run's host driver inside the host root; its output goes to ``out/<name>.out/.err``."""
    c = start.c
    assert c.demo_bin is not None
    name = name or demo.name
    t0 = time.monotonic()
    proc = sandbox.run(
        c.host_root,
        [str(c.demo_bin / demo.binary), *demo_args(demo, str(out / name) if save_frame else None)],
        binds=[c.demo_bin, out, *start.vulkan_binds()],
        mounts=start.vulkan_mounts,
        env=start.vulkan_environment(),
        timeout=demo.timeout,
    )
    (out / f"{name}.out").write_text(proc.stdout)
    (out / f"{name}.err").write_text(proc.stderr)
    return DemoRun(name, proc.returncode, protocol.parse_demo_output(proc.stdout), time.monotonic() - t0)


def guest_demo_step(demo: Demo, name: str, out_dir: str | None, env: tuple[tuple[str, str], ...] = ()) -> protocol.Step:
    """The plan line that runs ``demo`` in the guest as step ``name``.

    VN_DEBUG=init makes Mesa's Venus driver say why it fails to initialise
    (e.g. "failed to allocate/map ring shmem"), which diagnosis reads.
    """
    argv = ["env", "VN_DEBUG=init", *(f"{k}={v}" for k, v in env), f"/{GUEST_BIN_DIR}/{demo.binary}", *demo_args(demo, out_dir)]
    return protocol.Step(name, demo.timeout, argv)


def _number(data: bytes | None, kind: type = int):
    """A number the guest wrote (untrusted): None unless it is one."""
    try:
        return kind(data.decode().strip()) if data is not None else None
    except (UnicodeDecodeError, ValueError):
        return None


def _step_status(out: dict[str, bytes], name: str) -> int | None:
    status = _number(out.get(f"{name}.status"))
    return status if status is None or -1 <= status <= 255 else None


def guest_demo_run(exchange: protocol.Exchange, name: str) -> DemoRun:
    """What step ``name`` left in the guest's /out: exit status, result lines, duration; and whether it began."""
    out = exchange.files
    timing = [_number(t, float) for t in out.get(f"{name}.time", b"").split()]
    return DemoRun(
        name,
        _step_status(out, name),
        protocol.parse_demo_output(out.get(f"{name}.out", b"").decode(errors="replace")),
        round(timing[1] - timing[0], 2) if len(timing) == 2 and None not in timing else None,
        started=name in exchange.started,
    )


def boot_and_collect(
    start: StartCommand,
    plan: list,
    files: dict[str, bytes],
    drive: Callable[[Machine], None],
    boot_timeout: float,
    out_dir: Path,
    timings: dict,
) -> tuple[protocol.Exchange, str | None]:
    """Boot, let ``drive`` follow the plan on the console, and collect what the guest wrote back.

    ``run`` and ``bench`` share it. The guest's files (frames aside) are
    written to ``out_dir/guest`` and nowhere else (they are untrusted: see
    protocol.read_exchange); the exchange image is removed on every path.
    Returns (the guest's /out, a failure or None).
    """
    exchange = protocol.new_exchange_path(cache_dir())
    start.exchange = exchange
    machine = Machine(start)
    failure = None
    try:
        start.exchange_in = protocol.write_exchange(exchange, plan, files)
        try:
            with machine:
                machine.start()
                machine.wait_for_marker("init", boot_timeout)
                timings["qemu_start_to_init_s"] = round(machine.elapsed(), 2)
                machine.wait_for_marker("gpu", 60)
                drive(machine)
                machine.wait_for_marker("poweroff", 60)
                machine.wait_for_shutdown(30)
        except MachineError as exc:
            failure = str(exc)
            tail = machine.stderr_tail()
            if tail:
                failure += "; QEMU said: " + " | ".join(tail[-3:])
        timings["vm_s"] = round(machine.elapsed(), 2)
        out = protocol.read_exchange(exchange) or protocol.Exchange({}, [])
        out.announced = protocol.announced_facts(machine.markers)
        out.started = protocol.started_steps(machine.markers)
    finally:
        exchange.unlink(missing_ok=True)
    guest_dir = out_dir / "guest"
    guest_dir.mkdir(exist_ok=True)
    protocol.save_guest_files(out, guest_dir)
    refused = [fields for event, fields in ((m[1], m[2]) for m in machine.markers) if event == "results-failed"]
    if refused and refused[-1].get("reason") == "too-large":
        kb, limit = refused[-1].get("kb", "?"), refused[-1].get("limit_kb", "?")
        failure = (f"the guest's results ({kb} KiB) do not fit the exchange disk ({limit} KiB usable): "
                   "a step wrote too much output; nothing came back")  # fmt: skip
    elif failure is None and not out.files:
        failure = "the guest wrote no results to the exchange disk"
    if out.rejected:
        (out_dir / "guest-rejected.log").write_text("".join(f"venus-repro: refused from the guest: {r}\n" for r in out.rejected))
        log.warn(f"refused {len(out.rejected)} entr{'y' if len(out.rejected) == 1 else 'ies'} the guest sent back; see guest-rejected.log")
    return out, failure


def boot_and_run(start: StartCommand, sc: Scenario, boot_timeout: float, run_dir: Path, timings: dict) -> tuple[dict, dict, str | None]:
    """Boot the guest, run the scenario's steps, collect /out. Returns (facts, {step: DemoRun|ProgramRun}, failure)."""
    demo_list = [step.demo for step in sc.demos]
    guest_env = scenario.VALIDATION_ENV if sc.validation else ()
    steps = [guest_demo_step(d, d.name, f"{GUEST_OUT}/{d.name}", guest_env) for d in demo_list]
    # A program step is a script on the exchange disk: its arguments reach the program verbatim.
    steps += [protocol.Step(p.name, p.timeout, ["sh", f"/in/steps/{p.name}.sh"]) for p in sc.programs]
    files = {f"files/{dest}": src.read_bytes() for src, dest in sc.files}
    step_env = (*guest_env, ("VENUS_REPRO_DEMOS", f"/{GUEST_BIN_DIR}"))
    files.update({f"steps/{p.name}.sh": p.script(env=step_env).encode() for p in sc.programs})

    def drive(machine: Machine) -> None:
        for step in [*demo_list, *sc.programs]:
            machine.wait_for_marker("step-start", 60)
            end = machine.wait_for_marker("step-end", step.timeout + 30)
            log.info(f"guest {end.get('name')}: exit status {end.get('status')}")

    exchange, failure = boot_and_collect(start, steps, files, drive, boot_timeout, run_dir, timings)
    out = exchange.files
    if exchange.rejected and failure is None:
        failure = f"the guest sent back {len(exchange.rejected)} entr{'y' if len(exchange.rejected) == 1 else 'ies'} that were refused (guest-rejected.log): {exchange.rejected[0]}"
    facts = exchange.facts()
    runs: dict = {}
    for demo in demo_list:
        run = guest_demo_run(exchange, demo.name)
        if sc.validation:
            run.result.update(verdict.validation_report(out.get(f"{demo.name}.out", b"") + out.get(f"{demo.name}.err", b"")))
        _save_frame(run, out.get(f"{demo.name}/{demo.binary}.rgba"), run_dir / f"{demo.name}-guest.png")
        runs[demo.name] = run
    for prog in sc.programs:
        outputs = {}
        for path in prog.outputs:
            copy = run_dir / "guest" / f"{prog.name}.files" / path.rsplit("/", 1)[-1]
            outputs[path] = str(copy) if copy.is_file() else None  # saved (save_guest_files refuses a clash)
        runs[prog.name] = ProgramRun(
            prog.name,
            _step_status(out, prog.name),
            out.get(f"{prog.name}.out", b"").decode(errors="replace"),
            out.get(f"{prog.name}.err", b"").decode(errors="replace"),
            outputs,
            started=prog.name in exchange.started,
        )
    return facts, runs, failure


def _write_fingerprint(run_dir: Path, fp: dict, result: dict) -> None:
    (run_dir / "fingerprint.json").write_text(json.dumps(fp, indent=2) + "\n")
    result["fingerprint_sha256"] = fp["sha256"]


def _execute(opts: RunOptions, run_dir: Path, result: dict, timings: dict) -> None:
    """The body of a run; fills ``result`` as far as it gets."""
    sc = opts.scenario
    t = time.monotonic()
    c = components(opts.profile, sc.kernel_flavour, sc.kernel_image, sc.guest_packages, sc.path, sc.host_vulkan)
    if sc.guest_packages:
        shutil.copyfile(scenario_lock_path(sc.path), run_dir / "scenario.lock.json")
    timings["provision_s"] = round(time.monotonic() - t, 2)
    result["components"] = {**c.versions, "lock_sha256": c.lock_digest}
    result["kernel"] = {
        "flavour": c.kernel_flavour,
        "release": c.kernel_release,
        "image": str(c.kernel.path),
        "header_page_size": c.kernel.page_size,
    }
    start = StartCommand(
        c,
        run_dir,
        display=sc.display,
        gpu_options=sc.gpu_options,
        env=sc.host_env,
        overrides=sc.components,
        ring_wake=sc.ring_wake,
    )
    result["ring_wake"] = start.ring_wake is not None
    result["accel"] = c.accel
    fp = fingerprint.fingerprint(c, start, cache_dir(), sc)
    _write_fingerprint(run_dir, fp, result)
    with log.nested("preflight"):
        t = time.monotonic()
        pre = doctor.preflight(c, start, c.accel)
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
    demo_list = [step.demo for step in sc.demos]
    driver = c.host_driver.name if c.host_driver else "host lavapipe"
    with log.nested(f"running the demos on {driver} (reference frames)"):
        t = time.monotonic()
        host = run_host_demos(start, demo_list, run_dir)
        host_programs = run_host_programs(start, sc.programs, run_dir)
        if host_programs:
            host = {**(host or {}), **host_programs}
        timings["host_demos_s"] = round(time.monotonic() - t, 2)
    what = " and ".join(f"{n} {kind}(s)" for n, kind in ((len(demo_list), "demo"), (len(sc.programs), "program")) if n) or "no step"
    with log.nested(f"booting the guest ({c.kernel_flavour} kernel) and running {what}"):
        facts, guest, failure = boot_and_run(start, sc, opts.boot_timeout, run_dir, timings)
    result["failure"] = failure
    required = sc.page_size or opts.profile.page_size
    result.update(verdict.assemble(sc, facts, guest, host, failure, required, f"{c.kernel_flavour}: {c.kernel_release or c.kernel.path}"))
    reported = {r.result.get("driver_info") for r in guest.values() if isinstance(r, DemoRun) and r.result.get("driver_info")}
    if len(reported) == 1:
        # The guest's own word on its Mesa ("Mesa 25.0.7-2+deb13u1"), over the lock's.
        fp["components"]["guest_mesa"]["version"] = reported.pop().removeprefix("Mesa ")
        _write_fingerprint(run_dir, fingerprint.seal(fp), result)


def run(opts: RunOptions) -> dict:
    t0 = time.monotonic()
    profile, sc = opts.profile, opts.scenario
    run_dir = new_run_dir(opts.run_dir, profile)
    log.info(f"run directory: {run_dir}")
    for item in sc.ignored:
        log.warn(f"scenario: ignored {item}")
    scenario.save(sc, run_dir)
    timings: dict[str, float] = {}
    result: dict = {
        "venus_repro": __version__,
        "verdict": "error",
        "run_dir": str(run_dir),
        "profile": profile.name,
        "required_page_size": sc.page_size or profile.page_size,
        "scenario": {"name": sc.name, "sha256": sc.digest, "ignored": list(sc.ignored)},
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
    except OSError as exc:
        result["failure"] = f"{exc.filename or 'a file'}: {exc.strerror}"
        result["verdict"] = "error"
        raise
    except (KeyboardInterrupt, Terminated) as exc:
        result["failure"] = f"interrupted ({'SIGTERM' if isinstance(exc, Terminated) else 'SIGINT'})"
        result["verdict"] = "error"
        raise
    finally:
        timings["total_s"] = round(time.monotonic() - t0, 2)
        (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["verdict"] != "pass" or sc.expect_findings:
        # Diagnose from what the run left on disk, exactly as `venus-repro diagnose RUN_DIR` would.
        report = diagnose.diagnose([run_dir], diagnose.Context(host_page_size=os.sysconf("SC_PAGE_SIZE"), accel=result.get("accel", "tcg")))
        result["findings"], result["codes"] = report["findings"], report["codes"]
        if sc.expect_findings:
            verdict.expect_findings(result, sc.expect_findings)
        (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
