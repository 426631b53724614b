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

from . import log, resources, sandbox
from .errors import ProvisionError, UsageError


# Where the guest's demo binaries live inside the initramfs (both profiles).
GUEST_BIN_DIR = "opt/venus-repro/bin"
# What a demo is built from: the catalogue, C sources and headers, GLSL shaders.
_SOURCE_SUFFIXES = (".c", ".h", ".yaml", ".vert", ".frag")


def demos_dir() -> Path:
    """The demo sources shipped in the package, or ``$VENUS_REPRO_DEMOS`` (a demos/ folder)."""
    env = os.environ.get("VENUS_REPRO_DEMOS")
    path = Path(env) if env else resources.DEMOS
    if not (path / "demos.yaml").exists():
        where = "VENUS_REPRO_DEMOS" if env else "the installed package (reinstall venus-repro)"
        raise UsageError(f"demo sources not found at {path} (from {where})")
    return path


@dataclasses.dataclass(frozen=True)
class Expect:
    """A known failure: the outcome, the VkResult (by name) and the call it must fail at."""

    outcome: str
    vk_result: str | None = None
    call: str | None = None


@dataclasses.dataclass(frozen=True)
class Demo:
    name: str
    description: str
    binary: str
    sources: tuple[str, ...]
    shaders: tuple[str, ...]
    args: tuple[str, ...]
    timeout: int
    default: bool = True
    expect: Expect | None = None


def with_frames(demo: Demo, frames: int | None) -> Demo:
    """``demo`` with ``--frames`` set to ``frames`` (unchanged when None)."""
    if frames is None:
        return demo
    args = list(demo.args)
    if "--frames" in args:
        args[args.index("--frames") + 1] = str(frames)
    else:
        args += ["--frames", str(frames)]
    return dataclasses.replace(demo, args=tuple(args))


def catalogue() -> dict[str, Demo]:
    path = demos_dir() / "demos.yaml"
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: malformed YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: the catalogue is a mapping of demo names")
    demos = {}
    for name, d in doc.items():
        binary = d.get("binary", name)
        owner = doc.get(binary, {})
        if "sources" not in owner:
            raise UsageError(f"{path}: demo '{name}': binary '{binary}' has no entry with sources")
        expect = d.get("expect")
        demos[name] = Demo(
            name=name,
            description=d.get("description", ""),
            binary=binary,
            sources=tuple(owner["sources"]),
            shaders=tuple(owner.get("shaders", [])),
            args=tuple(str(a) for a in d.get("args", [])),
            timeout=int(d.get("timeout", 60)),
            default=bool(d.get("default", True)),
            expect=Expect(**expect) if expect else None,
        )
    return demos


def select(names: list[str] | None) -> list[Demo]:
    cat = catalogue()
    if not names:
        return [d for d in cat.values() if d.default]
    unknown = [n for n in names if n not in cat]
    if unknown:
        raise UsageError(f"unknown demo '{unknown[0]}' (available: {', '.join(cat)})")
    return [cat[n] for n in names]


def source_digest() -> str:
    """Hash of every demo source (a change rebuilds the demos); the same from a checkout or a wheel."""
    h = hashlib.sha256()
    root = demos_dir()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _SOURCE_SUFFIXES):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def shader_script(shaders_dir: Path, src: Path | None = None) -> list[str]:
    """Shell lines that compile every demo shader to a SPIR-V header in ``shaders_dir``."""
    src = src or demos_dir()
    lines = []
    for shader in sorted({s for demo in catalogue().values() for s in demo.shaders}):
        name = Path(shader).name
        var = name.replace(".", "_")
        lines.append(f"glslangValidator -V --quiet --vn {var} -o {shaders_dir}/{name}.h {src}/{shader}")
    return lines


def compile_script(cc: str, out: Path, shaders_dir: Path, vulkan: str = "-lvulkan", src: Path | None = None) -> list[str]:
    """Shell lines that compile every demo into ``out`` with ``cc`` (shaders already in ``shaders_dir``).

    With shader_script, the one recipe for the demos: the Debian profile runs
    it for the host gcc and the aarch64 cross gcc, and the Nix derivation
    (nix/demos.nix) through ``venus-repro demos --build-script``, so the
    binaries cannot drift apart.
    """
    src = src or demos_dir()
    # -ffp-contract=off: no fused multiply-add on one side only (aarch64 vs x86_64).
    cflags = f"-O2 -std=c11 -D_POSIX_C_SOURCE=200809L -ffp-contract=off -Wall -Werror -I{src} -I{shaders_dir}"
    lines = []
    for binary, sources in {d.binary: d.sources for d in catalogue().values()}.items():
        files = " ".join(f"{src}/{s}" for s in (*sources, "vr.c"))
        lines.append(f"{cc} {cflags} -o {out}/{binary} {files} {vulkan} -lm")
    return lines


def build(host_root: Path, guest_root: Path, guest_gnu: str, out: Path) -> None:
    """Build every demo into ``out/host`` and ``out/guest`` (for the guest's ``guest_gnu`` triplet) inside the host root."""
    src = demos_dir()
    work = out / "shaders"
    for d in ("host", "guest", "shaders"):
        (out / d).mkdir(parents=True, exist_ok=True)
    script = [
        "set -e",
        *shader_script(work),
        *compile_script("gcc", out / "host", work),
        # The guest binary links against the guest's libvulkan.so.1 (there is no -dev
        # package of the guest's architecture in the host root; the soname is all the
        # linker needs). <triplet>-gcc: the cross compiler, or on a host of the guest's
        # own architecture Debian's native one by that name.
        *compile_script(f"{guest_gnu}-gcc", out / "guest", work, f"{guest_root}/usr/lib/{guest_gnu}/libvulkan.so.1"),
    ]
    binaries = sorted({d.binary for d in catalogue().values()})
    proc = sandbox.run(
        host_root, ["/bin/sh", "-c", "\n".join(script)], binds=[src, out, guest_root], timeout=600
    )
    if proc.returncode != 0:
        raise ProvisionError("building the demos failed:\n" + (proc.stderr or proc.stdout).strip())
    log.info(f"built {', '.join(binaries)} for host and guest")
