"""Bundle a run for a bug report; replay a bundle on another machine.

A bundle (``.tar.gz``) holds the run directory (result, fingerprint, logs,
frames, the effective scenario and the host files it copied into the guest)
and the profile with its lock. ``replay`` provisions those same pins, runs the
same scenario, and compares the new run with the original.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

from . import log
from .errors import UsageError
from .profile import PROFILES, Profile

SKIP = {"exchange.img", "render-server"}


def bundle(run_dir: Path, out: Path | None, profile: Profile) -> Path:
    if not (run_dir / "result.json").exists() or not (run_dir / "scenario.yaml").exists():
        raise UsageError(f"{run_dir}: not a venus-repro run directory (no result.json / scenario.yaml)")
    out = out or run_dir.with_suffix(".venus-bundle.tar.gz")
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(run_dir.rglob("*")):
            if path.is_file() and path.name not in SKIP and not path.is_symlink():
                tar.add(path, arcname=f"run/{path.relative_to(run_dir)}", recursive=False)
        profile_path = PROFILES / f"{profile.name}.yaml"
        tar.add(profile_path if profile_path.exists() else profile.lock_path, arcname=f"profile/{profile.name}.yaml")
        tar.add(profile.lock_path, arcname=f"profile/{profile.lock_path.name}")
        manifest = {"format": 1, "profile": profile.name, "run": run_dir.name}
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return out


def unpack(path: Path, into: Path) -> tuple[Path, Path]:
    """Extract a bundle; returns (original run dir, profile YAML)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such bundle")
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts or not (member.isfile() or member.isdir()):
                    raise UsageError(f"{path}: unsafe member {member.name!r} in bundle")
            tar.extractall(into)
        manifest = json.loads((into / "manifest.json").read_text())
    except (tarfile.TarError, OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a venus-repro bundle ({exc})") from None
    return into / "run", into / "profile" / f"{manifest['profile']}.yaml"


def replay(path: Path, run_dir: Path | None) -> tuple[dict, dict, Path]:
    """Run a bundle's scenario with its pins; returns (new result, comparison, original dir)."""
    from . import compare, profile, scenario
    from .run import RunOptions, new_run_dir, run

    keep = Path(tempfile.mkdtemp(prefix="venus-repro-replay-"))
    original, profile_yaml = unpack(path, keep)
    prof = profile.load(str(profile_yaml))
    sc = scenario.load(str(original / "scenario.yaml"))
    log.info(f"replaying scenario {sc.name} from {path} (original run: {original})")
    result = run(RunOptions(sc, prof, run_dir=run_dir or new_run_dir(None, prof)))
    return result, compare.compare(original, Path(result["run_dir"])), original
