"""Run a command inside the provisioned host root, leaving nothing behind.

The command runs in fresh mount and PID namespaces (``unshare``): the bind
mounts it needs exist only inside them, so they vanish with the command on
every exit path — success, failure, timeout, Ctrl-C or a crash — with no
cleanup code that could be skipped. The command is PID 1 of its namespace, so
when it dies every process it started (QEMU's ``virgl_render_server``) is
killed by the kernel. ``unshare`` itself gets SIGKILL if venus-repro dies
(``PR_SET_PDEATHSIG``), which takes the whole namespace down with it.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Mapping

from .errors import ProvisionError

# PATH inside a Debian root (FHS). On the host (the nix profile) commands come
# from the caller's PATH instead: a Nix build sandbox has no /usr/bin.
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_PR_SET_PDEATHSIG = 1


def set_death_signal() -> None:
    """preexec_fn: the child gets SIGKILL when venus-repro exits, however it exits (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_parent() -> None:
    """preexec_fn: the death signal, in a session of its own (no terminal signals)."""
    set_death_signal()
    os.setsid()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on any system: no /proc needed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def require_root() -> None:
    if os.geteuid() != 0:
        raise ProvisionError(
            "venus-repro needs root here: the host root is entered with chroot and "
            "bind mounts in a private namespace (run it with sudo)"
        )
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            raise ProvisionError(f"'{tool}' is not installed (apt-get install util-linux coreutils mount)")


def command(
    root: Path,
    argv: Iterable[str],
    *,
    binds: Iterable[Path] = (),
    mounts: Iterable[tuple[Path, Path]] = (),
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
) -> list[str]:
    """The argv that runs ``argv`` in ``root`` with ``binds`` visible at the same paths.

    ``mounts`` are (host file, target) pairs bound after ``binds``: each target
    is an existing placeholder file under one of the binds (hostvulkan's
    staged driver libraries).

    ``env`` replaces the environment entirely (nothing of the caller's leaks
    in, so a run is reproducible). ``stdout``/``stderr`` redirect to files.
    ``root`` ``/`` (the nix profile: self-contained store paths) means no
    chroot and no binds: on Linux still private mount and PID namespaces (a
    user namespace too when not root); where there is no ``unshare`` (macOS)
    the command runs directly, in a session the Machine kills as a group.
    """
    if Path(root) == Path("/"):
        return _command_in_host(argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
    r = shlex.quote(str(root))
    script = [
        "set -e",
        f"mount -t proc proc {r}/proc",
        f"mount --rbind /sys {r}/sys",
        f"mount --rbind /dev {r}/dev",
        f"mount -t tmpfs -o mode=1777 tmpfs {r}/tmp",
    ]
    for path in binds:
        q = shlex.quote(str(path))
        kind = "-p" if Path(path).is_dir() else ""
        if kind:
            script.append(f"mkdir -p {r}{q}")
        else:
            script.append(f"mkdir -p {r}{shlex.quote(str(Path(path).parent))} && touch {r}{q}")
        script.append(f"mount --bind {q} {r}{q}")
    for source, target in mounts:
        script.append(f"mount --bind {shlex.quote(str(source))} {r}{shlex.quote(str(target))}")
    envs = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
    script.append(f"exec chroot {r} {_inner('/usr/bin/env', argv, envs, cwd, stdout, stderr)}")
    return [
        "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
        "/bin/sh", "-c", "\n".join(script),
    ]  # fmt: skip


def host_path() -> str:
    """The PATH commands are found on outside any root: the caller's (FHS when it has none)."""
    return os.environ.get("PATH") or PATH


def _inner(env_binary: str, argv: Iterable[str], envs: Mapping[str, str], cwd, stdout, stderr) -> str:
    """``env -i VAR=… argv…`` with redirections, as one shell word list."""
    inner = [env_binary, "-i", *(["-C", str(cwd)] if cwd is not None else []), *(f"{k}={v}" for k, v in envs.items())]
    tail = " ".join(shlex.quote(a) for a in [*inner, *argv])
    if stdout is not None:
        tail += f" >{shlex.quote(str(stdout))}"
    if stderr is not None:
        tail += f" 2>{shlex.quote(str(stderr))}"
    return tail


def _command_in_host(argv: Iterable[str], *, env, cwd, stdout, stderr) -> list[str]:
    """On the host itself (the nix profile): no FHS path is assumed, as in a Nix build sandbox.

    ``env`` and ``unshare`` come from PATH; PATH and HOME are the caller's
    unless ``env`` sets them (the sandbox's HOME is /homeless-shelter).
    """
    env_binary = shutil.which("env")
    if env_binary is None:
        raise ProvisionError("'env' is not on PATH (coreutils): venus-repro runs every component with a clean environment")
    envs = {"PATH": host_path(), "LANG": "C.UTF-8", **({"HOME": os.environ["HOME"]} if "HOME" in os.environ else {}), **(env or {})}
    tail = _inner(env_binary, argv, envs, cwd, stdout, stderr)
    if shutil.which("unshare") is None:
        return ["/bin/sh", "-c", f"exec {tail}"]
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    script = f"set -e\nmount -t proc proc /proc\nexec {tail}"
    return [
        "unshare", *user, "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
        "/bin/sh", "-c", script,
    ]  # fmt: skip


def run(root: Path, argv: Iterable[str], *, timeout: float | None = None, **kw) -> subprocess.CompletedProcess:
    """Run to completion in ``root``; output captured as text."""
    cmd = command(root, argv, **kw)
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=die_with_parent
        )
    except subprocess.TimeoutExpired as exc:
        # subprocess.run killed unshare; the kernel kills the namespace with it.
        return subprocess.CompletedProcess(cmd, -9, exc.stdout or "", (exc.stderr or "") + "\n[timeout]")
