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
