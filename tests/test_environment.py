"""The run model: ordered typed steps, the component registry, mixing package sets, the typed result."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, venus_repro
from venus_repro import elf, registry, scenario, steps
from venus_repro.environment import Environment, pins_of
from venus_repro.errors import ProvisionError, UsageError
from venus_repro.profile import load as load_profile
from venus_repro.provision import debian, kernel
from venus_repro.provision.lock import Lock
from venus_repro.result import SCHEMA_VERSION, RunResult, schema


@pytest.mark.parametrize("name", scenario.available())
def test_dump_then_parse_gives_every_built_in_scenario_back(tmp_path, name):
    sc = scenario.load(name)
    scenario.save(sc, tmp_path)  # scenario.yaml and the files it names, as a run writes them
    again = scenario.load(str(tmp_path / "scenario.yaml"), host_programs=scenario.ALLOW)
    assert again.steps == sc.steps
    fields = ("name", "profile", "kernel_flavour", "page_size", "machine", "sources", "guest_packages", "expect_findings", "validation", "description")
    assert {f: getattr(again, f) for f in fields} == {f: getattr(sc, f) for f in fields}
    assert [dest for _, dest in again.files] == [dest for _, dest in sc.files]
    assert scenario.dump(again) == scenario.dump(sc)


ORDERED = """\
name: ordered
steps:
  - program: [sh, -c, 'echo prepared > /tmp/prepared']
    name: prepare
  - demo: test_tri
    frames: 3
  - shell: 'cat /tmp/prepared'
    name: check
    expect: {stdout: ['^prepared$']}
