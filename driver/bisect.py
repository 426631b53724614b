"""``venus-repro bisect``: which difference between two environments breaks a run, proven by runs.

    venus-repro bisect GOOD BAD [--steps SCENARIO] [--tries N] [--json] [--run-dir DIR]

GOOD and BAD are environments: a run directory (its environment.json), a
bundle, or a scenario file. The steps are BAD's unless ``--steps`` names others.

1. The endpoints are verified: GOOD must pass and BAD must fail. As ktest's
   BISECT_TRIES: the first failure means bad, and only passes are repeated
   (``--tries``). Endpoints that don't hold end it (``not-reproduced``).
2. The differences are collected: every registry component whose pins differ
   (and inside a pinned layer, the packages), every component from a build or a
   path, every machine option and host variable, the page size required.
3. Delta debugging (ddmin) over them: each candidate is GOOD's environment with
   a subset of BAD's differences, mixed so that every package relation holds
   (provision/debian.py), run with the same steps. A candidate passes, fails
   with BAD's signature (its first failed check), or is untestable: it does not
   provision or mix, fails another way, or never reaches /init. Untestable is
   never blamed.
4. Inside a culprit that is a layer of packages, the same over its packages, to
   the package (with what its relations need).

Everything is written to the bisect directory as it happens (``bisect.json``,
one run directory per candidate), so an interrupted bisect run again with the
same ``--run-dir`` continues where it stopped and reuses its runs. The report
names the minimal set of differences, every run, the failure signature and a
reproducer: the environment that fails (GOOD + the culprit) beside the one
that passes, each runnable with ``venus-repro run SCENARIO --environment FILE``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from . import log, registry, scenario
from .environment import GUEST_EXTRA, Environment, MachineOptions, mix_pins, pins_of, resolve
from .errors import PinError, ProvisionError, UsageError, VenusReproError
from .profile import Profile
from .scenario import Scenario

FORMAT = 1
PASS, FAIL, UNTESTABLE = "pass", "fail", "untestable"
FOUND, NOT_REPRODUCED, INCONCLUSIVE = "found", "not-reproduced", "inconclusive"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    env: Environment
    scenario: Scenario
    where: str


@dataclasses.dataclass(frozen=True)
class Difference:
    """One way BAD differs from GOOD."""

    key: str  # what it is, for people and for the log: component:guest_mesa, machine.gpu_options, …
    kind: str  # packages | source | machine | profile
    good: str
    bad: str
    component: str | None = None
    layer: str | None = None
    packages: tuple[str, ...] = ()  # the names whose pins BAD has otherwise (packages)
    field: str | None = None  # machine / profile: the field

    def as_dict(self) -> dict:
        d = {"what": self.key, "kind": self.kind, "component": self.component, "good": self.good, "bad": self.bad}
        if self.packages:
            d["packages"] = list(self.packages)
        return d


# --- the endpoints ---------------------------------------------------------------------------------


def load_endpoint(arg: str, trust: bool, work: Path) -> Endpoint:
    """A run directory, a bundle (data: its paths and builds only with ``trust``) or a scenario file."""
    from . import bundle
    from .provision import Provisioner, load_profile
    from .run import ENVIRONMENT

    path = Path(arg)
    if path.is_dir():
        env_file = path / ENVIRONMENT
        if not env_file.is_file():
            raise UsageError(f"{path}: no {ENVIRONMENT} (a run from an older venus-repro, or not a run directory): run it again")
        return Endpoint(Environment.load(env_file), scenario.load(str(path / "scenario.yaml"), scenario.ALLOW, scenario.ALLOW), str(path))
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        folder = Path(tempfile.mkdtemp(prefix="bundle-", dir=work))
        original, profile_yaml = bundle.unpack(path, folder)
        policy = scenario.ALLOW if trust else scenario.DROP
        sc = scenario.load(str(original / "scenario.yaml"), policy, policy)
        if not (original / ENVIRONMENT).is_file():
            raise UsageError(f"{path}: the bundle has no {ENVIRONMENT} (made by an older venus-repro): bisect needs one")
        env = Environment.load(original / ENVIRONMENT)
        if not trust:
            sc, env = bundle.trusted_part(sc, env)
        return Endpoint(env, sc, str(path))
    if path.suffix in (".yaml", ".yml"):
        sc = scenario.load(arg)
        prof = load_profile(sc.profile)
        if prof.manifest is not None:
            raise UsageError(f"{arg}: bisect takes Debian-profile environments (for flake inputs: --nix)")
        with log.nested(f"resolving the environment of {path.name}"):
            env = resolve(sc.environment(prof), Provisioner(prof), sc.pinning(prof))
        return Endpoint(env, sc, str(path))
    raise UsageError(f"{arg}: not a run directory, a bundle (.tar.gz) or a scenario file (.yaml)")


# --- the differences ---------------------------------------------------------------------------------


def _pins_by_name(pins) -> dict:
    return {p.name: p for p in pins}


def _layer_differences(good: Environment, bad: Environment) -> list[Difference]:
    out = []
    for c in registry.COMPONENTS:
        if c.layer is None or good.source(c.name).kind in (registry.PATH, registry.BUILD, registry.HOST):
            continue
        if c.layer == "kernel" and (good.kernel_image or bad.kernel_image):
            continue  # a kernel image is a source difference
        g, b = _pins_by_name(pins_of(c, good.layer(c.layer))), _pins_by_name(pins_of(c, bad.layer(c.layer)))
        changed = tuple(sorted(n for n, p in b.items() if n not in g or (g[n].version, g[n].sha256) != (p.version, p.sha256)))
        if changed:
            out.append(Difference(f"component:{c.name}", "packages", good.version(c), bad.version(c), c.name, c.layer, changed))
    g, b = _pins_by_name(good.layer(GUEST_EXTRA)), _pins_by_name(bad.layer(GUEST_EXTRA))
    changed = tuple(sorted(n for n, p in b.items() if n not in g or g[n].sha256 != p.sha256))
    if changed:
        main = sorted(set(bad.guest_packages)) or changed[:1]
        describe = lambda pins: ", ".join(f"{n} {pins[n].version}" for n in main if n in pins) or "none"  # noqa: E731
        out.append(Difference("guest_packages", "packages", describe(g), describe(b), "guest_packages", GUEST_EXTRA, changed))
    return out


def _source_differences(good: Environment, bad: Environment) -> list[Difference]:
    out = []
    for c in registry.COMPONENTS:
        gs, bs = good.source(c.name), bad.source(c.name)
        files = (registry.PATH, registry.BUILD, registry.HOST)
        if (gs.kind in files or bs.kind in files) and gs != bs:
            out.append(Difference(f"component:{c.name}", "source", gs.describe(), bs.describe(), c.name))
    return out


_MACHINE = ("display", "gpu_options", "ring_wake")
_PROFILE = ("page_size", "guest_modules", "guest_drop")
_QEMU = ("machine", "cpu", "smp", "memory", "hostmem")


# A nix-profile environment's components are its manifest's fields (provision/manifest.py), by role.
MANIFEST_FIELDS = {
    "qemu": ("qemu",), "virglrenderer": ("virglrenderer", "render_server"), "host_vulkan": ("vulkan_icd", "egl_vendor"),
    "guest_kernel": ("kernel", "page_size"), "guest_base": ("initramfs",), "ring_wake": ("ring_wake",),
    "host_demos": ("host_demos",), "smp": ("smp",), "hostmem": ("hostmem",), "display": ("display",), "accel": ("accel",),
}  # fmt: skip
# Paths inside the manifest's root: with another root they come along with it.
_INSIDE_ROOT = ("qemu", "virglrenderer", "host_vulkan")


def _manifest_differences(good: Environment, bad: Environment) -> list[Difference]:
    from .provision import manifest

    g, b = manifest.read(good.profile.manifest), manifest.read(bad.profile.manifest)
    groups = dict(MANIFEST_FIELDS)
    if g.get("root") != b.get("root"):
        groups = {k: v for k, v in groups.items() if k not in _INSIDE_ROOT}
        groups["host root"] = ("root", "vulkaninfo", *(f for k in _INSIDE_ROOT for f in MANIFEST_FIELDS[k]))
    out = []
    for name, fields in groups.items():
        if any(g.get(f) != b.get(f) for f in fields):
            shown = lambda doc: ", ".join(f"{f} {doc.get(f)}" for f in fields if g.get(f) != b.get(f))  # noqa: E731
            out.append(Difference(f"manifest:{name}", "manifest", shown(g), shown(b), name if name in registry.BY_NAME else None,
                                  packages=fields))  # fmt: skip
    return out


def differences(good: Environment, bad: Environment) -> list[Difference]:
    nix = (good.profile.manifest is not None, bad.profile.manifest is not None)
    if nix[0] != nix[1]:
        raise UsageError("bisect takes two environments of one kind: both Debian-profile (pins) or both nix-profile (manifests)")
    out = _manifest_differences(good, bad) if nix[0] else _layer_differences(good, bad) + _source_differences(good, bad)
    def shown(env: Environment, f: str) -> str:
        value = getattr(env.machine, f)
        if value is None and f == "gpu_options":
            return f"venus=on,blob=on,hostmem={env.profile.qemu.hostmem} (the default)"
        return "(the default)" if value is None else str(value)

    for f in _MACHINE:
        if getattr(good.machine, f) != getattr(bad.machine, f):
            out.append(Difference(f"machine.{f}", "machine", shown(good, f), shown(bad, f), field=f))
    ga, ba = good.machine.env, bad.machine.env
    for k in sorted(set(ga) | set(ba)):
        if ga.get(k) != ba.get(k):
            out.append(Difference(f"machine.host_env.{k}", "machine", str(ga.get(k)), str(ba.get(k)), field=f"host_env.{k}"))
    if good.required_page_size != bad.required_page_size and not nix[0]:
        out.append(Difference("page_size (required)", "profile", str(good.required_page_size), str(bad.required_page_size), field="required_page_size"))
    for f in _PROFILE[1:] if not nix[0] else ():
        a, b = getattr(good.profile, f), getattr(bad.profile, f)
        if a != b:
            out.append(Difference(f"profile.{f}", "profile", " ".join(a), " ".join(b), field=f))
    for f in _QEMU if not nix[0] else ():
        a, b = getattr(good.profile.qemu, f), getattr(bad.profile.qemu, f)
        if a != b:
            out.append(Difference(f"profile.qemu.{f}", "profile", str(a), str(b), field=f"qemu.{f}"))
    return out


# --- a candidate: GOOD with some of BAD's differences ---------------------------------------------


class Untestable(VenusReproError):
    """A candidate that cannot be made or run for a reason that isn't the steps."""


