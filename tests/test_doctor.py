"""Preflight's checks that need no VM and no provisioned components (driver/doctor.py).

The checks against a real QEMU and render server are in tests/test_failures.py (vm).
"""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest

from venus_repro import diagnose, doctor


@pytest.mark.parametrize(
    "accel,system,machine,applies",
    [
        ("kvm", "Linux", "x86_64", False),  # an arm64 guest on an x86_64 host: never KVM
        ("kvm", "Linux", "aarch64", True),
        ("kvm", "Darwin", "arm64", False),
        ("hvf", "Darwin", "arm64", True),
        ("hvf", "Darwin", "x86_64", False),  # an Intel Mac's HVF runs x86 guests only
        ("hvf", "Linux", "aarch64", False),
        ("whpx", "Linux", "x86_64", False),
        ("tcg", "Linux", "x86_64", True),
        ("tcg", "Darwin", "arm64", True),
    ],
)
def test_which_accelerators_can_apply_to_an_arm64_guest(accel, system, machine, applies):
    why = doctor.accelerator_cannot_apply(accel, "arm64", system, machine)
    assert (why is None) == applies, why


class _Start:
    """What qemu_checks asks of a StartCommand; the accelerators QEMU knows on this (pretended) host."""

    qemu_binary, gpu_options, display = "/usr/bin/qemu-system-aarch64", "venus=on,blob=on,hostmem=1G", "sdl,gl=on"

    def __init__(self, known: set[str]):
        self.known, self.probed = known, []

    def override_binds(self):
        return []

    def probe(self, accel="tcg", device=True):
        self.probed.append((accel, device))
        if accel in self.known:
            return subprocess.CompletedProcess([], 0, "", "")
        return subprocess.CompletedProcess([], 1, "", f"qemu-system-aarch64: -accel {accel}: invalid accelerator {accel}\n")


def _checks(monkeypatch, accel: str, system: str, machine: str, known: set[str]):
    monkeypatch.setattr(doctor.platform, "system", lambda: system)
    monkeypatch.setattr(doctor.platform, "machine", lambda: machine)
    answers = {"--version": "QEMU emulator version 10.0.13\n", "-device": "  venus=<bool>\n  blob=<bool>\n  hostmem=<size>\n"}
    monkeypatch.setattr(doctor.sandbox, "run", lambda root, argv, **kw: subprocess.CompletedProcess(argv, 0, answers[argv[1]], ""))
    start = _Start(known)
    c = SimpleNamespace(host_root=None, profile=SimpleNamespace(guest_arch="arm64"))
    return {ch.name: ch for ch in doctor.qemu_checks(c, start, accel)}, start


def test_a_default_run_on_an_x86_host_warns_of_nothing(monkeypatch):
    """KVM is no choice for an arm64 guest on x86_64: one line of information, no probe, no WARN."""
    checks, start = _checks(monkeypatch, "tcg", "Linux", "x86_64", known={"tcg"})
    kvm = checks["accelerator kvm"]
    assert kvm.status == doctor.INFO and kvm.fix == ""
    assert kvm.line() == (
        "preflight INFO accelerator kvm: not applicable: KVM runs guests of the host's own architecture only "
        "(arm64 guest, amd64 host); TCG emulates it"
    )
    assert checks["accelerator tcg"].status == doctor.OK
    assert [ch for ch in checks.values() if ch.status in (doctor.WARN, doctor.FAIL)] == []
    assert ("kvm", False) not in start.probed
    # and nothing in it reads as a failure to diagnose (doctor prints findings for its lines)
    lines = [diagnose.Line("preflight", i, ch.line()) for i, ch in enumerate(checks.values(), 1)]
    assert diagnose.report_dict(lines, diagnose.Context())["findings"] == []


def test_an_accelerator_that_could_apply_but_fails_is_still_a_warning(monkeypatch):
    """On an arm64 Linux host KVM could run the guest: if it cannot (no /dev/kvm) the user can fix that."""
    checks, _ = _checks(monkeypatch, "tcg", "Linux", "aarch64", known={"tcg"})
    assert checks["accelerator kvm"].status == doctor.WARN


def test_the_accelerator_the_run_uses_fails_when_it_cannot_apply(monkeypatch):
    checks, start = _checks(monkeypatch, "kvm", "Linux", "x86_64", known={"tcg"})
    kvm = checks["accelerator kvm"]
    assert kvm.status == doctor.FAIL and ("kvm", False) in start.probed
    assert "invalid accelerator kvm (used by this run)" in kvm.detail and "host's own architecture" in kvm.fix
    lines = [diagnose.Line("preflight", 1, kvm.line())]
    assert [f["id"] for f in diagnose.report_dict(lines, diagnose.Context())["findings"]] == ["qemu-accel-unavailable"]


def test_info_is_a_status_of_its_own():
    ch = doctor.Check("accelerator kvm", doctor.INFO, "not applicable: …")
    assert ch.as_dict() == {"name": "accelerator kvm", "status": "info", "detail": "not applicable: …", "fix": ""}


def test_a_kernel_of_another_architecture_fails_preflight_naming_both(tmp_path):
    """An arm64 Image given to the amd64 profile (or a bzImage to an arm64 one) cannot boot: one FAIL that says so."""
    from types import SimpleNamespace

    from venus_repro import profile
    from venus_repro.provision.kernel import ImageInfo

    k = ImageInfo(tmp_path / "Image", 16384, False, 1 << 24, False, "arm64")
    checks = doctor.kernel_checks(SimpleNamespace(kernel=k, profile=profile.load("debian-trixie-amd64")), "tcg")
    (bad,) = [c for c in checks if c.status == doctor.FAIL]
    assert bad.name == "kernel architecture" and "arm64 Image" in bad.detail and "amd64" in bad.detail and "x86 bzImage" in bad.fix
    ok = doctor.kernel_checks(SimpleNamespace(kernel=k, profile=profile.load("debian-trixie")), "tcg")
    assert not [c for c in ok if c.status == doctor.FAIL]
