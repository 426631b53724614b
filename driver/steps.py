"""A scenario's steps: ordered and typed, each kind owning what it does.

    steps:
      - demo: vkcube_anim          # a demo from demos/demos.yaml
        frames: 200
      - program: [vulkaninfo, --summary]
        name: vulkaninfo
      - shell: 'vkcube --c 10 | tail -n 1'
        name: cube-tail

The guest runs the steps in the order written. Each kind says, once:

* ``parse`` / ``dump``: its YAML (``dump(parse(x))`` gives ``x`` back);
* ``guest_plan``: its line in the guest's plan and the files it puts on the exchange disk;
* ``host_reference``: what it runs on the host's Vulkan driver to compare with (or nothing);
* ``collect``: its run, from what the guest wrote back;
* ``checks`` and ``entry``: its checks, and its entry in result.json.

A new kind is one class here, registered in ``KINDS``.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import time
from pathlib import Path
from typing import ClassVar

import yaml

from . import demos as demo_catalogue
from . import log, protocol, sandbox, verdict
from .frames import rgba_to_png
from .result import StepResult
from .verdict import Check, DemoRun, ProgramRun
from .yamlread import WORD, Where, bounded, keys, optional, regex, scalar, str_list, str_map

MAX_TIMEOUT = 24 * 3600
MAX_FRAMES = 1_000_000
GUEST_OUT = "/out"
GUEST_BIN_DIR = demo_catalogue.GUEST_BIN_DIR
# What a guest step runs under with `validation: true`: the layer, and the loader saying it loaded it.
VALIDATION_ENV = (("VK_INSTANCE_LAYERS", "VK_LAYER_KHRONOS_validation"), ("VK_LOADER_DEBUG", "layer"))


@dataclasses.dataclass
class Context:
    """What the steps of one run share: the machine to start host programs with, the run directory, options."""

    start: object  # machine.StartCommand (host references run through it)
    run_dir: Path
    validation: bool = False

    @property
    def guest_env(self) -> tuple[tuple[str, str], ...]:
        return VALIDATION_ENV if self.validation else ()


class Step:
    """One step of a scenario (a base class: see the kinds below)."""

    kind: ClassVar[str]
    name: str
    timeout: int

    # --- YAML --------------------------------------------------------------------------
    @classmethod
    def parse(cls, w: Where, node: yaml.Node, field: str) -> "Step":
        raise NotImplementedError

    def dump(self) -> dict:
        raise NotImplementedError

    # --- running ---------------------------------------------------------------------------
    def guest_plan(self, ctx: Context) -> tuple[protocol.Step, dict[str, bytes]]:
        raise NotImplementedError

    def host_reference(self, ctx: Context):
        """The same work on the host's driver (None: nothing to compare with)."""
        return None

    def collect(self, exchange: protocol.Exchange, ctx: Context):
        raise NotImplementedError

    def checks(self, guest, host, ctx: Context) -> list[Check]:
        raise NotImplementedError

    def entry(self, guest, host, checks: list[Check]) -> StepResult:
        raise NotImplementedError

    def with_timeout(self, timeout: int) -> "Step":
        return dataclasses.replace(self, timeout=timeout)  # type: ignore[type-var]


def _number(data: bytes | None, kind: type = int):
    """A number the guest wrote (untrusted): None unless it is one."""
    try:
        return kind(data.decode().strip()) if data is not None else None
    except (UnicodeDecodeError, ValueError):
        return None


def step_status(out: dict[str, bytes], name: str) -> int | None:
    status = _number(out.get(f"{name}.status"))
    return status if status is None or -1 <= status <= 255 else None


def step_duration(out: dict[str, bytes], name: str) -> float | None:
    timing = [_number(t, float) for t in out.get(f"{name}.time", b"").split()]
    return round(timing[1] - timing[0], 2) if len(timing) == 2 and None not in timing else None


def save_frame(run: DemoRun, raw: bytes | None, out: Path) -> None:
    r = run.result
    if raw is None or not r.get("width"):
        return
    try:
        run.frame_png = str(rgba_to_png(raw, int(r["width"]), int(r["height"]), out))
    except ValueError as exc:
        log.warn(f"{run.name}: frame not saved: {exc}")


