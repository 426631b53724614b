"""venus-repro bisect: which difference breaks a run, proven by runs (real boots, real mixed environments)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import venus_repro

STEPS = "name: tri\nprofile: debian-trixie\nsteps:\n  - demo: test_tri\n    frames: 20\n"
# BAD differs from GOOD in three ways; only the tiny host-visible region breaks Venus.
BAD = """\
name: tri-bad
profile: debian-trixie
machine:
  gpu_options: venus=on,blob=on,hostmem=8M
  host_env: {VENUS_REPRO_UNUSED: 'set, read by nothing'}
components: {guest_mesa: {suite: forky}}
steps:
  - demo: test_tri
    frames: 20
"""


def _bisect(*args: str, timeout: float = 1800):
    proc = venus_repro("bisect", "--json", *args, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc, json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.mark.vm
def test_bisect_names_the_difference_that_breaks_the_run_and_proves_it(provisioned, tmp_path, no_leftovers):
    (tmp_path / "good.yaml").write_text(STEPS)
    (tmp_path / "bad.yaml").write_text(BAD)
    venus_repro("lock", "--refresh", "--scenario", str(tmp_path / "bad.yaml"), check=True, timeout=900)
    good_run = tmp_path / "good-run"
    venus_repro("run", str(tmp_path / "good.yaml"), "--run-dir", str(good_run), check=True)
    work = tmp_path / "bisect"
    # GOOD a run directory, BAD a scenario file.
    proc, report = _bisect(str(good_run), str(tmp_path / "bad.yaml"), "--run-dir", str(work))
    assert proc.returncode == 0 and report["outcome"] == "found", (report, proc.stderr[-2000:])
    assert [c["what"] for c in report["culprit"]] == ["machine.gpu_options"]
    (culprit,) = report["culprit"]
    assert "hostmem=1G" in culprit["good"] and "hostmem=8M" in culprit["bad"]
    # forky's Mesa came with the libraries it needs (libdrm2, …): those are the guest userland's.
    assert {d["what"] for d in report["differences"]} == {"component:guest_mesa", "component:guest_base", "machine.gpu_options", "machine.host_env.VENUS_REPRO_UNUSED"}
    runs = report["runs"]
    assert [r["label"] for r in runs[:2]] == ["bad", "good"] and [r["verdict"] for r in runs[:2]] == ["fail", "pass"]
    # The proof is in the runs: GOOD + the culprit failed as BAD does; GOOD + each other difference passed.
    assert any(r["verdict"] == "fail" and r["applied"] == ["machine.gpu_options"] for r in runs)
    assert any(r["verdict"] == "pass" and "component:guest_mesa" in r["applied"] and "machine.gpu_options" not in r["applied"] for r in runs)
    for r in runs:
        assert Path(r["run_dir"], "result.json").is_file(), r
    # diagnose reads the BAD run's own record (its GPU options) and names the 8M window as the cause.
    diag = venus_repro("diagnose", "--json", runs[0]["run_dir"])
    findings = json.loads(diag.stdout)["findings"]
    assert "hostmem-too-small" in [f["id"] for f in findings], findings
    assert "hostmem" in next(f for f in findings if f["id"] == "hostmem-too-small")["fix"], findings
    assert report["signature"].startswith("test_tri: runs in the guest")
    assert len(runs) <= 8, [r['applied'] for r in runs]
    # The reproducer: the environment that fails, beside the one that passes.
    repro = Path(report["reproducer"])
    fails = venus_repro("run", str(repro / "fails/scenario.yaml"), "--environment", str(repro / "fails/environment.json"), "--run-dir", str(tmp_path / "r1"))
    passes = venus_repro("run", str(repro / "passes/scenario.yaml"), "--environment", str(repro / "passes/environment.json"), "--run-dir", str(tmp_path / "r2"))
    assert (fails.returncode, passes.returncode) == (1, 0), (fails.stderr[-1500:], passes.stderr[-1500:])
    # Interrupted or not, the same --run-dir continues: every run is reused, none is booted again.
    proc, again = _bisect(str(good_run), str(tmp_path / "bad.yaml"), "--run-dir", str(work))
    assert again["culprit"] == report["culprit"] and "booting the guest" not in proc.stderr
    assert [r["run_dir"] for r in again["runs"]] == [r["run_dir"] for r in runs]


@pytest.mark.vm
def test_endpoints_that_do_not_hold_are_said_so(provisioned, tmp_path, no_leftovers):
    (tmp_path / "good.yaml").write_text(STEPS)
    proc, report = _bisect(str(tmp_path / "good.yaml"), str(tmp_path / "good.yaml"), "--run-dir", str(tmp_path / "b"))
    assert proc.returncode == 1 and report["outcome"] == "not-reproduced" and report["why"].startswith("BAD did not fail")
    assert [r["verdict"] for r in report["runs"]] == ["pass"]


def test_bad_bisect_arguments_are_one_clear_error(tmp_path):
    for args, message in (
        ([], "bisect needs GOOD and BAD"),
        ([str(tmp_path), str(tmp_path)], "no environment.json"),
        (["x.txt", "y.txt"], "not a run directory, a bundle"),
        (["--source", "virglrenderer=/nonexistent", "--good", "a", "--bad", "b"], "is not a folder"),
        (["--source", "guest_base=/tmp", "--good", "a", "--bad", "b"], "not built from source here"),
        (["--source", "virglrenderer=/tmp"], "--source needs --good REV and --bad REV"),
        (["a", "b", "--tries", "0"], "--tries must be a positive number"),
    ):
        proc = venus_repro("bisect", *args, "--run-dir", str(tmp_path / "w"), cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)


def _commit(repo: Path, message: str) -> str:
    import subprocess

    git = ["git", "-C", str(repo), "-c", "user.name=venus-repro test", "-c", "user.email=test@venus-repro.invalid"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", message], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def virglrenderer_history(tmp_path) -> tuple[Path, dict[str, str]]:
    """virglrenderer 1.1.0, then: a commit that breaks guest instance creation, one that does not compile, one that
    fixes that, one harmless. Bisect's first pick is the middle one, which does not build: it is skipped."""
    import subprocess
    import tarfile

    from test_build import _source

    repo = tmp_path / "virglrenderer"
    repo.mkdir()
    with tarfile.open(_source("virglrenderer-1.1.0.tar.gz")) as t:
        t.extractall(tmp_path / "unpacked")
    (top,) = (tmp_path / "unpacked").iterdir()
    for p in top.iterdir():
        p.rename(repo / p.name)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    revs = {"import": _commit(repo, "virglrenderer 1.1.0")}
    instance = repo / "src/venus/vkr_instance.c"
    text = instance.read_text()
    assert "if (instance_version < VK_API_VERSION_1_1) {" in text
    instance.write_text(text.replace("if (instance_version < VK_API_VERSION_1_1) {", "if (instance_version < VK_API_VERSION_1_1 || instance_version) {"))
    revs["breaks"] = _commit(repo, "venus: require a newer instance version")
    context = repo / "src/venus/vkr_context.c"
    context.write_text(context.read_text() + "\nthis is not C;\n")
    revs["no-build"] = _commit(repo, "venus: a change that does not compile")
    context.write_text(context.read_text().replace("\nthis is not C;\n", ""))
    revs["fixed"] = _commit(repo, "venus: compile again")
    (repo / "NOTES").write_text("a harmless change\n")
    revs["notes"] = _commit(repo, "notes")
    return repo, revs


