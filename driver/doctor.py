"""Preflight: is this host, with these components, able to run Venus — before any boot?

Every check is tried, not guessed: the kernel's own header is read, each
accelerator is started, QEMU realizes the exact GPU device and display the run
will use, the host Vulkan driver is enumerated. ``venus-repro doctor`` prints
them; ``venus-repro run`` runs the same checks and refuses to boot on a fail.
"""

from __future__ import annotations

import array
import dataclasses
import os
import platform
import re
import socket
import struct
import subprocess
import time
from pathlib import Path

from . import hostvulkan, sandbox
from .machine import StartCommand
from .profile import ARCHES
from .provision import Components

# INFO: something a reader should know that is nothing to fix (an accelerator that cannot apply
# to this guest on this host); a run logs WARN and FAIL, and refuses to boot on FAIL.
OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"


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


_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}  # as Debian names them


def accelerator_cannot_apply(accel: str, guest_arch: str, system: str | None = None, machine: str | None = None) -> str | None:
    """Why ``accel`` cannot run a ``guest_arch`` guest on this host (``system``, ``machine``: platform's), or None.

    A hardware accelerator runs guests of the host's own architecture on its own OS only: KVM on
    Linux, HVF on macOS, WHPX on Windows. TCG emulates any guest anywhere. No probe is needed
    to know it, and nothing about it can be fixed on this host.
    """
    system = system or platform.system()
    machine = machine or platform.machine()
    home = {"kvm": ("Linux", "KVM"), "hvf": ("Darwin", "Hypervisor.framework (HVF)"), "whpx": ("Windows", "WHPX")}
    if accel not in home:
        return None
    os_name, what = home[accel]
    host = _ARCH.get(machine, machine)
    if system != os_name:
        return f"{what} exists only on {'macOS' if os_name == 'Darwin' else os_name} (this host runs {system})"
    if host != guest_arch:
        return f"{what} runs guests of the host's own architecture only ({guest_arch} guest, {host} host); TCG emulates it"
    return None


