"""venus-repro installed the way a user (or Nix's buildPythonApplication) installs it.

A wheel built from the checkout, in a fresh virtual environment, with no
source tree anywhere near it, must provision, boot and reach a PASS verdict:
everything it needs at run time ships inside the package. And its pytest
plugin must not get in the way of another project's pytest session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import REPO


def _pip(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel built from this checkout and its three dependencies."""
    tmp = tmp_path_factory.mktemp("wheel")
    _pip(Path(sys.executable), "wheel", "--no-deps", "-w", str(tmp / "dist"), str(REPO), cwd=tmp)
    (wheel,) = (tmp / "dist").glob("venus_repro-*.whl")
    venv.create(tmp / "venv", with_pip=True)
    _pip(tmp / "venv" / "bin" / "python", "install", str(wheel), cwd=tmp)
    return tmp / "venv"


def test_the_wheel_carries_everything_a_run_needs(wheel_venv, tmp_path):
    python = wheel_venv / "bin" / "python"
    probe = ("import json, venus_repro, venus_repro.resources as r; "
             "print(json.dumps([venus_repro.__file__, str(r.DEMOS), str(r.SHIMS), str(r.GUEST_INIT), str(r.DATA)]))")  # fmt: skip
    proc = subprocess.run([str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    paths = [Path(p) for p in json.loads(proc.stdout)]
    for p in paths:
        assert wheel_venv in p.parents, f"{p} is not inside the installed package"
    _, demos, shims, init, data = paths
    assert (demos / "demos.yaml").is_file() and (demos / "vr.c").is_file() and (demos / "shaders" / "cube.vert").is_file()
    assert (shims / "vkr_ring_wake.c").is_file() and init.is_file()
    assert (data / "pins" / "debian-trixie.lock.json").is_file()
    listed = subprocess.run([str(wheel_venv / "bin" / "venus-repro"), "demos"], cwd=tmp_path, capture_output=True, text=True)
    assert listed.returncode == 0 and "vkcube_anim" in listed.stdout, listed.stderr


@pytest.mark.vm
def test_wheel_install_runs_to_a_pass_verdict(wheel_venv, provisioned, tmp_path, no_leftovers):
    """Provision (the shared cache), boot and verdict from the wheel alone, in a folder with no source tree."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [str(wheel_venv / "bin" / "venus-repro"), "run", "--json", "--demo", "test_tri", "--demo", "vkcube_anim",
         "--run-dir", str(run_dir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass"
    assert [d["name"] for d in result["demos"]] == ["test_tri", "vkcube_anim"]
    assert all(d["checksum_match"] for d in result["demos"])
    assert result["guest"]["page_size"] == 16384


def test_a_foreign_pytest_session_with_its_own_driver_package(tmp_path):
    """Another project with a top-level ``driver`` package runs its tests with venus-repro installed."""
    (tmp_path / "driver").mkdir()
    (tmp_path / "driver" / "__init__.py").write_text("WHO = 'the other project'\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_other.py").write_text(
        "import driver\n\ndef test_its_own_driver():\n    assert driver.WHO == 'the other project'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "tests"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
    assert "venus-repro" in proc.stdout  # the plugin loaded (the "plugins:" line) and broke nothing
