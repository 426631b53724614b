"""venus-repro installed the way a user (or Nix's buildPythonApplication) installs it.

A wheel built from the checkout, in a fresh virtual environment, with no
source tree anywhere near it, must provision, boot and reach a PASS verdict:
everything it needs at run time ships inside the package. And its pytest
plugin must not get in the way of another project's pytest session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import REPO, demos
from test_nix_profile import debian_manifest


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
    assert [d["name"] for d in demos(result)] == ["test_tri", "vkcube_anim"]
    assert all(d["checksum_match"] for d in demos(result))
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


# --- an emulated Nix build sandbox ---------------------------------------------------------

# What a Nix build sandbox does not have, hidden in a private mount namespace:
# the host's EGL and Vulkan configuration, and /usr/bin/env.
_HIDDEN_DIRS = ("/etc/glvnd", "/usr/share/glvnd", "/etc/vulkan", "/usr/share/vulkan")
# The commands a check gets on PATH: stdenv's coreutils (those the driver uses) and
# util-linux (a nativeBuildInput). Copies, so none is reached through /usr/bin.
_SANDBOX_TOOLS = ("env", "mkdir", "touch", "cat", "sh", "unshare", "mount", "chroot")


def in_nix_like_sandbox(argv: list[str], tmp: Path, python: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``argv`` as a Nix build would: no network, no host /usr/share/{glvnd,vulkan} or
    /etc/{glvnd,vulkan}, no /usr/bin/env, HOME=/homeless-shelter, and PATH holding only
    copies of the few tools a check would list and ``python``'s environment (so nothing
    is found by an FHS path)."""
    bin_dir = tmp / "sandbox-bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in _SANDBOX_TOOLS:
        shutil.copy2(shutil.which(tool), bin_dir / tool)
    hide = [f"[ ! -d {d} ] || mount -t tmpfs -o ro,mode=755 tmpfs {d}" for d in _HIDDEN_DIRS]
    script = "\n".join(["set -e", *hide, "mount --bind /dev/null /usr/bin/env", 'exec "$@"'])
    env = {"PATH": f"{bin_dir}:{python.parent}", "HOME": "/homeless-shelter", "TMPDIR": str(tmp), "LANG": "C.UTF-8", **extra_env}
    return subprocess.run(
        [shutil.which("unshare"), "--mount", "--net", "--propagation", "private", "/bin/sh", "-c", script, "sandbox", *argv],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_the_emulated_sandbox_hides_what_nix_hides(tmp_path):
    probe = "import os, shutil; print(os.access('/usr/bin/env', os.X_OK), os.path.exists('/usr/share/vulkan/icd.d'), shutil.which('env'))"
    proc = in_nix_like_sandbox(["python3", "-c", probe], tmp_path, Path(sys.executable), {})
    assert proc.returncode == 0, proc.stderr
    env_exec, vulkan, env_on_path = proc.stdout.split()
    assert env_exec == "False" and vulkan == "False" and env_on_path == str(tmp_path / "sandbox-bin" / "env")


def test_unit_tests_pass_in_an_emulated_nix_sandbox(wheel_venv, tmp_path):
    """checks.unit, as Nix runs it: the installed package, a copy of tests/ and pyproject.toml, no source tree."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "tests", src / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", src)
    _pip(wheel_venv / "bin" / "python", "install", "pytest", "hypothesis", cwd=tmp_path)  # as checks.unit (nix/driver-tests.nix)
    proc = in_nix_like_sandbox(
        ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not vm and not nix", "tests",
         "--deselect", "tests/test_install.py"],
        src, wheel_venv / "bin" / "python", {"VENUS_REPRO_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


@pytest.mark.vm
def test_nix_profile_run_in_an_emulated_nix_sandbox(wheel_venv, provisioned, tmp_path, no_leftovers):
    """checks.vm, as Nix runs it: the nix profile from a manifest, the wheel's driver, the emulated sandbox."""
    doc = debian_manifest(provisioned)
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    proc = in_nix_like_sandbox(
        ["venus-repro", "run", "--profile", "nix", "--manifest", str(tmp_path / "manifest.json"), "--json",
         "--run-dir", str(tmp_path / "run")],
        tmp_path, wheel_venv / "bin" / "python",
        {"VENUS_REPRO_CACHE": os.environ.get("VENUS_REPRO_CACHE", str(Path.home() / ".cache" / "venus-repro"))},
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass" and result["profile"] == "nix"
    assert [d["checksum"] == d["host_checksum"] for d in demos(result)] == [True, True, True]


@pytest.mark.vm
def test_bench_without_matplotlib_says_so_first_and_keeps_its_measurements(wheel_venv, provisioned, tmp_path, no_leftovers):
    """The wheel's venv has no plotting extra: bench says so before it measures, and writes bench.json."""
    run_dir = tmp_path / "bench"
    proc = subprocess.run(
        [str(wheel_venv / "bin" / "venus-repro"), "bench", "--json", "--repeat", "1", "--frames", "20",
         "--demo", "test_tri", "--run-dir", str(run_dir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    warning = "matplotlib is not installed (pip install 'venus-repro[bench]'): bench.json only, the plot is skipped"
    assert warning in proc.stderr
    assert proc.stderr.index(warning) < proc.stderr.index("time to verdict")  # before anything is measured
    report = json.loads(proc.stdout)
    assert report["plot"] is None and not (run_dir / "bench.png").exists()
    assert json.loads((run_dir / "bench.json").read_text()) == report
    assert report["demos"]["test_tri"]["guest_fps"]["values"]
