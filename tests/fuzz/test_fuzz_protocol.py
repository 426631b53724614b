"""Fuzz: what comes back from a guest (driver/protocol.py): the exchange archive, result, facts and marker lines."""

from __future__ import annotations

import json
import math
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import contract, edited_members, mutated, odd_names, sandbox, tar_bytes
from venus_repro import protocol

pytestmark = pytest.mark.fuzz

# What a guest's busybox tar writes back: ./-prefixed members, facts and a demo's files.
GUEST = [
    (".", b""), ("./facts", b"page_size_kb=16\nkernel_release=6.12.117+deb13-arm64\nmachine=aarch64\n"),
    ("./test_tri.status", b"0\n"), ("./test_tri.time", b"1.25\n"),
    ("./test_tri.out", b'VENUS-RESULT {"demo": "test_tri", "outcome": "pass", "checksum": "fnv1a64:14f654cb8a3244d2", "fps": 1965.2}\n'),
    ("./test_tri.rgba", b"\x00" * 64), ("./tool.files/frame.png", b"\x89PNG\r\n\x1a\n"), ("./dmesg.txt", b"[ 0.0] Booting Linux\n"),
]  # fmt: skip


def _guest_members():
    out = []
    for name, data in GUEST:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE if name == "." else tarfile.REGTYPE
        info.size = len(data)
        out.append((info, data))
    return out


exchanges = st.one_of(
    st.builds(tar_bytes, edited_members(_guest_members(), replace={"./facts": st.binary(max_size=300)}),
              st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])),
    mutated(tar_bytes(_guest_members())),
)  # fmt: skip


@given(exchanges)
def test_an_exchange_archive_is_read_and_saved_only_inside_the_run_directory(data):
    with sandbox() as work:
        (work / "xchg.img").write_bytes(data)
        exchange = contract(protocol.read_exchange, work / "xchg.img")
        if exchange is None:
            return
        assert all(protocol.safe_member_name(name) == name and name for name in exchange.files)
        assert sum(map(len, exchange.files.values())) <= protocol.MAX_TOTAL
        facts = exchange.facts()
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in facts.items())
        guest = work / "run" / "guest"
        contract(protocol.save_guest_files, exchange, guest)
        for path in (work / "run").rglob("*"):
            assert not path.is_symlink() and (path.is_dir() or path.is_file()), path


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
result_fields = st.fixed_dictionaries(
    {}, optional={k: json_values | st.integers(min_value=10**300, max_value=10**4000) | st.floats()
                  for k in ("fps", "width", "height", "frames", "vk_result", "outcome", "checksum", "device", "demo", "extra")},
)  # fmt: skip


def _json_text(doc) -> str:
    try:
        return json.dumps(doc)
    except ValueError:  # an integer too long for str(): write its digits
        return "{}"


demo_lines = st.one_of(
    result_fields.map(lambda d: "VENUS-RESULT " + _json_text(d)),
    st.integers(min_value=1, max_value=5000).map(lambda n: 'VENUS-RESULT {"fps": ' + "9" * n + "}"),
    st.integers(min_value=1, max_value=3000).map(lambda n: "VENUS-RESULT " + "[" * n + "]" * n),
    st.builds(lambda v, call: f"VK err {v} @ {call}", st.integers() | st.text(max_size=8), st.text(max_size=20)),
    st.text(max_size=200),
)


@given(st.lists(demo_lines, max_size=8).map("\n".join))
def test_demo_output_keeps_only_well_typed_results(text):
    out = contract(protocol.parse_demo_output, text)
    assert out is not None  # a guest's output is never "bad input": only what parses is kept
    for result in out.results:
        for key, value in result.items():
            assert isinstance(key, str) and isinstance(value, (str, int, float, bool))
            if key in ("fps", "width", "height", "frames", "vk_result"):
                assert not isinstance(value, bool) and math.isfinite(value)
    assert all(isinstance(v, int) and isinstance(c, str) for v, c in out.vk_errors)


marker_lines = st.one_of(
    st.builds(lambda event, fields: f"noise @@VENUS-REPRO {event}{fields}", odd_names, st.text(max_size=80)),
    st.builds(lambda k, p: f"@@VENUS-REPRO facts kernel={k} page_size_kb={p}", st.text(max_size=20), st.text(max_size=20)),
    st.builds(lambda n: f"@@VENUS-REPRO step-start name={n}", st.text(max_size=20)),
    st.text(max_size=100),
)


@given(st.lists(marker_lines, max_size=8), st.text(max_size=300))
def test_markers_and_facts_are_strings_to_strings(lines, facts_text):
    markers = []
    for line in lines:
        parsed = contract(protocol.parse_marker, line)
        if parsed is not None:
            event, fields = parsed
            assert isinstance(event, str) and all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
            markers.append((0.0, event, fields))
    announced = contract(protocol.announced_facts, markers)
    assert set(announced) <= {"kernel_release", "page_size_kb"}
    assert all(isinstance(s, str) for s in contract(protocol.started_steps, markers))
    facts = contract(protocol.parse_facts, facts_text)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in facts.items())
