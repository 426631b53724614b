"""The lock file: every package of a profile pinned by exact version and sha256.

``venus-repro lock --refresh`` writes it from what the mirror serves now and
shows what changed; everything else only reads it, and refuses to go on when
it does not cover what the profile asks for.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

from .. import log
from ..errors import PinError
from ..profile import Profile
from .apt import AptRepo, Pin

FORMAT = 1


def _read_lock(path: Path, missing: str, hint: str) -> dict:
    """A lock file's JSON; a missing or malformed file is one PinError ending in ``hint``."""
    if not path.exists():
        raise PinError(f"{missing}; {hint}")
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # also: not UTF-8
        raise PinError(f"{path} is not valid JSON ({' '.join(str(exc).split())}); {hint}") from None
    if not isinstance(doc, dict):
        raise PinError(f"{path} is not a lock (a JSON object); {hint}")
    return doc


def _refresh_hint(profile: Profile) -> str:
    return f"run `venus-repro lock --refresh --profile {profile.ref}`" + (" and commit the lock" if profile.ref == profile.name else "")


class Lock:
    def __init__(self, path: Path, doc: dict):
        self.path = path
        self.doc = doc

    @classmethod
    def load(cls, profile: Profile) -> "Lock":
        path = profile.lock_path
        doc = _read_lock(path, f"no lock file at {path}", _refresh_hint(profile))
        if doc.get("format") != FORMAT:
            raise PinError(f"{path} has lock format {doc.get('format')}, expected {FORMAT}; {_refresh_hint(profile)}")
        lock = cls(path, doc)
        lock.check(profile)
        for set_name in profile.package_sets():
            lock.pins(set_name)  # each pin read once here: a malformed one is this error, not a crash later
        return lock

    def check(self, profile: Profile) -> None:
        """The lock must pin exactly what the profile requests, set by set."""
        sets = self.doc.get("sets", {})
        if not isinstance(sets, dict):
            raise PinError(f"{self.path}: field 'sets' must map set names to pins; {_refresh_hint(profile)}")
        for name, (arch, requested, with_deps) in profile.package_sets().items():
            entry = sets.get(name)
            if not isinstance(entry, dict):
                raise PinError(f"{self.path} has no pins for '{name}'; {_refresh_hint(profile)}")
            if (entry.get("arch"), entry.get("requested", []), entry.get("with_deps")) != (
                arch,
                list(requested),
                with_deps,
            ):
                raise PinError(
                    f"{self.path}: the pins for '{name}' were made for a different package list "
                    f"than profile {profile.name} requests now; {_refresh_hint(profile)}"
                )

    def pins(self, set_name: str) -> list[Pin]:
        entry = self.doc["sets"][set_name]
        packages = entry.get("packages")
        if not isinstance(packages, list) or not all(isinstance(p, dict) and _pin_shaped(p) for p in packages):
            raise PinError(f"{self.path}: the pins of '{set_name}' are not a list of packages (name, version, arch, filename, size, sha256)")
        suite = entry.get("suite") or self.doc.get("suite") or ""
        try:
            return [Pin.from_dict(p, suite if isinstance(suite, str) else "") for p in packages]
        except PinError as exc:
            raise PinError(f"{self.path}: {exc}") from None

    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def _pin_shaped(doc: dict) -> bool:
    """Whether ``doc`` has a pin's fields with their types (Pin.from_dict checks their values)."""
    strings = ("name", "version", "arch", "filename", "sha256")
    return (all(isinstance(doc.get(k), str) for k in strings) and type(doc.get("size")) is int and doc["size"] >= 0
            and isinstance(doc.get("suite", ""), str))  # fmt: skip


def set_digest(pins: list[Pin], *extra: str) -> str:
    """A short stable key for something built from ``pins`` (and ``extra`` inputs)."""
    h = hashlib.sha256()
    for p in sorted(pins):
        h.update(f"{p.name} {p.version} {p.arch} {p.sha256}\n".encode())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:16]


