"""Fuzz: what diagnose reads (driver/diagnose.py): log files and run directories from anyone.

Logs are built from the real ones (tests/fixtures/diagnose, tests/corpus/diagnose): their
lines mutated, spliced, repeated, made long, with odd line breaks, NUL and non-UTF-8 bytes;
run directories hold such logs, a result.json, fingerprint.json and environment.json of
any shape, and links.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import contract, mutated, mutated_doc, sandbox
from venus_repro import diagnose

pytestmark = pytest.mark.fuzz

TESTS = Path(__file__).parent.parent
LOGS = sorted(p for p in (TESTS / "fixtures" / "diagnose").rglob("*") if p.is_file()) + sorted((TESTS / "corpus" / "diagnose").glob("*.log"))
LINES = sorted({l for p in LOGS for l in p.read_bytes().splitlines() if l.strip()})
BREAKS = [b"\n", b"\r\n", b"\r", b"\x0b", b"\x0c", b"\x1c", "\u2028".encode(), b"\x85", b""]

lines = st.one_of(
    st.sampled_from(LINES), st.sampled_from(LINES).flatmap(mutated), st.binary(max_size=200),
    st.tuples(st.sampled_from(LINES), st.integers(diagnose.MAX_LINE - 50, 3 * diagnose.MAX_LINE)).map(lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]),
)  # fmt: skip
logs = st.lists(st.tuples(lines, st.sampled_from(BREAKS)), max_size=40).map(lambda ls: b"".join(l + b for l, b in ls))


def _checked(report: dict) -> None:
    json.dumps(report)  # what --json prints
    text = diagnose.render(report)
    assert isinstance(text, str)
    for f in report["findings"]:
        assert all(len(e["text"]) <= diagnose.MAX_LINE for e in f["evidence"])
    assert all(c["length"] > diagnose.MAX_LINE for c in report["cut_lines"])
    if report["cut_lines"]:
        assert "cut to their first" in text


@given(logs)
def test_a_log_of_any_shape_is_diagnosed(data):
    with sandbox() as work:
        (work / "paste.log").write_bytes(data)
        report = contract(diagnose.diagnose, [work / "paste.log"])
        assert report is not None  # a log is text to read: never "bad input"
        _checked(report)


RESULT = {"verdict": "fail", "profile": "debian-trixie", "required_page_size": 16384, "accel": "tcg", "guest": {"page_size": 4096, "kernel_release": "6.12"}}
RUN_JSON = {name: json.loads((TESTS / "fixtures" / "diagnose" / "hostmem-8m-run" / f"{name}.json").read_text()) for name in ("fingerprint", "environment")}


def _doc(doc: dict):
    """A document of any shape grown from ``doc``: mutated as data, or as bytes, or absent."""
    return st.one_of(mutated_doc(doc).map(lambda d: json.dumps(d).encode() if _jsonable(d) else b"{}"), mutated(json.dumps(doc).encode()), st.none())


@given(
    st.dictionaries(st.sampled_from(list(diagnose.RUN_FILES) + ["guest/test_tri.out", "guest/x.err"]), logs, max_size=4),
    _doc(RESULT), _doc(RUN_JSON["fingerprint"]), _doc(RUN_JSON["environment"]),
    st.sampled_from([None, "console.log", "guest/dmesg.txt", "guest"]),
)
def test_a_run_directory_is_diagnosed_or_one_error_naming_the_link(files, result, fingerprint, environment, link):
    with sandbox() as work:
        run = work / "run"
        (run / "guest").mkdir(parents=True)
        for rel, data in files.items():
            (run / rel).write_bytes(data)
        for name, doc in (("result", result), ("fingerprint", fingerprint), ("environment", environment)):
            if doc is not None:
                (run / f"{name}.json").write_bytes(doc)
        if link:
            target = work.parent / "outside" / "sentinel"
            if (run / link).is_dir():
                shutil.rmtree(run / link)
            (run / link).unlink(missing_ok=True)
            (run / link).symlink_to(target.parent if link == "guest" else target)
        report = contract(diagnose.diagnose, [run], names=str(run))
        if link:
            assert report is None  # a link in a run directory is refused, never followed
        elif files or result is not None:
            assert report is not None
            _checked(report)
            ctx = report["context"]
            assert ctx["guest_page_size"] in (None, 4096, 16384, 65536) and ctx["required_page_size"] in (None, 4096, 16384, 65536)
            assert ctx["host_page_size"] in (None, 4096, 16384, 65536) and ctx["accel"] in (None, "hvf", "kvm", "tcg", "whpx")
            assert ctx["hostmem"] is None or (type(ctx["hostmem"]) is int and 0 <= ctx["hostmem"] < 1 << 64)
            assert all(v is None or (isinstance(v, str) and "\n" not in v) for v in (ctx["gpu_options"], ctx["host_driver"], ctx["hostmem_default"]))


def _jsonable(doc) -> bool:
    try:
        json.dumps(doc)
        return True
    except ValueError:
        return False


@given(st.lists(st.tuples(st.sampled_from(LINES) | st.binary(max_size=100), st.sampled_from(BREAKS[:-1])), max_size=30))
def test_lines_are_read_as_str_splitlines_reads_them(parts):
    """The streaming reader agrees with reading the whole file and splitting it (lines under MAX_LINE)."""
    data = b"".join(l + b for l, b in parts)
    with sandbox() as work:
        (work / "x.log").write_bytes(data)
        got = [(l.number, l.text) for l in diagnose._read_lines(work / "x.log", "x")]
    expected = [(i, t) for i, t in enumerate(data.decode(errors="replace").splitlines(), 1) if t.strip()]
    assert got == expected
