"""Shared fixtures.

The ``vm`` tests provision the real pinned components into the cache named by
``$VENUS_REPRO_CACHE`` (CI points it at an empty directory, so every CI run
proves the cold path) and boot the real guest. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def venus_repro(*args: str, check: bool = False, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    """Run the CLI as a user would (a separate process; stdout and stderr captured)."""
    cmd = [sys.executable, "-m", "venus_repro", *args]
    cwd = kw.pop("cwd", REPO)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"venus-repro {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def leftovers() -> list[str]:
    """QEMU / render-server processes and bind mounts into a venus-repro root."""
    procs = subprocess.run(["pgrep", "-a", "-f", "qemu-system-aarch64|virgl_render_server"], capture_output=True, text=True)
    found = [l for l in procs.stdout.splitlines() if "pgrep" not in l]
    with open("/proc/mounts") as f:
        found += [l for l in f if "venus-repro" in l]
    return found


@pytest.fixture(scope="session")
def provisioned() -> dict:
    """Provision the pinned components once per session (cold in CI)."""
    if os.geteuid() != 0:
        pytest.fail("the VM tests need root (chroot and bind mounts in a private namespace)")
    proc = venus_repro("provision", "--json", check=True)
    return json.loads(proc.stdout)


@pytest.fixture
def no_leftovers():
    before = leftovers()
    yield
    after = [l for l in leftovers() if l not in before]
    assert not after, f"left running or mounted after the test: {after}"
