"""``venus-repro bisect --source COMPONENT=GIT_TREE --good REV --bad REV``: the first bad commit.

A component that can be built from source (virglrenderer, the guest's Mesa,
QEMU: the registry's ``build``) is bisected through its history the way
``git bisect run`` would, with ktest's rules: each candidate commit is
exported from the repository (``git archive``, so the work tree is never
touched), built in the pinned build root — cached by its tree, so a commit is
built once whatever bisect asks — and run with the steps; a commit that does
not build is skipped, never blamed, and a neighbour is tried; the first
failure means bad, and only passes are repeated (``--tries``). The good and
bad commits are built and run first. The result names the first bad commit
and its subject, or the range the skips leave open.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

from . import log, registry, scenario
from .bisect import FAIL, FOUND, INCONCLUSIVE, NOT_REPRODUCED, PASS, Bisect, Endpoint, _run_row
from .environment import resolve
from .errors import UsageError


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"git {' '.join(args[:2])} in {repo}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
    return proc.stdout


def _export(repo: Path, rev: str, into: Path) -> Path:
    """The tree of commit ``rev`` in ``into/<sha>`` (exported once; never the user's work tree)."""
    tree = into / rev
    if (tree / ".complete").exists():
        return tree
    tree.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as tar:
        subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev], stdout=tar, check=True)
        tar.seek(0)
        with tarfile.open(fileobj=tar) as t:
            t.extractall(tree, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    (tree / ".complete").touch()
    return tree


def parse(spec: str) -> tuple[registry.ComponentSpec, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise UsageError(f"--source takes COMPONENT=GIT_TREE, got '{spec}'")
    c = registry.spec(name.replace("-", "_"))
    if c.build is None:
        buildable = ", ".join(x.name for x in registry.COMPONENTS if x.build)
        raise UsageError(f"--source {name}: {c.name} is not built from source here (these are: {buildable})")
    repo = Path(path).resolve()
    if not repo.is_dir():
        raise UsageError(f"--source {spec}: {repo} is not a folder")
    _git(repo, "rev-parse", "--git-dir")
    return c, repo


def bisect_source(spec: str, good_rev: str, bad_rev: str, steps_ref: str | None, profile_ref: str | None, tries: int, work: Path) -> dict:
    from .provision import Provisioner, load_profile

    c, repo = parse(spec)
    good = _git(repo, "rev-parse", "--verify", f"{good_rev}^{{commit}}").strip()
    bad = _git(repo, "rev-parse", "--verify", f"{bad_rev}^{{commit}}").strip()
    if subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", good, bad]).returncode != 0:
        raise UsageError(f"--good {good_rev} is not an ancestor of --bad {bad_rev} in {repo}")
    revs = _git(repo, "rev-list", "--ancestry-path", "--reverse", f"{good}..{bad}").split()
    subjects = {r: _git(repo, "log", "-1", "--format=%s", r).strip() for r in [good, *revs]}
    sc = scenario.load(steps_ref or "venus-demos")
    prof = load_profile(profile_ref or sc.profile)
    if prof.manifest is not None:
        raise UsageError("--source builds run on a Debian profile")
    with log.nested(f"resolving the environment of {sc.name} on {prof.name}"):
        base = resolve(sc.environment(prof), Provisioner(prof), sc.pinning(prof))
    trees = work / "trees"

    def env_at(rev: str):
        # One workspace for the repository: a commit compiles only what it changed.
        tree = str(_export(repo, rev, trees))
        return base.with_sources(**{c.name: registry.Source(registry.BUILD, paths=(("tree", tree), ("workspace", str(repo))))})

    b = Bisect(Endpoint(env_at(good), sc, good), Endpoint(env_at(bad), sc, bad), sc, tries, work)
    report: dict = {"component": c.name, "repository": str(repo), "good": good, "bad": bad, "steps": sc.name, "tries": tries,
                    "commits": len(revs), "run_dir": str(work)}  # fmt: skip
    b.doc["report"] = report

    def finish(outcome: str, **extra) -> dict:
        report.update(outcome=outcome, runs=[_run_row(r) for r in b.runs], **extra)
        b.save()
        (work / "report.json").write_text(__import__("json").dumps(report, indent=2) + "\n")
        return report

    def short(rev: str) -> str:
        return f"{rev[:12]} {subjects[rev][:50]}"

    with log.nested(f"verifying the endpoints: {short(bad)} must fail, {short(good)} must pass"):
        first = b.outcome(env_at(bad), f"bad {bad[:12]}", [bad])
        if first["verdict"] != FAIL:
            return finish(NOT_REPRODUCED, why=f"the bad commit did not fail ({first['verdict']}{': ' + first['why'] if first.get('why') else ''})")
        b.bad_signature = first["signature"]
        report["signature"] = first["first_failure"]
        other = b.outcome(env_at(good), f"good {good[:12]}", [good])
        if other["verdict"] != PASS:
            return finish(NOT_REPRODUCED, why=f"the good commit did not pass: {other.get('first_failure') or other.get('why')}")
    lo, hi, skipped = -1, len(revs) - 1, set()  # revs[lo] passes (-1: the good commit), revs[hi] fails
    with log.nested(f"bisecting {len(revs) - 1} commit(s) between them"):
        while True:
            left = [i for i in range(lo + 1, hi) if i not in skipped]
            if not left:
                break
            mid = (lo + hi) / 2
            i = min(left, key=lambda k: (abs(k - mid), k))
            entry = b.outcome(env_at(revs[i]), f"commit {revs[i][:12]}", [revs[i]])
            if entry["verdict"] == PASS:
                lo = i
            elif entry["verdict"] == FAIL:
                hi = i
            else:
                skipped.add(i)
    skip_rows = [{"commit": revs[i], "subject": subjects[revs[i]], "why": next((r.get("why") for r in reversed(b.runs) if revs[i] in (r.get("applied") or [])), None)}
                 for i in sorted(skipped)]  # fmt: skip
    open_range = [revs[i] for i in range(lo + 1, hi)]
    if open_range:
        return finish(INCONCLUSIVE, why=f"the first bad commit is one of {len(open_range) + 1}: skipped commits leave it open",
                      range=[{"commit": r, "subject": subjects[r]} for r in [*open_range, revs[hi]]], skipped=skip_rows)  # fmt: skip
    culprit = revs[hi]
    return finish(FOUND, commit=culprit, subject=subjects[culprit], last_good=revs[lo] if lo >= 0 else good, skipped=skip_rows,
                  culprit=[{"component": c.name, "good": (revs[lo] if lo >= 0 else good)[:12], "bad": culprit[:12]}])  # fmt: skip
