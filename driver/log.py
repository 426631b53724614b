"""Nested, timed log blocks on stderr, in the manner of the NixOS test driver.

Everything a human reads goes to stderr; stdout is reserved for machine output
(``--json``) so that ``venus-repro run --json | jq`` always works.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator

_depth = 0
quiet = False


def _emit(text: str) -> None:
    if quiet:
        return
    sys.stderr.write("  " * _depth + text + "\n")
    sys.stderr.flush()


def info(text: str) -> None:
    _emit(text)


def warn(text: str) -> None:
    _emit(f"warning: {text}")


@contextlib.contextmanager
def nested(title: str) -> Iterator[None]:
    """Log ``title``, indent what happens inside, and report how long it took."""
    global _depth
    _emit(f"{title}…")
    start = time.monotonic()
    _depth += 1
    ok = False
    try:
        yield
        ok = True
    finally:
        _depth -= 1
        took = time.monotonic() - start
        _emit(f"{title}: {'done' if ok else 'FAILED'} ({took:.1f} s)")


class Progress:
    """Rate-limited progress lines for long steps (downloads, extraction)."""

    def __init__(self, what: str, total: int, unit: str = "", every: float = 2.0):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.done = 0
        self._last = 0.0

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.every:
            self._last = now
            suffix = f" {note}" if note else ""
            _emit(f"{self.what}: {self.done}/{self.total}{self.unit}{suffix}")
