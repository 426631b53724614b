"""One QEMU guest with a Venus GPU: how to start it, and the running machine.

In the manner of the NixOS test driver: a ``StartCommand`` resolves the
components and options into QEMU's command line (preflight and the
fingerprint read it without starting anything); a ``Machine`` runs it, with
``start()``, ``wait_for_marker()`` / ``wait_for_console_text()`` with a
timeout each, ``wait_for_shutdown()``, and a ``teardown()`` that runs on
every exit path (it is a context manager). QEMU runs inside the provisioned
host root through ``sandbox``, so its mounts and its render server cannot
outlive it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect

from . import hostvulkan, sandbox
from .environment import MachineOptions
from .errors import MachineError
from .protocol import MARKER, parse_marker
from .provision import Components


class ConsoleTimeout(MachineError):
    """The guest did not print what was awaited in time."""


class QemuExited(MachineError):
    """QEMU exited while the driver was still waiting for the guest."""


class StartCommand:
    """How to start one QEMU guest with a Venus GPU on this host: resolved, not started.

    The components, the run directory and the machine's options become QEMU's
    argv, its environment and the binds into the host root; ``probe`` starts
    the same QEMU for a moment to prove it can. Preflight (doctor) and the
    fingerprint read this; ``Machine`` runs it. (The NixOS test driver's
    split between its start command and the machine process.)
    """

    def __init__(
        self,
        components: Components,
        run_dir: Path,
        *,
        mode: str = "run",
        exchange: Path | None = None,
        exchange_in: int = 0,
        machine: MachineOptions = MachineOptions(),
        extra_args: tuple[str, ...] = (),
    ):
        self.c = components
        self.run_dir = run_dir
        self.mode = mode
        self.exchange = exchange
        self.exchange_in = exchange_in  # bytes of input the guest reads from the exchange disk
        self.display = machine.display or components.display
        q = components.profile.qemu
        self.gpu_options = machine.gpu_options or f"venus=on,blob=on,hostmem={q.hostmem}"
        self.extra_args = extra_args
        self.env_overrides = machine.env
        # Component files bound into the root at the same path (registry.Part.key → host path):
        # qemu (binary), virglrenderer (libvirglrenderer.so.1), render_server, vulkan_icd.
        self.overrides = dict(components.overrides)
        self.ring_wake = None
        # The host's GPU driver (--host-vulkan host), made ready in the run directory.
        self.host_driver = None
        if components.host_driver is not None:
            self.host_driver = hostvulkan.stage(components.host_driver, run_dir, components.host_root)
        if components.accel == "auto":
            components.accel = self._choose_accel()
        # Preload the vkr_ring_wake shim into the render server (TCG only; see shims.py).
        self.ring_wake = self.c.ring_wake if machine.ring_wake and self.accel == "tcg" else None

    def cpu_for(self, accel: str) -> str:
        """The guest CPU: the profile's under TCG; a hardware accelerator runs the host's.

        The probes start the same CPU a run does: with nested KVM a host CPU's MSRs can
        fail to load where QEMU's default CPU starts fine.
        """
        return self.c.profile.qemu.cpu if accel == "tcg" else "host"

    def _choose_accel(self) -> str:
        """KVM where it can run this guest (its architecture is the host's, /dev/kvm opens, QEMU starts with it), else TCG."""
        from .doctor import accelerator_cannot_apply

        if accelerator_cannot_apply("kvm", self.c.profile.guest_arch) is not None or not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "tcg"
        return "kvm" if self.probe(accel="kvm", device=False).returncode == 0 else "tcg"

    # --- the command line -------------------------------------------------------------
    def qemu_argv(self) -> list[str]:
        q = self.c.profile.qemu
        arch = self.c.profile.arch
        # quiet: the kernel's boot messages cost ~0.25 s on the emulated UART under
        # TCG; errors still reach the console and the guest saves its full dmesg.
        append = f"console={arch.console} panic=-1 quiet vr.mode={self.mode}"
        if self.exchange_in:
            append += f" vr.xchg_in={self.exchange_in}"
        argv = [
            self.qemu_binary,
            "-M", q.machine,
            *arch.machine_args,
            "-cpu", self.cpu_for(self.accel),
            "-accel", self.accel,
            "-smp", str(q.smp),
            "-m", q.memory,
            "-kernel", str(self.c.kernel.path),
            "-initrd", str(self.c.initramfs),
            "-append", append,
            "-no-reboot",
            # No network: the guest needs none, and the default NIC wants an option ROM.
            "-nic", "none",
            "-device", f"virtio-gpu-gl-pci,{self.gpu_options}",
            "-display", self.display,
            "-d", "guest_errors",
            "-D", str(self.run_dir / "qemu-guest-errors.log"),
        ]  # fmt: skip
        if self.mode == "shell":
            argv += ["-serial", "mon:stdio"]
        else:
            argv += ["-serial", "stdio", "-monitor", "none"]
        if self.exchange is not None:
            argv += [
                "-drive", f"file={self.exchange},if=none,format=raw,id=xchg",
                "-device", "virtio-blk-pci,drive=xchg",
            ]  # fmt: skip
        return argv + list(self.extra_args)

    def probe(self, accel: str = "tcg", device: bool = True) -> subprocess.CompletedProcess:
        """Start this machine's QEMU paused (-S) and quit at once through the monitor.

        QEMU reads the monitor only after every device has realized and the
        display has opened, so exit status 0 proves the accelerator, the
        virtio-gpu-gl options, the Venus build and the GL display all work —
        in about 0.1 s, without booting a kernel.
        """
        argv = [self.qemu_binary, "-M", self.c.profile.qemu.machine, "-cpu", self.cpu_for(accel), "-accel", accel, "-nodefaults",
                "-S", "-monitor", "stdio", "-serial", "none", "-nic", "none"]  # fmt: skip
        if device:
            argv += ["-device", f"virtio-gpu-gl-pci,{self.gpu_options}", "-display", self.display]
        else:
            argv += ["-display", "none"]
        cmd = sandbox.command(self.c.host_root, argv, env=self.environment(), binds=self.vulkan_binds(), mounts=self.vulkan_mounts)
        try:
            return subprocess.run(
                cmd, input="quit\n", capture_output=True, text=True, timeout=30, preexec_fn=sandbox.die_with_parent
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, -9, "", f"QEMU did not start within 30 s ({accel})")

    def environment(self) -> dict[str, str]:
        env = {
            # An OpenGL display with no X server: SDL's offscreen driver (EGL).
            # macOS has no EGL: there SDL opens its Cocoa window, as a user expects.
            **({} if sys.platform == "darwin" else {"SDL_VIDEODRIVER": "offscreen"}),
            **self.vulkan_environment(),
            # The render server's stderr goes to its own log (see _render_server_wrapper).
            "RENDER_SERVER_EXEC_PATH": str(self.run_dir / "render-server"),
        }
        if "virglrenderer" in self.overrides:
            # QEMU's GL module links libvirglrenderer.so.1; this directory wins.
            env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(self.overrides["virglrenderer"].parent), env.get("LD_LIBRARY_PATH")]))
        env.update(self.env_overrides)
        return env

    def vulkan_environment(self) -> dict[str, str]:
        """What any Vulkan or EGL program in the root needs to get this run's host driver.

        QEMU and its render server get it, and so do vulkaninfo in preflight and
        the demos' reference runs (``vulkan_mounts`` are their binds).
        """
        # Pin the host Vulkan driver instead of whatever the loader finds first.
        icd = self.c.vulkan_icd
        egl = self.c.egl_vendor  # where no glvnd folder exists (a Nix build sandbox), SDL's EGL finds Mesa only so
        env = {}
        if self.host_driver is not None:
            icd, egl = self.host_driver.icd, self.host_driver.egl or egl
            if self.host_driver.lib_dir is not None:
                env["LD_LIBRARY_PATH"] = str(self.host_driver.lib_dir)
        env["VK_DRIVER_FILES"] = str(self.overrides.get("vulkan_icd", icd))
        if egl:
            env["__EGL_VENDOR_LIBRARY_FILENAMES"] = egl
        return env

    # What --host-env may say about the Vulkan/EGL driver QEMU and its render server get.
    VULKAN_ENV = ("VK_DRIVER_FILES", "VK_ICD_FILENAMES", "VK_ADD_DRIVER_FILES", "__EGL_VENDOR_LIBRARY_FILENAMES", "LD_LIBRARY_PATH")

    def qemu_vulkan_environment(self) -> dict[str, str]:
        """The driver environment as QEMU's render server sees it (--host-env included): what preflight checks."""
        return {**self.vulkan_environment(), **{k: v for k, v in self.env_overrides.items() if k in self.VULKAN_ENV}}

    @property
    def vulkan_mounts(self) -> tuple[tuple[Path, Path], ...]:
        return self.host_driver.mounts if self.host_driver is not None else ()

    def vulkan_binds(self) -> list[Path]:
        """The binds a host Vulkan program needs: the component overrides, and the staged driver's folder."""
        staged = [self.run_dir / hostvulkan.STAGE] if self.host_driver is not None and self.host_driver.lib_dir else []
        return [*self.override_binds(), *staged]

    def _render_server_wrapper(self) -> None:
        wrapper = self.run_dir / "render-server"
        preload = ""
        if self.ring_wake is not None:
            preload = f"# Under TCG, bound the Venus ring's idle wait (venus_repro/shims.py).\nexport LD_PRELOAD={shlex.quote(str(self.ring_wake))}\n"
        log_file = shlex.quote(str(self.run_dir / "render-server.log"))
        wrapper.write_text(
            "#!/bin/sh\n"
            "# QEMU starts virgl_render_server through this, to keep its log apart and to\n"
            "# say so when a signal ends it (diagnosis tells that from a missing server).\n"
            f"{preload}"
            "# The Vulkan loader's errors (a driver failing in a worker) into the log.\n"
            'export VK_LOADER_DEBUG="${VK_LOADER_DEBUG:-error}"\n'
            f"{shlex.quote(self.render_server)} \"$@\" 2>>{log_file}\n"
            "status=$?\n"
            'if [ "$status" -gt 128 ]; then\n'
            f'  echo "venus-repro: virgl_render_server was killed by signal $((status - 128)) (SIG$(kill -l $((status - 128))))" >>{log_file}\n'
            "fi\n"
            'exit "$status"\n'
        )
        wrapper.chmod(0o755)

    @property
    def accel(self) -> str:
        return self.c.accel

    @property
    def qemu_binary(self) -> str:
        return str(self.overrides.get("qemu", self.c.qemu))

    @property
    def render_server(self) -> str:
        """The render server QEMU's Venus path starts (inside the root)."""
        return self.env_overrides.get("RENDER_SERVER_EXEC_PATH") or str(self.overrides.get("render_server", self.c.render_server))

    def host_path(self, key: str, path: str) -> Path:
        """Where component ``key``, at ``path`` as QEMU sees it, is on the host.

        An override is a host path (bound into the root at the same path); the
        profile's components live in the host root.
        """
        return Path(path) if key in self.overrides else self.c.inside(path)

    @property
    def virglrenderer_library(self) -> Path | None:
        """The libvirglrenderer.so.1 QEMU loads, as a host path (None: the profile names none)."""
        if "virglrenderer" in self.overrides:
            return self.overrides["virglrenderer"]
        return self.c.inside(self.c.virglrenderer) if self.c.virglrenderer else None

    def override_binds(self) -> list[Path]:
        return [p.parent if key == "virglrenderer" else p for key, p in sorted(self.overrides.items())]

    def command(self) -> list[str]:
        binds = [self.run_dir, self.c.kernel.path.parent, self.c.initramfs.parent, *self.override_binds()]
        if self.exchange is not None:
            binds.append(self.exchange.parent)
        if self.ring_wake is not None:
            binds.append(self.ring_wake.parent)
        return sandbox.command(
            self.c.host_root,
            self.qemu_argv(),
            binds=binds,
            mounts=self.vulkan_mounts,
            env=self.environment(),
            stderr=None if self.mode == "shell" else self.run_dir / "qemu-stderr.log",
        )

    def write_command_line(self) -> None:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.environment().items())
        argv = " ".join(shlex.quote(a) for a in self.qemu_argv())
        where = (
            "on the host (private mount/pid namespace where unshare exists)"
            if self.c.host_root == Path("/")
            else f"inside the host root {self.c.host_root} (chroot, private mount/pid namespace)"
        )
        (self.run_dir / "qemu-cmdline.txt").write_text(
            f"# {where}\n"
            f"env {env} \\\n  {argv}\n"
        )

    def prepare(self) -> list[str]:
        """Write the render-server wrapper and qemu-cmdline.txt into the run directory; the argv to start."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._render_server_wrapper()
        self.write_command_line()
        return self.command()


class Machine:
    """One running QEMU guest, driven over its serial console."""

    def __init__(self, start: StartCommand):
        self.start_command = start
        self.run_dir = start.run_dir
        self.process: pexpect.spawn | None = None
        self.started_at: float | None = None
        self.exit_status: int | None = None
        self.markers: list[tuple[float, str, dict[str, str]]] = []
        self._console_log = None
        self._tearing_down = False  # our own SIGKILL in teardown is no finding
        # How much of render-server.log was written when shutdown began (the guest's
        # power-off, or teardown): a render server killed after that went down with QEMU.
        self._shutdown_log_offset: int | None = None

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        cmd = self.start_command.prepare()
        self._console_log = open(self.run_dir / "console.log", "wb")
        self.started_at = time.monotonic()
        self.process = pexpect.spawn(
            cmd[0], cmd[1:], env={"PATH": sandbox.host_path()}, timeout=None,
            preexec_fn=sandbox.set_death_signal, echo=False,  # pexpect already calls setsid
        )  # fmt: skip
        self.process.logfile_read = self._console_log
        self.process.delaybeforesend = None

    def interact(self) -> int:
        """Attach this terminal to the serial console until QEMU exits (``boot``)."""
        proc = subprocess.Popen(self.start_command.prepare(), preexec_fn=sandbox.die_with_parent)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.kill()
            return proc.wait()

    def elapsed(self) -> float:
        return time.monotonic() - (self.started_at or time.monotonic())

    def wait_for_console_text(self, pattern: str, timeout: float) -> re.Match:
        """Wait until ``pattern`` (a regex) appears on the console."""
        assert self.process is not None, "start() first"
        try:
            self.process.expect(pattern, timeout=timeout)
        except pexpect.TIMEOUT:
            raise ConsoleTimeout(f"no '{pattern}' on the console within {timeout:.0f} s") from None
        except pexpect.EOF:
            self._reap()
            raise QemuExited(f"QEMU exited (status {self.exit_status}) before '{pattern}' appeared") from None
        return self.process.match

    def wait_for_marker(self, event: str, timeout: float) -> dict[str, str]:
        """Wait for the guest's ``@@VENUS-REPRO <event>`` marker; return its fields."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConsoleTimeout(f"the guest did not report '{event}' within {timeout:.0f} s")
            try:
                self.wait_for_console_text(rf"{MARKER} [\w-]+[^\r\n]*\r*\n", left)
            except ConsoleTimeout:
                raise ConsoleTimeout(f"the guest did not report '{event}' within {timeout:.0f} s") from None
            except QemuExited:
                raise QemuExited(f"QEMU exited (status {self.exit_status}) before the guest reported '{event}'") from None
            parsed = parse_marker(self.process.match.group(0).decode(errors="replace"))
            if parsed is None:
                continue
            self.markers.append((self.elapsed(), *parsed))
            if parsed[0] == "poweroff":
                self._note_shutdown()
            if parsed[0] == event:
                return parsed[1]

    def send_console(self, line: str) -> None:
        """Type ``line`` on the guest's console (answers a ``sync`` plan line)."""
        assert self.process is not None, "start() first"
        self.process.sendline(line)

    def wait_for_shutdown(self, timeout: float) -> int:
        """Wait for QEMU to exit (the guest powers off; -no-reboot makes QEMU exit)."""
        assert self.process is not None
        try:
            self.process.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            raise ConsoleTimeout(f"QEMU did not exit within {timeout:.0f} s of the guest's power-off") from None
        self._reap()
        return self.exit_status if self.exit_status is not None else -1

    def _reap(self) -> None:
        if self.process is not None and self.exit_status is None:
            self.process.close(force=True)
            self.exit_status = (
                self.process.exitstatus if self.process.exitstatus is not None else -(self.process.signalstatus or 0)
            )
            # A signal (directly, or as the namespace's 128+N) is not a guest that failed to boot: say which.
            signum = -self.exit_status if self.exit_status < 0 else self.exit_status - 128 if self.exit_status > 128 else 0
            if signum and not self._tearing_down:
                try:
                    name = signal.Signals(signum).name
                except ValueError:
                    name = f"signal {signum}"
                with open(self.run_dir / "machine.log", "a") as f:
                    f.write(f"venus-repro: QEMU was killed by signal {signum} ({name})\n")

    def _note_shutdown(self) -> None:
        if self._shutdown_log_offset is None:
            log_file = self.run_dir / "render-server.log"
            self._shutdown_log_offset = log_file.stat().st_size if log_file.exists() else 0

    def _settle_render_server_log(self) -> None:
        """A render server killed as QEMU shut down (its namespace dies with QEMU) is no finding: say so."""
        log_file = self.run_dir / "render-server.log"
        if self._shutdown_log_offset is None or not log_file.exists():
            return
        data = log_file.read_bytes()
        head, tail = data[: self._shutdown_log_offset], data[self._shutdown_log_offset :]
        settled = re.sub(rb"virgl_render_server was killed by signal (\d+ \(\w+\))", rb"virgl_render_server ended with QEMU (signal \1)", tail)
        if settled != tail:
            log_file.write_bytes(head + settled)

    def teardown(self) -> None:
        """Kill QEMU (and with its namespace, the render server). Safe to call twice."""
        self._note_shutdown()
        if self.process is not None:
            # The whole session, even if QEMU already exited: where there are no
            # namespaces (macOS), the render server is only in its process group.
            # Not after _reap: the group's id could belong to someone else by then.
            if self.exit_status is None:
                self._tearing_down = True
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._reap()
            self._settle_render_server_log()
        if self._console_log is not None:
            self._console_log.close()
            self._console_log = None

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def stderr_tail(self, lines: int = 8) -> list[str]:
        path = self.run_dir / "qemu-stderr.log"
        if not path.exists():
            return []
        return [l for l in path.read_text(errors="replace").splitlines() if l.strip()][-lines:]
