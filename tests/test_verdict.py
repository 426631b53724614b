"""Verdict checks for expected (known) failures and for demo catalogue parsing."""

from venus_repro import demos, protocol
from venus_repro.demos import Expect
from venus_repro.verdict import DemoRun, expected_failure_checks


def run(text: str, status: int) -> DemoRun:
    return DemoRun("v", status, protocol.parse_demo_output(text))


EXPECT = Expect(outcome="error", vk_result="VK_ERROR_EXTENSION_NOT_PRESENT", call="vkCreateDevice")


def test_known_failure_holds():
    (check,) = expected_failure_checks(run("VK err -7 @ vkCreateDevice\n", 2), EXPECT)
    assert check.ok and "fails as expected" in check.detail


def test_known_failure_that_changed_is_a_failed_check():
    (check,) = expected_failure_checks(run("VK err -1000072003 @ vkAllocateMemory\n", 2), EXPECT)
    assert not check.ok and "VK_ERROR_INVALID_EXTERNAL_HANDLE" in check.detail


def test_known_failure_that_passes_is_a_failed_check():
    passed = run('VENUS-RESULT {"demo": "v", "outcome": "pass", "checksum": "fnv1a64:00"}\n', 0)
    (check,) = expected_failure_checks(passed, EXPECT)
    assert not check.ok and "it passed" in check.detail


def test_catalogue_defaults_and_variants():
    cat = demos.catalogue()
    assert [d.name for d in demos.select(None)] == ["test_tri", "vkcube_anim", "vkcube_zerocopy"]
    blob = cat["vkcube_zerocopy_guest_blob"]
    assert blob.binary == "vkcube_zerocopy" and blob.sources == cat["vkcube_zerocopy"].sources
    assert blob.expect == EXPECT and not blob.default


UNSUPPORTED = 'VENUS-RESULT {"demo": "v", "outcome": "unsupported", "reason": "no LINEAR color attachment", "device": "NVIDIA H200"}\n'
PASSED = 'VENUS-RESULT {"demo": "v", "outcome": "pass", "checksum": "fnv1a64:1", "fps": 10, "driver": "venus"}\n'


def test_a_capability_the_hosts_driver_lacks_is_no_failure_when_the_guest_agrees():
    from venus_repro.verdict import demo_checks

    guest, host = run(UNSUPPORTED, 77), run(UNSUPPORTED, 77)
    assert guest.outcome == "unsupported" and "NVIDIA H200: no LINEAR color attachment" in guest.failure()
    checks = demo_checks(guest, host)
    assert [c.ok for c in checks] == [True] and "NVIDIA H200" in checks[0].detail
    # Venus hiding what the host has, or claiming what it lacks, is a failure either way.
    assert [c.ok for c in demo_checks(guest, run(PASSED, 0))] == [False]
    assert [c.ok for c in demo_checks(run(PASSED, 0), host)] == [False]
    # The result line without the demo's exit status 77 is no such outcome.
    assert run(UNSUPPORTED, 1).outcome == "crash"
