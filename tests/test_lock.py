"""The lock file: checks against the profile and the refresh diff."""

import json

import pytest

from venus_repro import profile
from venus_repro.errors import PinError
from venus_repro.provision import lock


def test_committed_lock_covers_the_profile():
    prof = profile.load("debian-trixie")
    lk = lock.Lock.load(prof)
    for name in prof.package_sets():
        pins = lk.pins(name)
        assert pins, name
        assert all(len(p.sha256) == 64 and p.filename.startswith("pool/") for p in pins)
    kernels = [p.name for p in lk.pins("kernel-16k")]
    assert len(kernels) == 1 and kernels[0].endswith("-arm64-16k")


def test_lock_for_another_package_list_is_refused(tmp_path):
    prof = profile.load("debian-trixie")
    doc = json.loads(prof.lock_path.read_text())
    doc["sets"]["guest-arm64"]["requested"].append("something-else")
    path = tmp_path / "debian-trixie.lock.json"
    path.write_text(json.dumps(doc))
    stale = profile.Profile(**{**prof.__dict__, "lock_path": path})
    with pytest.raises(PinError, match=r"different package list.*lock --refresh"):
        lock.Lock.load(stale)


def test_missing_lock_names_the_fix(tmp_path):
    prof = profile.load("debian-trixie")
    gone = profile.Profile(**{**prof.__dict__, "lock_path": tmp_path / "none.json"})
    with pytest.raises(PinError, match="venus-repro lock --refresh --profile debian-trixie"):
        lock.Lock.load(gone)


def test_diff_reports_changed_added_removed():
    pin = lambda n, v: {"name": n, "version": v, "sha256": v * 4}  # noqa: E731
    old = {"host": {"packages": [pin("a", "1"), pin("b", "1")]}}
    new = {"host": {"packages": [pin("a", "2"), pin("c", "1")]}}
    assert lock.diff(old, new) == [("host", "a", "1", "2"), ("host", "b", "1", "-"), ("host", "c", "-", "1")]


def _scenario_with_lock(tmp_path, prof):
    """The built-in validation scenario and its lock, copied where a test may change them."""
    data = prof.lock_path.parent.parent / "scenarios"
    for name in ("validation.yaml", "validation.lock.json"):
        (tmp_path / name).write_text((data / name).read_text())
    return tmp_path / "validation.yaml", ("vulkan-validationlayers",)


def _with_lock(tmp_path, prof, change):
    doc = json.loads(prof.lock_path.read_text())
    change(doc)
    path = tmp_path / "base.lock.json"
    path.write_text(json.dumps(doc))
    return lock.Lock(path, doc)


def test_a_scenario_lock_outlives_changes_to_other_sets_but_not_to_the_guest_set(tmp_path):
    """A host tool added to the lock leaves scenario locks valid; a new guest pin makes them stale."""
    prof = profile.load("debian-trixie")
    scenario, packages = _scenario_with_lock(tmp_path, prof)
    requested = json.loads((tmp_path / "validation.lock.json").read_text())["requested"]
    assert tuple(requested) == packages
    pins = lock.extra_guest_pins(prof, lock.Lock.load(prof), packages, lock.scenario_lock_path(scenario), scenario)
    assert "vulkan-validationlayers" in {p.name for p in pins}

    def add_tool(doc):
        doc["sets"]["tool-something-amd64"] = {"packages": [], "requested": ["something"]}

    assert lock.extra_guest_pins(prof, _with_lock(tmp_path, prof, add_tool), packages, lock.scenario_lock_path(scenario), scenario) == pins

    def bump_guest(doc):
        doc["sets"]["guest-arm64"]["packages"][0]["version"] += "+1"

    with pytest.raises(PinError, match=r"made for other debian-trixie guest pins; run `venus-repro lock --refresh --scenario"):
        lock.extra_guest_pins(prof, _with_lock(tmp_path, prof, bump_guest), packages, lock.scenario_lock_path(scenario), scenario)


def test_a_scenario_lock_from_before_the_guest_key_is_checked_against_the_whole_lock(tmp_path):
    prof = profile.load("debian-trixie")
    scenario, packages = _scenario_with_lock(tmp_path, prof)
    doc = json.loads((tmp_path / "validation.lock.json").read_text())
    del doc["base_guest_sha256"]
    doc["base_lock_sha256"] = "0" * 64
    (tmp_path / "validation.lock.json").write_text(json.dumps(doc))
    with pytest.raises(PinError, match="made for other debian-trixie guest pins"):
        lock.extra_guest_pins(prof, lock.Lock.load(prof), packages, lock.scenario_lock_path(scenario), scenario)
    doc["base_lock_sha256"] = lock.Lock.load(prof).digest()
    (tmp_path / "validation.lock.json").write_text(json.dumps(doc))
    assert lock.extra_guest_pins(prof, lock.Lock.load(prof), packages, lock.scenario_lock_path(scenario), scenario)
