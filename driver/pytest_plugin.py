"""pytest plugin: venus-repro scenarios as test items.

    pytest --venus-scenario venus-demos --venus-scenario my-bug.yaml --junitxml=venus.xml
    pytest tests/scenarios/            # collects every *.venus.yaml file

Each scenario is one test item that provisions, boots and runs it. A failure
reports the failed checks and the findings; the run directory is attached to
the report and recorded as a JUnit property (``run_dir``), so CI tools that
read JUnit XML show where the logs and frames are.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("venus-repro")
    group.addoption(
        "--venus-scenario", action="append", default=[], metavar="NAME|FILE",
        help="run this venus-repro scenario as a test (repeatable)",
    )  # fmt: skip
    group.addoption(
        "--venus-run-dir", metavar="DIR", default=None,
        help="where scenario runs write their run directories (default: pytest's tmp path)",
    )  # fmt: skip


class ScenarioFailed(Exception):
    def __init__(self, result: dict):
        self.result = result


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario_ref: str, **kw):
        super().__init__(**kw)
        self.scenario_ref = scenario_ref

    def runtest(self) -> None:
        from . import scenario
        from .provision import load_profile
        from .run import RunOptions, run

        sc = scenario.load(self.scenario_ref)
        base = self.config.getoption("venus_run_dir")
        root = Path(base) if base else self.config._tmp_path_factory.mktemp("venus")  # type: ignore[attr-defined]
        run_dir = root / f"{sc.name}"
        n = 1
        while run_dir.exists():
            n += 1
            run_dir = root / f"{sc.name}-{n}"
        result = run(RunOptions(sc, load_profile(sc.profile), run_dir=run_dir))
        self.user_properties.append(("run_dir", result.run_dir))
        self.user_properties.append(("verdict", result.verdict))
        if result.verdict != "pass":
            raise ScenarioFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioFailed):
            r = excinfo.value.result
            lines = [f"scenario {self.scenario_ref}: verdict {r.verdict}"]
            if r.failure:
                lines.append(f"  error: {r.failure}")
            lines += [f"  FAILED {c.name}: {c.detail}" for c in r.failed_checks]
            lines += [f"  finding [{f['id']}] {f['summary']} — fix: {f['fix']}" for f in r.findings]
            lines.append(f"  run directory: {r.run_dir}")
            return "\n".join(lines)
        from .errors import VenusReproError

        if isinstance(excinfo.value, VenusReproError):
            return f"scenario {self.scenario_ref}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"venus scenario {self.scenario_ref}"


class ScenarioFile(pytest.File):
    def collect(self):
        yield ScenarioItem.from_parent(self, name=self.path.name, scenario_ref=str(self.path))


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.name.endswith(".venus.yaml"):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    for ref in config.getoption("venus_scenario"):
        items.append(ScenarioItem.from_parent(session, name=f"venus-scenario[{ref}]", scenario_ref=ref))
