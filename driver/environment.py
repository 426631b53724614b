"""The environment of a run: everything it needs except its steps.

    Environment        frozen; resolved: every package pinned
      profile          the profile (its qemu options, page size, guest modules, drop list)
      kernel_flavour   the profile's pinned kernel flavour (or a component source gives the kernel)
      page_size        the page size the verdict requires
      machine          display, gpu_options, host_env, ring_wake
      sources          {component: Source}   components not taken from the profile as it is
      guest_packages   a scenario's extra guest packages
      layers           {host, guest, kernel, guest_extra: pins}   what is unpacked

A scenario (and the command line) says where things come from; ``resolve``
turns that into pins: the profile's lock, a scenario's lock beside it, and for a
component from another suite (``{suite: forky}``), that suite's packages mixed
into the profile's layer so that every package relation holds (see
provision/debian.py). The result is written into every run directory
(``environment.json``), so a run, a bundle of it and a bisect candidate are the
same thing: an environment that can be provisioned again exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from . import log, registry
from .errors import PinError, ProvisionError, UsageError
from .profile import Profile, QemuOptions, host_debian_arch
from .provision.apt import Pin
from .registry import BUILD, COMPONENTS, HOST, MIXED, PATH, PROFILE, SUITE, ComponentSpec, Source

FORMAT = 1
GUEST_EXTRA = "guest_extra"


@dataclasses.dataclass(frozen=True)
class MachineOptions:
    """How QEMU is started, beyond the profile's machine (``machine:`` of a scenario)."""

    display: str | None = None
    gpu_options: str | None = None
    host_env: tuple[tuple[str, str], ...] = ()
    ring_wake: bool = True

    @property
    def env(self) -> dict[str, str]:
        return dict(self.host_env)


