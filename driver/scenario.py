"""Scenarios: what to run and what must come out, as YAML.

    name: venus-demos
    profile: debian-trixie
    kernel: {flavour: 16k}            # or {image: path/to/Image}
    page_size: 16384                  # optional: overrides the profile's requirement
    machine: {display: …, gpu_options: …, host_env: {KEY: value}, ring_wake: true|false,
              host_vulkan: lavapipe|host}   # host: the host's own GPU driver (hostvulkan.py)
    components:                       # your own builds instead of the profile's (host paths)
      qemu: build/qemu-system-aarch64
      virglrenderer: build/libvirglrenderer.so.1
      render_server: build/virgl_render_server
      vulkan_icd: icd/my_icd.json
    files: [{src: host/path, dest: name}]   # copied into the guest at /in/files/<dest>
    guest_packages: [tree]            # extra guest packages, pinned in <scenario>.lock.json
    steps:
      - demo: vkcube_anim             # a demo from demos/demos.yaml
        frames: 200
        timeout: 60
        min_fps: 100                  # optional floor for the guest's FPS
        expect: pass                  # or {outcome: error, vk_result: VK_…, call: vk…}
      - program: [vulkaninfo, --summary]   # any guest program; arguments reach it verbatim
        name: vulkaninfo
        env: {VN_DEBUG: init}
        timeout: 30
        expect: {exit: 0, stdout: ['driverName\\s*=\\s*venus']}
      - shell: 'vkcube --c 10 2>&1 | tail -n 1'   # or a command line for the guest's sh
        name: cube-tail
        outputs: [/tmp/frame.png]      # files the step writes: kept in the run directory
        compare_host:                  # run it on the host's driver too ($VENUS_REPRO_DEMOS: the demos)
          stdout: true                 # stdout equal to the host's, after
          normalize: [['Virtio-GPU Venus \\((.*)\\)', '\\1']]   # these substitutions
          outputs: true                # and each output file byte for byte
    expect_findings: [render-server-missing]   # the run must fail with these findings
    validation: true                  # every step under the Khronos validation layer (needs
                                      # vulkan-validationlayers in guest_packages); 0 errors required

A scenario is data, whoever wrote it: it is read with limits (size, nesting,
alias expansion, no duplicate keys), and the host files it names (``files``,
``components``, ``kernel.image``) must lie in the scenario's own folder unless
the user allows host files (``--allow-host-files``). Every error names the file, the line and the field. Built-in scenarios live
in ``data/scenarios/``. This module is the one home of a scenario: it is
parsed here (``load``/``parse``), overridden from the command line here
(``Scenario.override``), and written back out here (``dump``/``save``: the
scenario a run actually executed, which ``bundle`` and ``replay`` carry).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shlex
import shutil
from pathlib import Path

import yaml

from . import demos as demo_catalogue
from . import hostvulkan, protocol
from .errors import UsageError
from .profile import DATA

SCENARIOS = DATA / "scenarios"
VALIDATION_PACKAGE = "vulkan-validationlayers"
# What a guest step runs under with `validation: true`: the layer, and the loader saying it loaded it.
VALIDATION_ENV = (("VK_INSTANCE_LAYERS", "VK_LAYER_KHRONOS_validation"), ("VK_LOADER_DEBUG", "layer"))
_WORD = re.compile(r"[\w][\w.-]*")
# Limits on a scenario file: it is untrusted input (a bundle from someone else carries one).
MAX_BYTES = 1 << 20
MAX_NODES = 100_000  # nodes visited, aliases expanded: an alias bomb stops here
MAX_DEPTH = 32
MAX_TIMEOUT = 24 * 3600
MAX_FRAMES = 1_000_000
# How host files named by a scenario are treated: refused unless in its folder,
# allowed anywhere (the user said so), or dropped and reported (replay).
REFUSE, ALLOW, DROP = "refuse", "allow", "drop"


@dataclasses.dataclass(frozen=True)
class DemoStep:
    demo: demo_catalogue.Demo
    min_fps: float | None = None


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


@dataclasses.dataclass(frozen=True)
class ProgramStep:
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

    def script(self, out: str = "/out", env: tuple[tuple[str, str], ...] = ()) -> str:
        """The guest's /bin/sh script for this step: environment, the command, the declared outputs.

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


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    path: Path | None
    text: str
    profile: str
    kernel_flavour: str | None
    kernel_image: Path | None
    page_size: int | None
    display: str | None
    gpu_options: str | None
    host_env: dict[str, str]
    ring_wake: bool
    components: dict[str, Path]
    files: tuple[tuple[Path, str], ...]
    guest_packages: tuple[str, ...]
    demos: tuple[DemoStep, ...]
    programs: tuple[ProgramStep, ...]
    expect_findings: tuple[str, ...]
    host_vulkan: str = hostvulkan.LAVAPIPE
    # Every guest step runs under the Khronos validation layer; each demo must load it and report no error.
    validation: bool = False
    # What was read but not obeyed (a replayed bundle's host files, components, environment).
    ignored: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        """sha256 of the scenario's source text (before any command-line override)."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def override(
        self,
        *,
        profile: str | None = None,
        demos: list[demo_catalogue.Demo] | None = None,
        frames: int | None = None,
        timeout: int | None = None,
        kernel_flavour: str | None = None,
        kernel_image: Path | None = None,
        display: str | None = None,
        gpu_options: str | None = None,
        host_env: dict[str, str] | None = None,
        components: dict[str, Path] | None = None,
        ring_wake: bool | None = None,
        host_vulkan: str | None = None,
    ) -> "Scenario":
        """This scenario with the command line's overrides applied (None: keep the scenario's).

        ``demos`` replaces the steps (programs and FPS floors go with them);
        ``frames`` and ``timeout`` apply to every demo step; a kernel flavour
        or image replaces the scenario's kernel; ``host_env`` and
        ``components`` are merged over the scenario's.
        """
        sc = self
        if demos is not None:
            sc = dataclasses.replace(sc, demos=tuple(DemoStep(d) for d in demos), programs=())
        if frames is not None or timeout is not None:
            steps = []
            for step in sc.demos:
                demo = demo_catalogue.with_frames(step.demo, frames)
                if timeout is not None:
                    demo = dataclasses.replace(demo, timeout=timeout)
                steps.append(dataclasses.replace(step, demo=demo))
            sc = dataclasses.replace(sc, demos=tuple(steps))
        if kernel_flavour is not None or kernel_image is not None:
            sc = dataclasses.replace(sc, kernel_flavour=kernel_flavour, kernel_image=kernel_image)
        replace = {"profile": profile, "display": display, "gpu_options": gpu_options, "ring_wake": ring_wake, "host_vulkan": host_vulkan}
        sc = dataclasses.replace(sc, **{k: v for k, v in replace.items() if v is not None})
        if host_env:
            sc = dataclasses.replace(sc, host_env={**sc.host_env, **host_env})
        if components:
            sc = dataclasses.replace(sc, components={**sc.components, **components})
        return sc


COMPONENTS = ("qemu", "virglrenderer", "render_server", "vulkan_icd")


def check_component(key: str, path: Path) -> Path:
    """A component override must exist (and, for the library, carry the name QEMU links)."""
    # Absolute but not resolved: a build tree's libvirglrenderer.so.1 is a link
    # to libvirglrenderer.so.1.x.y, and the link's name is what QEMU looks for.
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file")
    if key == "virglrenderer" and path.name != "libvirglrenderer.so.1":
        raise UsageError(f"{path}: the library must be named libvirglrenderer.so.1 (QEMU links that soname)")
    return path


def available() -> list[str]:
    return sorted(p.stem for p in SCENARIOS.glob("*.yaml"))


class _Where:
    """file:line for a YAML node, for error messages."""

    def __init__(self, path: str):
        self.path = path

    def error(self, node: yaml.Node | None, field: str, message: str) -> UsageError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return UsageError(f"{self.path}{line}: {field}: {message}")


def _mapping(node: yaml.Node, w: "_Where | None" = None, field: str = "") -> dict[str, tuple[yaml.Node, yaml.Node]]:
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        key = str(k.value)
        if key in out and w is not None:
            raise w.error(k, f"{field}.{key}" if field else key, "comes twice (YAML keys must be unique)")
        out[key] = (k, v)
    return out


def _check_shape(w: _Where, root: yaml.Node) -> None:
    """Refuse a document that is too deep or too large once its aliases are expanded."""
    seen, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise w.error(None, "scenario", f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise w.error(node, "scenario", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend(((k, depth + 1), (v, depth + 1)))


def _scalar(w: _Where, node: yaml.Node, field: str, kind: type):
    if not isinstance(node, yaml.ScalarNode):
        raise w.error(node, field, f"must be a {kind.__name__}")
    value = _plain(w, node, field)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise w.error(node, field, f"must be a {kind.__name__}, not {value!r}")
    return value


def _plain(w: _Where, node: yaml.ScalarNode, field: str):
    """A scalar's value; one with a tag the safe loader does not construct (!!python/…) is an error."""
    try:
        return yaml.safe_load(yaml.serialize(node))
    except yaml.YAMLError:
        raise w.error(node, field, f"must be a plain value, not tagged {node.tag}") from None


