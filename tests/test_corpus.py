"""Diagnosis measured on real logs from public trackers (tests/corpus/diagnose/index.yaml).

Each log is what a user pasted, with its thread and the root cause the thread
established. A log is diagnosed right when `venus-repro diagnose` reports exactly
its expected finding (nothing else), or nothing at all for a clean log. The
held-out fifth was set aside before any rule was written and is reported apart:
the rules were never tuned on it. The tuned and the held-out accuracy and the
findings on clean logs are printed at the end of the session (tests/conftest.py).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from venus_repro import diagnose

CORPUS = Path(__file__).parent / "corpus" / "diagnose"
DOC = yaml.safe_load((CORPUS / "index.yaml").read_text())
INDEX = DOC["logs"]
FIELDS = {"file", "source", "root_cause", "expect", "split"}
OPTIONAL = {"project", "why"}  # format 2

# What the accuracy tests measured, for the session's summary: {"tuned": (right, of), ...}.
MEASURED: dict[str, tuple[int, int]] = {}


def _findings(entry: dict) -> list[str]:
    report = diagnose.diagnose([CORPUS / entry["file"]])
    return [f["id"] for f in report["findings"]]


def _correct(entry: dict) -> bool:
    got = _findings(entry)
    return got == ([entry["expect"]] if entry["expect"] else [])


def accuracy(split: str) -> tuple[float, list[str]]:
    entries = [e for e in INDEX if e["split"] == split and e["expect"]]
    wrong = [f"{e['file']}: expected {e['expect']}, got {_findings(e) or 'nothing'}" for e in entries if not _correct(e)]
    MEASURED["tuned" if split == "tune" else split] = (len(entries) - len(wrong), len(entries))
    return 1 - len(wrong) / len(entries), wrong


def test_the_corpus_is_what_the_issue_asks_for():
    failures = [e for e in INDEX if e["expect"]]
    assert DOC["format"] == 2
    assert all(FIELDS <= set(e) <= FIELDS | OPTIONAL for e in INDEX), [e["file"] for e in INDEX if not FIELDS <= set(e) <= FIELDS | OPTIONAL]
    assert len(INDEX) >= 80 and len({e["expect"] for e in failures}) >= 30
    assert sum(1 for e in INDEX if not e["expect"]) >= 10
    assert all(e["source"].startswith("https://") and e["root_cause"] for e in INDEX)
    assert all(e["split"] in ("tune", "held-out") for e in INDEX)
    assert len({e["file"] for e in INDEX}) == len(INDEX)
    assert {e["file"] for e in INDEX} == {p.name for p in CORPUS.glob("*.log")}
    held_out = [e for e in INDEX if e["split"] == "held-out"]
    assert len(held_out) >= math.ceil(len(INDEX) / 5)


def test_accuracy_on_the_logs_the_rules_were_written_from():
    value, wrong = accuracy("tune")
    print(f"\ntuned part: {value:.1%}")
    assert value >= 0.95, "\n".join(wrong)


def test_accuracy_on_the_held_out_logs():
    value, wrong = accuracy("held-out")
    print(f"\nheld-out part: {value:.1%}")
    assert value >= 0.90, "\n".join(wrong)


CLEAN = [e for e in INDEX if not e["expect"]]


@pytest.mark.parametrize("entry", CLEAN, ids=lambda e: e["file"])
def test_a_clean_log_gives_no_finding(entry):
    found = _findings(entry)
    MEASURED.setdefault("clean", (0, 0))
    fired, seen = MEASURED["clean"]
    MEASURED["clean"] = (fired + bool(found), seen + 1)
    assert found == []


# What a code looks like in a log, independent of the decoder: a VkResult name in any
# spelling, a Hypervisor.framework name or value, a virtio-gpu response/command pair,
# an errno as "(os error N)", "[Errno N]" or "error -N".
_CODE_LIKE = re.compile(
    r"\bVK_(?:ERROR|SUBOPTIMAL)_\w+|\bERROR_[A-Z_]{4,}\b|\be?Error[A-Z][a-z]+[A-Za-z]*\b|\bHV_[A-Z_]{4,}\b|0xfae94\w{3}"
    r"|\bresponse 0x[0-9a-f]+ \(command 0x[0-9a-f]+\)|\(os error \d+\)|\[Errno \d+\]|\berror -\d+\b|\bfailed: -\d+"
    r"|No such file or directory|Permission denied|Operation not permitted|Invalid argument|Function not implemented"
)


def _code_lines() -> list[tuple[str, int, str]]:
    out = []
    for entry in INDEX:
        for number, text in enumerate((CORPUS / entry["file"]).read_text().splitlines(), 1):
            if _CODE_LIKE.search(text):
                out.append((entry["file"], number, text))
    return out


def test_every_code_bearing_line_of_the_corpus_is_decoded():
    lines = _code_lines()
    assert len(lines) >= 20
    undecoded = [f"{f}:{n}: {t}" for f, n, t in lines if not diagnose.codes_in_line(t)]
    assert not undecoded, "\n".join(undecoded)
