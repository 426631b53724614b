"""Scenario files: validation errors name file:line and field; built-ins load."""

from __future__ import annotations

import json

import pytest

from conftest import venus_repro
from venus_repro import scenario
from venus_repro.errors import UsageError


def load_text(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path, lambda: scenario.load(str(path))


@pytest.mark.parametrize(
    "text,where,message",
    [
        ("name: x\nsteps: [\n", ":3", "malformed YAML"),
        ("name: x\nsteps:\n  - demo: no_such_demo\n", ":3: steps[0].demo", "unknown demo 'no_such_demo'"),
        ("name: x\nsteps:\n  - demo: test_tri\n    frames: many\n", ":4: steps[0].frames", "must be a int"),
        ("name: x\nsteps:\n  - demo: test_tri\n    colour: red\n", ":4: steps[0].colour", "unknown field"),
        ("name: x\nfiles:\n  - {src: missing.bin, dest: m}\nsteps:\n  - demo: test_tri\n", ":3: files[0].src", "does not exist"),
        ("name: x\nsteps:\n  - program: [vulkaninfo]\n", ":3: steps[0].name", "missing"),
        ("name: x\nsteps:\n  - program: ['']\n    name: p\n", ":3: steps[0].program", "must name a program"),
        ("name: x\nsteps:\n  - program: [ls]\n    shell: ls\n    name: p\n", ":3: steps[0]", "either program"),
        ("name: x\nsteps:\n  - shell: '  '\n    name: p\n", ":3: steps[0].shell", "non-empty"),
        ("name: x\nsteps:\n  - program: [ls]\n    name: p\n    outputs: [relative.txt]\n", ":5: steps[0].outputs[0]", "absolute guest path"),
        ("name: x\nsteps:\n  - program: [ls]\n    name: p\n    outputs: [/a/f.txt, /b/f.txt]\n", ":5: steps[0].outputs", "share a file name"),
        ("name: x\nsteps:\n  - program: [ls]\n    name: p\n    env: {'A B': x}\n", ":5: steps[0].env.A B", "variable name"),
        ("name: x\nsteps:\n  - demo: test_tri\nexpect_findings: [no-such-finding]\n", ":4: expect_findings", "unknown finding"),
        ("name: x\npage_size: 8192\nsteps:\n  - demo: test_tri\n", ":2: page_size", "must be 4096"),
        ("steps:\n  - demo: test_tri\n", ":1: name", "missing"),
        ("name: x\nsteps:\n  - demo: test_tri\n    expect: {outcome: error, vk_result: 7}\n", ":4: steps[0].expect.vk_result", "must be a str"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, text, where, message):
    path, load = load_text(tmp_path, text)
    with pytest.raises(UsageError) as err:
        load()
    assert str(err.value).startswith(f"{path}{where}"), str(err.value)
    assert message in str(err.value)


def test_cli_reports_one_line_and_exit_2(tmp_path):
    path, _ = load_text(tmp_path, "name: x\nsteps:\n  - demo: nope\n")
    proc = venus_repro("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"venus-repro: error: {path}:3: steps[0].demo: unknown demo 'nope' (available: " + proc.stderr.split("(available: ")[1].strip()
    assert not (tmp_path / "venus-runs").exists()
    missing = venus_repro("run", str(tmp_path / "none.yaml"), cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    unknown = venus_repro("run", "no-such-scenario", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown scenario 'no-such-scenario'" in unknown.stderr


def test_builtins_load():
    names = scenario.available()
    assert {"venus-demos", "kernel-4k", "zerocopy-imports", "vulkaninfo", "render-server-missing"} <= set(names)
    default = scenario.load("venus-demos")
    assert [s.demo.name for s in default.demos] == ["test_tri", "vkcube_anim", "vkcube_zerocopy"]
    # The page size and kernel are the profile's (16K on debian-trixie, 4K on debian-trixie-amd64).
    assert default.page_size is None and default.kernel_flavour is None


def test_step_overrides(tmp_path):
    path, load = load_text(
        tmp_path,
        "name: x\nsteps:\n  - demo: vkcube_anim\n    frames: 7\n    timeout: 9\n    min_fps: 1\n"
        "  - demo: vkcube_zerocopy_dumb\n    expect: pass\n",
    )
    sc = load()
    anim, dumb = sc.demos
    assert "7" in anim.demo.args and anim.demo.timeout == 9 and anim.min_fps == 1.0
    assert dumb.demo.expect is None  # the scenario says this one must now pass


def test_guest_packages_need_a_scenario_lock(tmp_path):
    path, _ = load_text(tmp_path, "name: x\nguest_packages: [tree]\nsteps:\n  - program: [tree]\n    name: t\n")
    proc = venus_repro("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"has no lock s.lock.json; run `venus-repro lock --refresh --scenario {path} --profile debian-trixie`" in proc.stderr
    assert not (tmp_path / "venus-runs").exists()
    bad, load = load_text(tmp_path, "name: x\nguest_packages: ['Not A Package']\nsteps:\n  - demo: test_tri\n")
    with pytest.raises(UsageError, match=r":2: guest_packages\[0\]: 'Not A Package' is not a Debian package name"):
        load()


def test_component_override_keeps_the_soname_link(tmp_path):
    real = tmp_path / "libvirglrenderer.so.1.9.0"
    real.write_bytes(b"\x7fELF")
    (tmp_path / "libvirglrenderer.so.1").symlink_to(real.name)
    from venus_repro import registry

    c = registry.spec("virglrenderer")
    assert registry.check_part(c, c.part("library"), tmp_path / "libvirglrenderer.so.1").name == "libvirglrenderer.so.1"
    with pytest.raises(UsageError, match="must be named libvirglrenderer.so.1"):
        registry.check_part(c, c.part("library"), real)


def test_a_programs_arguments_are_quoted_for_the_guests_shell_and_reach_it_verbatim(tmp_path):
    """The step script the guest runs, run here by sh: every argument arrives as written."""
    import subprocess

    args = ["two words", "*", "it's", "$HOME", "", "a\nb", "`id`"]
    text = "name: x\nsteps:\n  - program: " + json.dumps(["printf", "[%s]\\n", *args]) + "\n    name: p\n    env: {GREETING: 'hello world'}\n"
    path, load = load_text(tmp_path, text)
    (step,) = load().programs
    script = step.script().replace("/out/", str(tmp_path / "out") + "/")
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=tmp_path).stdout
    assert out == "".join(f"[{a}]\n" for a in args)
    assert "export GREETING='hello world'" in step.script()


COMPARING = "name: x\nsteps:\n  - program: [vulkaninfo, --summary]\n    name: p\n    compare_host: {stdout: true}\n"


def test_a_scenario_file_runs_commands_on_this_machine_only_when_the_user_allows_it(tmp_path):
    """compare_host runs the scenario's command in the host root: refused unless --allow-host-programs."""
    path, load = load_text(tmp_path, COMPARING)
    with pytest.raises(UsageError, match=r":5: steps\[0\]\.compare_host: runs the step's command on this machine too"):
        load()
    (step,) = scenario.load(str(path), host_programs=scenario.ALLOW).programs
    assert step.compare_host is not None and step.compare_host.stdout
    # A replayed bundle without --trust-bundle: the comparison is left out, and said so.
    sc = scenario.load(str(path), host_programs=scenario.DROP)
    assert sc.programs[0].compare_host is None and any("compare_host" in i for i in sc.ignored)
    # The CLI: one clear error, exit 2, before anything runs.
    proc = venus_repro("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "--allow-host-programs" in proc.stderr and "Traceback" not in proc.stderr


def test_built_in_scenarios_may_compare_with_the_host():
    (frame, report) = scenario.load("differential").programs
    assert frame.compare_host.outputs and report.compare_host.stdout