@dataclasses.dataclass(frozen=True)
class Environment:
    profile: Profile
    kernel_flavour: str | None = None
    page_size: int | None = None  # the requirement; None: the profile's
    machine: MachineOptions = MachineOptions()
    sources: tuple[tuple[str, Source], ...] = ()
    guest_packages: tuple[str, ...] = ()
    layers: tuple[tuple[str, tuple[Pin, ...]], ...] | None = None  # None: not resolved yet

    # --- reading ---------------------------------------------------------------------------
    def source(self, name: str) -> Source:
        return dict(self.sources).get(name, Source(PROFILE))

    def layer(self, name: str) -> tuple[Pin, ...]:
        assert self.layers is not None, "resolve() the environment first"
        return dict(self.layers).get(name, ())

    @property
    def required_page_size(self) -> int:
        return self.page_size or self.profile.page_size

    @property
    def kernel_image(self) -> Path | None:
        return self.source("guest_kernel").path("image")

    def component_pins(self, c: ComponentSpec) -> list[Pin]:
        """The pins of component ``c`` in this environment's layers."""
        if c.layer is None or self.layers is None:
            return []
        return pins_of(c, self.layer(c.layer))

    def version(self, c: ComponentSpec) -> str:
        pins = {p.name: p for p in self.component_pins(c)}
        main = next((pins[n] for n in c.version_packages if n in pins), None)
        if main is not None:
            return main.version
        if c.layer == "kernel" and pins:
            image = next((p for p in pins.values() if p.name.startswith(("linux-image-", "linux-binary-"))), next(iter(pins.values())))
            return image.version
        return "?"

    def suites(self, c: ComponentSpec) -> list[str]:
        return sorted({p.suite for p in self.component_pins(c) if p.suite})

    def describe(self, c: ComponentSpec) -> tuple[str, str | None]:
        """(source kind, detail): where component ``c`` comes from in this run."""
        src = self.source(c.name)
        if src.kind in (PATH, BUILD, HOST):
            return src.kind, src.describe()
        suites = self.suites(c)
        if src.kind == SUITE:
            return SUITE, src.suite
        if len(suites) > 1:
            return MIXED, "+".join(suites)
        if suites and suites[0] != self.profile.suite:
            return SUITE, suites[0]
        return PROFILE, suites[0] if suites else None

    # --- changing ---------------------------------------------------------------------------
    def with_sources(self, **sources: Source) -> "Environment":
        merged = {**dict(self.sources), **sources}
        return dataclasses.replace(self, sources=tuple(sorted((k, v) for k, v in merged.items() if v.kind != PROFILE)))

    def with_layers(self, **layers: tuple[Pin, ...]) -> "Environment":
        merged = {**dict(self.layers or ()), **{k: tuple(sorted(v)) for k, v in layers.items()}}
        return dataclasses.replace(self, layers=tuple(sorted(merged.items())))

    # --- identity -----------------------------------------------------------------------------
    def to_json(self) -> dict:
        p = self.profile
        return {
            "format": FORMAT,
            "profile": {
                "name": p.name, "ref": p.ref, "suite": p.suite, "page_size": p.page_size, "guest_arch": p.guest_arch,
                "guest_drop": list(p.guest_drop), "guest_modules": list(p.guest_modules), "kernels": dict(p.kernels),
                "default_kernel": p.default_kernel, "qemu": dataclasses.asdict(p.qemu),
                **({"manifest": str(p.manifest)} if p.manifest is not None else {}),
            },
            "kernel_flavour": self.kernel_flavour,
            "page_size": self.page_size,
            "machine": {**dataclasses.asdict(self.machine), "host_env": dict(self.machine.host_env)},
            "sources": {k: v.as_dict() for k, v in self.sources},
            "guest_packages": list(self.guest_packages),
            "layers": {k: [p.as_dict() for p in v] for k, v in (self.layers or ())} if self.layers is not None else None,
        }  # fmt: skip

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    @property
    def pins_digest(self) -> str:
        """sha256 of what pins the components: every layer's packages (the lock's part of the environment)."""
        layers = {k: [p.as_dict() for p in v] for k, v in (self.layers or ())}
        return hashlib.sha256(json.dumps(layers, sort_keys=True).encode()).hexdigest()

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def from_json(cls, doc, where: str, profile: Profile | None = None) -> "Environment":
        """An environment as a run recorded it (data: it may come from someone else's bundle)."""
        try:
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"format must be {FORMAT}")
            prof = profile or _recorded_profile(doc["profile"])
            m = doc.get("machine") or {}
            machine = MachineOptions(
                display=_opt_str(m.get("display")), gpu_options=_opt_str(m.get("gpu_options")),
                host_env=tuple(sorted((str(k), str(v)) for k, v in (m.get("host_env") or {}).items())),
                ring_wake=bool(m.get("ring_wake", True)),
            )  # fmt: skip
            sources = tuple(sorted((str(k), Source.from_dict(v)) for k, v in (doc.get("sources") or {}).items()))
            for name, src in sources:
                registry.spec(name)
                if src.kind not in registry.spec(name).sources:
                    raise ValueError(f"{name} cannot come from a {src.kind}")
            layers = doc.get("layers")
            if layers is not None:
                layers = tuple(sorted((str(k), tuple(sorted(Pin.from_dict(p) for p in v))) for k, v in layers.items()))
                bad = [k for k, _ in layers if k not in (*registry.LAYERS, GUEST_EXTRA)]
                if bad:
                    raise ValueError(f"unknown layer {bad[0]}")
            page = doc.get("page_size")
            if page not in (None, 4096, 16384, 65536):
                raise ValueError("page_size must be 4096, 16384 or 65536")
            return cls(prof, _opt_str(doc.get("kernel_flavour")), page, machine, sources,
                       tuple(str(x) for x in doc.get("guest_packages") or ()), layers)  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError, UsageError, PinError) as exc:
            raise UsageError(f"{where}: not an environment venus-repro can use ({exc})") from None

    @classmethod
    def load(cls, path: Path) -> "Environment":
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: cannot read the environment ({exc})") from None
        return cls.from_json(doc, str(path))


def _opt_str(v) -> str | None:
    if v is not None and not isinstance(v, str):
        raise ValueError(f"{v!r} is not text")
    return v


