"""Fuzz: scenario YAML (driver/scenario.py load/parse) and profile YAML (driver/profile.py load).

Inputs are the project's real files, mutated as text (cut, flipped, repeated bytes, YAML
anchors, deep nesting) and as documents (fields removed, added, or given values of the
wrong type, size or depth).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import contract, mutated, mutated_doc, sandbox
from venus_repro import profile, scenario
from venus_repro.resources import DATA

pytestmark = pytest.mark.fuzz

SCENARIOS = sorted((DATA / "scenarios").glob("*.yaml")) + sorted((Path(__file__).parent.parent / "fixtures" / "scenarios").glob("*.yaml"))
PROFILE = DATA / "profiles" / "debian-trixie.yaml"

YAML_TRICKS = [b"&a [1, 2]\n", b"*a\n", b"<<: *a\n", b"!!python/object:os.system ls\n", b"? [1]\n: 2\n",
               b"%YAML 1.1\n---\n", b"--- !!binary aGk=\n", b"x: !!float .nan\n", b"---\n---\n", b"\t", b"\xef\xbb\xbf"]  # fmt: skip


def _texts(seeds: list[Path]):
    def dumped(doc) -> bytes:
        try:
            return yaml.safe_dump(doc, sort_keys=False).encode()
        except (yaml.YAMLError, ValueError, RecursionError):
            return b""

    docs = st.sampled_from(seeds).map(lambda p: yaml.safe_load(p.read_text())).flatmap(mutated_doc).map(dumped)
    raw = st.sampled_from(seeds).map(Path.read_bytes).flatmap(mutated)
    spliced = st.tuples(raw, st.sampled_from(YAML_TRICKS), st.integers(0, 2000)).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :])
    return st.one_of(docs, raw, spliced)


@given(_texts(SCENARIOS), st.sampled_from([scenario.REFUSE, scenario.ALLOW, scenario.DROP]))
def test_a_scenario_file_is_a_scenario_or_one_error_naming_it(text, policy):
    with sandbox() as work:
        path = work / "s.yaml"
        path.write_bytes(text)
        (work / "shader.spv").write_bytes(b"\x03\x02\x23\x07")  # a file a scenario may name beside it
        sc = contract(scenario.load, str(path), policy, policy, names=str(path))
        if sc is not None:
            assert sc.steps
            assert all(src.is_file() for src, _ in sc.files)
            if policy != scenario.ALLOW:
                assert all(work in src.parents for src, _ in sc.files)
            scenario.parse(scenario.dump(sc), path, scenario.ALLOW, scenario.ALLOW)  # what a run writes reads back


@given(_texts([PROFILE]))
def test_a_profile_file_is_a_profile_or_one_error_naming_it(text):
    with sandbox() as work:
        path = work / "p.yaml"
        path.write_bytes(text)
        prof = contract(profile.load, str(path), names=str(path))
        if prof is not None:
            assert isinstance(prof.name, str) and type(prof.page_size) is int
            assert all(isinstance(p, str) for p in (*prof.host_packages, *prof.guest_packages, *prof.guest_drop, *prof.guest_modules))
            assert prof.default_kernel in prof.kernels and prof.lock_path.name.endswith(".json")
            prof.package_sets()
