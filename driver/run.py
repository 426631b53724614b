"""``venus-repro run``: provision → host references → boot → the steps in order → verdict.

Every run gets a directory, written on every outcome: console.log,
qemu-stderr.log, qemu-guest-errors.log, render-server.log, qemu-cmdline.txt,
the guest's own output (guest/), the host's (host/), PNG frames,
environment.json (every pin it ran with) and result.json (``result.RunResult``).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from . import __version__, diagnose, doctor, fingerprint, log, protocol, registry, scenario, steps, verdict
from .environment import Environment
from .errors import MachineError, Terminated, UsageError, VenusReproError
from .machine import Machine, StartCommand
from .profile import Profile, cache_dir
from .provision import check_inputs, components
from .result import Check, ComponentResult, KernelResult, PreflightCheck, RunResult, ScenarioRef
from .scenario import Scenario

ENVIRONMENT = "environment.json"


@dataclasses.dataclass
class RunOptions:
    """One run: the scenario (command-line overrides already applied) and how to run it."""

    scenario: Scenario
    profile: Profile
    run_dir: Path | None = None
    boot_timeout: float = 120.0
    # Boot even when preflight fails (to reproduce a failure for a bug report).
    no_preflight: bool = False
    # An environment already resolved (a recorded run's, a bisect candidate): used as it is.
    environment: Environment | None = None

    def __post_init__(self) -> None:
        # Bad input is refused here, before a run directory exists.
        if self.environment is None:
            check_inputs(self.declared, self.scenario.pinning(self.profile))

    @property
    def declared(self) -> Environment:
        return self.environment or self.scenario.environment(self.profile)


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


def boot_and_run(ctx: steps.Context, sc: Scenario, boot_timeout: float, timings: dict) -> tuple[protocol.Exchange, dict, str | None]:
    """Boot the guest, run the scenario's steps in their order, collect /out: (exchange, {step: run}, failure)."""
    plan, files = [], {f"files/{dest}": src.read_bytes() for src, dest in sc.files}
    for step in sc.steps:
        line, step_files = step.guest_plan(ctx)
        plan.append(line)
        files.update(step_files)

    def drive(machine: Machine) -> None:
        for step in sc.steps:
            machine.wait_for_marker("step-start", 60)
            end = machine.wait_for_marker("step-end", step.timeout + 30)
            log.info(f"guest {end.get('name')}: exit status {end.get('status')}")

    exchange, failure = boot_and_collect(ctx.start, plan, files, drive, boot_timeout, ctx.run_dir, timings)
    if exchange.rejected and failure is None:
        failure = f"the guest sent back {len(exchange.rejected)} entr{'y' if len(exchange.rejected) == 1 else 'ies'} that were refused (guest-rejected.log): {exchange.rejected[0]}"
    return exchange, {step.name: step.collect(exchange, ctx) for step in sc.steps}, failure


# --- the stages of a run -------------------------------------------------------------------------


def _provision(opts: RunOptions, run_dir: Path, result: RunResult, timings: dict):
    """Stage 1: the components, from the environment pinned (and recorded in the run directory)."""
    t = time.monotonic()
    c, env = components(opts.declared, opts.scenario.pinning(opts.profile))
    timings["provision_s"] = round(time.monotonic() - t, 2)
    env.write(run_dir / ENVIRONMENT)
    pinning = opts.scenario.pinning(opts.profile)
    if pinning.lock_path is not None and pinning.lock_path.is_file():
        # Beside the scenario.yaml the run writes, as beside the scenario it ran.
        shutil.copyfile(pinning.lock_path, run_dir / "scenario.lock.json")
    result.environment_sha256 = env.digest
    result.lock_sha256 = c.lock_digest
    result.components = component_results(c, env)
    result.kernel = KernelResult(c.kernel_flavour, c.kernel_release, str(c.kernel.path), c.kernel.page_size)
    return c, env


def component_results(c, env: Environment) -> dict[str, ComponentResult]:
    """Each registry component of the run: its source (kind and detail) and version."""
    out = {}
    for spec in registry.COMPONENTS:
        kind, detail = c.origins.get(spec.name, (env.source(spec.name).kind, None))
        out[spec.name] = ComponentResult(kind, c.versions.get(spec.name, "?"), detail)
    return out


def _preflight(opts: RunOptions, c, start: StartCommand, run_dir: Path, result: RunResult, timings: dict) -> bool:
    """Stage 2: the preflight checks; False: the run must not boot."""
    with log.nested("preflight"):
        t = time.monotonic()
        pre = doctor.preflight(c, start, c.accel)
        doctor.write_log(pre, run_dir / "preflight.log")
        timings["preflight_s"] = round(time.monotonic() - t, 2)
        for ch in pre:
            if ch.status == doctor.WARN or ch.status == doctor.FAIL:
                log.warn(ch.line())
            elif ch.status == doctor.INFO:
                log.info(ch.line())  # nothing to fix (an accelerator that cannot apply here): said once, not warned of
    result.preflight = [PreflightCheck(ch.name, ch.status, ch.detail, ch.fix or None) for ch in pre]
    refused = [ch for ch in pre if ch.status == doctor.FAIL]
    if refused and not opts.no_preflight:
        log.info(f"not booting: {len(refused)} preflight check(s) failed (--no-preflight boots anyway)")
        result.checks = [Check(f"preflight: {ch.name}", False, ch.detail) for ch in refused]
        result.verdict = "fail"
        return False
    return True


