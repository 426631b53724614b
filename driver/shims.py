"""Host-side shims: small C libraries preloaded into host components.

Today one: ``vkr_ring_wake`` (shims/vkr_ring_wake.c), preloaded into
virgl_render_server when the guest runs under TCG. It bounds the Venus ring
thread's idle wait, so a ring wakeup lost to TCG's weaker-than-Arm ordering of
STLR followed by LDAR costs at most ~20 ms instead of hanging the guest (the
file's header has the whole story; the finding ``venus-ring-stall`` reports it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import log, resources, sandbox
from .errors import ProvisionError

RING_WAKE = "vkr_ring_wake"
# The line the shim prints to the render server's stderr when it is loaded.
RING_WAKE_ACTIVE = "vkr_ring_wake active"


def source(name: str = RING_WAKE) -> Path:
    path = resources.SHIMS / f"{name}.c"
    if not path.exists():
        raise ProvisionError(f"shim source {path} is missing from the installed package (reinstall venus-repro)")
    return path


def source_digest(name: str = RING_WAKE) -> str:
    return hashlib.sha256(source(name).read_bytes()).hexdigest()[:16]


def build(host_root: Path, out: Path, name: str = RING_WAKE) -> Path:
    """Compile shims/<name>.c into ``out/<name>.so`` with the host root's gcc."""
    src = source(name)
    out.mkdir(parents=True, exist_ok=True)
    so = out / f"{name}.so"
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(so), str(src), "-ldl"]
    proc = sandbox.run(host_root, cmd, binds=[src.parent, out], timeout=120)
    if proc.returncode != 0:
        raise ProvisionError(f"building the {name} shim failed:\n" + (proc.stderr or proc.stdout).strip())
    log.info(f"built {so.name}")
    return so
