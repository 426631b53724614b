"""Every crash the fuzz targets (tests/fuzz) found, as the minimal input that caused it (tests/fixtures/fuzz).

Each was an exception other than one clear error (the CLI's exit 70, "internal error")
or a write outside the folder a reader was given; each now has one outcome, asserted here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import venus_repro
from venus_repro import protocol

FIXTURES = Path(__file__).parent / "fixtures" / "fuzz"


def _one_error_line(proc, *expected: str) -> str:
    """The CLI's answer to bad input: exit 2 and one line naming what is wrong."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("venus-repro: error: "), proc.stderr[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# --- what comes back from the guest -------------------------------------------------------------


def test_a_result_line_with_a_number_no_float_holds_drops_that_field():
    """fps: 10**300 made math.isfinite raise OverflowError while the verdict read the guest's output."""
    out = protocol.parse_demo_output((FIXTURES / "demo-output-huge-number.out").read_text())
    assert out.result == {"demo": "test_tri", "outcome": "pass"}


def test_a_guest_file_name_longer_than_a_file_name_may_be_is_refused(tmp_path):
    """A 300-character member name reached save_guest_files, whose write raised ENAMETOOLONG."""
    shutil.copy(FIXTURES / "exchange-long-name.tar", tmp_path / "xchg.img")
    exchange = protocol.read_exchange(tmp_path / "xchg.img")
    assert set(exchange.files) == {"facts"}
    assert any("x" * 300 in r and "longer than 255 bytes" in r for r in exchange.rejected)
    protocol.save_guest_files(exchange, tmp_path / "run" / "guest")
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == ["facts", "guest"]


# --- scenarios and profiles ---------------------------------------------------------------------


def test_a_control_character_in_a_scenario_is_one_line(tmp_path):
    """PyYAML's reader error (no 'problem') was printed whole: two lines."""
    path = FIXTURES / "scenario-control-character.yaml"
    _one_error_line(venus_repro("run", str(path), "--run-dir", str(tmp_path / "run")),
                    f"{path}: malformed YAML: unacceptable character #x000b")  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_python_tag_in_a_scenario_is_one_error(tmp_path):
    """A tagged scalar (!!python/object:os.system) made the safe loader raise ConstructorError: exit 70."""
    path = FIXTURES / "scenario-python-tag.yaml"
    _one_error_line(venus_repro("run", str(path), "--run-dir", str(tmp_path / "run")),
                    f"{path}:3: steps[0].program[0]: must be a plain value, not tagged tag:yaml.org,2002:python/object:os.system")  # fmt: skip


def test_a_profile_package_that_is_not_a_name_is_refused(tmp_path):
    """host.packages: [null, …] was accepted, to fail later in provisioning."""
    path = FIXTURES / "profile-package-null.yaml"
    _one_error_line(venus_repro("run", "--profile", str(path), "--run-dir", str(tmp_path / "run")),
                    f"{path}: host: field 'packages' must be a list of names (strings)")  # fmt: skip


# --- the nix profile's manifest -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name,expected",
    [
        # Path.exists() raised ENAMETOOLONG (only "no such file" is False).
        ("manifest-long-root.json", ": qemu 000000"),
        # The value was printed as it is: a line break in it made the error two lines.
        ("manifest-line-break-root.json", ": qemu /bin/sh does not exist in '\\n'"),
    ],
)
def test_a_manifest_path_the_system_cannot_use_is_one_error(tmp_path, name, expected):
    path = FIXTURES / name
    line = _one_error_line(venus_repro("run", "--profile", "nix", "--manifest", str(path), "--run-dir", str(tmp_path / "run")), str(path), expected)
    assert name != "manifest-long-root.json" or line.endswith("…: File name too long")


# --- bundles (replay) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,expected",
    [
        # The three of issue #28, each an internal error (exit 70) before:
        ("bundle-truncated.tar.gz", "not a venus-repro bundle (damaged or cut short: Compressed file ended"),  # EOFError
        ("bundle-manifest-without-profile.tar.gz", "manifest.json: field 'profile' must name the bundled profile"),  # KeyError
        ("bundle-manifest-a-list.tar.gz", "manifest.json must be a JSON object, not list"),  # TypeError
        # Found by the bundle target: a profile name past NAME_MAX (OSError), or a path out of the
        # bundle (the profile read was the host's /tmp/host-file.yaml).
        ("bundle-manifest-long-profile.tar.gz", "manifest.json: field 'profile' must name the bundled profile"),
        ("bundle-manifest-profile-outside.tar.gz", "manifest.json: field 'profile' must name the bundled profile"),
        # Errors in a bundle's files named the temporary folder it was unpacked into.
        ("bundle-scenario-broken.tar.gz", ": run/scenario.yaml:3: steps[0]: a step has 'demo', 'program' or 'shell'"),
        ("bundle-lock-a-list.tar.gz", ": profile/debian-trixie.lock.json is not a lock (a JSON object)"),
    ],
)
def test_a_malformed_bundle_is_one_error_line(tmp_path, name, expected):
    path = FIXTURES / name
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    line = _one_error_line(venus_repro("replay", str(path), "--run-dir", str(tmp_path / "run"), env=env), f"error: {path}: ", expected)
    assert "venus-repro-replay-" not in line
    assert not list(tmp_path.iterdir()), "replay left what it unpacked behind"


# --- carry packs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,expected",
    [
        # tarfile's "could not be opened" message lists each method tried, one line each.
        ("carry-empty.tar.xz", "not a carry (damaged or cut short: empty file)"),
        # chmod of the missing root/tmp raised FileNotFoundError.
        ("carry-without-root-tmp.tar.xz", "not a carry (manifest.template.json must be a file and root/tmp a folder)"),
        # The refusal did not name the carry ("carry: refusing member '..'").
        ("carry-dotdot.tar.xz", "refusing member '..' (outside the destination"),
        # Read while fuzzing the carry: unpack followed these links after extracting. root/tmp
        # -> a folder outside was made world-writable (chmod 1777); manifest.template.json -> a
        # file outside was read and copied into manifest.json.
        ("carry-root-tmp-a-link.tar.xz", "refusing member 'root/tmp' (unpack writes it)"),
        ("carry-template-a-link.tar.xz", "refusing member 'manifest.template.json' (unpack writes it)"),
    ],
)
def test_a_malformed_carry_is_one_error_line_and_touches_nothing_outside(tmp_path, name, expected):
    path = FIXTURES / name
    (tmp_path / "outside").mkdir(mode=0o755)
    (tmp_path / "secret.json").write_text('{"secret": true}')
    _one_error_line(venus_repro("carry", "unpack", str(path), str(tmp_path / "unpacked")), f"error: {path}: ", expected)
    assert not (tmp_path / "unpacked").exists()
    assert (tmp_path / "outside").stat().st_mode & 0o7777 == 0o755


# --- diagnose -----------------------------------------------------------------------------------


def test_a_line_broken_by_a_vertical_tab_near_the_cut_is_not_called_cut():
    """This branch's first streaming reader read 4097 characters, found no \\n, and called the whole
    piece one cut line, though a \\x0b (a line break to str.splitlines) split it into two short ones."""
    from venus_repro import diagnose

    path = FIXTURES / "diagnose-vertical-tab-near-the-cut.log"
    lines, _ = diagnose.read_sources([path])
    assert [(l.number, len(l.text), l.length) for l in lines] == [(1, 10, None), (2, 4090, None), (3, 28, None)]
    assert diagnose.diagnose([path])["cut_lines"] == []
