"""Shared fixtures.

The ``vm`` tests provision the real pinned components into the cache named by
``$VENUS_REPRO_CACHE`` (CI points it at an empty directory, so every CI run
proves the cold path) and boot the real guest. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from venus_repro.profile import cache_dir

REPO = Path(__file__).resolve().parent.parent

# The fuzz targets (tests/fuzz/): inputs per target. CI runs this many, from fixed seeds (the
# same inputs every run: a failure reproduces); --fuzz-examples N (or VENUS_REPRO_FUZZ_EXAMPLES)
# runs N per target from random seeds, for a longer search.
FUZZ_CI_EXAMPLES = 250


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-examples", type=int, metavar="N", default=int(os.environ.get("VENUS_REPRO_FUZZ_EXAMPLES", "0")) or None,
        help=f"inputs per fuzz target, from random seeds (default: {FUZZ_CI_EXAMPLES}, from fixed seeds)",
    )  # fmt: skip


def pytest_configure(config):
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the fuzz targets import hypothesis themselves, and fail loudly without it
        return
    examples = config.getoption("--fuzz-examples")
    settings.register_profile(
        "venus-repro",
        max_examples=examples or FUZZ_CI_EXAMPLES,
        derandomize=examples is None,
        deadline=None,  # a shared 2-core machine: time is bounded by the targets' own watchdog
        database=None,  # a failure is printed with its input; crashes become fixtures (tests/fixtures/fuzz)
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )
    settings.load_profile("venus-repro")


def venus_repro(*args: str, check: bool = False, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    """Run the CLI as a user would (a separate process; stdout and stderr captured)."""
    cmd = [sys.executable, "-m", "venus_repro", *args]
    cwd = kw.pop("cwd", REPO)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"venus-repro {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def _mentions(pid: str, marks: tuple[str, ...]) -> bool:
    """Whether process ``pid``'s command line or environment names one of ``marks``."""
    for part in ("cmdline", "environ"):
        try:
            data = Path(f"/proc/{pid}/{part}").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(m in data for m in marks):
            return True
    return False


def leftovers(*marks: str) -> list[str]:
    """QEMU / render-server processes and mounts that belong to this test session.

    Only what names one of ``marks`` (the test's own folder, this session's
    cache) counts: an unrelated VM on the same machine is none of the suite's
    business.
    """
    marks = marks + (str(cache_dir()),)
    pids = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and p.name != str(os.getpid())]
    vms = [pid for pid in pids if any(n in _cmdline(pid) for n in ("qemu-system-aarch64", "virgl_render_server"))]
    found = [f"pid {pid}: {_cmdline(pid)}" for pid in vms if _mentions(pid, marks)]
    with open("/proc/mounts") as f:
        found += [l for l in f if any(m in l for m in marks)]
    return found


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        return "(exited)"


def demos(result: dict) -> list[dict]:
    """The demo steps of a result.json, in their order."""
    return [s for s in result["steps"] if s["kind"] == "demo"]


def programs(result: dict) -> list[dict]:
    return [s for s in result["steps"] if s["kind"] == "program"]


def check_result(path: Path) -> dict:
    """A result.json as the schema says (driver/data/schema/result.schema.json), and as RunResult reads it back."""
    import jsonschema

    from venus_repro.result import RunResult, schema

    doc = json.loads(path.read_text())
    jsonschema.validate(doc, schema())
    assert RunResult.from_json(doc, str(path)).to_json() == doc, f"{path}: RunResult does not read it back as written"
    return doc


@pytest.fixture(autouse=True)
def results_follow_the_schema(request, tmp_path):
    """Every VM test: each result.json its runs wrote validates against the published schema."""
    yield
    if request.node.get_closest_marker("vm") is None:
        return
    for path in tmp_path.rglob("result.json"):
        check_result(path)
def built(command: str, source: Path, *options: str) -> dict:
    """``venus-repro COMMAND SOURCE OPTIONS --json`` (a build-* command): its JSON, and how long it took."""
    start = time.monotonic()
    proc = venus_repro(command, str(source), *options, "--json", timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads(proc.stdout), "seconds": time.monotonic() - start, "stderr": proc.stderr}


def assert_cached(command: str, source: Path, first: dict, *options: str) -> float:
    """The same build again is the cached product, checked and not rebuilt; how long it took."""
    again = built(command, source, *options)
    strip = lambda d: {k: v for k, v in d.items() if k not in ("seconds", "stderr")}  # noqa: E731
    assert strip(again) == strip(first)
    assert not re.search(r"^building \S+ from", again["stderr"], re.M), again["stderr"]
    return again["seconds"]


@pytest.fixture(scope="session")
def provisioned() -> dict:
    """Provision the pinned components once per session (cold in CI)."""
    if os.geteuid() != 0:
        pytest.fail("the VM tests need root (chroot and bind mounts in a private namespace)")
    proc = venus_repro("provision", "--json", check=True)
    return json.loads(proc.stdout)


@pytest.fixture
def no_leftovers(tmp_path):
    before = leftovers(str(tmp_path))
    yield
    after = [l for l in leftovers(str(tmp_path)) if l not in before]
    assert not after, f"left running or mounted after the test: {after}"


@pytest.fixture(scope="session")
def moving_profile(tmp_path_factory):
    """A moving suite's profile (debian-forky, debian-sid) with a lock resolved now, beside a copy of it.

    The mirror keeps only a moving suite's current versions, so the committed
    lock goes stale within weeks: CI pins what the suite is today, once a session.
    """
    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            from venus_repro.profile import PROFILES

            folder = tmp_path_factory.mktemp(name)
            shutil.copy(PROFILES / f"{name}.yaml", folder / f"{name}.yaml")
            venus_repro("lock", "--refresh", "--profile", str(folder / f"{name}.yaml"), check=True, timeout=900)
            made[name] = folder / f"{name}.yaml"
        return made[name]

    return make


def pytest_terminal_summary(terminalreporter):
    """The diagnose corpus's numbers (tests/test_corpus.py), shown whether its tests passed or not."""
    corpus = sys.modules.get("test_corpus")
    measured = getattr(corpus, "MEASURED", None)
    if not measured:
        return
    parts = [f"{name} {right}/{of} ({right / of:.1%})" for name, (right, of) in measured.items() if name != "clean" and of]
    if "clean" in measured:
        fired, seen = measured["clean"]
        parts.append(f"findings on clean logs {fired}/{seen}")
    terminalreporter.write_line(f"diagnose corpus: {', '.join(parts)}")
