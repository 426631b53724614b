"""Guest protocol: markers, result lines, the exchange disk."""

import io
import tarfile

from venus_repro import protocol
from venus_repro.verdict import DemoRun


def test_marker_fields_and_noise():
    line = "\x1b[0m[    3.2] noise @@VENUS-REPRO step-end name=test_tri status=0 uptime=3.54\r\r\n"
    assert protocol.parse_marker(line) == ("step-end", {"name": "test_tri", "status": "0", "uptime": "3.54"})
    assert protocol.parse_marker("plain console text") is None
    assert protocol.parse_marker('@@VENUS-REPRO module-failed module=/x.ko error="No such device"')[1]["error"] == "No such device"


def test_demo_output_pass_and_vk_error():
    out = protocol.parse_demo_output(
        "free text\nVENUS-RESULT {\"demo\": \"test_tri\", \"outcome\": \"pass\", \"checksum\": \"fnv1a64:01\"}\n"
    )
    assert out.result["checksum"] == "fnv1a64:01" and not out.vk_errors
    err = protocol.parse_demo_output("VK err -1 @ vkCreateInstance\n")
    run = DemoRun("test_tri", 2, err)
    assert run.outcome == "error"
    assert run.failure() == "VK_ERROR_OUT_OF_HOST_MEMORY (-1) at vkCreateInstance"


def test_outcomes_without_result_lines():
    empty = protocol.parse_demo_output("")
    assert DemoRun("d", 137, empty).outcome == "timeout"
    assert DemoRun("d", 139, empty).outcome == "crash"
    assert DemoRun("d", None, empty).outcome == "missing"
    unknown = DemoRun("d", 2, protocol.parse_demo_output("VK err -999 @ vkFoo\n"))
    assert "VkResult(-999, unknown)" in unknown.failure()


def test_exchange_disk_round_trip(tmp_path):
    disk = tmp_path / "x.img"
    step = protocol.Step("test_tri", 60, ["/opt/venus-repro/bin/test_tri", "--out", "/out"])
    protocol.write_exchange(disk, [step])
    assert disk.stat().st_size == protocol.EXCHANGE_SIZE
    # Only the plan is there: the guest has not answered.
    assert protocol.read_exchange(disk) is None
    with tarfile.open(disk) as tar:
        assert tar.extractfile("plan").read().decode() == "step test_tri 60 /opt/venus-repro/bin/test_tri --out /out\n"
    # What busybox tar writes back: ./-prefixed members over the same disk.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"./facts": b"page_size_kb=16\n", "./test_tri.status": b"0\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with open(disk, "r+b") as f:
        f.write(buf.getvalue())
    out = protocol.read_exchange(disk)
    assert protocol.parse_facts(out.files["facts"].decode()) == {"page_size_kb": "16"}
    assert out.files["test_tri.status"] == b"0\n" and out.rejected == []


def test_facts_announced_at_boot_fill_what_the_exchange_lacks():
    console = [
        "@@VENUS-REPRO init uptime=1.2",
        '@@VENUS-REPRO facts kernel=6.12.117+deb13-arm64 page_size_kb=4 extra="not a fact"',
        "@@VENUS-REPRO facts kernel=later page_size_kb=64",
    ]
    markers = [(0.0, *protocol.parse_marker(line)) for line in console]
    announced = protocol.announced_facts(markers)
    assert announced == {"kernel_release": "6.12.117+deb13-arm64", "page_size_kb": "4"}
    # A guest that never wrote its exchange back: the console's word stands.
    assert protocol.Exchange({}, [], announced).facts() == announced
    # One that did: its facts file wins, the console fills only what it lacks.
    written = protocol.Exchange({"facts": b"page_size_kb=16\nmachine=aarch64\n"}, [], announced)
    assert written.facts() == {"kernel_release": "6.12.117+deb13-arm64", "page_size_kb": "16", "machine": "aarch64"}
    assert protocol.announced_facts([]) == {}


def test_step_rejects_unsplittable_arguments():
    import pytest

    with pytest.raises(ValueError):
        protocol.Step("x", 1, ["a b"]).line()