def _check_keys(w: _Where, node: yaml.Node, field: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(node, yaml.MappingNode):
        raise w.error(node, field, "must be a mapping")
    m = _mapping(node, w, field)
    for key, (knode, _) in m.items():
        if key not in allowed:
            raise w.error(knode, f"{field}.{key}" if field else key, f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in sorted(required - set(m)):
        raise w.error(node, f"{field}.{key}" if field else key, "missing")
    return m


def _str_list(w: _Where, node: yaml.Node, field: str) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        raise w.error(node, field, "must be a list")
    return [str(_scalar(w, item, f"{field}[{i}]", str)) for i, item in enumerate(node.value)]


def _str_map(w: _Where, node: yaml.Node, field: str) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode):
        raise w.error(node, field, "must be a mapping")
    out = {}
    for k, (_, v) in _mapping(node, w, field).items():
        if not isinstance(v, yaml.ScalarNode):
            raise w.error(v, f"{field}.{k}", "must be a plain value")
        out[k] = str(_plain(w, v, f"{field}.{k}"))
    return out


def _bounded(w: _Where, node: yaml.Node, field: str, kind: type, low, high):
    value = _scalar(w, node, field, kind)
    if not (low <= value <= high):
        raise w.error(node, field, f"must be between {low:g} and {high:g}")
    return value


def _demo_step(w: _Where, node: yaml.Node, field: str, catalogue: dict) -> DemoStep:
    m = _check_keys(w, node, field, {"demo", "frames", "timeout", "min_fps", "expect"}, {"demo"})
    name_node = m["demo"][1]
    name = _scalar(w, name_node, f"{field}.demo", str)
    if name not in catalogue:
        raise w.error(name_node, f"{field}.demo", f"unknown demo '{name}' (available: {', '.join(catalogue)})")
    demo = catalogue[name]
    if "frames" in m:
        frames = _bounded(w, m["frames"][1], f"{field}.frames", int, 1, MAX_FRAMES)
        demo = demo_catalogue.with_frames(demo, frames)
    if "timeout" in m:
        demo = dataclasses.replace(demo, timeout=_bounded(w, m["timeout"][1], f"{field}.timeout", int, 1, MAX_TIMEOUT))
    if "expect" in m:
        enode = m["expect"][1]
        if isinstance(enode, yaml.ScalarNode):
            if _scalar(w, enode, f"{field}.expect", str) != "pass":
                raise w.error(enode, f"{field}.expect", "must be 'pass' or {outcome, vk_result, call}")
            demo = dataclasses.replace(demo, expect=None)
        else:
            em = _check_keys(w, enode, f"{field}.expect", {"outcome", "vk_result", "call"}, {"outcome"})
            values = {k: _scalar(w, v, f"{field}.expect.{k}", str) for k, (_, v) in em.items()}
            if values["outcome"] not in ("error", "crash", "timeout"):
                raise w.error(em["outcome"][1], f"{field}.expect.outcome", "must be error, crash or timeout")
            demo = dataclasses.replace(demo, expect=demo_catalogue.Expect(**values))
    min_fps = _bounded(w, m["min_fps"][1], f"{field}.min_fps", float, 0, 1e9) if "min_fps" in m else None
    return DemoStep(demo, min_fps)


def _program_step(w: _Where, node: yaml.Node, field: str) -> ProgramStep:
    keys = {"program", "shell", "name", "env", "timeout", "expect", "outputs", "compare_host"}
    m = _check_keys(w, node, field, keys, {"name"})
    if ("program" in m) == ("shell" in m):
        raise w.error(node, field, "give either program: [argv…] or shell: 'a command line'")
    argv: list[str] = []
    shell = None
    if "program" in m:
        argv = _str_list(w, m["program"][1], f"{field}.program")
        if not argv or not argv[0]:
            raise w.error(m["program"][1], f"{field}.program", "must name a program")
        for i, a in enumerate(argv):
            if "\0" in a:
                raise w.error(m["program"][1], f"{field}.program[{i}]", "may not contain a NUL character")
    else:
        shell = _scalar(w, m["shell"][1], f"{field}.shell", str)
        if not shell.strip() or "\0" in shell:
            raise w.error(m["shell"][1], f"{field}.shell", "must be a non-empty command line")
    outputs: list[str] = []
    if "outputs" in m:
        outputs = _str_list(w, m["outputs"][1], f"{field}.outputs")
        for i, path in enumerate(outputs):
            base = path.rsplit("/", 1)[-1]
            if not path.startswith("/") or not _WORD.fullmatch(base) or "\0" in path:
                raise w.error(m["outputs"][1], f"{field}.outputs[{i}]", "must be an absolute guest path to a file with a plain name")
        bases = [p.rsplit("/", 1)[-1] for p in outputs]
        if len(set(bases)) != len(bases):
            raise w.error(m["outputs"][1], f"{field}.outputs", "two outputs share a file name")
    name = _scalar(w, m["name"][1], f"{field}.name", str)
    if not _WORD.fullmatch(name):
        raise w.error(m["name"][1], f"{field}.name", "must be a plain word (letters, digits, . _ -)")
    env = _str_map(w, m["env"][1], f"{field}.env") if "env" in m else {}
    for k, v in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) or "\0" in v:
            raise w.error(m["env"][1], f"{field}.env.{k}", "must be a variable name (letters, digits, _) with a value without NUL")
    expect_exit, out, err = 0, [], []
    if "expect" in m:
        em = _check_keys(w, m["expect"][1], f"{field}.expect", {"exit", "stdout", "stderr"})
        if "exit" in em:
            expect_exit = _scalar(w, em["exit"][1], f"{field}.expect.exit", int)
        for key, target in (("stdout", out), ("stderr", err)):
            if key in em:
                for i, pattern in enumerate(_str_list(w, em[key][1], f"{field}.expect.{key}")):
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        raise w.error(em[key][1], f"{field}.expect.{key}[{i}]", f"bad regular expression: {exc}") from None
                    target.append(pattern)
    timeout = _bounded(w, m["timeout"][1], f"{field}.timeout", int, 1, MAX_TIMEOUT) if "timeout" in m else 60
    compare = None
    if "compare_host" in m:
        cm = _check_keys(w, m["compare_host"][1], f"{field}.compare_host", {"stdout", "outputs", "normalize"})
        normalize = []
        if "normalize" in cm:
            node = cm["normalize"][1]
            if not isinstance(node, yaml.SequenceNode):
                raise w.error(node, f"{field}.compare_host.normalize", "must be a list of [regex, replacement] pairs")
            for i, pair in enumerate(node.value):
                items = _str_list(w, pair, f"{field}.compare_host.normalize[{i}]")
                if len(items) != 2:
                    raise w.error(pair, f"{field}.compare_host.normalize[{i}]", "must be [regex, replacement]")
                try:
                    re.compile(items[0])
                except re.error as exc:
                    raise w.error(pair, f"{field}.compare_host.normalize[{i}]", f"bad regular expression: {exc}") from None
                normalize.append((items[0], items[1]))
        compare = HostCompare(
            _scalar(w, cm["stdout"][1], f"{field}.compare_host.stdout", bool) if "stdout" in cm else False,
            _scalar(w, cm["outputs"][1], f"{field}.compare_host.outputs", bool) if "outputs" in cm else False,
            tuple(normalize),
        )
        if not (compare.stdout or compare.outputs):
            raise w.error(m["compare_host"][1], f"{field}.compare_host", "compare stdout: true, outputs: true, or both")
        if compare.outputs and not outputs:
            raise w.error(m["compare_host"][1], f"{field}.compare_host.outputs", "the step declares no outputs to compare")
    return ProgramStep(name, tuple(argv), tuple(env.items()), timeout, expect_exit, tuple(out), tuple(err), shell, tuple(outputs), compare)


