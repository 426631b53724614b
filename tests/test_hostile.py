"""Hostile and faulty inputs: what a guest, a bundle or a scenario may make the host do (nothing
outside the run directory), and how faults end (one clear error, nothing left behind).

Each test reproduces one way the driver was broken before (issue: "Nothing from a guest, a
bundle or a scenario reaches the host; a fault loses nothing").
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import REPO, leftovers, venus_repro
from venus_repro import protocol
from venus_repro.provision import sysroot

# --- what comes back from the guest ----------------------------------------------------------


def _guest_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for m in [("./facts", b"page_size_kb=16\n"), *members]:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    path.write_bytes(buf.getvalue())


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_guest_exchange_never_writes_outside_the_run_directory(tmp_path):
    victim = tmp_path / "victim"
    dev = tarfile.TarInfo("./dev-null")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    _guest_tar(tmp_path / "xchg.img", [
        ("../victim", b"owned"), (str(victim), b"owned"), ("./../../escape", b"owned"),
        ("./sub/deeper/result.txt", b"kept"), ("./ok.out", b"fine"),
        _link("./passwd", "/etc/passwd"), _link("./hard", "/etc/shadow", tarfile.LNKTYPE), dev,
        ("./a/b/c/d/e/too-deep", b"x"), ("./we ird", b"x"),
    ])  # fmt: skip
    out = protocol.read_exchange(tmp_path / "xchg.img")
    assert out is not None
    assert set(out.files) == {"facts", "sub/deeper/result.txt", "ok.out"}
    refused = "\n".join(out.rejected)
    for name in ("../victim", str(victim), "../../escape", "passwd", "hard", "dev-null", "too-deep", "we ird"):
        assert name in refused, name
    run = tmp_path / "run"
    run.mkdir()
    protocol.save_guest_files(out, run / "guest")
    assert (run / "guest" / "sub" / "deeper" / "result.txt").read_bytes() == b"kept"  # a subfolder is no crash
    assert not victim.exists() and not (tmp_path.parent / "escape").exists()
    assert sorted(p.name for p in (run / "guest").rglob("*")) == ["deeper", "facts", "ok.out", "result.txt", "sub"]


def test_a_damaged_exchange_keeps_what_came_before(tmp_path):
    _guest_tar(tmp_path / "xchg.img", [("./a.out", b"x" * 5000)])
    data = (tmp_path / "xchg.img").read_bytes()
    (tmp_path / "xchg.img").write_bytes(data[:3000])  # cut inside a.out's data
    out = protocol.read_exchange(tmp_path / "xchg.img")
    assert out is not None and "facts" in out.files and out.rejected


def test_garbage_result_lines_and_statuses_are_data(tmp_path):
    from venus_repro import demos, steps

    out = {
        "d.status": b"not a number\n", "d.time": b"1.0 lots\n",
        "d.out": b'VENUS-RESULT {"outcome": "pass", "fps": "fast", "width": -1, "height": Infinity, "checksum": 7}\n',
    }  # fmt: skip
    run = steps.DemoStep(demos.catalogue()["test_tri"]).collect(protocol.Exchange(out, []), None, name="d")
    assert run.exit_status is None and run.duration_s is None
    assert run.result == {"outcome": "pass", "width": -1}  # wrongly typed or non-finite fields dropped
    assert run.outcome == "missing"


def test_files_larger_than_the_exchange_disk_are_an_error_not_a_cut(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(protocol.EXCHANGE_SIZE + 1)
    (tmp_path / "s.yaml").write_text("name: big\nfiles: [{src: big.bin, dest: big.bin}]\nsteps:\n  - demo: test_tri\n")
    proc = venus_repro("run", str(tmp_path / "s.yaml"), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2 and "larger than the 64 MiB exchange disk" in proc.stderr
    with pytest.raises(Exception, match="more than the 64 MiB exchange disk"):
        protocol.write_exchange(tmp_path / "x.img", [], {"files/big": b"\0" * (protocol.EXCHANGE_SIZE + 1)})


# --- scenarios -------------------------------------------------------------------------------


def _run_scenario(tmp_path: Path, text: str | bytes, *extra: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    proc = venus_repro("run", str(path), "--run-dir", str(tmp_path / "run"), *extra, timeout=60)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.parametrize("src", ["/etc/shadow", "../../../../etc/passwd"])
def test_scenario_files_stay_in_the_scenario_folder(tmp_path, src):
    proc = _run_scenario(tmp_path, f"name: x\nfiles: [{{src: '{src}', dest: f}}]\nsteps:\n  - demo: test_tri\n")
    assert proc.returncode == 2
    assert "s.yaml:2: files[0].src:" in proc.stderr and "outside the scenario's folder" in proc.stderr
    assert "--allow-host-files" in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before a run directory exists


def test_host_files_with_the_users_consent(tmp_path):
    from venus_repro import scenario

    (tmp_path / "sub").mkdir()
    (tmp_path / "outside.txt").write_text("x")
    text = "name: x\nfiles: [{src: ../outside.txt, dest: f}]\nsteps:\n  - demo: test_tri\n"
    sc = scenario.parse(text, tmp_path / "sub" / "s.yaml", scenario.ALLOW)
    assert sc.files[0][0] == tmp_path / "outside.txt"


@pytest.mark.parametrize(
    "text,message",
    [
        ("name: x\nsteps:\n  - demo: test_tri\nname: y\n", "s.yaml:4: name: comes twice"),
        ("name: x\nfiles: [{src: s.yaml, dest: ..}]\nsteps:\n  - demo: test_tri\n", "files[0].dest: must be a plain file name"),
        ("name: x\nsteps:\n  - demo: test_tri\n    timeout: 1e20\n", "steps[0].timeout: must be a int"),
        ("name: x\nsteps:\n  - demo: test_tri\n    timeout: 100000000000000000000\n", "steps[0].timeout: must be between 1 and 86400"),
        ("name: x\nsteps:\n  - demo: test_tri\n    frames: 0\n", "steps[0].frames: must be between 1 and 1e+06"),
        ("name: x\nmachine: {host_env: {A: [1, 2]}}\nsteps:\n  - demo: test_tri\n", "machine.host_env.A: must be a plain value"),
        (b"name: \xff\xfe\nsteps: []\n", "s.yaml:1: scenario: not UTF-8 text"),
        ("[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
    ],
)
def test_malformed_scenarios_are_one_clear_error(tmp_path, text, message):
    proc = _run_scenario(tmp_path, text)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr


def test_a_yaml_alias_bomb_is_refused_quickly_and_small(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "name: bomb\n" + "\n".join(lines) + "\nsteps: *a8\n"
    (tmp_path / "bomb.yaml").write_text(bomb)
    # The probe's own peak (VmHWM): getrusage's ru_maxrss would also count the pytest process it
    # was forked from (Linux keeps the larger across exec), which other tests may have grown.
    probe = (f"import re; from pathlib import Path; from venus_repro import scenario, errors\n"
             f"try:\n    scenario.load({str(tmp_path / 'bomb.yaml')!r})\nexcept errors.UsageError as e:\n    print(e)\n"
             f"print(re.search(r'VmHWM:\\s+(\\d+) kB', Path('/proc/self/status').read_text()).group(1))")  # fmt: skip
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    message, rss_kb = proc.stdout.splitlines()
    assert "an alias bomb?" in message or "unknown field" in message
    assert time.monotonic() - t < 20 and int(rss_kb) < 300_000


def test_a_folder_named_like_a_scenario(tmp_path):
    (tmp_path / "x.yaml").mkdir()
    proc = venus_repro("run", str(tmp_path / "x.yaml"))
    assert proc.returncode == 2 and "is not a file" in proc.stderr


# --- runs side by side, and faults --------------------------------------------------------------


def test_a_run_directory_is_claimed_once(tmp_path):
    from venus_repro.errors import UsageError
    from venus_repro.run import claim

    claim(tmp_path / "run")
    with pytest.raises(UsageError, match="already holds a run"):
        claim(tmp_path / "run")


def test_a_product_another_run_uses_is_not_pruned(tmp_path):
    """Run A uses kind/thing-aaaa; run B builds kind/thing-bbbb: A's product survives while A lives."""
    cache = tmp_path / "cache"
    old = cache / "kind" / "thing-aaaa"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from venus_repro.provision import sysroot\n"
         f"sysroot.build_once(Path({str(old)!r}), lambda t: t.mkdir()); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ready"
        sysroot.build_once(cache / "kind" / "thing-bbbb", lambda t: t.mkdir())
        assert old.is_dir(), "pruned a product another live run uses"
    finally:
        holder.kill()
        holder.wait()
    for name in ("cccc", "dddd", "eeee")[: sysroot.KEEP - 1]:
        time.sleep(0.01)
        sysroot.build_once(cache / "kind" / f"thing-{name}", lambda t: t.mkdir())
    # Once nobody uses it and KEEP builds of its kind came after it, the old build goes.
    assert not old.exists() and len(list((cache / "kind").iterdir())) == sysroot.KEEP


