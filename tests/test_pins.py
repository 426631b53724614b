"""Pinning failures against the real mirror: one clear error that names the fix.

A copy of the profile and its lock is tampered with; the cache is a fresh
directory pre-filled (hard links) with every already-verified .deb except the
tampered package, so only that package is fetched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import venus_repro
from venus_repro import profile

pytestmark = pytest.mark.vm


def tampered(tmp_path: Path, provisioned: dict, package: str, **change) -> dict:
    prof = profile.load("debian-trixie")
    shutil.copy(profile.PROFILES / "debian-trixie.yaml", tmp_path / "debian-trixie.yaml")
    doc = json.loads(prof.lock_path.read_text())
    arch = "amd64" if os.uname().machine == "x86_64" else "arm64"
    (pin,) = [p for p in doc["sets"][f"host-{arch}"]["packages"] if p["name"] == package]
    pin.update(change)
    (tmp_path / prof.lock_path.name).write_text(json.dumps(doc))
    cache = tmp_path / "cache"
    (cache / "debs").mkdir(parents=True)
    real = Path(provisioned["host_root"]).parents[1] / "debs"
    for deb in real.iterdir():
        if not deb.name.startswith(f"{package}_"):
            os.link(deb, cache / "debs" / deb.name)
    return {**os.environ, "VENUS_REPRO_CACHE": str(cache)}


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("venus-repro: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_version_gone_from_mirror(tmp_path, provisioned):
    # A moving suite moved on: the pinned file is no longer in the pool.
    env = tampered(tmp_path, provisioned, "dash", version="0.0.1-1", filename="pool/main/d/dash/dash_0.0.1-1_amd64.deb")
    proc = venus_repro("provision", "--profile", str(tmp_path / "debian-trixie.yaml"), env=env)
    line = one_error_line(proc)
    assert "no longer serves dash 0.0.1-1" in line and f"venus-repro lock --refresh --profile {tmp_path / 'debian-trixie.yaml'}" in line


def test_sha256_mismatch_is_refused(tmp_path, provisioned):
    env = tampered(tmp_path, provisioned, "dash", sha256="0" * 64)
    proc = venus_repro("provision", "--profile", str(tmp_path / "debian-trixie.yaml"), env=env)
    line = one_error_line(proc)
    assert "sha256 mismatch for dash" in line
    # The file that failed verification never entered the cache.
    assert not list((tmp_path / "cache" / "debs").glob("dash_*"))
    assert not list((tmp_path / "cache" / "tmp").glob("*/dash_*"))
