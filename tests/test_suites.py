"""The environment model on real guests: steps in order, the newer Debian suites, layers from two suites."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import demos, programs, venus_repro

pytestmark = pytest.mark.vm


def _run(*args: str, timeout: float = 1800) -> tuple[int, dict, str]:
    proc = venus_repro("run", "--json", *args, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _frames_equal_the_hosts(result: dict) -> None:
    ds = demos(result)
    assert [d["name"] for d in ds] == ["test_tri", "vkcube_anim", "vkcube_zerocopy"]
    for d in ds:
        assert d["outcome"] == "pass" and d["driver"] == "venus", d
        assert d["checksum"].startswith("fnv1a64:") and d["checksum"] == d["host_checksum"], d


def test_steps_run_in_the_order_they_are_written(provisioned, tmp_path, no_leftovers):
    from test_environment import ORDERED

    sc = tmp_path / "ordered.yaml"
    sc.write_text(ORDERED)
    code, result, _ = _run(str(sc), "--run-dir", str(tmp_path / "run"))
    assert code == 0, [c for c in result["checks"] if not c["ok"]]
    assert [(s["kind"], s["name"]) for s in result["steps"]] == [("program", "prepare"), ("demo", "test_tri"), ("program", "check")]
    console = (tmp_path / "run/console.log").read_text(errors="replace")
    assert re.findall(r"@@VENUS-REPRO step-start name=(\S+)", console) == ["prepare", "test_tri", "check"]
    assert [p["outcome"] for p in programs(result)] == ["pass", "pass"]  # check saw what prepare wrote


@pytest.mark.parametrize("suite", ["forky", "sid"])
def test_the_newer_suites_pass_the_demos(moving_profile, tmp_path, no_leftovers, suite):
    profile = moving_profile(f"debian-{suite}")
    code, result, _ = _run("--profile", str(profile), "--run-dir", str(tmp_path / "run"))
    assert code == 0, [c for c in result["checks"] if not c["ok"]]
    _frames_equal_the_hosts(result)
    assert result["guest"]["page_size"] == 16384 and re.match(r"7\.", result["guest"]["kernel_release"]), result["guest"]
    for name in ("qemu", "virglrenderer", "guest_mesa", "guest_kernel"):
        c = result["components"][name]
        assert (c["source"], c["detail"]) == ("profile", suite), (name, c)
    assert result["components"]["virglrenderer"]["version"].startswith("1.3")
    env = json.loads((tmp_path / "run/environment.json").read_text())
    assert {p["suite"] for layer in env["layers"].values() for p in layer} == {suite}


FORKY_MESA = """\
name: forky-mesa
description: the trixie host with forky's guest Mesa (and what it needs from forky)
profile: debian-trixie
components: {guest_mesa: {suite: forky}}
steps:
  - demo: test_tri
  - demo: vkcube_anim
  - demo: vkcube_zerocopy
"""


def test_a_trixie_host_with_forkys_guest_mesa(provisioned, tmp_path, no_leftovers):
    sc = tmp_path / "forky-mesa.yaml"
    sc.write_text(FORKY_MESA)
    missing = venus_repro("run", str(sc))
    assert missing.returncode == 2 and f"has no lock forky-mesa.lock.json; run `venus-repro lock --refresh --scenario {sc}" in missing.stderr
    venus_repro("lock", "--refresh", "--scenario", str(sc), check=True, timeout=900)
    pinned = json.loads((tmp_path / "forky-mesa.lock.json").read_text())["components"]["guest_mesa"]
    from_forky = {p["name"] for p in pinned["pins"] if p["suite"] == "forky"}
    assert "mesa-vulkan-drivers" in from_forky and "libc6" not in from_forky  # only what forky's Mesa needs
    code, result, _ = _run(str(sc), "--run-dir", str(tmp_path / "run"))
    assert code == 0, [c for c in result["checks"] if not c["ok"]]
    _frames_equal_the_hosts(result)
    mesa = result["components"]["guest_mesa"]
    assert (mesa["source"], mesa["detail"]) == ("suite", "forky") and mesa["version"].startswith("26.")
    assert {d["driver_info"] for d in demos(result)} == {f"Mesa {mesa['version']}"}  # the guest says it loaded that Mesa
    assert result["components"]["guest_base"]["source"] == "mixed"
    assert result["components"]["qemu"]["detail"] == "trixie"


def test_a_mixed_root_that_cannot_run_is_one_error_before_the_boot(provisioned, tmp_path, no_leftovers):
    proc = venus_repro("run", "--component", "guest_mesa=suite:forky:exact", "--run-dir", str(tmp_path / "run"), timeout=900)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("venus-repro: error: the mixed guest root cannot run: "), error
    # The file, the library it needs, the package that ships the file (forky) and the root's (or none).
    assert re.search(r"needs lib\S+\.so\S*", error) and "(forky)" in error, error
    assert not (tmp_path / "run/console.log").exists()


def test_an_amd64_guest_passes_the_demos_on_its_own_4k_kernel(provisioned, tmp_path, no_leftovers):
    """The amd64 profile: Debian's amd64 kernel (a bzImage, 4K pages) and guest, the demos built for x86-64.

    KVM where it can run the guest, else TCG: here /dev/kvm may open yet fail to start a
    host CPU (nested virtualization), which the accelerator probe must see.
    """
    code, result, _ = _run("--profile", "debian-trixie-amd64", "--run-dir", str(tmp_path / "run"))
    assert code == 0, [c for c in result["checks"] if not c["ok"]]
    _frames_equal_the_hosts(result)
    assert result["guest"]["page_size"] == 4096 and result["guest"]["kernel_release"].endswith("-amd64"), result["guest"]
    assert result["accel"] in ("kvm", "tcg")
    fp = json.loads((tmp_path / "run/fingerprint.json").read_text())
    assert (fp["machine"]["guest_arch"], fp["machine"]["accel"], fp["machine"]["qemu_machine"]) == ("amd64", result["accel"], "q35")
    cmdline = (tmp_path / "run/qemu-cmdline.txt").read_text()
    assert "qemu-system-x86_64 -M q35" in cmdline and "console=ttyS0" in cmdline
    assert f"-accel {result['accel']}" in cmdline and ("-cpu host" in cmdline) == (result["accel"] == "kvm")