def _apply_manifest(good: Environment, bad: Environment, chosen: list[Difference], work: Path) -> Environment:
    """GOOD's manifest with ``chosen`` of BAD's fields, written where the bisect keeps its candidates."""
    from .provision import manifest

    doc = manifest.read(good.profile.manifest)
    other = manifest.read(bad.profile.manifest)
    for d in chosen:
        if d.kind == "manifest":
            for f in d.packages:
                if f in other:
                    doc[f] = other[f]
                else:
                    doc.pop(f, None)
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    path = work / "manifests" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return dataclasses.replace(good, profile=manifest.profile(path))


def apply(good: Environment, bad: Environment, chosen: list[Difference], fields_of: Callable, work: Path | None = None) -> Environment:
    """GOOD's environment with ``chosen`` of BAD's differences (packages mixed so that their relations hold)."""
    if good.profile.manifest is not None:
        good = _apply_manifest(good, bad, chosen, work or Path(tempfile.mkdtemp(prefix="venus-repro-manifest-")))
    env = dataclasses.replace(good, sources=tuple((n, s) for n, s in good.sources if s.kind != registry.SUITE))
    seeds: dict[str, set[str]] = {}
    machine, profile = dataclasses.asdict(env.machine), env.profile
    page_size = env.page_size
    for d in chosen:
        if d.kind == "manifest":
            continue  # in the manifest already
        if d.kind == "packages":
            seeds.setdefault(d.layer, set()).update(d.packages)
        elif d.kind == "source":
            src = bad.source(d.component)
            env = env.with_sources(**{d.component: src})
        elif d.kind == "machine":
            if d.field.startswith("host_env."):
                key = d.field.split(".", 1)[1]
                host_env = dict(machine["host_env"])
                if key in bad.machine.env:
                    host_env[key] = bad.machine.env[key]
                else:
                    host_env.pop(key, None)
                machine["host_env"] = tuple(sorted(host_env.items()))
            else:
                machine[d.field] = getattr(bad.machine, d.field)
        elif d.field == "required_page_size":
            page_size = bad.required_page_size
        elif d.field.startswith("qemu."):
            profile = dataclasses.replace(profile, qemu=dataclasses.replace(profile.qemu, **{d.field[5:]: getattr(bad.profile.qemu, d.field[5:])}))
        else:
            profile = dataclasses.replace(profile, **{d.field: getattr(bad.profile, d.field)})
    machine["host_env"] = tuple(machine["host_env"])
    env = dataclasses.replace(env, machine=MachineOptions(**machine), profile=profile, page_size=page_size)
    layers = {}
    for layer, names in seeds.items():
        what = f"{', '.join(sorted(names)[:4])}{' …' if len(names) > 4 else ''} of BAD in GOOD's {layer}"
        try:
            if layer == "kernel":
                layers["kernel"] = bad.layer("kernel")
                env = dataclasses.replace(env, kernel_flavour=bad.kernel_flavour)
            elif layer == GUEST_EXTRA or (layer == "guest" and (good.layer(GUEST_EXTRA) or bad.layer(GUEST_EXTRA))):
                # The guest and a scenario's packages over it are one set of relations.
                layers.update(_mix_guest(good, bad, seeds.get("guest", set()) | seeds.get(GUEST_EXTRA, set()), fields_of, what))
            else:
                layers[layer] = tuple(mix_pins(list(good.layer(layer)), list(bad.layer(layer)), names, fields_of, what))
        except ProvisionError as exc:
            raise Untestable(str(exc)) from None
    return env.with_layers(**layers) if layers else env


