"""Debian's package relations, for mixing pinned package sets: versions, Depends, Breaks.

A root is unpacked, not installed, so nothing checks that its packages go
together; this does, as dpkg would: every ``Depends``/``Pre-Depends`` satisfied
(by a package or a ``Provides``), no ``Breaks``/``Conflicts`` in force. It is what
makes a mixed layer — trixie's guest with forky's Mesa, or a bisect candidate
made of two environments' packages — either installable or one clear error.

``mix(base, other, seeds)`` takes the ``seeds`` from ``other`` and, as apt's
resolver would, whatever else of ``other`` their relations then need (a newer
libdrm for a newer Mesa; the newer versions of base packages a downgrade would
break), until the set is consistent or cannot be made so.

Version comparison is dpkg's (``deb-version(7)``): epoch, upstream, revision;
``~`` sorts before everything, letters before non-letters.
"""

from __future__ import annotations

import dataclasses
import re

from ..errors import ProvisionError


# --- versions -------------------------------------------------------------------------------


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(v: str) -> tuple[int, str, str]:
    epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    try:
        return int(epoch or 0), upstream, revision
    except ValueError:
        raise ProvisionError(f"'{v}' is not a Debian version") from None


def compare(a: str, b: str) -> int:
    """<0, 0, >0 as Debian version ``a`` sorts before, equal to, after ``b``."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return ea - eb
    return _compare_part(ua, ub) or _compare_part(ra, rb)


_OPS = {
    "<<": lambda c: c < 0, "<=": lambda c: c <= 0, "=": lambda c: c == 0,
    ">=": lambda c: c >= 0, ">>": lambda c: c > 0, "<": lambda c: c <= 0, ">": lambda c: c >= 0,
}  # fmt: skip


# --- relations --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Relation:
    """``name (op version)``; the arch qualifier (``:any``) does not matter in one-architecture sets."""

    name: str
    op: str | None = None
    version: str | None = None

    def allows(self, version: str | None) -> bool:
        if self.op is None:
            return True
        return version is not None and _OPS[self.op](compare(version, self.version))

    def __str__(self) -> str:
        return self.name + (f" ({self.op} {self.version})" if self.op else "")


_RELATION = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?\s*(?:\[[^]]*\])?\s*(?:<[^>]*>\s*)*$")


def relations(field: str | None) -> list[tuple[Relation, ...]]:
    """``a (>= 1) | b, c`` → [(a>=1, b), (c,)]: every group must hold, by one of its alternatives."""
    out = []
    for group in (field or "").split(","):
        if not group.strip():
            continue
        alts = []
        for alt in group.split("|"):
            m = _RELATION.match(alt)
            if not m:
                raise ProvisionError(f"cannot read the package relation '{alt.strip()}'")
            alts.append(Relation(m.group(1), m.group(2), m.group(3)))
        out.append(tuple(alts))
    return out


@dataclasses.dataclass(frozen=True)
class Package:
    """What a package says of its relations (from its control file or an index record)."""

    name: str
    version: str
    depends: tuple[tuple[Relation, ...], ...] = ()
    breaks: tuple[Relation, ...] = ()
    provides: tuple[Relation, ...] = ()

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> "Package":
        deps = relations(fields.get("Pre-Depends")) + relations(fields.get("Depends"))
        breaks = [r for group in relations(fields.get("Breaks")) + relations(fields.get("Conflicts")) for r in group]
        provides = [r for group in relations(fields.get("Provides")) for r in group]
        return cls(fields["Package"], fields["Version"], tuple(deps), tuple(breaks), tuple(provides))


def _providers(packages: dict[str, Package]) -> dict[str, list[tuple[Package, str | None]]]:
    """name → [(package, the version it provides it at)], real packages first."""
    out: dict[str, list[tuple[Package, str | None]]] = {}
    for p in packages.values():
        out.setdefault(p.name, []).insert(0, (p, p.version))
        for prov in p.provides:
            out.setdefault(prov.name, []).append((p, prov.version if prov.op == "=" else None))
    return out


@dataclasses.dataclass(frozen=True)
class Problem:
    """One relation a set breaks: ``package`` needs ``wanted`` (a Depends group), or breaks ``broken``."""

    package: Package
    wanted: tuple[Relation, ...] = ()
    broken: Package | None = None
    got: str | None = None  # what the set has instead (a version, or None: nothing)

    def __str__(self) -> str:
        who = f"{self.package.name} {self.package.version}"
        if self.broken is not None:
            return f"{who} breaks {self.broken.name} {self.broken.version}"
        want = " | ".join(str(r) for r in self.wanted)
        return f"{who} needs {want}, " + (f"but the set has {self.wanted[0].name} {self.got}" if self.got else "which the set lacks")


def problems(packages: dict[str, Package]) -> list[Problem]:
    """Every relation the set ``packages`` (name → Package) does not keep."""
    prov = _providers(packages)
    out = []
    for p in packages.values():
        for group in p.depends:
            if not any(r.allows(v) for r in group for _, v in prov.get(r.name, [])):
                have = packages.get(group[0].name)
                out.append(Problem(p, group, got=have.version if have else None))
        for r in p.breaks:
            for other, v in prov.get(r.name, []):
                if other.name != p.name and r.allows(v):
                    out.append(Problem(p, broken=other))
    return out


class Unmixable(ProvisionError):
    """The two sets cannot be mixed so that every relation holds."""

    def __init__(self, problems_: list[Problem], what: str):
        self.problems = problems_
        shown = "; ".join(str(p) for p in problems_[:3]) + (f" and {len(problems_) - 3} more" if len(problems_) > 3 else "")
        super().__init__(f"{what} cannot be installed together: {shown}")


def mix(base: dict[str, Package], other: dict[str, Package], seeds: set[str], what: str = "the mixed packages") -> set[str]:
    """The names to take from ``other`` into ``base`` so that ``seeds`` come from ``other`` and every relation holds.

    Packages only ``other`` has may be added; none of ``base`` is removed. An
    Unmixable error names the relations no choice keeps.
    """
    missing = seeds - set(other)
    if missing:
        raise ProvisionError(f"{what}: the other set has no {', '.join(sorted(missing))}")
    take = set(seeds)
    while True:
        current = {**base, **{n: other[n] for n in take}}
        found = problems(current)
        if not found:
            return take
        progress = False
        for prob in found:
            if prob.broken is not None:
                # One of the pair from the other side (where it differs) settles a Breaks.
                for name in (prob.broken.name, prob.package.name):
                    if name not in take and name in other and other[name].version != current[name].version:
                        take.add(name)
                        progress = True
                        break
                continue
            choice = next((r.name for r in prob.wanted if r.name in other and r.name not in take
                           and any(r.allows(v) for _, v in _providers({r.name: other[r.name]}).get(r.name, []))), None)  # fmt: skip
            if choice is None:
                # A provider through Provides, in the other set.
                oprov = _providers(other)
                choice = next((p.name for r in prob.wanted for p, v in oprov.get(r.name, []) if p.name not in take and r.allows(v)), None)
            if choice is None and prob.package.name not in take and prob.package.name in other:
                choice = prob.package.name  # the other side's version of the package that needs more
            if choice is not None:
                take.add(choice)
                progress = True
        if not progress:
            raise Unmixable(found, what)