def _recorded_profile(d: dict) -> Profile:
    """The profile as a run recorded it: a built-in by name where this venus-repro has it, else as recorded."""
    from . import profile as profiles

    if d.get("manifest"):
        # A nix-profile run: its components are the manifest's store paths, which must still be there.
        from .provision import manifest

        return manifest.profile(Path(str(d["manifest"])))
    q = d["qemu"]
    if d["guest_arch"] not in profiles.ARCHES:
        raise ValueError(f"guest_arch {d['guest_arch']!r} is not one of {', '.join(profiles.ARCHES)}")
    recorded = dict(
        name=str(d["name"]), description="(as recorded by the run)", suite=str(d["suite"]), lock_path=Path("/nonexistent"),
        page_size=int(d["page_size"]), host_packages=(), guest_arch=str(d["guest_arch"]), guest_packages=(),
        guest_drop=tuple(str(x) for x in d["guest_drop"]), kernels={str(k): str(v) for k, v in d["kernels"].items()},
        default_kernel=str(d["default_kernel"]), guest_modules=tuple(str(x) for x in d["guest_modules"]),
        qemu=QemuOptions(**{k: (int(v) if k == "smp" else str(v)) for k, v in q.items()}),
    )  # fmt: skip
    if d["name"] in profiles.available() and d["name"] != profiles.NIX:
        built_in = profiles.load(d["name"])
        # The built-in's lock, tools and requests; the recorded machine and guest recipe.
        return dataclasses.replace(built_in, **{k: v for k, v in recorded.items() if k not in ("description", "lock_path", "host_packages", "guest_packages")})
    return Profile(**recorded)


# --- resolving a declared environment into pins --------------------------------------------------


def _packages(pins: list[Pin], fields_of) -> dict:
    from .provision.debian import Package

    return {p.name: Package.from_fields(fields_of(p)) for p in pins}


def mix_pins(base: list[Pin], other: list[Pin], seeds: set[str], fields_of, what: str, exact: bool = False) -> list[Pin]:
    """``base`` with ``seeds`` (and, unless ``exact``, what their relations need) taken from ``other``."""
    from .provision import debian

    by_other = {p.name: p for p in other}
    if exact:
        take, drop = set(seeds), set()
    else:
        take, drop = debian.mix(_packages(base, fields_of), _packages(other, fields_of), seeds, what)
    kept = [p for p in base if p.name not in take and p.name not in drop]
    return sorted(kept + [by_other[n] for n in take])


def seeds_of(c: ComponentSpec, other: list[Pin]) -> set[str]:
    return {p.name for p in pins_of(c, other)}


def pins_of(c: ComponentSpec, pins) -> list[Pin]:
    """Component ``c``'s share of a layer: the packages built from its Debian sources (a base: the rest)."""
    if c.debian_sources is not None:
        return [p for p in pins if p.source in c.debian_sources]
    claimed = {s for other in COMPONENTS if other.layer == c.layer and other.debian_sources for s in other.debian_sources}
    return [p for p in pins if p.source not in claimed]


@dataclasses.dataclass(frozen=True)
class Pinning:
    """Where a scenario's own pins are: its lock file, the scenario, the components that lock must hold."""

    lock_path: Path | None = None
    scenario_path: Path | None = None
    locked: frozenset[str] = frozenset()


def base_layers(env: Environment, lk) -> dict[str, tuple[Pin, ...]]:
    """The profile's own layers, from its lock."""
    profile = env.profile
    layers = {
        "host": tuple(lk.pins(f"host-{host_debian_arch()}")),
        "guest": tuple(lk.pins(f"guest-{profile.guest_arch}")),
    }
    if env.kernel_image is None:
        layers["kernel"] = tuple(lk.pins(f"kernel-{profile.kernel_flavour(env.kernel_flavour)}"))
    return layers


