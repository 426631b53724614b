"""The component registry: every layer of the stack, said once.

A run's environment is made of these components. Each entry names, once:

* its scenario key (``components: {<key>: …}``) and its command-line flags;
* where it can come from (``sources``): the profile's pins (``profile``), the
  pins of another Debian suite (``suite``: resolved, mixed into the profile's
  layer so that every package relation holds, and pinned), a build from your
  source tree (``build``), your own files (``path``), the host's own driver
  (``host``), a Nix store path (``manifest``);
* how it enters the run: through a pinned package layer (``layer``: the host
  root, the guest's initramfs, the guest kernel), and for a build or a path,
  the files bound over the layer's or put into the initramfs (``parts``);
* which of its packages are its own: those built from its Debian source
  packages (``debian_sources``); a base component (``debian_sources=None``)
  takes what no other component of its layer claims;
* whether a bundle from someone else may set it without ``--trust-bundle``
  (``safe_sources``: pins are data, checked by sha256; a path or a build runs
  code the bundle names).

CLI flags, scenario keys, overrides, ``dump``, the fingerprint, carry,
compare and bisect all iterate over ``COMPONENTS``; a new component is one
entry here plus its provisioning code.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from .errors import UsageError
from .yamlread import Where, keys, mapping, scalar, str_list

PROFILE, SUITE, BUILD, PATH, HOST, MANIFEST, MIXED = "profile", "suite", "build", "path", "host", "manifest", "mixed"
LAYERS = ("host", "guest", "kernel")


@dataclasses.dataclass(frozen=True)
class Part:
    """One file a ``path`` source gives (the component may have several)."""

    name: str
    flag: str  # the command-line flag (``--render-server``)
    what: str  # for --help and errors
    soname: str | None = None  # the file must carry this name (the link QEMU loads)

    @property
    def key(self) -> str:
        """Its name among the files a run binds over the host root (machine.StartCommand's overrides)."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
    name: str
    title: str
    side: str  # host or guest
    layer: str | None  # the pinned package layer it lives in (None: not a package component)
    debian_sources: tuple[str, ...] | None  # its packages: built from these Debian sources (None: the rest)
    sources: tuple[str, ...]
    parts: tuple[Part, ...] = ()
    build: str | None = None  # the builder of a ``build`` source (provision/build.py)
    safe_sources: tuple[str, ...] = (PROFILE, SUITE, MIXED, MANIFEST)
    # The package whose version names the component (the first of these the layer has).
    version_packages: tuple[str, ...] = ()

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)


COMPONENTS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "qemu", "host QEMU", "host", "host", ("qemu",), (PROFILE, SUITE, BUILD, PATH, MANIFEST),
        parts=(Part("binary", "--qemu", "a qemu-system-aarch64 (or, for an amd64 guest, qemu-system-x86_64) binary"),), build="qemu",
        version_packages=("qemu-system-arm", "qemu-system-x86"),
    ),
    ComponentSpec(
        "virglrenderer", "host virglrenderer and render server", "host", "host", ("virglrenderer",),
        (PROFILE, SUITE, BUILD, PATH, MANIFEST),
        parts=(Part("library", "--virglrenderer", "a libvirglrenderer.so.1 (e.g. your own build)", soname="libvirglrenderer.so.1"),
               Part("render_server", "--render-server", "a virgl_render_server")),  # fmt: skip
        build="virglrenderer", version_packages=("libvirglrenderer1",),
    ),
    ComponentSpec(
        "host_vulkan", "host Vulkan driver", "host", "host", ("mesa",), (PROFILE, SUITE, HOST, PATH, MANIFEST),
        parts=(Part("icd", "--vulkan-icd", "a host Vulkan ICD JSON"),), version_packages=("mesa-vulkan-drivers",),
    ),
    ComponentSpec("host_base", "host userland", "host", "host", None, (PROFILE, SUITE, MANIFEST), version_packages=("libc6",)),
    ComponentSpec(
        "guest_kernel", "guest kernel", "guest", "kernel", None, (PROFILE, SUITE, PATH, MANIFEST),
        parts=(Part("image", "--kernel", "a kernel image for the guest (an arm64 Image or an x86 bzImage; virtio-gpu built in)"),),
    ),
    ComponentSpec(
        "guest_mesa", "guest Mesa (the Venus ICD)", "guest", "guest", ("mesa",), (PROFILE, SUITE, BUILD, MANIFEST),
        build="mesa", version_packages=("mesa-vulkan-drivers",),
    ),
    ComponentSpec("guest_base", "guest userland", "guest", "guest", None, (PROFILE, SUITE, MANIFEST), version_packages=("libc6",)),
)
BY_NAME = {c.name: c for c in COMPONENTS}
# Older scenario keys for one part of a component (``render_server: path``).
PART_ALIASES = {"render_server": ("virglrenderer", "render_server"), "vulkan_icd": ("host_vulkan", "icd")}


