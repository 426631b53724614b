"""Bundle a run for a bug report; replay a bundle on another machine.

A bundle (``.tar.gz``) holds the run directory (result, fingerprint, logs,
frames, the effective scenario and the host files it copied into the guest)
and the profile with its lock. ``replay`` provisions those same pins, runs the
same scenario, and compares the new run with the original.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

from . import archive, log
from .environment import Environment
from .errors import UsageError, VenusReproError, shown
from .profile import PLAIN_NAME, PROFILES, Profile
from .run import ENVIRONMENT

SKIP = {"exchange.img", "render-server", ".venus-repro-run"}
# A bundle is someone else's data: limits on what unpacking it may write.
MAX_MEMBERS = 10_000
MAX_BYTES = 512 << 20
# The only host environment a replayed bundle may set without --trust-bundle:
# debug and tuning switches that load nothing and name no file.
SAFE_ENV = ("VKR_DEBUG", "VN_DEBUG", "VN_PERF", "MESA_DEBUG", "VK_LOADER_DEBUG", "MVK_CONFIG_LOG_LEVEL",
            "LP_NUM_THREADS", "VKR_RING_WAKE_MS")  # fmt: skip


def bundle(run_dir: Path, out: Path | None, profile: Profile, nix_manifest: Path | None = None) -> Path:
    """Pack ``run_dir`` with ``profile`` and its lock (a nix-profile run: the guest's pins, and ``nix/``)."""
    if not (run_dir / "result.json").exists() or not (run_dir / "scenario.yaml").exists():
        raise UsageError(f"{run_dir}: not a venus-repro run directory (no result.json / scenario.yaml)")
    out = out or run_dir.with_suffix(".venus-bundle.tar.gz")
    tmp = out.with_name(out.name + ".part")
    try:
        _pack(run_dir, tmp, profile, nix_manifest)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk or an interruption leaves no half archive
    return out


def _pack(run_dir: Path, tmp: Path, profile: Profile, nix_manifest: Path | None = None) -> None:
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(run_dir.rglob("*")):
            if path.is_file() and path.name not in SKIP and not path.is_symlink():
                tar.add(path, arcname=f"run/{path.relative_to(run_dir)}", recursive=False)
        _add_bytes(tar, f"profile/{profile.name}.yaml", _flattened(profile.path or PROFILES / f"{profile.name}.yaml"))
        tar.add(profile.lock_path, arcname=f"profile/{profile.lock_path.name}")
        manifest = {"format": 1, "profile": profile.name, "run": run_dir.name}
        if nix_manifest is not None:
            from . import nixbundle

            manifest["nix"] = nixbundle.pack(tar, nix_manifest, profile, _add_bytes)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _flattened(profile_path: Path) -> bytes:
    """A profile file that stands alone (``extends`` written out), for a bundle read elsewhere."""
    import yaml

    from .profile import _extended, _read

    return yaml.safe_dump(_extended(_read(profile_path), profile_path), sort_keys=False).encode()


def unpack(path: Path, into: Path) -> tuple[Path, Path]:
    """Extract a bundle; returns (original run dir, profile YAML). A bundle is someone else's data:

    only plain files and folders under run/ and profile/ and manifest.json, with plain
    names, within the limits, are unpacked, and manifest.json must be what ``bundle``
    writes; anything else is one UsageError naming the bundle and what is wrong.
    """
    if not path.is_file():
        raise UsageError(f"{path}: no such bundle")
    with archive.open_tar(path, gzip.open, "a venus-repro bundle", MAX_BYTES, MAX_MEMBERS) as (tar, members):
        for member in members:
            top = Path(member.name).parts[0] if archive.plain_name(member.name) else None
            if top not in ("run", "profile", "nix", "manifest.json") or not (member.isfile() or member.isdir()):
                kind = "a link" if member.issym() or member.islnk() else "a device or fifo" if member.isdev() or member.isfifo() else "outside run/ and profile/"
                raise UsageError(f"{path}: unsafe member {shown(member.name)!r} in bundle ({kind if top else 'not a plain relative name'})")
        tar.extractall(into, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    manifest = _manifest(path, into / "manifest.json")
    original, profile_yaml = into / "run", into / "profile" / f"{manifest['profile']}.yaml"
    for what, file in (("run/scenario.yaml", original / "scenario.yaml"), (f"profile/{manifest['profile']}.yaml", profile_yaml)):
        if not file.is_file() or file.is_symlink():
            raise UsageError(f"{path}: the bundle has no {what} (manifest.json names profile '{manifest['profile']}')")
    return original, profile_yaml


def _manifest(path: Path, file: Path) -> dict:
    """The bundle's manifest.json, checked field by field."""
    if not file.is_file() or file.is_symlink():
        raise UsageError(f"{path}: not a venus-repro bundle (no manifest.json)")
    try:
        doc = json.loads(file.read_bytes()[:65536])
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: manifest.json is not JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: manifest.json must be a JSON object, not {type(doc).__name__}")
    if type(doc.get("format")) is not int or doc["format"] != 1:
        raise UsageError(f"{path}: manifest.json: field 'format' must be 1 (a bundle of this venus-repro)")
    if not isinstance(doc.get("profile"), str) or not PLAIN_NAME.fullmatch(doc["profile"]):
        raise UsageError(f"{path}: manifest.json: field 'profile' must name the bundled profile (a plain word)")
    if "run" in doc and not isinstance(doc["run"], str):
        raise UsageError(f"{path}: manifest.json: field 'run' must be the run directory's name")
    if "nix" in doc and not (isinstance(doc["nix"], dict) and all(isinstance(v, (str, bool, type(None))) for v in doc["nix"].values())):
        raise UsageError(f"{path}: manifest.json: field 'nix' must describe the nix-profile run (names and strings)")
    return doc


def kind(path: Path, into: Path) -> dict | None:
    """The bundle's nix part (manifest.json's ``nix``) when it is a nix-profile run's, after ``unpack``."""
    return _manifest(path, into / "manifest.json").get("nix")


def read(path: Path, into: Path, trust: bool = False) -> tuple[Path, Profile, "scenario.Scenario", Environment | None]:
    """Unpack bundle ``path`` into ``into`` and read it: (original run dir, its profile, its scenario
    and environment as replay runs them).

    The bundle is data. Unless ``trust`` (``--trust-bundle``), nothing in it
    is run, loaded or bound on this host: component overrides, a kernel
    image, host files outside the bundle and host environment other than
    SAFE_ENV are reported (``result.scenario.ignored``), not obeyed.
    """
    from . import profile, scenario
    from .provision.lock import Lock

    original, profile_yaml = unpack(path, into)
    policy = scenario.ALLOW if trust else scenario.DROP
    try:
        prof = profile.load(str(profile_yaml))
        sc = scenario.load(str(original / "scenario.yaml"), policy, policy)
        Lock.load(prof)  # the bundled lock: its shape and every pin checked here, not mid-provisioning
        env = None
        if _manifest(path, into / "manifest.json").get("nix") is not None:
            pass  # a nix-profile run: its store paths are the sender's (replay decides what runs here)
        elif (original / ENVIRONMENT).is_file():
            # Every pin the original ran with (pins are data: each .deb is checked by its sha256).
            env = Environment.load(original / ENVIRONMENT)
            # The pins are the recorded ones; how QEMU is started is what the scenario says.
            env = dataclasses.replace(env, profile=dataclasses.replace(env.profile, lock_path=prof.lock_path, path=prof.path), machine=sc.machine)
    except VenusReproError as exc:  # named as the bundle's member, not where it was unpacked
        raise type(exc)(str(exc).replace(f"{into}/", f"{path}: ")) from None
    if not trust:
        sc, env = trusted_part(sc, env)
    return original, prof, sc, env


def replay(path: Path, run_dir: Path | None, trust: bool = False, nix_manifest: Path | None = None) -> tuple[dict, dict, Path, dict]:
    """Run a bundle's scenario with its pins (see ``read``); returns (new result, comparison, original dir, notes).

    A nix-profile run's bundle replays on the nix profile with ``nix_manifest``
    (notes: which store paths differ) or, by default, on the bundled Debian
    profile: the same guest pins on this host's stack (notes: what that leaves out).
    """
    from . import compare, nixbundle
    from .run import RunOptions, new_run_dir, run

    keep = Path(tempfile.mkdtemp(prefix="venus-repro-replay-"))
    try:
        original, prof, sc, env = read(path, keep, trust)
        nix = kind(path, keep)
        notes: dict = {}
        if nix is None and nix_manifest is not None:
            raise UsageError(f"{path}: a Debian-profile run's bundle replays with its own pins: --manifest is for a nix-profile run's")
        if nix is not None and nix_manifest is not None:
            from .provision import manifest

            prof = manifest.profile(nix_manifest)
            env = Environment(prof, machine=sc.machine)
            notes["store_paths"] = nixbundle.store_path_differences(keep, nix_manifest)
        elif nix is not None:
            sc = dataclasses.replace(sc, profile=prof.name)
            notes["left_out"] = nixbundle.left_out(keep, nix)
        nixbundle.describe(notes)
    except BaseException:
        shutil.rmtree(keep, ignore_errors=True)  # nothing of a bundle that could not be read stays behind
        raise
    log.info(f"replaying scenario {sc.name} from {path} (original run: {original})")
    result = run(RunOptions(sc, prof, run_dir=run_dir or new_run_dir(None, prof), environment=env))
    return result, compare.compare(original, Path(result.run_dir)), original, notes


def trusted_part(sc, env):
    """What of a bundle's scenario and environment may be used without ``--trust-bundle``.

    Pins are data (checked by sha256); a component the bundle names as a path
    or a build runs code it brings, and host environment other than SAFE_ENV can
    load libraries: those are left out and said (``ignored``).
    """
    from . import registry
    from .environment import MachineOptions

    ignored = list(sc.ignored)
    machine = sc.machine
    unsafe = sorted(k for k, _ in machine.host_env if k not in SAFE_ENV)
    ignored += [f"machine.host_env.{k} (not used: pass --trust-bundle to use it)" for k in unsafe]
    safe_machine = dataclasses.replace(machine, host_env=tuple((k, v) for k, v in machine.host_env if k in SAFE_ENV))
    sc = dataclasses.replace(sc, machine=dataclasses.replace(sc.machine, host_env=safe_machine.host_env), ignored=tuple(dict.fromkeys(ignored)))
    if env is not None:
        kept = tuple((n, s) for n, s in env.sources if s.kind in registry.spec(n).safe_sources or s.kind == registry.HOST)
        dropped = [f"components.{n} ({s.describe()}, not used: pass --trust-bundle to use it)" for n, s in env.sources if (n, s) not in kept]
        env = dataclasses.replace(env, sources=kept, machine=safe_machine)
        sc = dataclasses.replace(sc, ignored=tuple(dict.fromkeys([*sc.ignored, *dropped])))
    return sc, env
