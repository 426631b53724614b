"""End to end: provision the pinned components, boot the real guest, assert outcomes.

These boot QEMU (TCG) with a Venus GPU on host lavapipe. Each test also
asserts that no QEMU, render server or mount is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from conftest import REPO, demos, leftovers, programs, venus_repro

pytestmark = pytest.mark.vm


def run_json(tmp_path: Path, *args: str) -> tuple[int, dict]:
    run_dir = tmp_path / "run"
    proc = venus_repro("run", "--json", "--run-dir", str(run_dir), *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    # The run directory is written on every outcome.
    assert json.loads((run_dir / "result.json").read_text()) == result
    return proc.returncode, result


def png_size(path: str) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_demos_in_16k_guest_match_host(provisioned, tmp_path, no_leftovers):
    assert provisioned["kernel"]["page_size"] == 16384
    code, result = run_json(tmp_path)
    assert result["verdict"] == "pass", result["checks"]
    assert code == 0
    assert result["guest"]["page_size"] == 16384
    assert result["guest"]["kernel_release"].endswith("-arm64-16k")
    by_name = {d["name"]: d for d in demos(result)}
    assert list(by_name) == ["test_tri", "vkcube_anim", "vkcube_zerocopy"]
    for d in by_name.values():
        assert d["outcome"] == "pass", d
        # Every guest frame, rendered through Venus, is bit-identical to host lavapipe's.
        assert d["checksum"].startswith("fnv1a64:") and d["checksum"] == d["host_checksum"]
        assert d["driver"] == "venus" and "Venus" in d["device"]
        assert d["fps"] > 0 and d["host_fps"] > 0
    assert png_size(by_name["test_tri"]["frame_png"]) == (256, 256)
    for cube in ("vkcube_anim", "vkcube_zerocopy"):
        assert png_size(by_name[cube]["frame_png"]) == png_size(by_name[cube]["host_frame_png"]) == (1280, 800)
    # The zero-copy cube reads the same frame in place as the copy-back cube copies out.
    assert by_name["vkcube_anim"]["checksum"] == by_name["vkcube_zerocopy"]["checksum"]
    assert by_name["test_tri"]["checksum"] != by_name["vkcube_anim"]["checksum"]
    run_dir = Path(result["run_dir"])
    for name in ("console.log", "qemu-stderr.log", "qemu-guest-errors.log", "qemu-cmdline.txt", "guest/dmesg.txt"):
        assert (run_dir / name).exists(), name
    assert "venus=on,blob=on,hostmem=" in (run_dir / "qemu-cmdline.txt").read_text()
    assert "-d guest_errors" in (run_dir / "qemu-cmdline.txt").read_text()
    assert result["timings"]["qemu_start_to_init_s"] > 0


def test_known_failures_and_timeouts_do_not_stop_the_run(provisioned, tmp_path, no_leftovers):
    """A hung demo is killed at its timeout; the next demos still run; known failures hold."""
    code, result = run_json(
        tmp_path, "--timeout", "3", "--frames", "20000",
        "--demo", "vkcube_anim", "--demo", "vkcube_zerocopy_guest_blob", "--demo", "vkcube_zerocopy_dumb",
    )  # fmt: skip
    assert code == 1 and result["verdict"] == "fail"
    by_name = {d["name"]: d for d in demos(result)}
    assert by_name["vkcube_anim"]["outcome"] == "timeout"
    for variant in ("vkcube_zerocopy_guest_blob", "vkcube_zerocopy_dumb"):
        d = by_name[variant]
        assert (d["outcome"], d["vk_result"], d["call"]) == ("error", -7, "vkCreateDevice")
        assert "VK_ERROR_EXTENSION_NOT_PRESENT" in d["failure"]
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["vkcube_zerocopy_guest_blob: known failure"]["ok"]
    assert checks["vkcube_zerocopy_dumb: known failure"]["ok"]
    assert not checks["vkcube_anim: runs in the guest"]["ok"]


def test_copyback_variant(provisioned, tmp_path, no_leftovers):
    code, result = run_json(tmp_path, "--demo", "vkcube_copyback", "--frames", "60")
    assert code == 0, result["checks"]
    (d,) = demos(result)
    assert d["checksum"] == d["host_checksum"]


def test_4k_kernel_fails_the_verdict(provisioned, tmp_path, no_leftovers):
    code, result = run_json(tmp_path, "--kernel-flavour", "4k")
    failed = [c for c in result["checks"] if not c["ok"]]
    assert code == 1 and result["verdict"] == "fail", (result["failure"], failed)
    assert result["guest"]["page_size"] == 4096, (result["failure"], failed)
    assert [c["name"] for c in failed] == ["guest page size"], (result["failure"], failed)
    assert "4K pages but the profile requires 16K" in failed[0]["detail"]
    (finding,) = result["findings"]
    assert finding["id"] == "wrong-kernel"
    assert "4K pages where 16K pages are required (profile debian-trixie)" in finding["summary"]


def test_table_output_and_exit_code(provisioned, tmp_path, no_leftovers):
    proc = venus_repro("run", "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    header = proc.stdout.splitlines()[0].split()
    assert header[:3] == ["step", "outcome", "checksum"]
    assert "verdict: PASS" in proc.stdout
    assert "booting the guest" in proc.stderr  # progress goes to stderr


def _start_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    run_dir = tmp_path / "run"
    # As from a terminal: SIGINT at its default even if this suite was started in the
    # background (a non-interactive shell's `cmd &` ignores SIGINT, and children inherit that).
    proc = subprocess.Popen(
        [sys.executable, "-m", "venus_repro", "run", "--json", "--demo", "test_tri", "--run-dir", str(run_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    console = run_dir / "console.log"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if console.exists() and b"@@VENUS-REPRO init" in console.read_bytes():
            return proc, run_dir
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the guest did not reach /init")


def test_ctrl_c_stops_everything(provisioned, tmp_path, no_leftovers):
    proc, run_dir = _start_run(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert json.loads((run_dir / "result.json").read_text())["verdict"] == "error"
    assert not leftovers(str(tmp_path))
    from venus_repro.profile import cache_dir

    assert not list((cache_dir() / "exchanges").glob(f"{proc.pid}-*.img"))  # no exchange image left


def test_qemu_crash_is_a_failed_run(provisioned, tmp_path, no_leftovers):
    proc, run_dir = _start_run(tmp_path)
    qemu = subprocess.run(["pgrep", "-f", f"qemu-system-aarch64.*{run_dir}"], capture_output=True, text=True)
    pids = qemu.stdout.split()
    assert pids, "QEMU not found"
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    result = json.loads(out)
    assert result["verdict"] == "fail"
    assert "QEMU exited" in result["failure"]
    assert demos(result)[0]["outcome"] == "missing"
    # Said as what it was: a signal from outside, not a guest that did not boot.
    assert "venus-repro: QEMU was killed by signal 9 (SIGKILL)" in (run_dir / "machine.log").read_text()
    assert "qemu-killed" in [f["id"] for f in result["findings"]]


def test_boot_gives_an_interactive_console(provisioned, tmp_path, no_leftovers):
    child = pexpect.spawn(
        sys.executable, ["-m", "venus_repro", "boot", "--run-dir", str(tmp_path / "boot")],
        cwd=str(REPO), timeout=180, encoding="utf-8", codec_errors="replace",
    )  # fmt: skip
    try:
        child.expect("/ # ")
        child.sendline("grep KernelPageSize /proc/self/smaps | head -1; ls /dev/dri")
        child.expect(r"KernelPageSize:\s+16 kB")
        child.expect("renderD128")
        child.expect("/ # ")
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_warm_cache_needs_no_network(provisioned, tmp_path, no_leftovers):
    """With the cache provisioned, a run works in a network namespace with no interfaces."""
    run_dir = tmp_path / "offline"
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "venus_repro", "run", "--json", "--demo", "test_tri", "--run-dir", str(run_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["verdict"] == "pass"
    assert "downloading" not in proc.stderr and "package index" not in proc.stderr


def test_scenario_with_a_guest_program_and_host_file(provisioned, tmp_path, no_leftovers):
    (tmp_path / "hello.txt").write_text("hello from the host\n")
    sc = tmp_path / "mine.yaml"
    sc.write_text(
        "name: mine\n"
        "files: [{src: hello.txt, dest: hello.txt}]\n"
        "steps:\n"
        "  - demo: test_tri\n"
        "    frames: 10\n"
        "    min_fps: 1\n"
        "  - program: [vulkaninfo, --summary]\n"
        "    name: vulkaninfo\n"
        "    expect: {exit: 0, stdout: ['driverName\\s*=\\s*venus']}\n"
        "  - program: [cat, /in/files/hello.txt]\n"
        "    name: hostfile\n"
        "    expect: {stdout: ['^hello from the host$']}\n"
        "  - program: [cat, /in/files/hello.txt]\n"
        "    name: mustfail\n"
        "    expect: {stdout: ['^this is not there$']}\n"
    )
    code, result = run_json(tmp_path, str(sc))
    assert code == 1 and result["scenario"]["name"] == "mine"
    by_prog = {p["name"]: p for p in programs(result)}
    assert by_prog["vulkaninfo"]["outcome"] == "pass"
    assert by_prog["hostfile"]["outcome"] == "pass"
    assert by_prog["mustfail"]["outcome"] == "fail"
    failed = [c["name"] for c in result["checks"] if not c["ok"]]
    assert failed == ["mustfail: stdout matches /^this is not there$/"]


def test_arguments_reach_a_guest_program_verbatim_and_outputs_come_back(provisioned, tmp_path, no_leftovers):
    """The built-in scenario 'arguments': spaces, globs, quotes and $ untouched; a shell step; an output file."""
    code, result = run_json(tmp_path, "arguments")
    assert code == 0 and result["verdict"] == "pass", [c for c in result["checks"] if not c["ok"]]
    by_prog = {p["name"]: p for p in programs(result)}
    copy = by_prog["verbatim"]["outputs"]["/tmp/args.txt"]
    assert copy and Path(copy).read_text() == "[two words]\n[*]\n[it's]\n[$HOME]\n[]\n"
    assert Path(copy).is_relative_to(Path(result["run_dir"]))
    assert by_prog["shell-pipe"]["outcome"] == "pass"


def test_known_bug_scenario(provisioned, tmp_path, no_leftovers):
    code, result = run_json(tmp_path, "render-server-missing")
    assert code == 0 and result["verdict"] == "pass"
    assert [c["name"] for c in result["checks"]] == ["expected findings"]
    assert any(not c["ok"] for c in result["observed_checks"])


def test_fingerprint_is_stable_and_compare_names_the_kernel(provisioned, tmp_path, no_leftovers):
    runs = {}
    for name, extra in (("a", []), ("b", []), ("k4", ["--kernel-flavour", "4k"])):
        run_dir = tmp_path / name
        venus_repro("run", "--json", "--demo", "test_tri", "--run-dir", str(run_dir), *extra)
        runs[name] = run_dir
    fa = json.loads((runs["a"] / "fingerprint.json").read_text())
    fb = json.loads((runs["b"] / "fingerprint.json").read_text())
    assert fa == fb, "two runs in the same environment must have the same fingerprint"
    assert fa["components"]["guest_kernel"]["page_size"] == 16384
    assert fa["components"]["guest_mesa"]["version"]  # as the guest reported it
    same = json.loads(venus_repro("compare", "--json", str(runs["a"]), str(runs["b"])).stdout)
    assert same["summary"] == "no component differences" and same["differences"] == []
    diff = json.loads(venus_repro("compare", "--json", str(runs["a"]), str(runs["k4"])).stdout)
    first = diff["differences"][0]
    assert (first["what"], first["a"], first["b"], first["suspect"]) == ("components.guest_kernel.page_size", 16384, 4096, True)
    assert {"what": "verdict", "a": "pass", "b": "fail"} in diff["outcomes"]
    assert "suspect components.guest_kernel.page_size first" in diff["summary"]
    table = venus_repro("compare", str(runs["a"]), str(runs["k4"])).stdout
    assert "components.guest_kernel.page_size" in table and "16384" in table and "4096" in table


def test_bundle_and_replay_round_trip(provisioned, tmp_path, no_leftovers):
    """Bundle a run, replay it with a fresh, empty cache: same pins, same verdict, no component differences."""
    original = tmp_path / "orig"
    venus_repro("run", "vulkaninfo", "--run-dir", str(original), check=True)
    bundled = venus_repro("bundle", str(original), "-o", str(tmp_path / "bug.tar.gz"), check=True)
    archive = tmp_path / "bug.tar.gz"
    assert str(archive) in bundled.stdout and archive.stat().st_size < 5 * 1024 * 1024
    fresh_cache = tmp_path / "fresh-cache"
    proc = venus_repro(
        "replay", "--json", str(archive), "--run-dir", str(tmp_path / "replayed"),
        env={**os.environ, "VENUS_REPRO_CACHE": str(fresh_cache)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["reproduced"] and out["result"]["verdict"] == "pass"
    assert out["comparison"]["summary"] == "no component differences"
    assert out["result"]["scenario"]["name"] == "vulkaninfo"
    assert (fresh_cache / "debs").is_dir()  # provisioned from nothing


def test_scenario_guest_packages_pinned_and_replayed(provisioned, tmp_path, no_leftovers):
    sc = tmp_path / "tree.yaml"
    sc.write_text(
        "name: with-tree\nguest_packages: [tree]\nsteps:\n"
        "  - program: [tree, --version]\n    name: tree\n    expect: {exit: 0, stdout: ['^tree v']}\n"
    )
    refresh = venus_repro("lock", "--refresh", "--scenario", str(sc), check=True)
    assert "tree" in refresh.stdout
    pins = json.loads((tmp_path / "tree.lock.json").read_text())
    assert [p["name"] for p in pins["packages"]] == ["tree"] and len(pins["packages"][0]["sha256"]) == 64
    code, result = run_json(tmp_path, str(sc))
    assert code == 0 and programs(result)[0]["outcome"] == "pass"
    run_dir = Path(result["run_dir"])
    assert (run_dir / "scenario.lock.json").exists()
    # The bundle carries the scenario lock; a replay here reproduces the pass.
    venus_repro("bundle", str(run_dir), "-o", str(tmp_path / "b.tar.gz"), check=True)
    replay = venus_repro("replay", "--json", str(tmp_path / "b.tar.gz"), "--run-dir", str(tmp_path / "again"))
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert json.loads(replay.stdout)["comparison"]["summary"] == "no component differences"


def test_component_overrides_are_used_and_fingerprinted(provisioned, tmp_path, no_leftovers):
    """A locally built virglrenderer/render server (here: copies, and a broken one) is what QEMU runs."""
    root = Path(provisioned["host_root"])
    good = tmp_path / "good"
    good.mkdir()
    (lib,) = root.glob("usr/lib/*/libvirglrenderer.so.1")
    shutil.copy(lib, good / "libvirglrenderer.so.1")
    shutil.copy(root / "usr/libexec/virgl_render_server", good / "virgl_render_server")
    code, result = run_json(
        tmp_path, "--demo", "test_tri",
        "--virglrenderer", str(good / "libvirglrenderer.so.1"), "--render-server", str(good / "virgl_render_server"),
    )  # fmt: skip
    assert code == 0, result["checks"]
    fp = json.loads((Path(result["run_dir"]) / "fingerprint.json").read_text())
    assert fp["components"]["virglrenderer"]["library"] == str(good / "libvirglrenderer.so.1")
    assert fp["components"]["virglrenderer"]["render_server"] == str(good / "virgl_render_server")
    assert fp["components"]["virglrenderer"]["version"] == "override"
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy("/bin/false", bad / "virgl_render_server")
    proc = venus_repro("run", "--json", "--demo", "test_tri", "--run-dir", str(tmp_path / "broken"),
                       "--render-server", str(bad / "virgl_render_server"))  # fmt: skip
    broken = json.loads(proc.stdout)
    assert proc.returncode == 1 and [f["id"] for f in broken["findings"]] == ["render-server-missing"]


def test_a_failing_program_shows_what_it_said(provisioned, tmp_path, no_leftovers):
    (tmp_path / "s.yaml").write_text("name: ls-fails\nsteps:\n  - program: [ls, /no/such/path]\n    name: ls_missing\n")
    proc = venus_repro("run", str(tmp_path / "s.yaml"), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "running 1 program(s)" in proc.stderr and "0 demo(s)" not in proc.stderr
    assert "ls_missing stderr (last 1 lines; guest/ls_missing.err has it all):" in proc.stdout
    assert "/no/such/path" in proc.stdout.split("ls_missing stderr", 1)[1]


def test_scenario_packages_are_installed_as_packages(provisioned, tmp_path, no_leftovers):
    """A dependency the drop list strips from the base guest comes back; update-alternatives links are made."""
    scenario_file = Path(__file__).parent / "fixtures" / "scenarios" / "packages.yaml"
    code, result = run_json(tmp_path, str(scenario_file))
    assert code == 0 and result["verdict"] == "pass", [c for c in result["checks"] if not c["ok"]]
    assert {p["name"]: p["outcome"] for p in programs(result)} == {"xmllint": "pass", "blas-alternative": "pass"}


def test_the_demos_under_the_validation_layer_load_it_and_report_no_error(provisioned, tmp_path, no_leftovers):
    code, result = run_json(tmp_path, "validation")
    checks = {c["name"]: c for c in result["checks"]}
    for demo in ("test_tri", "vkcube_anim", "vkcube_zerocopy"):
        assert checks[f"{demo}: validation layer loaded"]["ok"], checks[f"{demo}: validation layer loaded"]
        assert checks[f"{demo}: no validation errors"]["ok"], checks[f"{demo}: no validation errors"]
    assert code == 0 and result["verdict"] == "pass"


def test_a_programs_outputs_equal_the_same_command_on_the_host(provisioned, tmp_path, no_leftovers):
    """Built-in scenario 'differential': a frame file byte for byte, a device report after normalisation."""
    code, result = run_json(tmp_path, "differential")
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["triangle-frame: /tmp/tri/test_tri.rgba equals the host's"]["ok"], checks
    assert checks["device-report: stdout equals the host's"]["ok"], checks
    assert code == 0 and result["verdict"] == "pass"
    run_dir = Path(result["run_dir"])
    guest_frame = run_dir / "guest/triangle-frame.files/test_tri.rgba"
    assert guest_frame.read_bytes() == (run_dir / "host/triangle-frame.files/test_tri.rgba").read_bytes()


def test_a_differential_mismatch_fails_and_keeps_both_outputs(provisioned, tmp_path, no_leftovers):
    scenario_file = Path(__file__).parent / "fixtures" / "scenarios" / "differential-mismatch.yaml"
    code, result = run_json(tmp_path, str(scenario_file), "--allow-host-programs")
    assert code == 1 and result["verdict"] == "fail"
    (check,) = [c for c in result["checks"] if not c["ok"]]
    assert check["name"] == "device-name: stdout equals the host's" and "Virtio-GPU Venus" in check["detail"]
    run_dir = Path(result["run_dir"])
    assert "Virtio-GPU Venus" in (run_dir / "guest/device-name.out").read_text()
    host = (run_dir / "host/device-name.out").read_text()
    assert "deviceName" in host and "Venus" not in host


def test_a_validation_error_in_the_guest_fails_the_run_and_is_named(provisioned, tmp_path, no_leftovers):
    scenario_file = Path(__file__).parent / "fixtures" / "scenarios" / "validation-error.yaml"
    code, result = run_json(tmp_path, str(scenario_file))
    assert code == 1 and result["verdict"] == "fail"
    (check,) = [c for c in result["checks"] if not c["ok"]]
    assert check["name"] == "tri-invalid: no validation errors"
    assert "Validation Error: [ VUID-VkBufferCreateInfo-" in check["detail"]  # -None-09500 in layer 1.4.309