"""


def test_steps_keep_the_order_they_are_written_in(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(ORDERED)
    sc = scenario.load(str(path))
    assert [(type(s).__name__, s.name) for s in sc.steps] == [("ProgramStep", "prepare"), ("DemoStep", "test_tri"), ("ProgramStep", "check")]
    ctx = steps.Context(start=None, run_dir=tmp_path)
    plan = [s.guest_plan(ctx)[0].name for s in sc.steps]
    assert plan == ["prepare", "test_tri", "check"]
    assert [list(e)[0] for e in (s.dump() for s in sc.steps)] == ["program", "demo", "shell"]
    # --demo replaces the steps; --frames changes only the demos.
    assert [s.name for s in sc.override(frames=9).steps] == ["prepare", "test_tri", "check"]


def test_the_published_result_schema_is_the_one_the_code_writes():
    from venus_repro.resources import DATA

    published = json.loads((DATA / "schema/result.schema.json").read_text())
    assert published == schema(), "regenerate driver/data/schema/result.schema.json from venus_repro.result.schema()"
    assert published["properties"]["schema"] == {"const": SCHEMA_VERSION}


def test_a_result_is_read_field_by_field():
    from venus_repro.result import ScenarioRef, StepResult

    r = RunResult("0.1", "/r", "debian-trixie", 16384, ScenarioRef("x", "0" * 64), steps=[StepResult("demo", "t", "pass")])
    doc = r.to_json()
    assert RunResult.from_json(doc) == r
    for broken, message in (
        ({**doc, "steps": "many"}, "steps: must be a list"),
        ({**doc, "verdict": 7}, "verdict: must be a str"),
        ({k: v for k, v in doc.items() if k != "scenario"}, "missing field 'scenario'"),
        ({**doc, "schema": 99}, "result schema 99"),
        ([], "a result is a JSON object"),
    ):
        with pytest.raises(UsageError, match=message):
            RunResult.from_json(broken)
    # A result written before the schema (demos and programs apart) reads as one of today's.
    old = {"venus_repro": "0", "run_dir": "/r", "profile": "debian-trixie", "required_page_size": 16384, "verdict": "pass",
           "scenario": {"name": "x", "sha256": "0" * 64}, "demos": [{"name": "t", "outcome": "pass", "guest_exit_status": 0}],
           "programs": [{"name": "p", "outcome": "pass", "exit_status": 0}], "components": {"qemu": "1:10.0", "lock_sha256": "ab"}}  # fmt: skip
    up = RunResult.from_json(old)
    assert [(s.kind, s.name, s.exit_status) for s in up.steps] == [("demo", "t", 0), ("program", "p", 0)]
    assert up.components["qemu"].version == "1:10.0" and up.lock_sha256 == "ab"


# --- the registry ---------------------------------------------------------------------------------


def test_every_command_line_flag_and_scenario_key_comes_from_the_registry():
    from venus_repro.cli import parser

    run = next(a for a in parser()._actions if a.dest == "command").choices["run"]
    flags = {s for a in run._actions for s in a.option_strings}
    for c in registry.COMPONENTS:
        for part in c.parts:
            assert part.flag in flags, part.flag
    assert "--component" in flags
    names = [c.name for c in registry.COMPONENTS]
    assert len(names) == len(set(names))


def test_each_pin_of_a_layer_belongs_to_exactly_one_component():
    prof = load_profile("debian-trixie")
    lk = Lock.load(prof)
    for layer, pins in (("host", lk.pins("host-amd64")), ("guest", lk.pins("guest-arm64"))):
        owners = {p.name: [c.name for c in registry.COMPONENTS if c.layer == layer and p in pins_of(c, pins)] for p in pins}
        assert all(len(o) == 1 for o in owners.values()), {n: o for n, o in owners.items() if len(o) != 1}
        assert {o[0] for o in owners.values()} == {c.name for c in registry.COMPONENTS if c.layer == layer}
    guest = {p.name for p in pins_of(registry.spec("guest_mesa"), lk.pins("guest-arm64"))}
    assert "mesa-vulkan-drivers" in guest and "libc6" not in guest


def test_components_in_a_scenario_are_checked_where_they_are_written(tmp_path):
    cases = [
        ("components: {guest_mesa: {suite: forky}}", None),
        ("components: {guest_mesa: {suite: 'no such/suite'}}", ":2: components.guest_mesa.suite: must be a Debian suite name"),
        ("components: {qemu: host}", ":2: components.qemu: qemu cannot come from a host"),
        ("components: {nonsense: x}", ":2: components.nonsense: unknown component"),
        ("components: {guest_base: {build: x}}", ":2: components.guest_base: guest_base cannot come from a build"),
        ("components: {guest_mesa: {suite: forky, options: [a]}}", ":2: components.guest_mesa: a suite source takes suite and exact only"),
    ]
    for text, error in cases:
        path = tmp_path / "s.yaml"
        path.write_text(f"name: x\n{text}\nsteps:\n  - demo: test_tri\n")
        if error is None:
            sc = scenario.load(str(path))
            assert sc.source("guest_mesa") == registry.Source("suite", suite="forky") and sc.locked == {"guest_mesa"}
            assert scenario.parse(scenario.dump(sc), path).sources == sc.sources
        else:
            with pytest.raises(UsageError) as err:
                scenario.load(str(path))
            assert str(err.value).startswith(f"{path}{error}"), str(err.value)


def test_component_sources_on_the_command_line():
    assert registry.parse_cli(["guest_mesa=suite:forky"]) == {"guest_mesa": registry.Source("suite", suite="forky")}
    assert registry.parse_cli(["virglrenderer=suite:forky:exact"])["virglrenderer"].exact
    for bad, message in (("guest_mesa", "NAME=SOURCE"), ("nope=suite:x", "unknown component"), ("qemu=host", "can come from"),
                         ("guest_mesa=suite:", "suite:SUITE"), ("qemu=build:/no/such/tree", "does not exist")):  # fmt: skip
        with pytest.raises(UsageError, match=message):
            registry.parse_cli([bad])
    proc = venus_repro("run", "--component", "guest_mesa=suite")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "suite:SUITE" in proc.stderr


# --- Debian's relations, and mixing two sets ----------------------------------------------------------


VERSIONS = ["1.0", "1.0-1", "1:0.9", "1.0~rc1", "1.0+ds-0+deb13u1", "1:10.0.13+ds-0+deb13u1", "1:11.1.2+ds-3", "2.4.124-2",
            "2.4.134-3~", "2.4.134-3", "25.0.7-2+deb13u1", "26.1.6-1", "1.0a", "1.0.a", "1.00", "1.0-1~bpo1", "7:9.0.2-4", "1.0~~", "1.0~"]  # fmt: skip


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg compares versions for the check")
def test_versions_compare_as_dpkg_compares_them():
    wrong = []
    for a, b in itertools.product(VERSIONS, VERSIONS):
        c = debian.compare(a, b)
        for op, mine in (("lt", c < 0), ("eq", c == 0), ("gt", c > 0)):
            if (subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0) != mine:
                wrong.append(f"{a} {op} {b}")
    assert not wrong


def _pkg(name, version, depends="", breaks="", provides=""):
    return debian.Package.from_fields({"Package": name, "Version": version, "Depends": depends, "Breaks": breaks, "Provides": provides})


def test_a_mix_takes_what_the_mixed_in_package_needs_and_no_more():
    base = {p.name: p for p in (_pkg("libc6", "2.41"), _pkg("libdrm2", "2.4.124", "libc6 (>= 2.34)"),
                                _pkg("mesa", "25.0", "libdrm2 (>= 2.4.120), libc6"), _pkg("tool", "1", "libc6"))}  # fmt: skip
    other = {p.name: p for p in (_pkg("libc6", "2.43"), _pkg("libdrm2", "2.4.134-3", "libc6 (>= 2.38)"),
                                 _pkg("mesa", "26.1", "libdrm2 (>= 2.4.134-3~), libc6 (>= 2.38), libllvm21"),
                                 _pkg("libllvm21", "21.1", "libc6 (>= 2.41)"), _pkg("tool", "2", "libc6"))}  # fmt: skip
    assert debian.mix(base, other, {"mesa"}) == ({"mesa", "libdrm2", "libllvm21"}, set())
    # A downgrade that breaks a base package takes the other side's version of it too.
    other["libdrm2"] = _pkg("libdrm2", "2.4.100")
    base["gui"] = _pkg("gui", "1", "libdrm2 (>= 2.4.120)")
    other["gui"] = _pkg("gui", "0.9", "libdrm2")
    other["mesa"] = _pkg("mesa", "24", "libdrm2")
    assert debian.mix(base, other, {"mesa", "libdrm2"}) == ({"mesa", "libdrm2", "gui"}, set())
    # A package only the base has, that the mixed-in ones break, goes (the other set never had it).
    del other["gui"]
    assert debian.mix(base, other, {"mesa", "libdrm2"}) == ({"mesa", "libdrm2"}, {"gui"})
    # What nothing can settle is one error naming the relation.
    other["tool"] = _pkg("tool", "2", "libdrm2 (>= 3)")
    with pytest.raises(debian.Unmixable, match=r"tool 2 needs libdrm2 \(>= 3\), but the set has libdrm2 2.4.100"):
        debian.mix(base, other, {"mesa", "libdrm2", "tool"}, "mesa from other")
    provided = {"a": _pkg("a", "1", "virtual-thing"), "b": _pkg("b", "1", provides="virtual-thing")}
    assert debian.problems(provided) == []
    assert [str(p) for p in debian.problems({"a": _pkg("a", "1", breaks="b (<< 2)"), "b": _pkg("b", "1")})] == ["a 1 breaks b 1"]


def test_the_kernel_is_found_by_what_its_packages_hold(tmp_path):
    header = bytearray(64)
    header[56:60] = b"ARM\x64"
    header[24] = 2 << 1  # 16K pages
    for layout in ("boot/vmlinuz-7.2.12+deb14-arm64-16k", "usr/lib/modules/7.2.12+deb14-arm64-16k/vmlinuz"):
        root = tmp_path / layout.split("/")[0]
        shutil.rmtree(tmp_path / "boot", ignore_errors=True)
        shutil.rmtree(tmp_path / "usr", ignore_errors=True)
        image = tmp_path / layout
        image.parent.mkdir(parents=True)
        image.write_bytes(bytes(header) + b"\0" * (2 << 20))
        mods = tmp_path / "usr/lib/modules/7.2.12+deb14-arm64-16k"
        mods.mkdir(parents=True, exist_ok=True)
        (mods / "modules.order").write_text("")
        (tmp_path / "usr/share/doc").mkdir(parents=True, exist_ok=True)
        (tmp_path / "usr/share/doc/vmlinux-notes").write_bytes(b"x" * (2 << 20))  # named like one, but no Image
        found, folder = kernel.find_in(tmp_path)
        assert found == image and folder == mods and kernel.read_image(found).page_size == 16384
    (tmp_path / "boot").mkdir(exist_ok=True)
    shutil.copy(tmp_path / "usr/lib/modules/7.2.12+deb14-arm64-16k/vmlinuz", tmp_path / "boot/vmlinuz-2")
    with pytest.raises(ProvisionError, match="hold 2 kernel images"):
        kernel.find_in(tmp_path)


def test_a_root_that_cannot_run_is_found_by_reading_its_elf_files(tmp_path):
    ls = Path(next(p for p in ("/usr/bin/ls", "/bin/ls") if Path(p).exists())).resolve()
    needed = elf.read(ls)
    assert "libc.so.6" in needed.needed and any(lib == "libc.so.6" for lib, _ in needed.version_needs)
    lib = tmp_path / "usr/lib"
    lib.mkdir(parents=True)
    (tmp_path / "usr/bin").mkdir()
    shutil.copy(ls, tmp_path / "usr/bin/ls")
    problems = elf.check_root(tmp_path, [tmp_path / "usr/bin/ls"], [lib])
    assert ("/usr/bin/ls", "libc.so.6", None) in [(p.file, p.library, p.version) for p in problems]
    # A libc.so.6 that defines none of the versions ls needs: each version is named.
    other = next(Path(p) for p in ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/aarch64-linux-gnu/libz.so.1") if Path(p).exists())
    shutil.copy(other.resolve(), lib / "libc.so.6")
    for dep in needed.needed:
        if dep != "libc.so.6" and not (lib / dep).exists():
            shutil.copy(other.resolve(), lib / dep)
    problems = elf.check_root(tmp_path, [tmp_path / "usr/bin/ls"], [lib])
    assert any(p.library == "libc.so.6" and p.version and p.version.startswith("GLIBC_") for p in problems), problems


# --- profiles -------------------------------------------------------------------------------------------


def test_the_newer_suites_are_the_trixie_profile_from_another_suite():
    trixie, forky, sid = (load_profile(f"debian-{s}") for s in ("trixie", "forky", "sid"))
    for p in (forky, sid):
        assert (p.host_packages, p.guest_packages, p.kernels, p.qemu) == (trixie.host_packages, trixie.guest_packages, trixie.kernels, trixie.qemu)
        assert p.suite == p.name.removeprefix("debian-") and p.tools == {} and p.gpu_renderer is None
        assert p.lock_path.name == f"{p.name}.lock.json"


@pytest.mark.vm  # resolves pins from the mirror
def test_a_users_profile_keeps_its_lock_beside_it(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: debian-trixie\nname: mine\nlock: mine.lock.json\ntools: null\ngpu_renderer: null\n"
                    "host: {packages: [busybox-static]}\nguest: {arch: arm64, packages: [busybox-static]}\n"
                    "kernels: {16k: linux-image-arm64-16k}\n")  # fmt: skip
    assert load_profile(str(mine)).lock_path == tmp_path / "mine.lock.json"
    proc = venus_repro("lock", "--profile", str(mine))
    assert proc.returncode == 2 and f"run `venus-repro lock --refresh --profile {mine}`" in proc.stderr
    refresh = venus_repro("lock", "--refresh", "--profile", str(mine), check=True, timeout=600)
    assert (tmp_path / "mine.lock.json").is_file() and "no changes" not in refresh.stdout
    assert not (REPO / "driver/data/pins/mine.lock.json").exists()
    assert venus_repro("lock", "--profile", str(mine)).returncode == 0