@pytest.mark.vm
def test_bisect_through_a_source_history_names_the_breaking_commit_and_skips_one_that_does_not_build(provisioned, tmp_path, no_leftovers, virglrenderer_history):
    repo, revs = virglrenderer_history
    (tmp_path / "tri.yaml").write_text(STEPS)
    proc, report = _bisect("--source", f"virglrenderer={repo}", "--good", revs["import"], "--bad", revs["notes"],
                           "--steps", str(tmp_path / "tri.yaml"), "--run-dir", str(tmp_path / "b"), timeout=3600)  # fmt: skip
    assert proc.returncode == 0 and report["outcome"] == "found", (report, proc.stderr[-3000:])
    assert report["commit"] == revs["breaks"] and report["subject"] == "venus: require a newer instance version"
    assert [s["commit"] for s in report["skipped"]] == [revs["no-build"]]
    assert "failed" in report["skipped"][0]["why"] and "not C" in report["skipped"][0]["why"]
    verdicts = {r["applied"][0]: r["verdict"] for r in report["runs"]}
    assert verdicts == {revs["notes"]: "fail", revs["import"]: "pass", revs["no-build"]: "untestable", revs["breaks"]: "fail"}
    assert report["signature"].startswith("test_tri: runs in the guest")
    # Every build happened in the repository's one workspace (a commit recompiles only what it changed).
    import re

    builds = len(re.findall(r"building virglrenderer from .*…$", proc.stderr, re.M))
    assert proc.stderr.count("file(s) changed since its last build") == builds


@pytest.mark.vm
def test_bisect_between_two_nix_manifests_names_the_field_that_breaks(provisioned, tmp_path, no_leftovers):
    """Two nix-profile runs (manifests naming the Debian components): the manifest's fields, by role, are the differences."""
    from test_nix_profile import debian_manifest

    good_doc = debian_manifest(provisioned)
    bad_doc = {**good_doc, "hostmem": "8M", "smp": 1}
    runs = {}
    for name, doc in (("good", good_doc), ("bad", bad_doc)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        runs[name] = tmp_path / f"{name}-run"
        proc = venus_repro("run", "--profile", "nix", "--manifest", str(tmp_path / f"{name}.json"), "--demo", "test_tri",
                           "--frames", "20", "--run-dir", str(runs[name]))  # fmt: skip
        assert proc.returncode == (0 if name == "good" else 1), proc.stderr[-2000:]
    # BAD as a bundle of the nix-profile run (what the user sends from the Mac).
    venus_repro("bundle", str(runs["bad"]), "-o", str(tmp_path / "bad.tar.gz"), check=True)
    proc, report = _bisect(str(runs["good"]), str(tmp_path / "bad.tar.gz"), "--run-dir", str(tmp_path / "b"))
    assert proc.returncode == 0 and report["outcome"] == "found", (report, proc.stderr[-2000:])
    assert {d["what"] for d in report["differences"]} == {"manifest:hostmem", "manifest:smp"}
    assert [c["what"] for c in report["culprit"]] == ["manifest:hostmem"] and "8M" in report["culprit"][0]["bad"]