def host_page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def kernel_checks(c: Components, accel: str) -> list[Check]:
    k = c.kernel
    size = f"{k.page_size // 1024}K pages" if k.page_size else "page size unspecified in the header"
    image = ARCHES[k.arch].image
    checks = [Check("kernel image", OK, f"{k.path}: {image}{' (gzip)' if k.compressed else ''}, {size}")]
    required = c.profile.page_size
    if k.arch != c.profile.guest_arch:
        checks.append(Check("kernel architecture", FAIL, f"{k.path} is an {image}; profile {c.profile.name}'s guest is {c.profile.guest_arch}",
                            f"boot a {c.profile.arch.image} (or the profile's pinned kernel: leave --kernel out)"))  # fmt: skip
    elif accel == "hvf" and k.page_size != 16384:
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
        cannot = accelerator_cannot_apply(a, c.profile.guest_arch)
        if cannot and a != accel:
            # Not a choice here: said once, as information (not QEMU's "invalid accelerator", which diagnose reads as a failure).
            checks.append(Check(f"accelerator {a}", INFO, f"not applicable: {cannot}"))
            continue
        probe = start.probe(accel=a, device=False)
        usable = probe.returncode == 0
        why = (probe.stderr.strip().splitlines() or ["failed"])[-1]
        status = OK if usable else (FAIL if a == accel else WARN)
        checks.append(
            Check(
                f"accelerator {a}",
                status,
                ("usable" if usable else why) + (" (used by this run)" if a == accel else ""),
                "" if usable or a != accel else f"choose an accelerator that works here{f' ({cannot})' if cannot else ''}",
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
    venv = start.qemu_vulkan_environment()
    icd = venv.get("VK_DRIVER_FILES") or venv.get("VK_ICD_FILENAMES", "")
    driver = c.host_driver
    if driver is not None:
        nodes = hostvulkan.device_nodes(driver)
        checks.append(
            Check(
                # A warning: whether the driver finds its GPU is what the next check tries.
                "gpu device nodes",
                OK if nodes else WARN,
                f"{', '.join(nodes[:4])}{' …' if len(nodes) > 4 else ''} for {driver.name}" if nodes
                else f"no {'/dev/nvidia*' if driver.nvidia else '/dev/dri/renderD*'} for {driver.name}",
                "" if nodes else "load the GPU's kernel driver (nvidia, amdgpu, i915/xe) or run with --host-vulkan lavapipe",
            )
        )
    info = sandbox.run(c.host_root, [c.vulkaninfo, "--summary"], env=venv, binds=start.vulkan_binds(), mounts=start.vulkan_mounts, timeout=60)
    devices = [d.strip() for d in re.findall(r"deviceName\s*=\s*(.+)", info.stdout)]
    versions = [d.strip() for d in re.findall(r"driverInfo\s*=\s*(.+)", info.stdout)]
    what = f"{driver.name}, " if driver else ""
    checks.append(
        Check(
            "host vulkan",
            OK if devices else FAIL,
            f"{', '.join(devices)} (driver {', '.join(versions) or '?'}; {what}VK_DRIVER_FILES={icd})" if devices
            else f"no Vulkan device with VK_DRIVER_FILES={icd}"
            + (f": {info.stderr.strip().splitlines()[-1]}" if info.stderr.strip() else ""),
            "" if devices else "install a host Vulkan driver (mesa-vulkan-drivers) and point VK_DRIVER_FILES at its ICD",
        )
    )
    if devices and driver is not None:
        checks.append(preload_check(start, driver))
    return checks


def _icd_library_names(start: StartCommand) -> set[str]:
    """The file names the run's host Vulkan driver maps under (the ICD's library, and where its link leads)."""
    if start.c.host_driver is not None and "vulkan_icd" not in start.overrides:
        vendor = start.c.host_driver.icd
    else:
        icd = start.qemu_vulkan_environment().get("VK_DRIVER_FILES", "")
        vendor = hostvulkan.read_vendor(start.host_path("vulkan_icd", icd), start.c.host_root)
    if vendor is None:
        return set()
    names = {Path(vendor.library_name).name}
    if vendor.library is not None:
        names.add(vendor.library.resolve().name)
    return names


def render_server_preloads(start: StartCommand, timeout: float = 30.0) -> bool | None:
    """Whether the render server loads the host Vulkan driver in its main process, before it forks workers.

    Tried, not guessed from a version: the server is started on a socket,
    asked to initialise and to create one context (what QEMU asks first), and
    its main process's memory map is then searched for the driver's library.
    virglrenderer 1.1 always does (a Vulkan call at init); ≥ 1.2 only when
    built with -Dvulkan-preload=true. None: the server could not be asked.
    """
    names = _icd_library_names(start)
    if not names:
        return None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cmd = sandbox.command(
        start.c.host_root, [start.render_server, "--socket-fd", str(theirs.fileno())],
        binds=start.vulkan_binds(), mounts=start.vulkan_mounts, env=start.qemu_vulkan_environment(),
    )  # fmt: skip
    proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=sandbox.die_with_parent)
    theirs.close()
    try:
        ours.settimeout(timeout)
        ours.send(struct.pack("<II", 1, 0))  # RENDER_CLIENT_OP_INIT, flags 0
        ours.send(struct.pack("<II32s", 3, 1, b"venus-repro-probe"))  # RENDER_CLIENT_OP_CREATE_CONTEXT
        fds = array.array("i")
        reply, ancdata, _, _ = ours.recvmsg(16, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        for fd in fds:
            os.close(fd)
        if not reply:
            return None
        server = _child_of(proc.pid)
        if server is None:
            return None
        maps = Path(f"/proc/{server}/maps").read_text()
        return any(f"/{name}" in maps for name in names)
    except OSError:
        return None
    finally:
        ours.close()
        proc.kill()
        proc.wait()


def _child_of(pid: int, wait: float = 5.0) -> int | None:
    """The process ``unshare --fork`` (``pid``) started: the command, after its execs."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                return int(stat.parent.name)
        time.sleep(0.05)
    return None


def preload_check(start: StartCommand, driver: hostvulkan.HostDriver) -> Check:
    """A render server that initialises NVIDIA's driver before it forks fails every guest vkCreateDevice (-3)."""
    preloads = render_server_preloads(start)
    if preloads is None:
        return Check("render server preload", WARN, f"could not ask {start.render_server} whether it preloads {driver.name}")
    if not preloads:
        return Check("render server preload", OK, f"{start.render_server} loads {driver.name} only in its workers")
    if driver.nvidia:
        return Check(
            "render server preload", FAIL,
            f"{start.render_server} initialises {driver.name} before it forks its workers: every guest vkCreateDevice "
            "fails with VK_ERROR_INITIALIZATION_FAILED on NVIDIA (virglrenderer issue 630)",
            "drop --virglrenderer/--render-server (the Debian profile's --host-vulkan host uses its pinned 1.3.0), or use "
            "virglrenderer >= 1.2 built with -Dvulkan-preload=false: `venus-repro build-virglrenderer "
            "virglrenderer-1.3.0.tar.gz -Dvulkan-preload=false` (README: 'On a GPU')",
        )  # fmt: skip
    return Check("render server preload", OK, f"{start.render_server} preloads {driver.name} before forking (known to break only NVIDIA's driver)")


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
