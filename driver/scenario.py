"""Scenarios: an environment, the steps to run in it, and what must come out — as YAML.

    name: venus-demos
    profile: debian-trixie
    kernel: {flavour: 16k}            # or {image: path/to/Image}
    page_size: 16384                  # optional: overrides the profile's requirement
    machine: {display: …, gpu_options: …, host_env: {KEY: value}, ring_wake: true|false}
    components:                       # any registry component from elsewhere (driver/registry.py)
      qemu: build/qemu-system-aarch64          # your own file
      virglrenderer: {library: build/libvirglrenderer.so.1, render_server: build/virgl_render_server}
      guest_mesa: {suite: forky}               # another suite's packages, mixed in and pinned
      host_vulkan: host                        # the host's own GPU driver (hostvulkan.py)
      virglrenderer: {build: ../virglrenderer, options: [-Dvulkan-preload=false]}
    files: [{src: host/path, dest: name}]   # copied into the guest at /in/files/<dest>
    guest_packages: [tree]            # extra guest packages, pinned in <scenario>.lock.json
    steps:                            # run in this order (driver/steps.py: each kind)
      - demo: vkcube_anim
        frames: 200
      - program: [vulkaninfo, --summary]
        name: vulkaninfo
        expect: {exit: 0, stdout: ['driverName\\s*=\\s*venus']}
      - shell: 'vkcube --c 10 2>&1 | tail -n 1'
        name: cube-tail
        outputs: [/tmp/frame.png]
        compare_host: {stdout: true, outputs: true, normalize: [['Virtio-GPU Venus \\((.*)\\)', '\\1']]}
    expect_findings: [render-server-missing]   # the run must fail with these findings
    validation: true                  # every step under the Khronos validation layer (needs
                                      # vulkan-validationlayers in guest_packages); 0 errors required

A scenario is data, whoever wrote it: it is read with limits (size, nesting,
alias expansion, no duplicate keys), and the host files it names (``files``,
``components``, ``kernel.image``) must lie in the scenario's own folder unless
the user allows host files (``--allow-host-files``). Every error names the
file, the line and the field. Built-in scenarios live in ``data/scenarios/``.
This module is the one home of a scenario: it is parsed here (``load``/``parse``),
overridden from the command line here (``Scenario.override``), and written back
out here (``dump``/``save``: the scenario a run actually executed, which
``bundle`` and ``replay`` carry).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
from pathlib import Path

import yaml

from . import demos as demo_catalogue
from . import protocol, registry, steps
from .environment import Environment, MachineOptions, Pinning
from .errors import UsageError
from .profile import DATA, Profile
from .provision.lock import scenario_lock_path
from .registry import HOST, PATH, Source
from .yamlread import WORD, Where, compose, keys, optional, scalar, str_list, str_map

SCENARIOS = DATA / "scenarios"
VALIDATION_PACKAGE = "vulkan-validationlayers"
# Limits on a scenario file: it is untrusted input (a bundle from someone else carries one).
MAX_BYTES = 1 << 20
# How host files named by a scenario are treated: refused unless in its folder,
# allowed anywhere (the user said so), or dropped and reported (replay).
REFUSE, ALLOW, DROP = "refuse", "allow", "drop"
DEFAULT_PROFILE = "debian-trixie"
FIELDS = {"name", "description", "profile", "kernel", "page_size", "machine", "components", "files",
          "guest_packages", "steps", "expect_findings", "validation"}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    path: Path | None
    text: str
    profile: str
    steps: tuple[steps.Step, ...]
    kernel_flavour: str | None = None
    page_size: int | None = None
    machine: MachineOptions = MachineOptions()
    sources: tuple[tuple[str, Source], ...] = ()  # components not from the profile
    files: tuple[tuple[Path, str], ...] = ()
    guest_packages: tuple[str, ...] = ()
    expect_findings: tuple[str, ...] = ()
    # Every guest step runs under the Khronos validation layer; each demo must load it and report no error.
    validation: bool = False
    # What was read but not obeyed (a replayed bundle's host files, components, environment).
    ignored: tuple[str, ...] = ()
    # The components whose other-suite pins are this file's lock's to hold (named in the file itself).
    locked: frozenset[str] = frozenset()
    description: str = ""

    @property
    def digest(self) -> str:
        """sha256 of the scenario's source text (before any command-line override)."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def of_kind(self, kind: type) -> list:
        return [s for s in self.steps if isinstance(s, kind)]

    @property
    def demos(self) -> list[steps.DemoStep]:
        """The demo steps (in their order among all the steps)."""
        return self.of_kind(steps.DemoStep)

    @property
    def programs(self) -> list[steps.ProgramStep]:
        return self.of_kind(steps.ProgramStep)

    def source(self, name: str) -> Source:
        return dict(self.sources).get(name, Source(registry.PROFILE))

    @property
    def kernel_image(self) -> Path | None:
        return self.source("guest_kernel").path("image")

    # --- the environment it declares ----------------------------------------------------
    def pinning(self, profile: Profile) -> Pinning:
        """Where this scenario's own pins are for ``profile``: <name>.lock.json, or <name>.<profile>.lock.json."""
        if self.path is None:
            return Pinning(locked=frozenset())
        lock = scenario_lock_path(self.path, None if profile.name == self.profile else profile.name)
        return Pinning(lock, self.path, self.locked)

    def environment(self, profile: Profile) -> Environment:
        """The environment this scenario declares, on ``profile`` (not resolved: see environment.resolve)."""
        return Environment(
            profile=profile, kernel_flavour=self.kernel_flavour, page_size=self.page_size, machine=self.machine,
            sources=self.sources, guest_packages=self.guest_packages,
        )  # fmt: skip

    def in_environment(self, env: Environment) -> "Scenario":
        """These steps, saying ``env``'s environment (what a recorded or mixed environment's run writes)."""
        kept = tuple((n, s) for n, s in env.sources if s.kind != registry.SUITE)
        return dataclasses.replace(
            self, profile=env.profile.name, kernel_flavour=env.kernel_flavour if env.kernel_image is None else None,
            page_size=env.page_size, machine=env.machine, sources=kept, guest_packages=env.guest_packages, locked=frozenset(),
        )  # fmt: skip

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
        sources: dict[str, Source] | None = None,
        ring_wake: bool | None = None,
        host_vulkan: str | None = None,
    ) -> "Scenario":
        """This scenario with the command line's overrides applied (None: keep the scenario's).

        ``demos`` replaces the steps; ``frames`` and ``timeout`` apply to every
        demo step; a kernel flavour or image replaces the scenario's kernel;
        ``host_env`` and ``sources`` are merged over the scenario's.
        """
        sc = self
        if demos is not None:
            sc = dataclasses.replace(sc, steps=tuple(steps.DemoStep(d) for d in demos))
        if frames is not None or timeout is not None:
            changed = []
            for step in sc.steps:
                if isinstance(step, steps.DemoStep):
                    step = step.with_frames(frames)
                    if timeout is not None:
                        step = step.with_timeout(timeout)
                changed.append(step)
            sc = dataclasses.replace(sc, steps=tuple(changed))
        merged = dict(sc.sources)
        if kernel_flavour is not None or kernel_image is not None:
            merged.pop("guest_kernel", None)
            sc = dataclasses.replace(sc, kernel_flavour=kernel_flavour)
            if kernel_image is not None:
                merged["guest_kernel"] = Source(PATH, paths=(("image", str(kernel_image)),))
        if host_vulkan is not None:
            merged["host_vulkan"] = Source(HOST) if host_vulkan == "host" else Source(registry.PROFILE)
        merged.update(sources or {})
        m = sc.machine
        machine = MachineOptions(
            display=display if display is not None else m.display,
            gpu_options=gpu_options if gpu_options is not None else m.gpu_options,
            host_env=tuple(sorted({**m.env, **(host_env or {})}.items())),
            ring_wake=ring_wake if ring_wake is not None else m.ring_wake,
        )
        return dataclasses.replace(
            sc, profile=profile or sc.profile, machine=machine,
            sources=tuple(sorted((k, v) for k, v in merged.items() if v.kind != registry.PROFILE)),
        )  # fmt: skip


