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

SKIP = {"exchange.img", "render-server", ".venus-repro-run"}
# A bundle is someone else's data: limits on what unpacking it may write.
MAX_MEMBERS = 10_000
MAX_BYTES = 512 << 20
# The only host environment a replayed bundle may set without --trust-bundle:
# debug and tuning switches that load nothing and name no file.
SAFE_ENV = ("VKR_DEBUG", "VN_DEBUG", "VN_PERF", "MESA_DEBUG", "VK_LOADER_DEBUG", "MVK_CONFIG_LOG_LEVEL",
            "LP_NUM_THREADS", "VKR_RING_WAKE_MS")  # fmt: skip


def bundle(run_dir: Path, out: Path | None, profile: Profile) -> Path:
    if not (run_dir / "result.json").exists() or not (run_dir / "scenario.yaml").exists():
        raise UsageError(f"{run_dir}: not a venus-repro run directory (no result.json / scenario.yaml)")
    out = out or run_dir.with_suffix(".venus-bundle.tar.gz")
    tmp = out.with_name(out.name + ".part")
    try:
        _pack(run_dir, tmp, profile)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk or an interruption leaves no half archive
    return out


def _pack(run_dir: Path, tmp: Path, profile: Profile) -> None:
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


def unpack(path: Path, into: Path) -> tuple[Path, Path]:
    """Extract a bundle; returns (original run dir, profile YAML)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such bundle")
    try:
        with tarfile.open(path, "r:gz") as tar:
            members, total = tar.getmembers(), 0
            if len(members) > MAX_MEMBERS:
                raise UsageError(f"{path}: more than {MAX_MEMBERS} entries: not a venus-repro bundle")
            for member in members:
                if member.name.startswith("/") or ".." in Path(member.name).parts or not (member.isfile() or member.isdir()):
                    raise UsageError(f"{path}: unsafe member {member.name!r} in bundle")
                total += member.size
                if total > MAX_BYTES:
                    raise UsageError(f"{path}: unpacks to more than {MAX_BYTES >> 20} MiB: not a venus-repro bundle")
            tar.extractall(into, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        manifest = json.loads((into / "manifest.json").read_text())
    except (tarfile.TarError, OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a venus-repro bundle ({exc})") from None
    return into / "run", into / "profile" / f"{manifest['profile']}.yaml"


def replay(path: Path, run_dir: Path | None, trust: bool = False) -> tuple[dict, dict, Path]:
    """Run a bundle's scenario with its pins; returns (new result, comparison, original dir).

    The bundle is data. Unless ``trust`` (``--trust-bundle``), nothing in it
    is run, loaded or bound on this host: component overrides, a kernel
    image, host files outside the bundle and host environment other than
    SAFE_ENV are reported (``result.scenario.ignored``), not obeyed.
    """
    import dataclasses

    from . import compare, profile, scenario
    from .run import RunOptions, new_run_dir, run

    keep = Path(tempfile.mkdtemp(prefix="venus-repro-replay-"))
    original, profile_yaml = unpack(path, keep)
    prof = profile.load(str(profile_yaml))
    policy = scenario.ALLOW if trust else scenario.DROP
    sc = scenario.load(str(original / "scenario.yaml"), policy, policy)
    if not trust:
        unsafe = sorted(k for k in sc.host_env if k not in SAFE_ENV)
        sc = dataclasses.replace(
            sc,
            host_env={k: v for k, v in sc.host_env.items() if k in SAFE_ENV},
            ignored=sc.ignored + tuple(f"machine.host_env.{k} (not used: pass --trust-bundle to use it)" for k in unsafe),
        )
    log.info(f"replaying scenario {sc.name} from {path} (original run: {original})")
    result = run(RunOptions(sc, prof, run_dir=run_dir or new_run_dir(None, prof)))
    return result, compare.compare(original, Path(result["run_dir"])), original
