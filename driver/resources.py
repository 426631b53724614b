"""Where the package's own files are: data, demo and shim sources, the guest's /init.

All of them ship inside the installed package (pyproject.toml maps the
source tree's demos/ and shims/ to ``venus_repro.demo_sources`` and
``venus_repro.shim_sources``), and are found through ``importlib.resources``: an
installed wheel needs no source tree, and an editable install reads the
checkout.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def _package_dir(package: str) -> Path:
    return Path(str(importlib.resources.files(package)))


DATA = _package_dir("venus_repro") / "data"
GUEST_INIT = _package_dir("venus_repro") / "guest" / "init.sh"
DEMOS = _package_dir("venus_repro.demo_sources")
SHIMS = _package_dir("venus_repro.shim_sources")