def available() -> list[str]:
    return sorted(p.stem for p in SCENARIOS.glob("*.yaml"))


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


class _Reader:
    """One scenario file being read: where errors point, what the host-file policy lets through."""

    def __init__(self, text: str, path: Path | None, host_files: str, host_programs: str):
        self.w = Where(str(path) if path else "<scenario>")
        self.path = path
        self.host_files = host_files
        self.host_programs = host_programs
        self.base = (path.parent if path else Path.cwd()).resolve()
        self.ignored: list[str] = []
        self.root = compose(self.w, text)

    def host_file(self, node: yaml.Node, field: str, value: str, what: str) -> Path | None:
        """``value`` resolved against the scenario's folder, if the policy lets it be read."""
        resolved = (self.base / value).resolve()
        inside = resolved == self.base or self.base in resolved.parents
        if self.host_files == DROP:
            self.ignored.append(f"{field}: {value} ({what}, not used: pass --trust-bundle to use it)")
            return None
        if not inside and self.host_files != ALLOW:
            raise self.w.error(node, field, f"{resolved} is outside the scenario's folder {self.base}; "
                                            "pass --allow-host-files to let a scenario read host files")  # fmt: skip
        # The link's own name counts (libvirglrenderer.so.1), so not the resolved path.
        return self.base / value

    # --- the stages, one field each ----------------------------------------------------------
    def kernel(self, node: yaml.Node) -> tuple[str | None, Source | None]:
        w = self.w
        km = keys(w, node, "kernel", {"flavour", "image"})
        if "flavour" in km and "image" in km:
            raise w.error(node, "kernel", "give flavour or image, not both")
        flavour = optional(km, "flavour", lambda n: scalar(w, n, "kernel.flavour", str))
        if "image" not in km:
            return flavour, None
        inode = km["image"][1]
        image = self.host_file(inode, "kernel.image", scalar(w, inode, "kernel.image", str), "a kernel image")
        if image is None:
            return flavour, None
        if not image.resolve().is_file():
            raise w.error(inode, "kernel.image", f"{image.resolve()} does not exist or is not a file")
        return flavour, Source(PATH, paths=(("image", str(image.resolve())),))

    def machine(self, node: yaml.Node) -> tuple[MachineOptions, Source | None]:
        w = self.w
        mm = keys(w, node, "machine", {"display", "gpu_options", "host_env", "ring_wake", "host_vulkan"})
        host_vulkan = None
        if "host_vulkan" in mm:  # older scenarios: components: {host_vulkan: host} says it now
            value = scalar(w, mm["host_vulkan"][1], "machine.host_vulkan", str)
            if value not in ("lavapipe", HOST):
                raise w.error(mm["host_vulkan"][1], "machine.host_vulkan", "must be one of lavapipe, host")
            host_vulkan = Source(HOST) if value == HOST else None
        machine = MachineOptions(
            display=optional(mm, "display", lambda n: scalar(w, n, "machine.display", str)),
            gpu_options=optional(mm, "gpu_options", lambda n: scalar(w, n, "machine.gpu_options", str)),
            host_env=tuple(sorted(optional(mm, "host_env", lambda n: str_map(w, n, "machine.host_env"), {}).items())),
            ring_wake=optional(mm, "ring_wake", lambda n: scalar(w, n, "machine.ring_wake", bool), True),
        )
        return machine, host_vulkan

    def files(self, node: yaml.Node) -> list[tuple[Path, str]]:
        w = self.w
        if not isinstance(node, yaml.SequenceNode):
            raise w.error(node, "files", "must be a list")
        files = []
        for i, item in enumerate(node.value):
            fm = keys(w, item, f"files[{i}]", {"src", "dest"}, {"src", "dest"})
            dest = scalar(w, fm["dest"][1], f"files[{i}].dest", str)
            if not WORD.fullmatch(dest):
                raise w.error(fm["dest"][1], f"files[{i}].dest", "must be a plain file name")
            value = scalar(w, fm["src"][1], f"files[{i}].src", str)
            if self.host_files == DROP and value == f"files/{dest}":
                src: Path | None = (self.base / value).resolve()  # a replayed bundle's own copy, beside its scenario: data
            else:
                src = self.host_file(fm["src"][1], f"files[{i}].src", value, "a host file")
            if src is None:
                continue
            src = src.resolve()
            if not src.is_file():
                raise w.error(fm["src"][1], f"files[{i}].src", f"{src} does not exist or is not a file")
            if src.stat().st_size > protocol.EXCHANGE_SIZE:
                raise w.error(fm["src"][1], f"files[{i}].src", f"{src} is larger than the {protocol.EXCHANGE_SIZE >> 20} MiB exchange disk")
            files.append((src, dest))
        return files

    def packages(self, node: yaml.Node) -> list[str]:
        packages = str_list(self.w, node, "guest_packages")
        for i, pkg in enumerate(packages):
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", pkg):
                raise self.w.error(node, f"guest_packages[{i}]", f"'{pkg}' is not a Debian package name")
        return packages

    def steps(self, node: yaml.Node) -> list[steps.Step]:
        w = self.w
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise w.error(node, "steps", "must be a non-empty list")
        out, seen = [], set()
        for i, item in enumerate(node.value):
            field = f"steps[{i}]"
            step = steps.parse(w, item, field)
            if isinstance(step, steps.ProgramStep) and step.compare_host is not None and self.host_programs != ALLOW:
                if self.host_programs == DROP:
                    self.ignored.append(f"{field}.compare_host (runs the command on this machine; not used: pass --trust-bundle to use it)")
                    step = dataclasses.replace(step, compare_host=None)
                else:
                    at = next(k for k, _ in item.value if k.value == "compare_host")
                    raise w.error(at, f"{field}.compare_host",
                                  "runs the step's command on this machine too: pass --allow-host-programs to let a scenario do that")  # fmt: skip
            if step.name in seen:
                raise w.error(item, field, f"a step named '{step.name}' comes twice")
            seen.add(step.name)
            out.append(step)
        return out

    def findings(self, node: yaml.Node) -> list[str]:
        from .diagnose import rules

        known = {r["id"] for r in rules()}
        findings = str_list(self.w, node, "expect_findings")
        for f in findings:
            if f not in known:
                raise self.w.error(node, "expect_findings", f"unknown finding '{f}'")
        return findings


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
    r = _Reader(text, path, host_files, host_programs)
    w = r.w
    m = keys(w, r.root, "", FIELDS, {"name", "steps"})
    name = scalar(w, m["name"][1], "name", str)
    flavour, image = optional(m, "kernel", r.kernel, (None, None))
    machine, host_vulkan = optional(m, "machine", r.machine, (MachineOptions(), None))
    sources: dict[str, Source] = {}
    if "components" in m:
        sources = registry.parse_components(w, m["components"][1], r.host_file)
    if host_vulkan is not None:
        sources.setdefault("host_vulkan", host_vulkan)
    if image is not None:
        if "guest_kernel" in sources:
            raise w.error(m["kernel"][1], "kernel.image", "components.guest_kernel names the kernel too: give one")
        sources["guest_kernel"] = image
    if "guest_kernel" in sources and flavour is not None:
        raise w.error(m["kernel"][1], "kernel.flavour", "components.guest_kernel names the kernel: a flavour does not apply")
    packages = optional(m, "guest_packages", r.packages, [])
    page = optional(m, "page_size", lambda n: scalar(w, n, "page_size", int))
    if page is not None and page not in (4096, 16384, 65536):
        raise w.error(m["page_size"][1], "page_size", "must be 4096, 16384 or 65536")
    validation = optional(m, "validation", lambda n: scalar(w, n, "validation", bool), False)
    if validation and VALIDATION_PACKAGE not in packages:
        raise w.error(m["validation"][1], "validation", f"needs the layer in the guest: add {VALIDATION_PACKAGE} to guest_packages")
    return Scenario(
        name=name, path=path, text=text,
        profile=optional(m, "profile", lambda n: scalar(w, n, "profile", str), DEFAULT_PROFILE),
        steps=tuple(r.steps(m["steps"][1])), kernel_flavour=flavour, page_size=page, machine=machine,
        sources=tuple(sorted(sources.items())), files=tuple(optional(m, "files", r.files, [])),
        guest_packages=tuple(packages), expect_findings=tuple(optional(m, "expect_findings", r.findings, [])),
        validation=validation, ignored=tuple(r.ignored),
        locked=frozenset(n for n, s in sources.items() if s.kind == registry.SUITE),
        description=optional(m, "description", lambda n: scalar(w, n, "description", str), ""),
    )  # fmt: skip


