"""venus-repro build-virglrenderer: a source tree built against the profile's suite, A/B in the VM.

The user runs their own fork of virglrenderer (pannous/virglrenderer main, the macOS
render server and MoltenVK export paths); a change that breaks it on Linux must show
up here. The source tarballs are the project's offline copies (``../shared/sources``
beside the checkout, or ``$VENUS_REPRO_SOURCES``); CI has them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import REPO, demos, venus_repro

SOURCES = Path(os.environ.get("VENUS_REPRO_SOURCES", REPO.parent / "shared" / "sources"))


def _source(name: str) -> Path:
    path = SOURCES / name
    if not path.is_file():
        reason = f"no {name} in {SOURCES} (set VENUS_REPRO_SOURCES)"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must build the user's virglrenderer")
        pytest.skip(reason)
    return path


@pytest.mark.parametrize(
    "command,args,message",
    [
        ("build-virglrenderer", ["/nonexistent.tar.gz"], "no such source tarball or folder"),
        ("build-virglrenderer", ["notes.txt"], "give a source tarball"),
        ("build-virglrenderer", ["empty"], "not a virglrenderer source folder (no meson.build)"),
        ("build-virglrenderer", ["empty", "-D", "venus"], "meson option '-Dvenus': give -Dname=value"),
        ("build-mesa", ["/nonexistent.tar.xz"], "no such source tarball or folder"),
        ("build-mesa", ["notes.txt"], "give a source tarball"),
        ("build-mesa", ["empty"], "not a mesa source folder (no meson.build)"),
        ("build-mesa", ["empty", "-D", "vulkan-drivers"], "meson option '-Dvulkan-drivers': give -Dname=value"),
        ("build-qemu", ["/nonexistent.tar.xz"], "no such source tarball or folder"),
        ("build-qemu", ["notes.txt"], "give a source tarball"),
        ("build-qemu", ["empty"], "not a qemu source folder (no configure)"),
        ("build-qemu", ["empty", "--configure-option=enable-slirp"], "configure option 'enable-slirp': give --enable-FEATURE"),
    ],
)
def test_bad_sources_are_one_clear_error(tmp_path, command, args, message):
    (tmp_path / "notes.txt").write_text("not a tarball\n")
    (tmp_path / "empty").mkdir()
    proc = venus_repro(command, *args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.vm
@pytest.mark.parametrize(
    "tarball,options",
    [
        # The user's working macOS state (MACOS.md), on Linux with its default process worker.
        ("virglrenderer-pannous-905aad7c.tar.gz", []),
        # Upstream 1.3.0 as NVIDIA hosts need it: the host driver is not initialised before fork.
        ("virglrenderer-1.3.0.tar.gz", ["-D", "vulkan-preload=false"]),
    ],
)
def test_a_built_virglrenderer_passes_the_vm_demos(provisioned, tmp_path, no_leftovers, tarball, options):
    source = _source(tarball)
    proc = venus_repro("build-virglrenderer", str(source), *options, "--json", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    build = json.loads(proc.stdout)
    assert build["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    run_dir = tmp_path / "run"
    proc = venus_repro("run", "--json", "--run-dir", str(run_dir),
                       "--virglrenderer", build["library"], "--render-server", build["render_server"])  # fmt: skip
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass", [c for c in result["checks"] if not c["ok"]]
    assert all(d["checksum_match"] for d in demos(result))
    fp = json.loads((run_dir / "fingerprint.json").read_text())["components"]["virglrenderer"]
    assert fp["library"] == build["library"] and fp["render_server"] == build["render_server"]
    assert fp["library_sha256"] == hashlib.sha256(Path(build["library"]).read_bytes()).hexdigest()
    cmdline = (run_dir / "qemu-cmdline.txt").read_text()
    assert f"LD_LIBRARY_PATH={Path(build['library']).parent}" in cmdline
    # Built once: the second time is the cached product, checked, not rebuilt.
    again = venus_repro("build-virglrenderer", str(source), *options, "--json")
    assert json.loads(again.stdout) == build and "building virglrenderer" not in again.stderr
