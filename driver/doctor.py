"""Preflight: is this host, with these components, able to run Venus — before any boot?

Every check is tried, not guessed: the kernel's own header is read, each
accelerator is started, QEMU realizes the exact GPU device and display the run
will use, the host Vulkan driver is enumerated. ``venus-repro doctor`` prints
them; ``venus-repro run`` runs the same checks and refuses to boot on a fail.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from pathlib import Path

from . import sandbox
from .machine import StartCommand
from .provision import Components

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclasses.dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def line(self) -> str:
        return f"preflight {self.status.upper()} {self.name}: {self.detail}" + (f" (fix: {self.fix})" if self.fix else "")


def _accelerators() -> list[str]:
    if platform.system() == "Darwin":
        return ["hvf", "tcg"]
    return ["kvm", "tcg"]


def host_page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def kernel_checks(c: Components, accel: str) -> list[Check]:
    k = c.kernel
    size = f"{k.page_size // 1024}K pages" if k.page_size else "page size unspecified in the header"
    checks = [Check("kernel image", OK, f"{k.path}: arm64 Image{' (gzip)' if k.compressed else ''}, {size}")]
    required = c.profile.page_size
    if accel == "hvf" and k.page_size != 16384:
        checks.append(
            Check(
                "guest page size",
                FAIL,
                f"the kernel has {size}; HVF on Apple Silicon maps guest memory in 16K pages, so Venus "
                "blob mapping (RESOURCE_MAP_BLOB) would fail and vkCreateInstance would return -1",
                "boot a kernel built with CONFIG_ARM64_16K_PAGES=y",
            )
        )
    elif k.page_size != required:
        checks.append(
            Check(
                "guest page size",
                WARN,
                f"the kernel has {size}; profile {c.profile.name} requires {required // 1024}K — "
                "it can boot here, but the verdict will fail",
                f"use the profile's pinned kernel (--kernel-flavour {c.profile.default_kernel})",
            )
        )
    else:
        checks.append(Check("guest page size", OK, f"{size}, as profile {c.profile.name} requires"))
    hp = host_page_size()
    checks.append(Check("host page size", OK, f"{hp // 1024}K ({platform.system()} {platform.machine()})"))
    return checks


def qemu_checks(c: Components, start: StartCommand, accel: str) -> list[Check]:
    checks = []
    binds = start.override_binds()
    version = sandbox.run(c.host_root, [start.qemu_binary, "--version"], binds=binds, timeout=30)
    first = (version.stdout.splitlines() or ["?"])[0]
    checks.append(Check("qemu", OK if version.returncode == 0 else FAIL, first, "" if version.returncode == 0 else "install qemu-system-arm"))
    props = sandbox.run(c.host_root, [start.qemu_binary, "-device", "virtio-gpu-gl-pci,help"], binds=binds, timeout=30)
    missing = [p for p in ("venus", "blob", "hostmem") if not re.search(rf"^\s*{p}=", props.stdout, re.M)]
    checks.append(
        Check(
            "virtio-gpu-gl options",
            FAIL if missing else OK,
            f"missing {', '.join(missing)}" if missing else "venus, blob and hostmem available",
            "use QEMU >= 9.2 built with virglrenderer >= 1.0 (Venus)" if missing else "",
        )
    )
    for a in _accelerators():
        probe = start.probe(accel=a, device=False)
        usable = probe.returncode == 0
        why = (probe.stderr.strip().splitlines() or ["failed"])[-1]
        status = OK if usable else (FAIL if a == accel else WARN)
        checks.append(
            Check(
                f"accelerator {a}",
                status,
                ("usable" if usable else why) + (" (used by this run)" if a == accel else ""),
                "" if usable or a != accel else "choose an accelerator that works here",
            )
        )
    probe = start.probe(accel=accel, device=True)
    stderr = [l for l in probe.stderr.splitlines() if l.strip()]
    checks.append(
        Check(
            "gpu device and GL display",
            OK if probe.returncode == 0 else FAIL,
            f"virtio-gpu-gl-pci,{start.gpu_options} realized on -display {start.display}"
            if probe.returncode == 0
            else " | ".join(stderr[-2:]) or f"QEMU exited with {probe.returncode}",
            "" if probe.returncode == 0 else "see the finding below",
        )
    )
    return checks


def renderer_checks(c: Components, start: StartCommand) -> list[Check]:
    checks = []
    binds = start.override_binds()
    lib = start.virglrenderer_library
    has_venus = lib is not None and lib.exists() and b"VKR_DEBUG" in lib.read_bytes()
    checks.append(
        Check(
            "virglrenderer venus",
            OK if has_venus else FAIL,
            f"{lib} has Venus (vkr)" if has_venus else f"{lib or 'libvirglrenderer'} has no Venus renderer",
            "" if has_venus else "use virglrenderer built with -Dvenus=true",
        )
    )
    server = start.render_server
    inside = start.host_path("render_server", server)
    usable = inside.is_file() and os.access(inside, os.X_OK)
    checks.append(
        Check(
            "render server",
            OK if usable else FAIL,
            f"{server} is executable" if usable else f"{server} does not exist or is not executable",
            "" if usable else "install virgl-server (/usr/libexec/virgl_render_server) or fix RENDER_SERVER_EXEC_PATH",
        )
    )
    icd = start.environment()["VK_DRIVER_FILES"]
    info = sandbox.run(c.host_root, [c.vulkaninfo, "--summary"], env={"VK_DRIVER_FILES": icd}, binds=binds, timeout=60)
    devices = re.findall(r"deviceName\s*=\s*(.+)", info.stdout)
    checks.append(
        Check(
            "host vulkan",
            OK if devices else FAIL,
            f"{', '.join(d.strip() for d in devices)} (VK_DRIVER_FILES={icd})" if devices
            else f"no Vulkan device with VK_DRIVER_FILES={icd}",
            "" if devices else "install a host Vulkan driver (mesa-vulkan-drivers) and point VK_DRIVER_FILES at its ICD",
        )
    )
    return checks


def cache_checks() -> list[Check]:
    """The cached products this process checked before using them (provision.sysroot.verify)."""
    from .provision import sysroot

    if not sysroot.checked:
        return []
    damaged = [f"{p.parent.name}/{p.name} ({'; '.join(problems[:2])})" for p, problems in sysroot.checked if problems]
    if damaged:
        return [Check("cache integrity", WARN, f"damaged and rebuilt: {', '.join(damaged)}",
                      "nothing to do (rebuilt); if it recurs, check the disk")]  # fmt: skip
    return [Check("cache integrity", OK, f"{len(sysroot.checked)} cached products match their records")]


def preflight(c: Components, start: StartCommand, accel: str = "tcg") -> list[Check]:
    return cache_checks() + kernel_checks(c, accel) + qemu_checks(c, start, accel) + renderer_checks(c, start)


def write_log(checks: list[Check], path: Path) -> None:
    path.write_text("".join(ch.line() + "\n" for ch in checks))