def _failed_names(checks: list[Check]) -> list[str]:
    return [ch.name.split(": ", 1)[-1] for ch in checks if not ch.ok]


# --- demo ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoStep(Step):
    """A demo of the catalogue: its frame must equal the same demo's on the host's driver."""

    kind: ClassVar[str] = "demo"
    demo: demo_catalogue.Demo
    min_fps: float | None = None
    step_name: str | None = None  # a name of its own (the same demo twice in one scenario)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.step_name or self.demo.name

    @property
    def timeout(self) -> int:  # type: ignore[override]
        return self.demo.timeout

    def with_timeout(self, timeout: int) -> "DemoStep":
        return dataclasses.replace(self, demo=dataclasses.replace(self.demo, timeout=timeout))

    def with_frames(self, frames: int | None) -> "DemoStep":
        return dataclasses.replace(self, demo=demo_catalogue.with_frames(self.demo, frames))

    @classmethod
    def parse(cls, w: Where, node: yaml.Node, field: str) -> "DemoStep":
        m = keys(w, node, field, {"demo", "name", "frames", "timeout", "min_fps", "expect"}, {"demo"})
        catalogue = demo_catalogue.catalogue()
        name_node = m["demo"][1]
        name = scalar(w, name_node, f"{field}.demo", str)
        if name not in catalogue:
            raise w.error(name_node, f"{field}.demo", f"unknown demo '{name}' (available: {', '.join(catalogue)})")
        demo = catalogue[name]
        if "frames" in m:
            demo = demo_catalogue.with_frames(demo, bounded(w, m["frames"][1], f"{field}.frames", int, 1, MAX_FRAMES))
        if "timeout" in m:
            demo = dataclasses.replace(demo, timeout=bounded(w, m["timeout"][1], f"{field}.timeout", int, 1, MAX_TIMEOUT))
        if "expect" in m:
            demo = dataclasses.replace(demo, expect=cls._expect(w, m["expect"][1], f"{field}.expect"))
        step_name = optional(m, "name", lambda n: _plain_name(w, n, f"{field}.name"))
        min_fps = optional(m, "min_fps", lambda n: bounded(w, n, f"{field}.min_fps", float, 0, 1e9))
        return cls(demo, min_fps, step_name if step_name != demo.name else None)

    @staticmethod
    def _expect(w: Where, node: yaml.Node, field: str) -> demo_catalogue.Expect | None:
        if isinstance(node, yaml.ScalarNode):
            if scalar(w, node, field, str) != "pass":
                raise w.error(node, field, "must be 'pass' or {outcome, vk_result, call}")
            return None
        em = keys(w, node, field, {"outcome", "vk_result", "call"}, {"outcome"})
        values = {k: scalar(w, v, f"{field}.{k}", str) for k, (_, v) in em.items()}
        if values["outcome"] not in ("error", "crash", "timeout"):
            raise w.error(em["outcome"][1], f"{field}.outcome", "must be error, crash or timeout")
        return demo_catalogue.Expect(**values)

    def dump(self) -> dict:
        d = self.demo
        entry: dict = {"demo": d.name}
        if self.step_name:
            entry["name"] = self.step_name
        entry["timeout"] = d.timeout
        if "--frames" in d.args:
            entry["frames"] = int(d.args[d.args.index("--frames") + 1])
        entry["expect"] = {k: v for k, v in vars(d.expect).items() if v is not None} if d.expect else "pass"
        if self.min_fps is not None:
            entry["min_fps"] = self.min_fps
        return entry

    # --- running ---------------------------------------------------------------------------
    def args(self, out_dir: str | None) -> list[str]:
        """The demo's arguments, with ``--out`` (if any) added."""
        return [*self.demo.args, "--out", out_dir] if out_dir else list(self.demo.args)

    def guest_plan(self, ctx: Context | None, name: str | None = None, out: bool = True) -> tuple[protocol.Step, dict[str, bytes]]:
        """The plan line (as step ``name``); VN_DEBUG=init makes Venus say why it fails to initialise."""
        name = name or self.name
        env = ctx.guest_env if ctx else ()
        argv = ["env", "VN_DEBUG=init", *(f"{k}={v}" for k, v in env), f"/{GUEST_BIN_DIR}/{self.demo.binary}",
                *self.args(f"{GUEST_OUT}/{name}" if out else None)]  # fmt: skip
        return protocol.Step(name, self.demo.timeout, argv), {}

    def host_reference(self, ctx: Context) -> DemoRun | None:
        start = ctx.start
        if start.c.demo_bin is None or self.demo.expect is not None:
            return None  # no host builds (no reference frames), or a known failure: nothing to compare
        out = ctx.run_dir / "host"
        out.mkdir(exist_ok=True)
        run = run_host_demo(start, self, out, save_frame=True)
        raw = out / self.name / f"{self.demo.binary}.rgba"
        save_frame(run, raw.read_bytes() if raw.exists() else None, ctx.run_dir / f"{self.name}-host.png")
        raw.unlink(missing_ok=True)
        log.info(f"host {self.name}: {run.outcome} {run.result.get('checksum', run.failure())}")
        return run

    def collect(self, exchange: protocol.Exchange, ctx: Context | None, name: str | None = None) -> DemoRun:
        name = name or self.name
        out = exchange.files
        run = DemoRun(
            name, step_status(out, name),
            protocol.parse_demo_output(out.get(f"{name}.out", b"").decode(errors="replace")),
            step_duration(out, name), started=name in exchange.started,
        )  # fmt: skip
        if ctx is not None:
            if ctx.validation:
                run.result.update(verdict.validation_report(out.get(f"{name}.out", b"") + out.get(f"{name}.err", b"")))
            save_frame(run, out.get(f"{name}/{self.demo.binary}.rgba"), ctx.run_dir / f"{name}-guest.png")
        return run

    def checks(self, guest: DemoRun, host: DemoRun | None, ctx: Context) -> list[Check]:
        if self.demo.expect:
            checks = verdict.expected_failure_checks(guest, self.demo.expect)
        else:
            checks = verdict.demo_checks(guest, host if ctx.start.c.demo_bin is not None else None)
        if ctx.validation and guest.exit_status is not None:
            checks += verdict.validation_checks(guest.name, guest.result)
        if self.min_fps is not None and guest.outcome == "pass":
            fps = float(guest.result.get("fps", 0))
            checks.append(Check(f"{self.name}: at least {self.min_fps:g} FPS", fps >= self.min_fps, f"{fps:.0f} FPS in the guest"))
        return checks

    def entry(self, g: DemoRun, h: DemoRun | None, checks: list[Check]) -> StepResult:
        h = h or DemoRun(self.name, None, protocol.parse_demo_output(""))
        both = g.outcome == "pass" and h.outcome == "pass"
        return StepResult(
            kind=self.kind, name=self.name, demo=self.demo.name, outcome=g.outcome,
            expected=dataclasses.asdict(self.demo.expect) if self.demo.expect else {"outcome": "pass"},
            failed=_failed_names(checks), failure=g.failure() or None, exit_status=g.exit_status,
            duration_s=g.duration_s, vk_result=g.vk_result, call=g.failed_call,
            checksum=g.result.get("checksum"), host_checksum=h.result.get("checksum"),
            checksum_match=(g.result.get("checksum") == h.result.get("checksum")) if both else None,
            fps=g.result.get("fps"), host_fps=h.result.get("fps"), frames=g.result.get("frames"),
            size=f"{g.result.get('width')}x{g.result.get('height')}" if g.result else None,
            device=g.result.get("device"), driver=g.result.get("driver"), driver_info=g.result.get("driver_info"),
            host_device=h.result.get("device"), frame_png=g.frame_png, host_frame_png=h.frame_png,
        )  # fmt: skip