def _host_references(ctx: steps.Context, sc: Scenario, timings: dict) -> dict:
    """Stage 3: what each step compares with, on the host's driver."""
    c = ctx.start.c
    driver = c.host_driver.name if c.host_driver else "host lavapipe"
    if c.demo_bin is None:
        log.info("this profile has no host builds of the demos: guest frames are not compared")
    with log.nested(f"running the demos on {driver} (reference frames)"):
        t = time.monotonic()
        host = {step.name: step.host_reference(ctx) for step in sc.steps}
        timings["host_demos_s"] = round(time.monotonic() - t, 2)
    return host


def _guest(opts: RunOptions, ctx: steps.Context, host: dict, result: RunResult, timings: dict) -> None:
    """Stage 4: boot, the steps in order, and the verdict on what came back."""
    sc, c = opts.scenario, ctx.start.c
    kinds = {k.kind: sum(isinstance(s, k) for s in sc.steps) for k in steps.KINDS}
    what = " and ".join(f"{n} {kind}(s)" for kind, n in kinds.items() if n) or "no step"
    with log.nested(f"booting the guest ({c.kernel_flavour} kernel) and running {what}"):
        exchange, guest, failure = boot_and_run(ctx, sc, opts.boot_timeout, timings)
    result.failure = failure
    result.guest = verdict.guest_facts(exchange.facts())
    step_checks: list[Check] = []
    for step in sc.steps:
        checks = step.checks(guest[step.name], host.get(step.name), ctx)
        step_checks += checks
        result.steps.append(step.entry(guest[step.name], host.get(step.name), checks))
    step_checks += build_checks(c, result)
    verdict.assemble(result, step_checks, failure, f"{c.kernel_flavour}: {c.kernel_release or c.kernel.path}")


def build_checks(c, result: RunResult) -> list[Check]:
    """A guest component built from source must be what the guest ran: its ICD's sha256 and its driverInfo, from the guest."""
    build = c.builds.get("guest_mesa")
    if build is None:
        return []
    name = Path(build["guest_library"]).name
    got = (result.guest.vulkan_icds or {}).get(name)
    checks = [Check("guest Mesa: the guest holds this build's ICD", got == build["library_sha256"],
                    f"{name} sha256 {(got or 'not reported')[:16]} (the build's: {build['library_sha256'][:16]})")]  # fmt: skip
    said = sorted({s.driver_info for s in result.demos if s.driver_info})
    if said:
        checks.append(Check("guest Mesa: the demos ran on this build", said == [build["driver_info"]],
                            f"driverInfo {', '.join(said)} (the build's: {build['driver_info']})"))  # fmt: skip
    return checks


def _execute(opts: RunOptions, run_dir: Path, result: RunResult, timings: dict) -> None:
    """The body of a run; fills ``result`` as far as it gets."""
    sc = opts.scenario
    c, env = _provision(opts, run_dir, result, timings)
    start = StartCommand(c, run_dir, machine=env.machine)
    result.accel = c.accel  # as the start command chose it (auto: KVM where it can run the guest)
    result.ring_wake = start.ring_wake is not None
    fp = fingerprint.fingerprint(c, start, cache_dir(), sc, env)
    _write_fingerprint(run_dir, fp, result)
    if not _preflight(opts, c, start, run_dir, result, timings):
        return
    ctx = steps.Context(start, run_dir, validation=sc.validation)
    host = _host_references(ctx, sc, timings)
    _guest(opts, ctx, host, result, timings)
    reported = {s.driver_info for s in result.demos if s.driver_info}
    if len(reported) == 1:
        # The guest's own word on its Mesa ("Mesa 25.0.7-2+deb13u1"), over the lock's.
        fp["components"]["guest_mesa"]["version"] = reported.pop().removeprefix("Mesa ")
        _write_fingerprint(run_dir, fingerprint.seal(fp), result)


def _write_fingerprint(run_dir: Path, fp: dict, result: RunResult) -> None:
    import json

    (run_dir / "fingerprint.json").write_text(json.dumps(fp, indent=2) + "\n")
    result.fingerprint_sha256 = fp["sha256"]


def run(opts: RunOptions) -> RunResult:
    t0 = time.monotonic()
    profile, sc = opts.profile, opts.scenario
    run_dir = new_run_dir(opts.run_dir, profile)
    log.info(f"run directory: {run_dir}")
    for item in sc.ignored:
        log.warn(f"scenario: ignored {item}")
    scenario.save(sc, run_dir)
    timings: dict[str, float] = {}
    result = RunResult(
        venus_repro=__version__, run_dir=str(run_dir), profile=profile.name,
        required_page_size=opts.declared.required_page_size,
        scenario=ScenarioRef(sc.name, sc.digest, list(sc.ignored)), timings=timings,
    )  # fmt: skip
    try:
        _execute(opts, run_dir, result, timings)
    except VenusReproError as exc:
        result.failure, result.verdict = str(exc), "error"
        raise
    except OSError as exc:
        result.failure, result.verdict = f"{exc.filename or 'a file'}: {exc.strerror}", "error"
        raise
    except (KeyboardInterrupt, Terminated) as exc:
        result.failure = f"interrupted ({'SIGTERM' if isinstance(exc, Terminated) else 'SIGINT'})"
        result.verdict = "error"
        raise
    finally:
        timings["total_s"] = round(time.monotonic() - t0, 2)
        result.write(run_dir / "result.json")
    if result.verdict != "pass" or sc.expect_findings:
        # Diagnose from what the run left on disk, exactly as `venus-repro diagnose RUN_DIR` would.
        report = diagnose.diagnose([run_dir], diagnose.Context(host_page_size=os.sysconf("SC_PAGE_SIZE"), accel=result.accel or "tcg"))
        result.findings, result.codes = report["findings"], report["codes"]
        if sc.expect_findings:
            verdict.expect_findings(result, sc.expect_findings)
        result.write(run_dir / "result.json")
    return result