def test_a_damaged_product_is_rebuilt_never_used(tmp_path):
    product = tmp_path / "cache" / "kernels" / "16k-aaaa"
    builds = []

    def build(tmp: Path) -> None:
        builds.append(1)
        tmp.mkdir()
        (tmp / "vmlinuz").write_bytes(b"kernel" * 1000)

    sysroot.build_once(product, build)
    assert sysroot.reuse(product) and len(builds) == 1
    with open(product / "vmlinuz", "r+b") as f:  # one flipped byte
        f.seek(100)
        f.write(b"X")
    assert sysroot.verify(product) == ["vmlinuz changed"]
    assert not sysroot.reuse(product) and not product.exists()  # removed, so rebuilt next
    sysroot.build_once(product, build)
    assert len(builds) == 2 and sysroot.verify(product) == []
    (product / "vmlinuz").unlink()
    assert sysroot.verify(product) == ["vmlinuz is missing"]


def test_bundle_on_a_full_disk_is_one_clear_error(tmp_path, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    run = tmp_path / "run"
    run.mkdir()
    from venus_repro.result import RunResult, ScenarioRef

    RunResult("0", str(run), "debian-trixie", 16384, ScenarioRef("x", "0" * 64), verdict="pass").write(run / "result.json")
    (run / "scenario.yaml").write_text("name: x\nsteps:\n  - demo: test_tri\n")
    (run / "fingerprint.json").write_text(json.dumps({"sha256": "0" * 64, "components": {}}))
    (run / "console.log").write_bytes(os.urandom(256 << 10))  # incompressible
    full = tmp_path / "full"
    full.mkdir()
    script = f"mount -t tmpfs -o size=64k tmpfs {full} && exec \"$@\""
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         sys.executable, "-m", "venus_repro", "bundle", str(run), "-o", str(full / "b.tar.gz")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("venus-repro: error: ") and "No space left on device" in proc.stderr
    assert "internal error" not in proc.stderr


def test_a_read_only_run_directory_is_one_clear_error(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    ro = tmp_path / "ro"
    ro.mkdir()
    script = f"mount -t tmpfs -o ro tmpfs {ro} && exec \"$@\""
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         sys.executable, "-m", "venus_repro", "run", "--demo", "test_tri", "--run-dir", str(ro / "run")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"venus-repro: error: {ro / 'run'}: Read-only file system" in proc.stderr


def test_leftover_checks_ignore_an_unrelated_vm(tmp_path):
    """The suite's own leftover check: another VM on the machine is not this test's leftover."""
    fake = tmp_path / "qemu-system-aarch64"
    fake.write_bytes(Path("/bin/sleep").read_bytes())
    fake.chmod(0o755)
    other = subprocess.Popen([str(fake), "30"], cwd="/", env={"PATH": "/usr/bin:/bin"})  # an unrelated VM: none of our paths
    mine = subprocess.Popen([str(fake), "30"], cwd="/", env={"RENDER_SERVER_EXEC_PATH": f"{tmp_path}/run/render-server"})
    try:
        time.sleep(0.2)
        found = leftovers(str(tmp_path / "run"))
        assert any(f"pid {mine.pid}:" in f for f in found)
        assert not any(f"pid {other.pid}:" in f for f in found)
    finally:
        for p in (other, mine):
            p.kill()
            p.wait()


# --- real guests -------------------------------------------------------------------------------


def _scenario_with_script(tmp_path: Path, script: str, name: str = "hostile") -> Path:
    (tmp_path / "guest.sh").write_text(script)
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nfiles: [{{src: guest.sh, dest: guest.sh}}]\n"
        "steps:\n  - program: [sh, /in/files/guest.sh]\n    name: script\n    timeout: 120\n"
    )
    return path


def _run_json(*args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
    proc = venus_repro("run", "--json", *args, timeout=timeout)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-3000:]
    return proc, json.loads(proc.stdout)


@pytest.mark.vm
def test_a_guest_program_cannot_reach_the_host_through_out(provisioned, tmp_path, no_leftovers):
    victim = tmp_path / "victim"
    scenario = _scenario_with_script(tmp_path, (
        "ln -s /etc/passwd /out/evil-link\n"
        f"ln -s {victim} /out/to-victim\n"
        "mkdir -p /out/sub/dir && echo kept > /out/sub/dir/result.txt\n"
    ))  # fmt: skip
    proc, result = _run_json(str(scenario), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 1
    run = tmp_path / "run"
    assert (run / "guest" / "sub" / "dir" / "result.txt").read_text() == "kept\n"  # a subfolder is data
    assert not (run / "guest" / "evil-link").exists() and not (run / "guest" / "to-victim").exists()
    assert not victim.exists()
    assert "evil-link" in (run / "guest-rejected.log").read_text()
    assert "refused" in result["failure"]
    assert "guest-output-refused" in [f["id"] for f in result["findings"]]


@pytest.mark.vm
def test_too_much_guest_output_is_said_not_misread(provisioned, tmp_path, no_leftovers):
    scenario = _scenario_with_script(tmp_path, "dd if=/dev/zero of=/out/big bs=1048576 count=70 2>/dev/null\n", "big")
    proc, result = _run_json(str(scenario), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 1
    assert "do not fit the exchange disk" in result["failure"] and "did not boot" not in result["failure"]
    assert [f["id"] for f in result["findings"]] == ["guest-results-too-large"]
    # Nothing came back, but the guest said at boot which kernel it runs.
    assert result["guest"]["page_size"] == 16384 and result["guest"]["kernel_release"].endswith("-arm64-16k")


@pytest.mark.vm
def test_a_guest_that_dies_mid_run_still_says_which_kernel_it_booted(provisioned, tmp_path, no_leftovers):
    """No exchange comes back from a guest that powers off in a step: the verdict keeps its page size."""
    scenario = _scenario_with_script(tmp_path, "echo dying; poweroff -f\n", "dies")
    proc, result = _run_json(str(scenario), "--run-dir", str(tmp_path / "run"), "--kernel-flavour", "4k")
    assert proc.returncode == 1 and result["verdict"] == "fail"
    assert result["guest"]["page_size"] == 4096 and not result["guest"]["kernel_release"].endswith("-16k"), result["guest"]
    failed = {c["name"]: c["detail"] for c in result["checks"] if not c["ok"]}
    assert "4K pages but the profile requires 16K" in failed["guest page size"]
    assert "the guest ran to completion" in failed, failed
    assert failed["script: ran"].startswith("began but never finished"), failed
    assert "wrong-kernel" in [f["id"] for f in result["findings"]]


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "venus_repro", "run", "--json", "--run-dir", str(run_dir), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        console = run_dir / "console.log"
        if console.exists() and b"@@VENUS-REPRO step-start" in console.read_bytes():
            return proc, run_dir
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the guest did not start its first step")


def _exchanges(cache: Path, pid: int) -> list[Path]:
    return sorted((cache / "exchanges").glob(f"{pid}-*.img"))


@pytest.mark.vm
def test_sigterm_is_handled_like_ctrl_c(provisioned, tmp_path, no_leftovers):
    from venus_repro.profile import cache_dir

    proc, run_dir = _start(tmp_path, "--demo", "vkcube_anim", "--frames", "20000")
    assert _exchanges(cache_dir(), proc.pid), "the exchange image lives in the cache while the guest runs"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated by SIGTERM" in err and "Traceback" not in err
    result = json.loads((run_dir / "result.json").read_text())
    assert result["verdict"] == "error" and result["failure"] == "interrupted (SIGTERM)"
    assert not _exchanges(cache_dir(), proc.pid)
    assert not leftovers(str(tmp_path))


@pytest.mark.vm
def test_sigkill_leaves_an_exchange_image_the_next_run_removes(provisioned, tmp_path, no_leftovers):
    from venus_repro.profile import cache_dir

    proc, _ = _start(tmp_path, "--demo", "vkcube_anim", "--frames", "20000")
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while leftovers(str(tmp_path)) and time.monotonic() < deadline:  # QEMU dies with its parent
        time.sleep(0.2)
    assert not leftovers(str(tmp_path))
    assert _exchanges(cache_dir(), proc.pid)  # nobody could remove it...
    protocol.new_exchange_path(cache_dir())
    assert not _exchanges(cache_dir(), proc.pid)  # ...until the next run


@pytest.mark.vm
def test_a_killed_render_server_is_said_so(provisioned, tmp_path, no_leftovers):
    from conftest import _mentions

    proc, run_dir = _start(tmp_path, "--demo", "vkcube_anim", "--frames", "20000")

    def servers() -> list[str]:
        found = subprocess.run(["pgrep", "-f", "virgl_render_server"], capture_output=True, text=True).stdout.split()
        return [pid for pid in found if _mentions(pid, (str(run_dir),))]

    # Wait for the worker the guest's Venus context gets (a second process), so the kill
    # cannot land before it is forked and miss it.
    deadline = time.monotonic() + 120
    while len(servers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(servers()) >= 2, "no render server worker of this run"
    for _ in range(3):
        for pid in servers():
            os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.3)
    out, err = proc.communicate(timeout=300)
    result = json.loads(out)
    assert result["verdict"] == "fail", err[-2000:]
    ids = [f["id"] for f in result["findings"]]
    assert "render-server-killed" in ids and "render-server-missing" not in ids, ids
    assert "killed by signal 9 (SIGKILL)" in (run_dir / "render-server.log").read_text()


@pytest.mark.vm
def test_replay_runs_nothing_a_bundle_names(provisioned, tmp_path, no_leftovers):
    import yaml

    first = tmp_path / "first"
    proc = venus_repro("run", "--demo", "test_tri", "--frames", "5", "--run-dir", str(first))
    assert proc.returncode == 0, proc.stderr[-2000:]
    marker = tmp_path / "pwned"
    evil = first / "files" / "qemu"
    evil.parent.mkdir(exist_ok=True)
    evil.write_text(f"#!/bin/sh\ntouch {marker}\nexec /usr/bin/qemu-system-aarch64 \"$@\"\n")
    evil.chmod(0o755)
    doc = yaml.safe_load((first / "scenario.yaml").read_text())
    doc["components"] = {"qemu": "files/qemu"}
    doc["machine"] = {"host_env": {"LD_PRELOAD": str(tmp_path / "evil.so"), "LP_NUM_THREADS": "2"}}
    doc["files"] = [{"src": "/etc/shadow", "dest": "shadow"}]
    (first / "scenario.yaml").write_text(yaml.safe_dump(doc))
    bundle = tmp_path / "b.tar.gz"
    assert venus_repro("bundle", str(first), "-o", str(bundle)).returncode == 0
    proc = venus_repro("replay", str(bundle), "--json", "--run-dir", str(tmp_path / "again"))
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["reproduced"] and out["result"]["verdict"] == "pass"
    assert not marker.exists(), "replay ran a program from the bundle"
    ignored = "\n".join(out["result"]["scenario"]["ignored"])
    assert "components.qemu" in ignored and "machine.host_env.LD_PRELOAD" in ignored and "files[0].src" in ignored
    again = (tmp_path / "again" / "qemu-cmdline.txt").read_text()
    assert "LP_NUM_THREADS=2" in again and "LD_PRELOAD" not in again and "files/qemu" not in again
    assert not (tmp_path / "again" / "files" / "shadow").exists()
    assert "scenario: ignored components.qemu" in proc.stderr


@pytest.mark.vm
def test_a_program_wanting_vk_khr_display_is_not_blamed_on_the_host(provisioned, tmp_path, no_leftovers):
    (tmp_path / "wsi.yaml").write_text(
        "name: wsi\nsteps:\n  - program: [vkcube, --wsi, display, --c, '2']\n    name: vkcube_display\n"
    )
    proc, result = _run_json(str(tmp_path / "wsi.yaml"), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 1
    assert "VK_KHR_display" in (tmp_path / "run" / "guest" / "vkcube_display.out").read_text()
    assert [f["id"] for f in result["findings"]] == ["guest-wsi-extension-missing"]


@pytest.mark.vm
def test_a_damaged_cache_is_rebuilt_and_doctor_says_so(provisioned, tmp_path):
    kernel = Path(provisioned["kernel"]["path"])
    initrd = Path(provisioned["initramfs"])
    good = hashlib.sha256(kernel.read_bytes()).hexdigest()
    with open(kernel, "r+b") as f:  # one flipped byte in the cached kernel
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    initrd.unlink()  # and a deleted initramfs
    proc = venus_repro("doctor", "--json")
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["cache integrity"]["status"] == "warn"
    assert "kernels/" in checks["cache integrity"]["detail"] and "vmlinuz changed" in checks["cache integrity"]["detail"]
    assert "initramfs/" in checks["cache integrity"]["detail"] and "initrd.cpio is missing" in checks["cache integrity"]["detail"]
    assert hashlib.sha256(kernel.read_bytes()).hexdigest() == good and initrd.is_file()  # rebuilt from the pins
    again = {c["name"]: c for c in json.loads(venus_repro("doctor", "--json").stdout)["checks"]}
    assert again["cache integrity"]["status"] == "ok"


def test_a_file_and_a_folder_of_the_same_name_is_refused_not_a_crash(tmp_path):
    _guest_tar(tmp_path / "xchg.img", [("./a", b"file"), ("./a/b", b"under a file")])
    out = protocol.read_exchange(tmp_path / "xchg.img")
    protocol.save_guest_files(out, tmp_path / "guest")
    assert (tmp_path / "guest" / "a").read_bytes() == b"file"
    assert any("'a/b': a file and a folder of the same name" in r for r in out.rejected)
