"""Nix, pinned: run the profile's Nix (from its lock) on the flake, offline.

The flake's own checks need Nix, which this project does not assume on the
host: the Debian profile pins ``nix-bin`` like any other component and this
module runs it in that root (``sandbox``), so every machine evaluates the
flake with the same Nix. It evaluates; it never builds or downloads: no
substituters, no flake registry, and a chroot store (``local?root=…``) under
the cache, so the host's /nix (if any) is never touched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import sandbox
from .errors import VenusReproError

# What Nix needs to evaluate offline, and nothing that would reach out.
SETTINGS = {
    "experimental-features": "nix-command flakes",
    "sandbox": "false",
    "substituters": "",
    "flake-registry": "",
    "build-users-group": "",
    "warn-dirty": "false",
}


class NixError(VenusReproError):
    pass


class Nix:
    def __init__(self, root: Path, state: Path, binds: tuple[Path, ...] = ()):
        """``root``: the tool root with nix-bin; ``state``: the chroot store and Nix's home."""
        self.root = root
        self.state = state
        self.binds = binds
        state.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        settings = {**SETTINGS, "store": f"local?root={self.state}/store"}
        return {
            "HOME": str(self.state / "home"),
            "XDG_CACHE_HOME": str(self.state / "home" / "cache"),
            "NIX_CONFIG": "\n".join(f"{k} = {v}" for k, v in settings.items()),
        }

    def _run(self, program: str, args: tuple[str, ...], cwd: Path | None, timeout: float) -> subprocess.CompletedProcess:
        (self.state / "home").mkdir(exist_ok=True)
        binds = (self.state, *self.binds, *([cwd] if cwd else []))
        return sandbox.run(self.root, [program, *args], binds=binds, env=self.env, cwd=cwd, timeout=timeout)

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        return self._run("nix", args, cwd, timeout)

    def instantiate(self, *args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        return self._run("nix-instantiate", args, cwd, timeout)

    def succeed(self, *args: str, cwd: Path | None = None, timeout: float = 900) -> str:
        """stdout of ``nix args``; a NixError carrying Nix's own message if it failed."""
        proc = self.run(*args, cwd=cwd, timeout=timeout)
        if proc.returncode != 0:
            raise NixError(f"nix {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.strip()[-4000:]}")
        return proc.stdout

    def version(self) -> str:
        return self.succeed("--version").strip()