def resolve(env: Environment, prov, pinning: Pinning = Pinning()) -> Environment:
    """``env`` with every layer pinned: the profile's lock, the scenario's lock, other suites mixed in.

    ``prov`` is the Provisioner (its lock and cache). A component from another
    suite is pinned in the scenario's lock (``venus-repro lock --scenario``) when
    the scenario file names it (``pinning.locked``); the profile's own lock pins
    its GPU virglrenderer (``gpu_renderer``); given on the command line only, it
    is resolved now, and the run directory's environment.json records what it became.
    """
    from .provision import lock as locks

    if env.layers is not None:
        return env
    profile, lk = env.profile, prov.lock
    layers = base_layers(env, lk)
    if env.guest_packages:
        layers[GUEST_EXTRA] = tuple(locks.extra_guest_pins(profile, lk, env.guest_packages, pinning.lock_path, pinning.scenario_path))
    out = dataclasses.replace(env, kernel_flavour=profile.kernel_flavour(env.kernel_flavour), layers=tuple(sorted(layers.items())))
    for name, src in env.sources:
        c = registry.spec(name)
        if src.kind != SUITE:
            continue
        base = list(out.layer(c.layer))
        if profile.gpu_renderer is not None and name == "virglrenderer" and (src.suite, src.exact) == (profile.gpu_renderer[0], True):
            other = lk.pins(f"gpu-renderer-{host_debian_arch()}")
            pinned = mix_pins(base, other, {p.name for p in other}, prov.control, f"the {src.suite} virglrenderer", exact=True)
        elif name in pinning.locked:
            pinned = locks.component_pins(profile, pinning.lock_path, pinning.scenario_path, name, src.as_dict(), c.layer, base)
        else:
            log.info(f"{name} from {src.suite}: resolving it now (a scenario pins it: `venus-repro lock --scenario FILE`)")
            pinned = suite_layer(out, c, src, prov)
        out = out.with_layers(**{c.layer: tuple(pinned)})
    return out


def pin_scenario(env: Environment, prov, pinning: Pinning) -> list[tuple[str, str, str, str]]:
    """Resolve a scenario's own pins now (its guest packages, its components from other suites) into its lock."""
    from .provision import lock as locks

    profile, lk = env.profile, prov.lock
    extra = locks.resolve_extra(profile, lk, env.guest_packages, prov.repo(profile.guest_arch)) if env.guest_packages else []
    layers = base_layers(env, lk)
    out = dataclasses.replace(env, kernel_flavour=profile.kernel_flavour(env.kernel_flavour), layers=tuple(sorted(layers.items())))
    entries = {}
    for name, src in env.sources:
        if src.kind != SUITE or name not in pinning.locked:
            continue
        c = registry.spec(name)
        base = list(out.layer(c.layer))
        pinned = suite_layer(out, c, src, prov)
        entries[name] = locks.component_entry(src.as_dict(), c.layer, base, pinned)
        out = out.with_layers(**{c.layer: tuple(pinned)})
    return locks.write_scenario_lock(pinning.lock_path, profile, lk, env.guest_packages, extra, entries)


def suite_layer(env: Environment, c: ComponentSpec, src: Source, prov) -> list[Pin]:
    """Component ``c``'s layer with its packages from suite ``src.suite`` mixed in (apt resolves that suite)."""
    profile = env.profile
    arch = host_debian_arch() if c.layer == "host" else profile.guest_arch
    repo = prov.repo(arch, src.suite)
    requested = {"host": profile.host_packages, "guest": profile.guest_packages}
    with log.nested(f"resolving {c.name} from {src.suite} ({arch})"):
        if c.layer == "kernel":
            return repo.resolve((profile.kernels[profile.kernel_flavour(env.kernel_flavour)],), False)
        other = repo.resolve(requested[c.layer], True)
        seeds = seeds_of(c, other)
        if not seeds:
            raise ProvisionError(f"{c.name}: {src.suite} has none of its packages ({', '.join(c.debian_sources or ())})")

        def fields_of(pin: Pin) -> dict[str, str]:
            return repo.fields.get(pin.sha256) or prov.control(pin)

        mixed = mix_pins(list(env.layer(c.layer)), other, seeds, fields_of, f"{c.name} from {src.suite} in the {profile.suite} {c.layer}", src.exact)
        came = sorted(p.name for p in mixed if p.suite == src.suite)
        log.info(f"{len(came)} packages from {src.suite}: {', '.join(came[:12])}{' …' if len(came) > 12 else ''}")
        return mixed