def refresh(
    profile: Profile, apt_root: Path, only: tuple[str, ...] = ()
) -> tuple[dict, list[tuple[str, str, str, str]]]:
    """Resolve every set (or ``only`` these) against the mirror now; write the lock; return (doc, changes).

    A change is (set, package, old version or '-', new version or '-'). With
    ``only``, the other sets keep their pins as they are.
    """
    old_sets: dict = {}
    if profile.lock_path.exists():
        try:
            old_sets = json.loads(profile.lock_path.read_text()).get("sets", {})
        except json.JSONDecodeError:
            log.warn(f"{profile.lock_path} is not valid JSON; writing it anew")
    wanted = profile.package_sets()
    unknown = sorted(set(only) - set(wanted))
    if unknown:
        raise PinError(f"profile {profile.name} has no set {', '.join(unknown)} (sets: {', '.join(wanted)})")
    sets = {}
    repos: dict[str, AptRepo] = {}
    for name, (arch, requested, with_deps) in wanted.items():
        if only and name not in only and name in old_sets:
            sets[name] = old_sets[name]
            continue
        suite = profile.set_suite(name)
        repo = repos.setdefault(f"{suite}-{arch}", AptRepo(apt_root / f"{suite}-{arch}", suite, arch))
        with log.nested(f"resolving {name}" + (f" from {suite}" if suite != profile.suite else "")):
            pins = repo.resolve(requested, with_deps)
            log.info(f"{len(pins)} packages, {sum(p.size for p in pins) / 1e6:.1f} MB")
        sets[name] = {
            **({"suite": suite} if suite != profile.suite else {}),
            "arch": arch,
            "requested": list(requested),
            "with_deps": with_deps,
            "packages": [_set_pin(p) for p in pins],  # the set says the suite
        }
    doc = {
        "format": FORMAT,
        "profile": profile.name,
        "suite": profile.suite,
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sets": sets,
    }
    changes = diff(old_sets, sets)
    profile.lock_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = profile.lock_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    tmp.replace(profile.lock_path)
    return doc, changes


def _set_pin(pin: Pin) -> dict:
    d = pin.as_dict()
    d.pop("suite", None)
    return d


def diff(old_sets: dict, new_sets: dict) -> list[tuple[str, str, str, str]]:
    changes = []
    for set_name in sorted(set(old_sets) | set(new_sets)):
        old = {p["name"]: p for p in old_sets.get(set_name, {}).get("packages", [])}
        new = {p["name"]: p for p in new_sets.get(set_name, {}).get("packages", [])}
        for pkg in sorted(set(old) | set(new)):
            a, b = old.get(pkg), new.get(pkg)
            if a is None or b is None or (a["version"], a["sha256"]) != (b["version"], b["sha256"]):
                changes.append((set_name, pkg, a["version"] if a else "-", b["version"] if b else "-"))
    return changes


# --- a scenario's own pins: its extra guest packages, its components from other suites ------------
#
# Beside the scenario: my-bug.yaml → my-bug.lock.json for the scenario's own
# profile, my-bug.<profile>.lock.json for another one (the same steps on forky).


def scenario_lock_path(scenario_path: Path, profile: str | None = None) -> Path:
    """``my-bug.yaml`` → ``my-bug.lock.json`` (or ``my-bug.<profile>.lock.json``), beside it."""
    name = scenario_path.name.rsplit(".", 1)[0]
    return scenario_path.with_name(f"{name}.{profile}.lock.json" if profile else f"{name}.lock.json")


def _scenario_hint(scenario_path: Path, profile: Profile) -> str:
    return f"run `venus-repro lock --refresh --scenario {scenario_path} --profile {profile.ref}`"


def _guest_base(profile: Profile, base: Lock) -> str:
    """What a scenario's extra guest pins depend on: the profile's guest set, not the whole lock.

    (A host tool added to the lock leaves every scenario lock valid.)
    """
    return set_digest(base.pins(f"guest-{profile.guest_arch}"))


def resolve_extra(profile: Profile, base: Lock, packages: tuple[str, ...], repo: AptRepo) -> list[Pin]:
    """Pins for ``packages`` and what they need beyond the profile's guest set."""
    have = {p.name for p in base.pins(f"guest-{profile.guest_arch}")}
    with log.nested(f"resolving the scenario's guest packages ({', '.join(packages)})"):
        return [p for p in repo.resolve((*profile.guest_packages, *packages), True) if p.name not in have]


