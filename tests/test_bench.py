"""venus-repro bench produces its report and plot (structure only: no timed assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import venus_repro

pytestmark = pytest.mark.vm


def test_bench_report_and_plot(provisioned, tmp_path, no_leftovers):
    run_dir = tmp_path / "bench"
    proc = venus_repro(
        "bench", "--json", "--repeat", "2", "--frames", "30", "--run-dir", str(run_dir),
        "--demo", "test_tri", "--demo", "vkcube_zerocopy", "--demo", "vkcube_copyback",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert json.loads((run_dir / "bench.json").read_text()) == report
    assert Path(report["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(report["demos"]) == {"test_tri", "vkcube_zerocopy", "vkcube_copyback"}
    for name, d in report["demos"].items():
        kept = 2 - sum(f["demo"] == name for f in report["failed_rounds"])
        assert len(d["guest_fps"]["values"]) == len(d["host_fps"]["values"]) == kept
        assert d["efficiency"]["min"] <= d["efficiency"]["median"] <= d["efficiency"]["max"]
        assert all(v > 0 for v in d["guest_fps"]["values"] + d["host_fps"]["values"])
    assert "zero_copy_vs_copyback" in report
    assert report["time_to_verdict"]["total_s"]["median"] > report["time_to_verdict"]["qemu_start_to_init_s"]["median"]
    assert {g["goal"] for g in report["goals"]} >= {"time_to_verdict_s", "efficiency_test_tri", "zero_copy_vs_copyback"}
    # Both halves of every round ran: the guest's outputs and the host's are kept.
    assert (run_dir / "rounds" / "guest" / "test_tri-r1.out").exists()
    assert (run_dir / "rounds" / "host" / "test_tri-r1.out").exists()


def test_bench_refuses_a_known_failure(tmp_path):
    proc = venus_repro("bench", "--demo", "vkcube_zerocopy_dumb", "--run-dir", str(tmp_path / "b"))
    assert proc.returncode == 2 and "is a known failure" in proc.stderr
    assert not (tmp_path / "b").exists()
