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