def write_scenario_lock(path: Path, profile: Profile, base: Lock, packages: tuple[str, ...], extra: list[Pin],
                        components: dict[str, dict]) -> list[tuple[str, str, str, str]]:  # fmt: skip
    """Write a scenario's lock; the changes against what it held (as ``diff``)."""
    old: dict = {}
    if path.exists():
        try:
            prev = json.loads(path.read_text())
            old = {"guest-extra": prev, **{f"component {k}": {"packages": v.get("pins", [])} for k, v in (prev.get("components") or {}).items()}}
        except (json.JSONDecodeError, AttributeError):
            pass
    doc = {
        "format": FORMAT,
        "profile": profile.name,
        "base_guest_sha256": _guest_base(profile, base),
        "arch": profile.guest_arch,
        "requested": list(packages),
        "packages": [_set_pin(p) for p in extra],
    }
    if components:
        doc["components"] = components
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    new = {"guest-extra": doc, **{f"component {k}": {"packages": v["pins"]} for k, v in components.items()}}
    return diff(old, new)


def component_entry(source: dict, layer: str, base_pins: list[Pin], pins: list[Pin]) -> dict:
    """A scenario lock's record of one component from another suite: what it was mixed into, what it became."""
    return {"source": source, "layer": layer, "base_sha256": set_digest(base_pins), "pins": [p.as_dict() for p in pins]}


def _scenario_doc(path: Path, scenario_path: Path, profile: Profile, missing: str) -> dict:
    doc = _read_lock(path, missing, _scenario_hint(scenario_path, profile))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("profile") != profile.name:
        raise PinError(f"{path} is not a {profile.name} lock of this venus-repro; {_scenario_hint(scenario_path, profile)}")
    return doc


def extra_guest_pins(profile: Profile, base: Lock, packages: tuple[str, ...], lock_path: Path | None, scenario_path: Path | None = None) -> list[Pin]:
    """The pinned extra guest packages of a scenario; a missing or stale lock is one clear error."""
    if not packages:
        return []
    if lock_path is None:
        raise PinError("a scenario that adds guest packages must be a file (its lock lives beside it)")
    scenario_path = scenario_path or lock_path
    hint = _scenario_hint(scenario_path, profile)
    doc = _scenario_doc(lock_path, scenario_path, profile, f"scenario {scenario_path} adds guest packages but has no lock {lock_path.name}")
    if doc.get("requested") != list(packages) or doc.get("arch") != profile.guest_arch:
        raise PinError(f"{lock_path} pins other guest packages than the scenario asks for; {hint}")
    # Locks made before base_guest_sha256 name the whole base lock's sha256.
    if "base_guest_sha256" in doc:
        current = doc["base_guest_sha256"] == _guest_base(profile, base)
    else:
        current = doc.get("base_lock_sha256") == base.digest()
    if not current:
        raise PinError(f"{lock_path} was made for other {profile.name} guest pins; {hint}")
    return [Pin.from_dict(p, profile.suite) for p in doc["packages"]]


def component_pins(profile: Profile, lock_path: Path, scenario_path: Path, name: str, source: dict, layer: str, base_pins: list[Pin]) -> list[Pin]:
    """The pinned layer a scenario's component from another suite makes; missing or stale: one clear error."""
    hint = _scenario_hint(scenario_path, profile)
    doc = _scenario_doc(lock_path, scenario_path, profile, f"scenario {scenario_path} takes {name} from another suite but has no lock {lock_path.name}")
    entry = (doc.get("components") or {}).get(name)
    if not isinstance(entry, dict):
        raise PinError(f"{lock_path} does not pin {name}; {hint}")
    if entry.get("source") != source or entry.get("layer") != layer:
        raise PinError(f"{lock_path} pins {name} from another source than the scenario names; {hint}")
    if entry.get("base_sha256") != set_digest(base_pins):
        raise PinError(f"{lock_path}: {name} was mixed into other {profile.name} {layer} pins; {hint}")
    return [Pin.from_dict(p) for p in entry["pins"]]
