"""The lock file: every package of a profile pinned by exact version and sha256.

``venus-repro lock --refresh`` writes it from what the mirror serves now and
shows what changed; everything else only reads it, and refuses to go on when
it does not cover what the profile asks for.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import re
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
    return f"run `venus-repro lock --refresh --profile {profile.name}` and commit the lock"


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
        packages = self.doc["sets"][set_name].get("packages")
        if not isinstance(packages, list) or not all(isinstance(p, dict) and _pin_shaped(p) for p in packages):
            raise PinError(f"{self.path}: the pins of '{set_name}' are not a list of packages (name, version, arch, filename, size, sha256)")
        return [Pin(**p) for p in packages]

    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def _pin_shaped(doc: dict) -> bool:
    """Whether ``doc`` is a pin as the lock writes one: these fields, these types, a sha256 in hex."""
    fields = {f.name: f.type for f in dataclasses.fields(Pin)}
    if set(doc) != set(fields):
        return False
    strings = all(isinstance(doc[k], str) for k in ("name", "version", "arch", "filename", "sha256"))
    return strings and type(doc["size"]) is int and doc["size"] >= 0 and re.fullmatch(r"[0-9a-f]{64}", doc["sha256"]) is not None


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
            "packages": [p.as_dict() for p in pins],
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


# --- a scenario's extra guest packages ---------------------------------------------------


def scenario_lock_path(scenario_path: Path) -> Path:
    """``my-bug.yaml`` → ``my-bug.lock.json``, beside it."""
    name = scenario_path.name.rsplit(".", 1)[0]
    return scenario_path.with_name(f"{name}.lock.json")


def _scenario_hint(scenario_path: Path) -> str:
    return f"run `venus-repro lock --refresh --scenario {scenario_path}`"


def _guest_base(profile: Profile, base: Lock) -> str:
    """What a scenario's extra guest pins depend on: the profile's guest set, not the whole lock.

    (A host tool added to the lock leaves every scenario lock valid.)
    """
    return set_digest(base.pins(f"guest-{profile.guest_arch}"))


def refresh_extra(profile: Profile, base: Lock, packages: tuple[str, ...], scenario_path: Path, apt_root: Path):
    """Pin ``packages`` (and what they need beyond the profile's guest set) beside the scenario."""
    arch = profile.guest_arch
    path = scenario_lock_path(scenario_path)
    repo = AptRepo(apt_root / f"{profile.suite}-{arch}", profile.suite, arch)
    have = {p.name for p in base.pins(f"guest-{arch}")}
    with log.nested(f"resolving the scenario's guest packages ({', '.join(packages)})"):
        pins = [p for p in repo.resolve((*profile.guest_packages, *packages), True) if p.name not in have]
    old = {}
    if path.exists():
        try:
            old = {"guest-extra": json.loads(path.read_text())}
        except json.JSONDecodeError:
            pass
    doc = {
        "format": FORMAT,
        "profile": profile.name,
        "base_guest_sha256": _guest_base(profile, base),
        "arch": arch,
        "requested": list(packages),
        "packages": [p.as_dict() for p in pins],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return doc, diff(old, {"guest-extra": doc})


def extra_guest_pins(profile: Profile, base: Lock, packages: tuple[str, ...], scenario_path: Path | None) -> list[Pin]:
    """The pinned extra guest packages of a scenario; a missing or stale lock is one clear error."""
    if not packages:
        return []
    if scenario_path is None:
        raise PinError("a scenario that adds guest packages must be a file (its lock lives beside it)")
    path = scenario_lock_path(scenario_path)
    missing = f"scenario {scenario_path} adds guest packages but has no lock {path.name}"
    doc = _read_lock(path, missing, _scenario_hint(scenario_path))
    if doc.get("requested") != list(packages) or doc.get("arch") != profile.guest_arch:
        raise PinError(f"{path} pins other guest packages than the scenario asks for; {_scenario_hint(scenario_path)}")
    # Locks made before base_guest_sha256 name the whole base lock's sha256.
    if "base_guest_sha256" in doc:
        current = doc["base_guest_sha256"] == _guest_base(profile, base)
    else:
        current = doc.get("base_lock_sha256") == base.digest()
    if not current:
        raise PinError(f"{path} was made for other {profile.name} guest pins; {_scenario_hint(scenario_path)}")
    return [Pin(**p) for p in doc["packages"]]