def run_host_demo(start, step: DemoStep, out: Path, save_frame: bool, name: str | None = None) -> DemoRun:
    """One demo on the run's host driver inside the host root; its output goes to ``out/<name>.out/.err``."""
    c = start.c
    assert c.demo_bin is not None
    name = name or step.name
    t0 = time.monotonic()
    proc = sandbox.run(
        c.host_root,
        [str(c.demo_bin / step.demo.binary), *step.args(str(out / name) if save_frame else None)],
        binds=[c.demo_bin, out, *start.vulkan_binds()],
        mounts=start.vulkan_mounts,
        env=start.vulkan_environment(),
        timeout=step.demo.timeout,
    )
    (out / f"{name}.out").write_text(proc.stdout)
    (out / f"{name}.err").write_text(proc.stderr)
    return DemoRun(name, proc.returncode, protocol.parse_demo_output(proc.stdout), time.monotonic() - t0)


# --- program and shell -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HostCompare:
    """A program step's differential check: the same command on the host's Vulkan driver, outputs compared."""

    stdout: bool
    outputs: bool
    normalize: tuple[tuple[str, str], ...]  # (regex, replacement) applied to both stdouts before comparing

    def apply(self, text: str) -> str:
        for pattern, replacement in self.normalize:
            text = re.sub(pattern, replacement, text, flags=re.M)
        return text