def spec(name: str) -> ComponentSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UsageError(f"unknown component '{name}' (components: {', '.join(BY_NAME)})") from None


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one component comes from."""

    kind: str  # profile, suite, mixed, build, path, host, manifest
    suite: str | None = None  # suite: the Debian suite
    exact: bool = False  # suite: exactly the component's packages (what they need from the layer as it is)
    paths: tuple[tuple[str, str], ...] = ()  # path: (part, host path); build: (("tree", source),)
    options: tuple[str, ...] = ()  # build: the builder's options

    def path(self, part: str) -> Path | None:
        return next((Path(p) for n, p in self.paths if n == part), None)

    def describe(self) -> str:
        if self.kind == SUITE:
            return f"suite {self.suite}" + (" (exactly its packages)" if self.exact else "")
        if self.kind == BUILD:
            return f"build of {self.path('tree')}" + (f" ({' '.join(self.options)})" if self.options else "")
        if self.kind == PATH:
            return ", ".join(f"{n} {p}" for n, p in self.paths)
        return self.kind

    def dump(self, component: ComponentSpec):
        """The scenario YAML for this source (``parse_source`` reads it back)."""
        if self.kind == PATH and len(self.paths) == 1 and self.paths[0][0] == component.parts[0].name:
            return self.paths[0][1]
        if self.kind == PATH:
            return dict(self.paths)
        if self.kind == SUITE:
            return {"suite": self.suite, **({"exact": True} if self.exact else {})}
        if self.kind == BUILD:
            return {"build": self.path("tree") and str(self.path("tree")), **({"options": list(self.options)} if self.options else {})}
        return self.kind

    def as_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, False, (), [])}

    @classmethod
    def from_dict(cls, d: dict) -> "Source":
        return cls(
            kind=str(d["kind"]), suite=d.get("suite"), exact=bool(d.get("exact", False)),
            paths=tuple((str(a), str(b)) for a, b in d.get("paths", ())), options=tuple(str(o) for o in d.get("options", ())),
        )  # fmt: skip


def check_part(component: ComponentSpec, part: Part, path: Path) -> Path:
    """A file given for ``part`` must exist (and, for the library, carry the name QEMU links)."""
    # Absolute but not resolved: a build tree's libvirglrenderer.so.1 is a link
    # to libvirglrenderer.so.1.x.y, and the link's name is what QEMU looks for.
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file")
    if part.soname and path.name != part.soname:
        raise UsageError(f"{path}: the {component.name} {part.name} must be named {part.soname} (QEMU links that soname)")
    return path


def parse_components(w: Where, node: yaml.Node, host_file) -> dict[str, Source]:
    """``components:`` of a scenario: {component: Source}; ``host_file`` resolves a named host path (or drops it).

    Each value is a path (the component's first part), ``{part: path, …}``,
    ``{suite: forky[, exact: true]}``, ``{build: SOURCE[, options: […]]}``, or
    ``host`` (host_vulkan: the host's own GPU driver). ``host_file`` drops what
    a replayed bundle may not name (and says so).
    """
    if not isinstance(node, yaml.MappingNode):
        raise w.error(node, "components", "must be a mapping")
    out: dict[str, Source] = {}
    paths: dict[str, dict[str, str]] = {}
    for key, (knode, vnode) in mapping(node, w, "components").items():
        field = f"components.{key}"
        if key in PART_ALIASES:
            name, part = PART_ALIASES[key]
            value = host_file(vnode, field, scalar(w, vnode, field, str), "a host program")
            if value is not None:
                paths.setdefault(name, {})[part] = _checked(w, vnode, field, BY_NAME[name], part, value)
            continue
        if key not in BY_NAME:
            raise w.error(knode, field, f"unknown component (components: {', '.join([*BY_NAME, *PART_ALIASES])})")
        c = BY_NAME[key]
        source = _parse_source(w, vnode, field, c, host_file, paths)
        if source is not None:
            out[key] = source
    for name, parts in paths.items():
        if name in out and out[name].kind != PATH:
            raise w.error(node, f"components.{name}", f"give its files or a {out[name].kind} source, not both")
        c = BY_NAME[name]
        merged = {**dict(out[name].paths if name in out else ()), **parts}
        out[name] = Source(PATH, paths=tuple((p.name, merged[p.name]) for p in c.parts if p.name in merged))
    return out


def _checked(w: Where, node, field: str, c: ComponentSpec, part: str, path: Path) -> str:
    try:
        return str(check_part(c, c.part(part), path))
    except UsageError as exc:
        raise w.error(node, field, str(exc)) from None


def _parse_source(w: Where, node: yaml.Node, field: str, c: ComponentSpec, host_file, paths: dict) -> Source | None:
    def allowed(kind: str, at) -> None:
        if kind not in c.sources:
            raise w.error(at, field, f"{c.name} cannot come from a {kind} (it can from: {', '.join(s for s in c.sources if s != MANIFEST)})")

    if isinstance(node, yaml.ScalarNode):
        value = scalar(w, node, field, str)
        if value in (PROFILE, HOST):
            allowed(value, node)
            return Source(value)
        allowed(PATH, node)
        if not c.parts:
            raise w.error(node, field, f"{c.name} has no files to give")
        where = host_file(node, field, value, "a host program")
        if where is not None:
            paths.setdefault(c.name, {})[c.parts[0].name] = _checked(w, node, field, c, c.parts[0].name, where)
        return None
    m = keys(w, node, field, {"suite", "exact", "build", "options", *(p.name for p in c.parts)})
    if "suite" in m:
        allowed(SUITE, node)
        suite = scalar(w, m["suite"][1], f"{field}.suite", str)
        if not suite.replace("-", "").isalnum():
            raise w.error(m["suite"][1], f"{field}.suite", "must be a Debian suite name (trixie, forky, sid, …)")
        exact = scalar(w, m["exact"][1], f"{field}.exact", bool) if "exact" in m else False
        if set(m) - {"suite", "exact"}:
            raise w.error(node, field, "a suite source takes suite and exact only")
        return Source(SUITE, suite=suite, exact=exact)
    if "build" in m:
        allowed(BUILD, node)
        if set(m) - {"build", "options"}:
            raise w.error(node, field, "a build source takes build and options only")
        tree = host_file(m["build"][1], f"{field}.build", scalar(w, m["build"][1], f"{field}.build", str), "a source tree to build")
        options = tuple(str_list(w, m["options"][1], f"{field}.options")) if "options" in m else ()
        if tree is None:
            return None
        if not Path(tree).exists():
            raise w.error(m["build"][1], f"{field}.build", f"{tree} does not exist")
        return Source(BUILD, paths=(("tree", str(tree)),), options=options)
    allowed(PATH, node)
    for part, (_, pnode) in m.items():
        if part in ("exact", "options"):
            raise w.error(pnode, f"{field}.{part}", "belongs to a suite or build source")
        where = host_file(pnode, f"{field}.{part}", scalar(w, pnode, f"{field}.{part}", str), "a host program")
        if where is not None:
            paths.setdefault(c.name, {})[part] = _checked(w, pnode, f"{field}.{part}", c, part, where)
    return None


def parse_cli(items: list[str]) -> dict[str, Source]:
    """``--component NAME=SPEC`` (repeatable): ``suite:forky``, ``suite:forky:exact``, ``build:TREE``, ``host``, ``profile``."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--component takes NAME=SOURCE (e.g. guest_mesa=suite:forky), got '{item}'")
        c = spec(name)
        kind, _, rest = value.partition(":")
        if kind not in c.sources or kind == MANIFEST:
            raise UsageError(f"--component {item}: {name} can come from {', '.join(s for s in c.sources if s != MANIFEST)}")
        if kind == SUITE:
            suite, _, flag = rest.partition(":")
            if not suite or flag not in ("", "exact"):
                raise UsageError(f"--component {item}: give suite:SUITE or suite:SUITE:exact")
            out[name] = Source(SUITE, suite=suite, exact=flag == "exact")
        elif kind == BUILD:
            if not rest or not Path(rest).exists():
                raise UsageError(f"--component {item}: {rest or 'the source'} does not exist")
            out[name] = Source(BUILD, paths=(("tree", str(Path(rest).resolve())),))
        elif kind == PATH:
            if not c.parts:
                raise UsageError(f"--component {item}: {name} has no files to give")
            out[name] = Source(PATH, paths=((c.parts[0].name, str(check_part(c, c.parts[0], Path(rest)))),))
        else:
            out[name] = Source(kind)
    return out


def from_flags(args) -> dict[str, Source]:
    """The component files the command line gives (``--qemu``, ``--virglrenderer``, …), as path sources."""
    out: dict[str, Source] = {}
    for c in COMPONENTS:
        given = []
        for part in c.parts:
            value = getattr(args, part.key, None)
            if value is not None and part.key != "kernel":
                given.append((part.name, str(check_part(c, part, Path(value)))))
        if given:
            out[c.name] = Source(PATH, paths=tuple(given))
    return out


def add_flags(p) -> None:
    """The component files as command-line flags (the kernel has its own, with --kernel-flavour)."""
    for c in COMPONENTS:
        for part in c.parts:
            if part.key != "kernel":
                p.add_argument(part.flag, type=Path, metavar="PATH", help=f"use {part.what} instead of the profile's ({c.title})")
    p.add_argument(
        "--component", action="append", default=[], metavar="NAME=SOURCE",
        help="take a component from elsewhere: NAME=suite:SUITE (another Debian suite's packages, mixed in), "
        "suite:SUITE:exact, build:SOURCE_TREE, host (host_vulkan), profile; components: " + ", ".join(BY_NAME),
    )  # fmt: skip
