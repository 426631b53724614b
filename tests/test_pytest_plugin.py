"""The pytest plugin: scenarios as test items, run dirs in failure reports and JUnit XML."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

pytestmark = pytest.mark.vm


def test_scenarios_become_test_items(provisioned, tmp_path, no_leftovers):
    (tmp_path / "broken.venus.yaml").write_text(
        "name: must-fail\nsteps:\n  - program: [cat, /proc/version]\n    name: version\n"
        "    expect: {stdout: ['^no such text$']}\n"
    )
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "--venus-scenario", "vulkaninfo", "--venus-run-dir", str(tmp_path / "runs"), f"--junitxml={junit}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 failed, 1 passed" in proc.stdout
    assert f"run directory: {tmp_path / 'runs' / 'must-fail'}" in proc.stdout
    assert "FAILED version: stdout matches /^no such text$/" in proc.stdout
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {"broken.venus.yaml", "venus-scenario[vulkaninfo]"}
    props = {c: {p.get("name"): p.get("value") for p in cases[c].iter("property")} for c in cases}
    assert props["venus-scenario[vulkaninfo]"] == {"run_dir": str(tmp_path / "runs" / "vulkaninfo"), "verdict": "pass"}
    assert props["broken.venus.yaml"]["verdict"] == "fail"
    assert cases["broken.venus.yaml"].find("failure") is not None