def _mix_guest(good: Environment, bad: Environment, names: set[str], fields_of, what: str) -> dict:
    base = [*good.layer("guest"), *good.layer(GUEST_EXTRA)]
    other = [*bad.layer("guest"), *bad.layer(GUEST_EXTRA)]
    mixed = mix_pins(base, other, names, fields_of, what)
    guest_names = {p.name for p in (*good.layer("guest"), *bad.layer("guest"))}  # the rest: a scenario's packages
    return {"guest": tuple(p for p in mixed if p.name in guest_names), GUEST_EXTRA: tuple(p for p in mixed if p.name not in guest_names)}


# --- delta debugging ----------------------------------------------------------------------------------------


def ddmin(items: list, test: Callable[[list], str]) -> list:
    """The minimal subset of ``items`` for which ``test`` fails (Zeller's ddmin; ``test(items)`` fails, ``test([])`` passes).

    ``test`` answers PASS, FAIL or UNTESTABLE; an untestable subset is never
    taken as failing.
    """
    n = 2
    while len(items) >= 2:
        size = -(-len(items) // n)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        for chunk in chunks:
            if test(chunk) == FAIL:
                items, n = chunk, 2
                break
        else:
            for chunk in chunks if n > 2 else []:
                rest = [x for x in items if x not in chunk]
                if test(rest) == FAIL:
                    items, n = rest, max(n - 1, 2)
                    break
            else:
                if n >= len(items):
                    break
                n = min(len(items), 2 * n)
    return items


# --- running candidates ------------------------------------------------------------------------------------


def signature(result) -> str | None:
    """What a failure is, to tell one from another: the name of the first failed check."""
    failed = result.failed_checks
    return failed[0].name if failed else None


def _untestable_failure(result) -> str | None:
    failure = result.failure or ""
    if "did not report 'init'" in failure or "before the guest reported 'init'" in failure:
        return f"the guest never reached /init: {failure}"
    if any(c.name.startswith("preflight: ") for c in result.checks):
        return f"preflight refused it: {result.first_failure}"
    return None


class Bisect:
    """One bisect: its directory, its log (resumable), its runs."""

    def __init__(self, good: Endpoint, bad: Endpoint, steps: Scenario, tries: int, work: Path, boot_timeout: float = 120.0):
        self.good, self.bad, self.steps, self.tries, self.work = good, bad, steps, tries, work
        self.boot_timeout = boot_timeout
        self.log_path = work / "bisect.json"
        self.runs: list[dict] = []
        self.cache: dict[str, list[dict]] = {}  # environment digest → its runs (recorded and new), in order
        self.answered: dict[str, dict] = {}  # environment digest → its outcome, this session
        self.bad_signature: str | None = None
        self.steps_digest = hashlib.sha256(scenario.dump(dataclasses.replace(steps, sources=(), machine=MachineOptions())).encode()).hexdigest()
        self.doc: dict = {"format": FORMAT, "good": good.where, "bad": bad.where, "steps": steps.name, "tries": tries, "runs": self.runs}
        self._resume()

    def _resume(self) -> None:
        if not self.log_path.is_file():
            return
        try:
            old = json.loads(self.log_path.read_text())
            if old.get("format") != FORMAT:
                raise ValueError("format")
            for r in old.get("runs", []):
                if r.get("steps_sha256") == self.steps_digest and r.get("verdict") in (PASS, FAIL, UNTESTABLE):
                    self.cache.setdefault(r["environment_sha256"], []).append(r)  # type: ignore[arg-type]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{self.log_path}: not a bisect log this venus-repro can continue ({exc}); choose another --run-dir") from None
        log.info(f"continuing the bisect in {self.work}: {sum(len(v) for v in self.cache.values())} runs recorded")

    def save(self) -> None:
        tmp = self.log_path.with_name(".bisect.json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=1) + "\n")
        tmp.replace(self.log_path)

    def _one(self, env: Environment, label: str, applied: list[str]) -> dict:
        """One run of the steps in ``env`` (or its record from before)."""
        from .run import RunOptions, run

        digest = env.digest
        recorded = self.cache.get(digest, [])
        tried = sum(1 for r in self.runs if r["environment_sha256"] == digest)
        if tried < len(recorded):
            entry = recorded[tried]
            log.info(f"{label}: {entry['verdict']} (recorded, {entry['run_dir']})")
            self.runs.append(entry)
            self.cache.setdefault(digest, [])
            return entry
        n = len(self.runs) + 1
        while (run_dir := self.work / f"run-{n:02d}-{label.split()[0]}").exists():
            n += 1  # a run an interruption left unrecorded stays for a look, under its own name
        entry = {"label": label, "applied": applied, "environment_sha256": digest, "steps_sha256": self.steps_digest, "run_dir": str(run_dir)}
        sc = self.steps.in_environment(env)
        try:
            with log.nested(f"{label}: {', '.join(applied) or 'nothing of BAD'}"):
                result = run(RunOptions(sc, env.profile, run_dir=run_dir, boot_timeout=self.boot_timeout, environment=env))
            entry["signature"] = signature(result)
            entry["first_failure"] = result.first_failure
            why = _untestable_failure(result)
            if result.verdict == "pass":
                entry["verdict"] = PASS
            elif why:
                entry["verdict"], entry["why"] = UNTESTABLE, why
            elif self.bad_signature and entry["signature"] != self.bad_signature:
                entry["verdict"], entry["why"] = UNTESTABLE, f"fails another way ({result.first_failure})"
            else:
                entry["verdict"] = FAIL
        except (ProvisionError, PinError, Untestable) as exc:
            entry["verdict"], entry["why"] = UNTESTABLE, str(exc)
        entry["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        self.runs.append(entry)
        self.cache.setdefault(digest, []).append(entry)
        self.save()
        log.info(f"{label}: {entry['verdict'].upper()}" + (f" ({entry.get('why')})" if entry.get("why") else ""))
        return entry

    def outcome(self, env: Environment, label: str, applied: list[str]) -> dict:
        """As BISECT_TRIES: the first failure is the answer; a pass is tried again, ``tries`` times in all.

        An environment already answered (another subset that mixes to the same pins) is not run again.
        """
        done = self.answered.get(env.digest)
        if done is not None:
            log.info(f"{label}: {done['verdict']} (the same environment as {done['label']})")
            return done
        entry = self._tries(env, label, applied)
        self.answered[env.digest] = entry
        return entry

    def _tries(self, env: Environment, label: str, applied: list[str]) -> dict:
        for i in range(self.tries):
            entry = self._one(env, label + (f" (try {i + 1})" if i else ""), applied)
            if entry["verdict"] != PASS:
                return entry
        return entry


def _fields_of(prov):
    return prov.control


def bisect(good: Endpoint, bad: Endpoint, steps: Scenario | None, tries: int, work: Path) -> dict:
    """Run the whole bisect; the report (also written to the bisect directory as report.json)."""
    from .provision import Provisioner

    steps = steps or bad.scenario
    b = Bisect(good, bad, steps, tries, work)
    report: dict = {"good": good.where, "bad": bad.where, "steps": steps.name, "tries": tries, "run_dir": str(work)}
    b.doc["report"] = report

    def finish(outcome: str, **extra) -> dict:
        report.update(outcome=outcome, runs=[_run_row(r) for r in b.runs], **extra)
        b.save()
        (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        return report

    with log.nested("verifying the endpoints (GOOD must pass, BAD must fail)"):
        bad_run = b.outcome(bad.env, "bad", ["(BAD as it is)"])
        if bad_run["verdict"] != FAIL:
            return finish(NOT_REPRODUCED, why=f"BAD did not fail ({bad_run['verdict']} in {tries} tries)" + (f": {bad_run.get('why')}" if bad_run.get("why") else ""))
        b.bad_signature = bad_run["signature"]
        report["signature"] = bad_run["first_failure"]
        good_run = b.outcome(good.env, "good", [])
        if good_run["verdict"] != PASS:
            return finish(NOT_REPRODUCED, why=f"GOOD did not pass: {good_run.get('first_failure') or good_run.get('why')}")
    diffs = differences(good.env, bad.env)
    report["differences"] = [d.as_dict() for d in diffs]
    log.info(f"{len(diffs)} difference(s): " + "; ".join(f"{d.key} {d.good} → {d.bad}" for d in diffs))
    if not diffs:
        return finish(INCONCLUSIVE, why="GOOD and BAD differ in nothing bisect can swap, yet their outcomes differ")
    prov = Provisioner(good.env.profile)
    counter = [0]

    memo: dict[tuple[str, ...], str] = {}

    def test_with(base_diffs: list[Difference]) -> Callable[[list], str]:
        def test(subset: list) -> str:
            chosen = [*base_diffs, *subset]
            if not subset:
                return PASS
            key = tuple(sorted(_name(d) for d in chosen))
            if key not in memo:
                memo[key] = run_candidate(chosen)
            return memo[key]

        def run_candidate(chosen: list[Difference]) -> str:
            # A resumed bisect numbers on after every label it has recorded, so no two runs share one.
            counter[0] = max(counter[0], *(_number(r["label"]) for r in (*b.runs, *(e for es in b.cache.values() for e in es)))) + 1
            try:
                env = apply(good.env, bad.env, chosen, _fields_of(prov), work)
            except Untestable as exc:
                entry = {"label": f"candidate-{counter[0]}", "applied": [_name(d) for d in chosen], "verdict": UNTESTABLE, "why": str(exc),
                         "environment_sha256": None, "run_dir": None}  # fmt: skip
                b.runs.append(entry)
                b.save()
                log.info(f"candidate {counter[0]}: UNTESTABLE ({exc})")
                return UNTESTABLE
            return b.outcome(env, f"candidate-{counter[0]}", [_name(d) for d in chosen])["verdict"]

        return test

    with log.nested(f"ddmin over {len(diffs)} difference(s)"):
        whole = test_with([])(diffs)  # GOOD with all of BAD's differences: must fail as BAD does
        if whole != FAIL:
            return finish(INCONCLUSIVE, why=f"GOOD with all of BAD's differences is {whole}: the difference is in what bisect cannot mix")
        culprit = ddmin(diffs, test_with([]))
    packages = []
    for d in culprit:
        if d.kind == "packages" and len(d.packages) > 1:
            others = [x for x in culprit if x is not d]
            with log.nested(f"narrowing {d.key} to its packages ({len(d.packages)})"):
                items = [dataclasses.replace(d, key=f"{d.component}:{p}", packages=(p,)) for p in d.packages]
                narrowed = ddmin(items, test_with(others))
            packages += [_package_row(d, x.packages[0], good.env, bad.env) for x in narrowed]
    rows = [_culprit_row(d, good.env, bad.env) for d in culprit]
    reproducer = _reproducer(work, steps, good.env, bad.env, culprit, prov)
    return finish(FOUND, culprit=rows, packages=packages, reproducer=str(reproducer))


def _number(label: str) -> int:
    """The n of a "candidate-n" label (0 for the endpoints)."""
    m = re.match(r"candidate-(\d+)", label)
    return int(m.group(1)) if m else 0


def _name(d: Difference) -> str:
    return d.key


def _culprit_row(d: Difference, good: Environment, bad: Environment) -> dict:
    return {"component": d.component or d.key, "what": d.key, "good": d.good, "bad": d.bad, "kind": d.kind}


def _package_row(d: Difference, name: str, good: Environment, bad: Environment) -> dict:
    g = {p.name: p for p in [*good.layer(d.layer), *good.layer(GUEST_EXTRA)]}
    b = {p.name: p for p in [*bad.layer(d.layer), *bad.layer(GUEST_EXTRA)]}
    fmt = lambda p: f"{p.version} ({p.suite})" if p else "absent"  # noqa: E731
    return {"component": d.component, "package": name, "good": fmt(g.get(name)), "bad": fmt(b.get(name))}


def _run_row(r: dict) -> dict:
    return {k: r.get(k) for k in ("label", "applied", "verdict", "why", "first_failure", "run_dir")}


def _reproducer(work: Path, steps: Scenario, good: Environment, bad: Environment, culprit: list[Difference], prov) -> Path:
    """GOOD + the culprit (fails) beside GOOD (passes): a scenario and an environment each."""
    folder = work / "reproducer"
    for name, env in (("fails", apply(good, bad, culprit, _fields_of(prov), work)), ("passes", good)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        scenario.save(steps.in_environment(env), folder / name)
        env.write(folder / name / "environment.json")
    (folder / "README").write_text(
        "The bisect's proof, each runnable here or on another machine:\n"
        f"  venus-repro run {folder}/fails/scenario.yaml --environment {folder}/fails/environment.json    # fails\n"
        f"  venus-repro run {folder}/passes/scenario.yaml --environment {folder}/passes/environment.json  # passes\n"
        "The culprit:\n" + "".join(f"  {d.key}: {d.good} -> {d.bad}\n" for d in culprit)
    )
    return folder


def new_bisect_dir(base: Path | None) -> Path:
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
        return base.resolve()
    root = Path(os.environ.get("VENUS_REPRO_RUNS", "venus-runs"))
    path = root / (datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-bisect")
    path.mkdir(parents=True, exist_ok=False)
    return path.resolve()


def render(report: dict) -> str:
    from tabulate import tabulate

    lines = [f"GOOD: {report['good']}", f"BAD:  {report['bad']}", ""]
    if report.get("runs"):
        rows = [[r["label"], r["verdict"], ", ".join(r.get("applied") or []) or "-", (r.get("why") or r.get("first_failure") or "")[:70], r.get("run_dir") or "-"]
                for r in report["runs"]]  # fmt: skip
        lines += [tabulate(rows, headers=["run", "verdict", "BAD's differences applied", "why / first failure", "run directory"], tablefmt="simple"), ""]
    if report.get("signature"):
        lines.append(f"failure signature: {report['signature']}")
    outcome = report["outcome"]
    if outcome == FOUND and "commit" in report:
        lines.append(f"FOUND: the first bad commit of {report['component']} is {report['commit']} {report['subject']}")
        lines.append(f"  (the last good one: {report['last_good'][:12]})")
    elif outcome == FOUND:
        lines.append(f"FOUND: {len(report['culprit'])} difference(s) flip the outcome:")
        lines += [f"  {c['what']}: good {c['good']} → bad {c['bad']}" for c in report["culprit"]]
        lines += [f"    package {p['package']}: good {p['good']} → bad {p['bad']}" for p in report.get("packages", [])]
        lines.append(f"reproducer: {report['reproducer']} (README there)")
    else:
        lines.append(f"{outcome.upper()}: {report.get('why', '')}")
        lines += [f"  {r['commit'][:12]} {r['subject']}" for r in report.get("range", [])]
    if report.get("skipped"):
        lines.append("skipped (did not build): " + ", ".join(s["commit"][:12] + " " + s["subject"] for s in report["skipped"]))
    return "\n".join(lines)