def _plain_name(w: Where, node: yaml.Node, field: str) -> str:
    name = scalar(w, node, field, str)
    if not WORD.fullmatch(name):
        raise w.error(node, field, "must be a plain word (letters, digits, . _ -)")
    return name


@dataclasses.dataclass(frozen=True)
class ProgramStep(Step):
    """Any guest program (``program: [argv…]``) or shell command line (``shell: '…'``)."""

    kind: ClassVar[str] = "program"
    name: str
    argv: tuple[str, ...]  # passed verbatim (spaces, quotes, globs reach the program as written); () with shell
    env: tuple[tuple[str, str], ...]
    timeout: int
    exit: int | None
    stdout: tuple[str, ...]
    stderr: tuple[str, ...]
    shell: str | None = None  # a shell command line instead of argv (the guest's sh runs it)
    outputs: tuple[str, ...] = ()  # absolute guest paths the step writes, collected into the run directory
    compare_host: HostCompare | None = None  # run it on the host's driver too, and compare

    FIELDS: ClassVar[set[str]] = {"program", "shell", "name", "env", "timeout", "expect", "outputs", "compare_host"}

    @classmethod
    def parse(cls, w: Where, node: yaml.Node, field: str) -> "ProgramStep":
        m = keys(w, node, field, cls.FIELDS, {"name"})
        argv, shell = cls._command(w, node, m, field)
        name = _plain_name(w, m["name"][1], f"{field}.name")
        env = optional(m, "env", lambda n: cls._env(w, n, f"{field}.env"), {})
        exit_status, out, err = optional(m, "expect", lambda n: cls._expect(w, n, f"{field}.expect"), (0, (), ()))
        timeout = optional(m, "timeout", lambda n: bounded(w, n, f"{field}.timeout", int, 1, MAX_TIMEOUT), 60)
        outputs = optional(m, "outputs", lambda n: cls._outputs(w, n, f"{field}.outputs"), ())
        compare = optional(m, "compare_host", lambda n: cls._compare(w, n, f"{field}.compare_host", outputs))
        return cls(name, argv, tuple(env.items()), timeout, exit_status, out, err, shell, outputs, compare)

    @staticmethod
    def _command(w: Where, node: yaml.Node, m: dict, field: str) -> tuple[tuple[str, ...], str | None]:
        if ("program" in m) == ("shell" in m):
            raise w.error(node, field, "give either program: [argv…] or shell: 'a command line'")
        if "shell" in m:
            shell = scalar(w, m["shell"][1], f"{field}.shell", str)
            if not shell.strip() or "\0" in shell:
                raise w.error(m["shell"][1], f"{field}.shell", "must be a non-empty command line")
            return (), shell
        argv = str_list(w, m["program"][1], f"{field}.program")
        if not argv or not argv[0]:
            raise w.error(m["program"][1], f"{field}.program", "must name a program")
        for i, a in enumerate(argv):
            if "\0" in a:
                raise w.error(m["program"][1], f"{field}.program[{i}]", "may not contain a NUL character")
        return tuple(argv), None

    @staticmethod
    def _env(w: Where, node: yaml.Node, field: str) -> dict[str, str]:
        env = str_map(w, node, field)
        for k, v in env.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) or "\0" in v:
                raise w.error(node, f"{field}.{k}", "must be a variable name (letters, digits, _) with a value without NUL")
        return env

    @staticmethod
    def _expect(w: Where, node: yaml.Node, field: str) -> tuple[int | None, tuple[str, ...], tuple[str, ...]]:
        em = keys(w, node, field, {"exit", "stdout", "stderr"})
        exit_status = optional(em, "exit", lambda n: scalar(w, n, f"{field}.exit", int), 0)
        streams = []
        for key in ("stdout", "stderr"):
            node_ = em[key][1] if key in em else None
            patterns = str_list(w, node_, f"{field}.{key}") if node_ is not None else []
            streams.append(tuple(regex(w, node_, f"{field}.{key}[{i}]", p) for i, p in enumerate(patterns)))
        return exit_status, streams[0], streams[1]

    @staticmethod
    def _outputs(w: Where, node: yaml.Node, field: str) -> tuple[str, ...]:
        outputs = str_list(w, node, field)
        for i, path in enumerate(outputs):
            base = path.rsplit("/", 1)[-1]
            if not path.startswith("/") or not WORD.fullmatch(base) or "\0" in path:
                raise w.error(node, f"{field}[{i}]", "must be an absolute guest path to a file with a plain name")
        bases = [p.rsplit("/", 1)[-1] for p in outputs]
        if len(set(bases)) != len(bases):
            raise w.error(node, field, "two outputs share a file name")
        return tuple(outputs)

    @staticmethod
    def _compare(w: Where, node: yaml.Node, field: str, outputs: tuple[str, ...]) -> HostCompare:
        cm = keys(w, node, field, {"stdout", "outputs", "normalize"})
        normalize = []
        if "normalize" in cm:
            nnode = cm["normalize"][1]
            if not isinstance(nnode, yaml.SequenceNode):
                raise w.error(nnode, f"{field}.normalize", "must be a list of [regex, replacement] pairs")
            for i, pair in enumerate(nnode.value):
                items = str_list(w, pair, f"{field}.normalize[{i}]")
                if len(items) != 2:
                    raise w.error(pair, f"{field}.normalize[{i}]", "must be [regex, replacement]")
                normalize.append((regex(w, pair, f"{field}.normalize[{i}]", items[0]), items[1]))
        compare = HostCompare(
            optional(cm, "stdout", lambda n: scalar(w, n, f"{field}.stdout", bool), False),
            optional(cm, "outputs", lambda n: scalar(w, n, f"{field}.outputs", bool), False),
            tuple(normalize),
        )
        if not (compare.stdout or compare.outputs):
            raise w.error(node, field, "compare stdout: true, outputs: true, or both")
        if compare.outputs and not outputs:
            raise w.error(node, f"{field}.outputs", "the step declares no outputs to compare")
        return compare

    def dump(self) -> dict:
        expect: dict = {"exit": self.exit} if self.exit is not None else {}
        if self.stdout:
            expect["stdout"] = list(self.stdout)
        if self.stderr:
            expect["stderr"] = list(self.stderr)
        entry = {"shell": self.shell} if self.shell is not None else {"program": list(self.argv)}
        entry.update({"name": self.name, "env": dict(self.env), "timeout": self.timeout, "expect": expect})
        if self.outputs:
            entry["outputs"] = list(self.outputs)
        if self.compare_host:
            c = self.compare_host
            entry["compare_host"] = {"stdout": c.stdout, "outputs": c.outputs, "normalize": [list(n) for n in c.normalize]}
        return entry

    # --- running ---------------------------------------------------------------------------
    def script(self, out: str = GUEST_OUT, env: tuple[tuple[str, str], ...] = ()) -> str:
        """The /bin/sh script for this step: environment, the command, the declared outputs.

        Every value is single-quoted (shlex), so nothing in an argument is
        expanded by the guest's shell; the shell form is run as written.
        """
        lines = [f"# venus-repro step {self.name}"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in (*env, *self.env)]
        if self.shell is not None:
            lines += ["(", self.shell, ")"]
        else:
            lines.append(" ".join(shlex.quote(a) for a in self.argv))
        lines.append("status=$?")
        if self.outputs:
            folder = f"{shlex.quote(out)}/{self.name}.files"
            lines.append(f"mkdir -p {folder}")
            for path in self.outputs:
                q = shlex.quote(path)
                lines.append(f"if [ -f {q} ]; then cp {q} {folder}/; else echo \"venus-repro: output {path} was not written\" >&2; fi")
        lines.append('exit "$status"')
        return "\n".join(lines) + "\n"

    def guest_plan(self, ctx: Context) -> tuple[protocol.Step, dict[str, bytes]]:
        # A script on the exchange disk: the program's arguments reach it verbatim.
        env = (*ctx.guest_env, ("VENUS_REPRO_DEMOS", f"/{GUEST_BIN_DIR}"))
        script = f"steps/{self.name}.sh"
        return protocol.Step(self.name, self.timeout, ["sh", f"/in/{script}"]), {script: self.script(env=env).encode()}

    def host_reference(self, ctx: Context) -> ProgramRun | None:
        """With ``compare_host``: the same script in the host root, on the host's driver.

        Its programs must exist there by the same name ($VENUS_REPRO_DEMOS names
        the host builds of the demos); its declared outputs go to
        ``host/<step>.files``, beside the guest's.
        """
        if self.compare_host is None:
            return None
        start = ctx.start
        c = start.c
        out = ctx.run_dir / "host"
        out.mkdir(exist_ok=True)
        env = (("VENUS_REPRO_DEMOS", str(c.demo_bin)),) if c.demo_bin else ()
        proc = sandbox.run(
            c.host_root, ["sh", "-c", self.script(out=str(out), env=env)],
            binds=[*([c.demo_bin] if c.demo_bin else []), out, *start.vulkan_binds()], mounts=start.vulkan_mounts,
            env=start.vulkan_environment(), timeout=self.timeout,
        )  # fmt: skip
        (out / f"{self.name}.out").write_text(proc.stdout)
        (out / f"{self.name}.err").write_text(proc.stderr)
        status = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        log.info(f"host {self.name}: exit status {status}")
        return ProgramRun(self.name, status, proc.stdout, proc.stderr, self._outputs_in(out))

    def _outputs_in(self, folder: Path) -> dict[str, str | None]:
        """Each declared output's copy under ``folder/<step>.files`` (None: not written)."""
        outputs = {}
        for path in self.outputs:
            copy = folder / f"{self.name}.files" / path.rsplit("/", 1)[-1]
            outputs[path] = str(copy) if copy.is_file() else None
        return outputs

    def collect(self, exchange: protocol.Exchange, ctx: Context) -> ProgramRun:
        out = exchange.files
        return ProgramRun(
            self.name, step_status(out, self.name),
            out.get(f"{self.name}.out", b"").decode(errors="replace"),
            out.get(f"{self.name}.err", b"").decode(errors="replace"),
            self._outputs_in(ctx.run_dir / "guest"),  # saved there (save_guest_files refuses a clash)
            started=self.name in exchange.started, duration_s=step_duration(out, self.name),
        )  # fmt: skip

    def checks(self, guest: ProgramRun, host: ProgramRun | None, ctx: Context) -> list[Check]:
        checks = verdict.program_checks(guest, self)
        if ctx.validation and guest.exit_status is not None:
            checks += verdict.validation_checks(guest.name, verdict.validation_report((guest.stdout + guest.stderr).encode()), must_load=False)
        if self.compare_host is not None:
            checks += verdict.host_compare_checks(guest, host, self.compare_host)
        return checks

    def entry(self, g: ProgramRun, h: ProgramRun | None, checks: list[Check]) -> StepResult:
        failed = _failed_names(checks)
        return StepResult(
            kind=self.kind, name=self.name, outcome="fail" if failed else "pass", failed=failed,
            exit_status=g.exit_status, duration_s=g.duration_s, outputs=dict(g.outputs),
            stdout_tail=g.stdout[-2000:], stderr_tail=g.stderr[-2000:],
            failure=verdict.not_finished(g.started) if g.exit_status is None else None,
        )  # fmt: skip


KINDS: tuple[type[Step], ...] = (DemoStep, ProgramStep)


def parse(w: Where, node: yaml.Node, field: str) -> Step:
    """One step: its kind from the key it has (``demo``, ``program`` or ``shell``)."""
    present = set(dict(((k.value, None) for k, _ in node.value))) if isinstance(node, yaml.MappingNode) else set()
    if "demo" in present:
        return DemoStep.parse(w, node, field)
    if present & {"program", "shell"}:
        return ProgramStep.parse(w, node, field)
    raise w.error(node, field, "a step has 'demo', 'program' or 'shell'")
