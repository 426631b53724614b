"""Bad input: one clear error line, a non-zero exit, never a traceback, no run dir."""

import pytest

from conftest import venus_repro


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--kernel", "/nonexistent/Image"], "kernel image /nonexistent/Image does not exist"),
        (["run", "--kernel", "/etc/hostname"], "is not a Linux kernel image"),
        (["run", "--profile", "no-such-profile"], "unknown profile 'no-such-profile'"),
        (["run", "--demo", "no-such-demo"], "unknown demo 'no-such-demo'"),
        (["run", "--kernel-flavour", "64k"], "unknown kernel flavour '64k'"),
        (["run", "--frames", "0"], "--frames must be a positive number"),
    ],
)
def test_bad_input(tmp_path, args, message):
    proc = venus_repro(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("venus-repro: error: ") and message in lines[0]
    assert not (tmp_path / "venus-runs").exists(), "bad input must not start a run"


def test_malformed_profile_yaml(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    proc = venus_repro("run", "--profile", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "malformed YAML" in proc.stderr and "Traceback" not in proc.stderr


def test_profile_missing_field(tmp_path):
    bad = tmp_path / "partial.yaml"
    bad.write_text("name: partial\nsuite: trixie\n")
    proc = venus_repro("run", "--profile", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "missing field 'host'" in proc.stderr


MINIMAL = """name: minimal
suite: trixie
lock: debian-trixie.lock.json
page_size: 16384
host: {packages: [qemu-system-arm]}
guest: {arch: arm64, packages: [busybox-static]}
qemu: {}
kernels: {16k: linux-image-6.12-arm64-16k}
default_kernel: 16k
guest_modules: []
"""


@pytest.mark.parametrize(
    "text,message",
    [
        (MINIMAL.replace("name: minimal", "name: ../../../tmp/elsewhere"), "field 'name' must be a plain word"),  # it names the run directory
        (MINIMAL.replace("page_size: 16384", "page_size: true"), "field 'page_size' must be a int"),
        (MINIMAL.replace("qemu: {}", "qemu: {smp: lots}"), "qemu: field 'smp' must be a int"),
        (b"name: \xff\n", "not UTF-8 text"),
        ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ],
)
def test_a_profile_is_read_as_data(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(text if isinstance(text, bytes) else text.encode())
    proc = venus_repro("run", "--profile", str(bad), cwd=tmp_path)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0] and str(bad) in lines[0], proc.stderr
