"""The demo catalogue (``demos/demos.yaml``) and building the demos.

Each demo is compiled twice by the same gcc 14 from the host root: for the
guest (aarch64, linked against the guest's own libvulkan) and for the host (run
on lavapipe), so the two checksums can be compared bit for bit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import yaml

from . import log, sandbox
from .errors import ProvisionError, UsageError


def demos_dir() -> Path:
    env = os.environ.get("VENUS_REPRO_DEMOS")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "demos"
    if not (path / "demos.yaml").exists():
        raise UsageError(
            f"demo sources not found at {path}; run venus-repro from its source tree "
            "(pip install -e .) or set VENUS_REPRO_DEMOS to the demos/ folder"
        )
    return path


@dataclasses.dataclass(frozen=True)
class Demo:
    name: str
    description: str
    sources: tuple[str, ...]
    shaders: tuple[str, ...]
    args: tuple[str, ...]
    timeout: int


def catalogue() -> dict[str, Demo]:
    path = demos_dir() / "demos.yaml"
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: malformed YAML: {exc}") from None
    demos = {}
    for name, d in doc.items():
        demos[name] = Demo(
            name=name,
            description=d.get("description", ""),
            sources=tuple(d["sources"]),
            shaders=tuple(d.get("shaders", [])),
            args=tuple(str(a) for a in d.get("args", [])),
            timeout=int(d.get("timeout", 60)),
        )
    return demos


def select(names: list[str] | None) -> list[Demo]:
    cat = catalogue()
    if not names:
        return list(cat.values())
    unknown = [n for n in names if n not in cat]
    if unknown:
        raise UsageError(f"unknown demo '{unknown[0]}' (available: {', '.join(cat)})")
    return [cat[n] for n in names]


def source_digest() -> str:
    """Hash of every file in demos/ (a change rebuilds the demos)."""
    h = hashlib.sha256()
    root = demos_dir()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build(host_root: Path, guest_root: Path, guest_libdir: str, out: Path) -> None:
    """Build every demo into ``out/host`` and ``out/guest`` inside the host root."""
    src = demos_dir()
    demos = catalogue()
    work = out / "shaders"
    for d in ("host", "guest", "shaders"):
        (out / d).mkdir(parents=True, exist_ok=True)
    shaders = sorted({s for demo in demos.values() for s in demo.shaders})
    script = ["set -e"]
    for shader in shaders:
        name = Path(shader).name
        var = name.replace(".", "_")
        script.append(f"glslangValidator -V --quiet --vn {var} -o {work}/{name}.h {src}/{shader}")
    cflags = f"-O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Werror -I{src} -I{work}"
    for demo in demos.values():
        files = " ".join(f"{src}/{s}" for s in (*demo.sources, "vr.c"))
        script.append(f"gcc {cflags} -o {out}/host/{demo.name} {files} -lvulkan -lm")
        # The guest binary links against the guest's libvulkan.so.1 (there is no
        # arm64 -dev package in the host root; the soname is all the linker needs).
        script.append(
            f"aarch64-linux-gnu-gcc {cflags} -o {out}/guest/{demo.name} {files} "
            f"{guest_root}/{guest_libdir}/libvulkan.so.1 -lm"
        )
    proc = sandbox.run(
        host_root, ["/bin/sh", "-c", "\n".join(script)], binds=[src, out, guest_root], timeout=600
    )
    if proc.returncode != 0:
        raise ProvisionError("building the demos failed:\n" + (proc.stderr or proc.stdout).strip())
    log.info(f"built {', '.join(demos)} for host and guest")