def dump(sc: Scenario) -> str:
    """The scenario as YAML that ``parse`` reads back: what a run executed, overrides applied.

    Host files are named by where ``save`` copies them (``files/<dest>``
    beside the written scenario), so the written scenario travels with them.
    """
    doc: dict = {"name": sc.name}
    if sc.description:
        doc["description"] = sc.description
    doc["profile"] = sc.profile
    if sc.kernel_image is not None:
        doc["kernel"] = {"image": str(sc.kernel_image)}
    elif sc.kernel_flavour:
        doc["kernel"] = {"flavour": sc.kernel_flavour}
    if sc.page_size:
        doc["page_size"] = sc.page_size
    m = sc.machine
    machine: dict = {k: v for k, v in (("display", m.display), ("gpu_options", m.gpu_options)) if v}
    if m.host_env:
        machine["host_env"] = dict(m.host_env)
    if not m.ring_wake:
        machine["ring_wake"] = False
    if machine:
        doc["machine"] = machine
    components = {name: src.dump(registry.spec(name)) for name, src in sc.sources if not (name == "guest_kernel" and src.kind == PATH)}
    if components:
        doc["components"] = components
    if sc.files:
        doc["files"] = [{"src": f"files/{dest}", "dest": dest} for _, dest in sc.files]
    if sc.guest_packages:
        doc["guest_packages"] = list(sc.guest_packages)  # pinned in scenario.lock.json beside it
    doc["steps"] = [step.dump() for step in sc.steps]
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