def load(name_or_path: str, host_files: str = REFUSE, host_programs: str = REFUSE) -> Scenario:
    """A built-in scenario by name, or a scenario file (see ``parse`` for the policies).

    A built-in scenario is the package's own: it may run its differential steps on the host.
    """
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        if path.suffix in (".yaml", ".yml") or "/" in name_or_path:
            raise UsageError(f"scenario file {name_or_path} does not exist")
        path = SCENARIOS / f"{name_or_path}.yaml"
        if not path.exists():
            raise UsageError(f"unknown scenario '{name_or_path}' (built in: {', '.join(available())}; or a YAML file)")
    if not path.is_file():
        raise UsageError(f"scenario {path} is not a file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"scenario {path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_BYTES:
        raise UsageError(f"scenario {path} is larger than {MAX_BYTES >> 10} KiB: not a scenario")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: scenario: not UTF-8 text") from None
    if path.resolve().parent == SCENARIOS.resolve():
        host_programs = ALLOW
    return parse(text, path, host_files, host_programs)


def parse(text: str, path: Path | None, host_files: str = REFUSE, host_programs: str = REFUSE) -> Scenario:
    """The scenario in ``text`` (from ``path``), checked field by field.

    ``host_files``: REFUSE (a named host file must lie in the scenario's
    folder), ALLOW (anywhere: the user said so), DROP (replay: host files,
    components and a kernel image are left out and listed in ``ignored``).
    ``host_programs``: a step's ``compare_host`` runs the scenario's command on
    this machine (in the host root), so a scenario file may ask for it only
    when the user allows it (ALLOW: --allow-host-programs); REFUSE makes it one
    error, DROP (replay) leaves the comparison out and lists it in ``ignored``.
    """
    w = _Where(str(path) if path else "<scenario>")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{w.path}{line}: malformed YAML: {' '.join(str(getattr(exc, 'problem', None) or exc).split())}") from None
    except RecursionError:
        raise w.error(None, "scenario", f"nested deeper than {MAX_DEPTH} levels") from None
    if root is None:
        raise w.error(None, "scenario", "the file is empty")
    _check_shape(w, root)
    ignored: list[str] = []
    base = (path.parent if path else Path.cwd()).resolve()

    def host_file(node: yaml.Node, field: str, value: str, what: str) -> Path | None:
        """``value`` resolved against the scenario's folder, if the policy lets it be read."""
        resolved = (base / value).resolve()
        inside = resolved == base or base in resolved.parents
        if host_files == DROP:
            ignored.append(f"{field}: {value} ({what}, not used: pass --trust-bundle to use it)")
            return None
        if not inside and host_files != ALLOW:
            raise w.error(node, field, f"{resolved} is outside the scenario's folder {base}; "
                                       "pass --allow-host-files to let a scenario read host files")  # fmt: skip
        return resolved

    allowed = {"name", "description", "profile", "kernel", "page_size", "machine", "components", "files",
               "guest_packages", "steps", "expect_findings", "validation"}  # fmt: skip
    m = _check_keys(w, root, "", allowed, {"name", "steps"})
    name = _scalar(w, m["name"][1], "name", str)
    profile = _scalar(w, m["profile"][1], "profile", str) if "profile" in m else "debian-trixie"

    flavour = image = None
    if "kernel" in m:
        km = _check_keys(w, m["kernel"][1], "kernel", {"flavour", "image"})
        if "flavour" in km and "image" in km:
            raise w.error(m["kernel"][1], "kernel", "give flavour or image, not both")
        if "flavour" in km:
            flavour = str(_scalar(w, km["flavour"][1], "kernel.flavour", (str)))
        if "image" in km:
            image = host_file(km["image"][1], "kernel.image", _scalar(w, km["image"][1], "kernel.image", str), "a kernel image")
            if image is not None and not image.is_file():
                raise w.error(km["image"][1], "kernel.image", f"{image} does not exist or is not a file")

    display = gpu = None
    host_env: dict[str, str] = {}
    ring_wake = True
    host_vulkan = hostvulkan.LAVAPIPE
    if "machine" in m:
        mm = _check_keys(w, m["machine"][1], "machine", {"display", "gpu_options", "host_env", "ring_wake", "host_vulkan"})
        if "host_vulkan" in mm:
            host_vulkan = _scalar(w, mm["host_vulkan"][1], "machine.host_vulkan", str)
            if host_vulkan not in hostvulkan.CHOICES:
                raise w.error(mm["host_vulkan"][1], "machine.host_vulkan", f"must be one of {', '.join(hostvulkan.CHOICES)}")
        display = _scalar(w, mm["display"][1], "machine.display", str) if "display" in mm else None
        gpu = _scalar(w, mm["gpu_options"][1], "machine.gpu_options", str) if "gpu_options" in mm else None
        host_env = _str_map(w, mm["host_env"][1], "machine.host_env") if "host_env" in mm else {}
        ring_wake = _scalar(w, mm["ring_wake"][1], "machine.ring_wake", bool) if "ring_wake" in mm else True

    components: dict[str, Path] = {}
    if "components" in m:
        cm = _check_keys(w, m["components"][1], "components", set(COMPONENTS))
        for key, (_, vnode) in cm.items():
            where = host_file(vnode, f"components.{key}", _scalar(w, vnode, f"components.{key}", str), "a host program")
            if where is None:
                continue
            try:
                # The link's own name counts (libvirglrenderer.so.1), so not the resolved path.
                components[key] = check_component(key, base / _scalar(w, vnode, f"components.{key}", str))
            except UsageError as exc:
                raise w.error(vnode, f"components.{key}", str(exc)) from None

    files = []
    if "files" in m:
        fnode = m["files"][1]
        if not isinstance(fnode, yaml.SequenceNode):
            raise w.error(fnode, "files", "must be a list")
        for i, item in enumerate(fnode.value):
            fm = _check_keys(w, item, f"files[{i}]", {"src", "dest"}, {"src", "dest"})
            dest = _scalar(w, fm["dest"][1], f"files[{i}].dest", str)
            if not _WORD.fullmatch(dest):
                raise w.error(fm["dest"][1], f"files[{i}].dest", "must be a plain file name")
            value = _scalar(w, fm["src"][1], f"files[{i}].src", str)
            if host_files == DROP and value == f"files/{dest}":
                src = (base / value).resolve()  # a replayed bundle's own copy, beside its scenario: data
            else:
                src = host_file(fm["src"][1], f"files[{i}].src", value, "a host file")
            if src is None:
                continue
            if not src.is_file():
                raise w.error(fm["src"][1], f"files[{i}].src", f"{src} does not exist or is not a file")
            if src.stat().st_size > protocol.EXCHANGE_SIZE:
                raise w.error(fm["src"][1], f"files[{i}].src", f"{src} is larger than the {protocol.EXCHANGE_SIZE >> 20} MiB exchange disk")
            files.append((src, dest))

    packages: list[str] = []
    if "guest_packages" in m:
        packages = _str_list(w, m["guest_packages"][1], "guest_packages")
        for i, pkg in enumerate(packages):
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", pkg):
                raise w.error(m["guest_packages"][1], f"guest_packages[{i}]", f"'{pkg}' is not a Debian package name")

    snode = m["steps"][1]
    if not isinstance(snode, yaml.SequenceNode) or not snode.value:
        raise w.error(snode, "steps", "must be a non-empty list")
    catalogue = demo_catalogue.catalogue()
    demo_steps, program_steps, seen = [], [], set()
    for i, item in enumerate(snode.value):
        field = f"steps[{i}]"
        keys = _mapping(item) if isinstance(item, yaml.MappingNode) else {}
        if "demo" in keys:
            step = _demo_step(w, item, field, catalogue)
            step_name = step.demo.name
            demo_steps.append(step)
        elif "program" in keys or "shell" in keys:
            step = _program_step(w, item, field)
            if step.compare_host is not None and host_programs != ALLOW:
                if host_programs == DROP:
                    ignored.append(f"{field}.compare_host (runs the command on this machine; not used: pass --trust-bundle to use it)")
                    step = dataclasses.replace(step, compare_host=None)
                else:
                    raise w.error(keys["compare_host"][0], f"{field}.compare_host",
                                  "runs the step's command on this machine too: pass --allow-host-programs to let a scenario do that")  # fmt: skip
            step_name = step.name
            program_steps.append(step)
        else:
            raise w.error(item, field, "a step has 'demo', 'program' or 'shell'")
        if step_name in seen:
            raise w.error(item, field, f"a step named '{step_name}' comes twice")
        seen.add(step_name)

    findings: list[str] = []
    if "expect_findings" in m:
        from .diagnose import rules

        known = {r["id"] for r in rules()}
        findings = _str_list(w, m["expect_findings"][1], "expect_findings")
        for f in findings:
            if f not in known:
                raise w.error(m["expect_findings"][1], "expect_findings", f"unknown finding '{f}'")
    page = _scalar(w, m["page_size"][1], "page_size", int) if "page_size" in m else None
    if page is not None and page not in (4096, 16384, 65536):
        raise w.error(m["page_size"][1], "page_size", "must be 4096, 16384 or 65536")
    validation = _scalar(w, m["validation"][1], "validation", bool) if "validation" in m else False
    if validation and VALIDATION_PACKAGE not in packages:
        raise w.error(m["validation"][1], "validation", f"needs the layer in the guest: add {VALIDATION_PACKAGE} to guest_packages")
    return Scenario(
        name=name, path=path, text=text, profile=profile, kernel_flavour=flavour, kernel_image=image,
        page_size=page, display=display, gpu_options=gpu, host_env=host_env, ring_wake=ring_wake, components=components, files=tuple(files), guest_packages=tuple(packages),
        demos=tuple(demo_steps), programs=tuple(program_steps), expect_findings=tuple(findings), ignored=tuple(ignored),
        host_vulkan=host_vulkan, validation=validation,
    )  # fmt: skip


def dump(sc: Scenario) -> str:
    """The scenario as YAML that ``parse`` reads back: what a run executed, overrides applied.

    Host files are named by where ``save`` copies them (``files/<dest>``
    beside the written scenario), so the written scenario travels with them.
    """
    steps: list[dict] = []
    for step in sc.demos:
        d = step.demo
        entry: dict = {"demo": d.name, "timeout": d.timeout}
        if "--frames" in d.args:
            entry["frames"] = int(d.args[d.args.index("--frames") + 1])
        entry["expect"] = {k: v for k, v in vars(d.expect).items() if v is not None} if d.expect else "pass"
        if step.min_fps is not None:
            entry["min_fps"] = step.min_fps
        steps.append(entry)
    for p in sc.programs:
        expect: dict = {"exit": p.exit} if p.exit is not None else {}
        if p.stdout:
            expect["stdout"] = list(p.stdout)
        if p.stderr:
            expect["stderr"] = list(p.stderr)
        entry = {"shell": p.shell} if p.shell is not None else {"program": list(p.argv)}
        entry.update({"name": p.name, "env": dict(p.env), "timeout": p.timeout, "expect": expect})
        if p.outputs:
            entry["outputs"] = list(p.outputs)
        if p.compare_host:
            c = p.compare_host
            entry["compare_host"] = {"stdout": c.stdout, "outputs": c.outputs, "normalize": [list(n) for n in c.normalize]}
        steps.append(entry)
    doc: dict = {"name": sc.name, "profile": sc.profile}
    if sc.kernel_image is not None:
        doc["kernel"] = {"image": str(sc.kernel_image)}
    elif sc.kernel_flavour:
        doc["kernel"] = {"flavour": sc.kernel_flavour}
    if sc.page_size:
        doc["page_size"] = sc.page_size
    machine: dict = {k: v for k, v in (("display", sc.display), ("gpu_options", sc.gpu_options)) if v}
    if sc.host_env:
        machine["host_env"] = dict(sc.host_env)
    if not sc.ring_wake:
        machine["ring_wake"] = False
    if sc.host_vulkan != hostvulkan.LAVAPIPE:
        machine["host_vulkan"] = sc.host_vulkan
    if machine:
        doc["machine"] = machine
    if sc.components:
        doc["components"] = {k: str(v) for k, v in sorted(sc.components.items())}
    if sc.files:
        doc["files"] = [{"src": f"files/{dest}", "dest": dest} for _, dest in sc.files]
    if sc.guest_packages:
        doc["guest_packages"] = list(sc.guest_packages)  # pinned in scenario.lock.json beside it
    doc["steps"] = steps
    if sc.expect_findings:
        doc["expect_findings"] = list(sc.expect_findings)
    if sc.validation:
        doc["validation"] = True
    return "# The scenario as this run executed it (written by venus-repro).\n" + yaml.safe_dump(doc, sort_keys=False)


def save(sc: Scenario, run_dir: Path) -> None:
    """``run_dir/scenario.yaml`` (``dump``) and the host files it puts into the guest, under ``files/``."""
    (run_dir / "scenario.yaml").write_text(dump(sc))
    if sc.files:
        (run_dir / "files").mkdir(exist_ok=True)
        for src, dest in sc.files:
            shutil.copyfile(src, run_dir / "files" / dest)
