"""The ``venus-repro`` command line.

Exit status: 0 every expected outcome held · 1 the verdict failed ·
2 a user-facing error (bad input, missing pin, provisioning) · 130 interrupted ·
70 a bug in venus-repro (the traceback goes to a file, not the terminal).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import json
import sys
import tempfile
import traceback
from pathlib import Path

from tabulate import tabulate

from . import __version__, demos, log, profile
from .errors import Terminated, VenusReproError


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="debian-trixie", help="profile name or YAML path (default: debian-trixie), or nix")
    _add_manifest(p)


def _add_manifest(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--manifest", type=Path, metavar="FILE",
        help="with --profile nix: the flake's manifest.json (nix build .#manifest)",
    )  # fmt: skip


def _profile(name: str, manifest: Path | None):
    from .provision import load_profile

    return load_profile(name, manifest)


def _no_manifest(prof, what: str) -> None:
    if prof.manifest is not None:
        raise VenusReproError(f"{what} works on the Debian profile only (the nix profile's pins are flake.lock)")


def _add_kernel(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kernel-flavour",
        metavar="FLAVOUR",
        help="pinned guest kernel flavour from the profile (debian-trixie: 16k, the default, or 4k)",
    )
    p.add_argument("--kernel", type=Path, metavar="IMAGE", help="boot this arm64 Image instead (virtio-gpu built in)")


def _add_host_vulkan(p: argparse.ArgumentParser) -> None:
    from .hostvulkan import CHOICES

    p.add_argument(
        "--host-vulkan", choices=CHOICES, default=None,
        help="the host Vulkan driver Venus renders on: the root's lavapipe (default) or this host's own GPU driver, "
        "found from its ICD files (VK_DRIVER_FILES picks one where there are several)",
    )  # fmt: skip


def _add_machine(p: argparse.ArgumentParser) -> None:
    from . import registry

    _add_host_vulkan(p)
    registry.add_flags(p)
    p.add_argument("--display", help="QEMU -display value (default sdl,gl=on on SDL's offscreen driver)")
    p.add_argument("--gpu-options", help="virtio-gpu-gl-pci options (default venus=on,blob=on,hostmem=<profile>)")
    p.add_argument(
        "--host-env", action="append", default=[], metavar="KEY=VALUE",
        help="set an environment variable for QEMU (e.g. RENDER_SERVER_EXEC_PATH, VKR_DEBUG); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--no-ring-wake", dest="ring_wake", action="store_false", default=None,
        help="do not preload the vkr_ring_wake shim into the render server under TCG "
        "(to reproduce the Venus ring stall; see finding venus-ring-stall)",
    )  # fmt: skip


def _sources(args) -> dict:
    """The components the command line takes from elsewhere (files, --component)."""
    from . import registry

    return {**registry.from_flags(args), **registry.parse_cli(getattr(args, "component", []) or [])}


def _environment(args, prof):
    """The environment the command line describes (fingerprint, doctor, boot, provision, carry)."""
    from . import registry
    from .environment import Environment, MachineOptions

    if getattr(args, "kernel", None) is not None and getattr(args, "kernel_flavour", None) is not None:
        raise VenusReproError("--kernel and --kernel-flavour exclude each other")
    sources = _sources(args) if hasattr(args, "component") else {}
    if getattr(args, "kernel", None) is not None:
        from .provision.kernel import read_image

        read_image(args.kernel)
        sources["guest_kernel"] = registry.Source(registry.PATH, paths=(("image", str(args.kernel.resolve())),))
    if getattr(args, "host_vulkan", None) == "host":
        sources["host_vulkan"] = registry.Source(registry.HOST)
    machine = MachineOptions(
        display=getattr(args, "display", None), gpu_options=getattr(args, "gpu_options", None),
        host_env=tuple(sorted(_host_env(getattr(args, "host_env", []) or []).items())),
        ring_wake=getattr(args, "ring_wake", None) is not False,
    )  # fmt: skip
    return Environment(prof, getattr(args, "kernel_flavour", None), machine=machine, sources=tuple(sorted(sources.items())))


def _host_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise VenusReproError(f"--host-env takes KEY=VALUE, got '{item}'")
        env[key] = value
    return env


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="venus-repro",
        description="Run Vulkan in a QEMU VM through Venus with pinned components, assert what the demos did, "
        "and explain why they failed.",
        epilog="Exit status: 0 all expected outcomes held, 1 the verdict failed, 2 bad input or a provisioning "
        "error, 130 interrupted.",
    )
    ap.add_argument("--version", action="version", version=f"venus-repro {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_command_run, _command_bench, _command_fingerprint, _command_compare, _command_bundle, _command_bisect, _command_replay, _command_doctor, _command_boot, _command_provision, _command_lock, _command_diagnose, _command_builds, _command_unpack, _command_guest_initramfs, _command_carry, _command_demos):
        add(sub)
    return ap


def _command_run(sub) -> None:
    p = sub.add_parser("run", help="provision, boot, run a scenario's demos and programs, print the verdict")
    p.add_argument("scenario", nargs="?", metavar="SCENARIO|FILE", help="built-in scenario name or YAML file (default: venus-demos)")
    p.add_argument("--profile", help="profile name or YAML path (default: the scenario's), or nix")
    _add_manifest(p)
    _add_kernel(p)
    p.add_argument("--demo", action="append", metavar="NAME", help="run only this demo (repeatable)")
    p.add_argument("--frames", type=int, help="frames per demo (overrides demos.yaml)")
    p.add_argument("--timeout", type=int, metavar="S", help="seconds each demo may take in the guest (overrides demos.yaml)")
    p.add_argument("--run-dir", type=Path, help="where to write the run's files (default: ./venus-runs/<time>-<profile>)")
    p.add_argument("--boot-timeout", type=float, default=120.0, help="seconds to reach /init (default 120)")
    p.add_argument("--json", action="store_true", help="print result.json to stdout instead of the table")
    _add_machine(p)

    p.add_argument("--no-preflight", action="store_true", help="boot even if a preflight check fails (to reproduce it)")
    p.add_argument(
        "--environment", type=Path, metavar="FILE",
        help="run in this recorded environment exactly (a run's or a bisect reproducer's environment.json) instead of resolving one",
    )  # fmt: skip
    p.add_argument(
        "--allow-host-files", action="store_true",
        help="let the scenario name host files outside its own folder (files:, components:, kernel.image): "
        "they are copied into the guest and the run directory, or run",
    )  # fmt: skip
    p.add_argument(
        "--allow-host-programs", action="store_true",
        help="let the scenario's compare_host steps run their commands on this machine too (in the host root, as "
        "root), to compare their outputs with the guest's (built-in scenarios may without it)",
    )  # fmt: skip


def _command_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure Venus efficiency, zero-copy gain and time to verdict")
    _add_profile(p)
    p.add_argument("--demo", action="append", metavar="NAME", help="benchmark only this demo (repeatable)")
    p.add_argument("--repeat", type=int, default=5, metavar="N", help="rounds of guest/host pairs (default 5)")
    p.add_argument("--frames", type=int, help="frames per demo run (overrides demos.yaml)")
    p.add_argument("--cold", action="store_true", help="also time provisioning into an empty cache (~520 MB download)")
    _add_host_vulkan(p)
    p.add_argument("--run-dir", type=Path, help="where to write bench.json, bench.png and the runs")
    p.add_argument("--json", action="store_true", help="print bench.json to stdout")
    p.add_argument("--diagnose", action="store_true", help="instead: time diagnosis on 100 KB to 10 MB logs of every shape (no VM)")


def _command_fingerprint(sub) -> None:
    p = sub.add_parser("fingerprint", help="the identity of every component of this environment")
    _add_profile(p)
    _add_kernel(p)
    p.add_argument("--json", action="store_true", help="print it as JSON")


def _command_compare(sub) -> None:
    p = sub.add_parser("compare", help="what differs between two runs, most suspicious first")
    p.add_argument("run_a", type=Path, metavar="RUN_A")
    p.add_argument("run_b", type=Path, metavar="RUN_B")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")


def _command_bundle(sub) -> None:
    p = sub.add_parser("bundle", help="pack a run (scenario, lock, fingerprint, logs, frames) for a bug report")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("-o", "--output", type=Path, help="the archive to write (default: RUN_DIR.venus-bundle.tar.gz)")


def _command_bisect(sub) -> None:
    p = sub.add_parser("bisect", help="find which difference between two environments (or which commit) breaks a run, proven by runs")
    p.add_argument("good", nargs="?", metavar="GOOD", help="a run directory, a bundle or a scenario file that passes")
    p.add_argument("bad", nargs="?", metavar="BAD", help="one that fails (its steps are run unless --steps)")
    p.add_argument("--steps", metavar="SCENARIO", help="run these steps instead of BAD's (a built-in scenario or a file)")
    p.add_argument("--tries", type=int, default=1, metavar="N", help="runs of a passing candidate before it counts as good (default 1)")
    p.add_argument("--run-dir", type=Path, help="the bisect's directory (default ./venus-runs/<time>-bisect); again to continue one")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--trust-bundle", action="store_true", help="a bundle endpoint's component paths and builds are used (they run its code)")
    p.add_argument("--source", metavar="COMPONENT=GIT_TREE", help="bisect a component's source history (virglrenderer, guest_mesa, qemu) instead")
    p.add_argument("--good", dest="good_rev", metavar="REV", help="with --source: a commit that passes")
    p.add_argument("--bad", dest="bad_rev", metavar="REV", help="with --source: a commit that fails")
    p.add_argument("--profile", help="with --source: the profile the builds run on (default: the steps' scenario's)")


def _command_replay(sub) -> None:
    p = sub.add_parser("replay", help="run a bundle's scenario with its pins here and compare with the original")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument("--profile", choices=["nix"], help="a nix-profile run's bundle: replay it on the nix profile (with --manifest)")
    _add_manifest(p)
    p.add_argument("--run-dir", type=Path, help="where to write the new run")
    p.add_argument("--json", action="store_true", help="print {result, comparison} as JSON")
    p.add_argument(
        "--trust-bundle", action="store_true",
        help="obey the bundle's component overrides, kernel image, host files and host environment: this runs "
        "programs and loads libraries the bundle names, as root (default: report them, use none)",
    )  # fmt: skip


def _command_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="preflight this host and the selected components (no boot)")
    _add_profile(p)
    _add_kernel(p)
    _add_machine(p)
    p.add_argument("--json", action="store_true", help="print the checks as JSON")


def _command_boot(sub) -> None:
    p = sub.add_parser("boot", help="boot the VM with an interactive serial console")
    _add_profile(p)
    _add_kernel(p)
    p.add_argument("--run-dir", type=Path, help="where to write the run's files")


def _command_provision(sub) -> None:
    p = sub.add_parser("provision", help="download, verify and build every component (no boot)")
    _add_profile(p)
    p.add_argument("--kernel-flavour", metavar="FLAVOUR", help="guest kernel flavour (default: the profile's)")
    p.add_argument("--json", action="store_true", help="print the components as JSON")


def _command_lock(sub) -> None:
    p = sub.add_parser("lock", help="check the lock file, or --refresh it from the mirror")
    _add_profile(p)
    p.add_argument("--refresh", action="store_true", help="re-pin every package to what the mirror serves now")
    p.add_argument("--scenario", type=Path, metavar="FILE", help="pin this scenario's guest_packages (lock beside it)")
    p.add_argument("--only", action="append", default=[], metavar="SET", help="with --refresh: re-pin only this set (repeatable)")
    p.add_argument("--sources", action="store_true", help="with --refresh: re-pin the Debian source packages the build tests use (data/pins/sources.json) instead")


def _command_diagnose(sub) -> None:
    p = sub.add_parser("diagnose", help="decode and classify the failures in log files or run directories")
    p.add_argument("paths", nargs="+", type=Path, metavar="FILE|RUN_DIR")
    p.add_argument("--json", action="store_true", help="print {findings, codes} as JSON")
    p.add_argument("--guest-page-size", type=int, metavar="BYTES", help="the guest's page size, if the logs do not say")
    p.add_argument("--host-page-size", type=int, metavar="BYTES", help="the host's page size (HVF on Apple Silicon: 16384)")
    p.add_argument("--accel", choices=["hvf", "kvm", "tcg", "whpx"], help="the accelerator the logs come from")
    p.add_argument("--gpu-options", metavar="OPTS",
                   help="the virtio-gpu-gl device's options, if the logs do not say (e.g. venus=on,blob=on,hostmem=8M)")  # fmt: skip


def _command_builds(sub) -> None:
    for name, what, flag, example in (
        ("build-virglrenderer", "build a virglrenderer source tree (upstream or your fork) for --virglrenderer/--render-server",
         "-D", "a meson option, e.g. -D render-server-worker=thread or -D vulkan-preload=false"),
        ("build-mesa", "cross-build a Mesa source tree's Venus ICD (upstream or your tree) for the guest",
         "-D", "a meson option beyond the Venus-only ones, e.g. -D buildtype=debugoptimized"),
        ("build-qemu", "build a QEMU source tree (upstream or your fork) for the host root: aarch64-softmmu with Venus",
         "--configure-option", "one more configure option, written --configure-option=--enable-slirp"),
    ):  # fmt: skip
        p = sub.add_parser(name, help=what)
        _add_profile(p)
        p.add_argument("source", type=Path, metavar="SOURCE", help="a source tarball (.tar.gz, .tar.xz, …) or a source folder")
        p.add_argument(flag, dest="options", action="append", default=[], metavar="NAME=VALUE" if flag == "-D" else "OPT",
                       help=f"{example} (repeatable)")  # fmt: skip
        p.add_argument("--json", action="store_true", help="print the build as JSON")


def _command_unpack(sub) -> None:
    p = sub.add_parser("unpack", help="unpack .deb files the way provisioning does (Python; no dpkg needed)")
    p.add_argument("debs", nargs="+", type=Path, metavar="DEB")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")


def _command_guest_initramfs(sub) -> None:
    p = sub.add_parser("guest-initramfs", help="assemble the guest (kernel + initramfs) from the lock's packages, no root needed")
    _add_profile(p)
    p.add_argument("--demos", type=Path, required=True, metavar="DIR", help="the guest (aarch64) demo binaries")
    p.add_argument("--kernel-flavour", metavar="FLAVOUR", help="guest kernel flavour (default: the profile's)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="where vmlinuz, initrd.cpio and release go")


def _command_carry(sub) -> None:
    p = sub.add_parser("carry", help="pack the components for a GPU machine without network, or unpack them there")
    carry = p.add_subparsers(dest="carry_command", required=True, metavar="pack|unpack")
    q = carry.add_parser("pack", help="one .tar.xz: a runtime root without Mesa, the guest, the demos, a manifest")
    _add_profile(q)
    q.add_argument("output", type=Path, metavar="OUT.tar.xz")
    q.add_argument("--json", action="store_true", help="print what was packed as JSON")
    q = carry.add_parser("unpack", help="unpack a carry into a new folder and write its manifest.json")
    q.add_argument("carry", type=Path, metavar="CARRY.tar.xz")
    q.add_argument("dest", type=Path, metavar="DIR")


def _command_demos(sub) -> None:
    p = sub.add_parser("demos", help="list the demos (or print their build recipe)")
    p.add_argument("--build-script", action="store_true", help="print the shell lines that build every demo (used by nix/demos.nix)")
    p.add_argument("--cc", default="cc", help="with --build-script: the C compiler (default: cc)")
    p.add_argument("--out", type=Path, default=Path("bin"), help="with --build-script: where the binaries go (default: bin)")
    p.add_argument("--shaders", type=Path, default=Path("shaders"), help="with --build-script: where the SPIR-V headers go")
    p.add_argument("--vulkan", default="-lvulkan", metavar="LIB",
                   help="with --build-script: how to link the Vulkan loader (default -lvulkan; a cross build names the target's libvulkan.so.1)")  # fmt: skip

def cmd_run(args) -> int:
    from .report import render
    from .run import run

    result = run(run_options(args))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render(result))
    return 0 if result.verdict == "pass" else 1


def run_options(args):
    """RunOptions from a scenario (default venus-demos) and the command line's overrides.

    Bad input fails here, before a run directory exists."""
    from . import scenario
    from .run import RunOptions

    sc = scenario.load(
        args.scenario or "venus-demos",
        scenario.ALLOW if args.allow_host_files else scenario.REFUSE,
        scenario.ALLOW if args.allow_host_programs else scenario.REFUSE,
    )
    prof = _profile(args.profile or sc.profile, args.manifest)
    if args.kernel is not None and args.kernel_flavour is not None:
        raise VenusReproError("--kernel and --kernel-flavour exclude each other")
    if args.kernel is not None:
        from .provision.kernel import read_image

        read_image(args.kernel)
    if args.frames is not None and args.frames <= 0:
        raise VenusReproError("--frames must be a positive number")
    if args.timeout is not None and args.timeout <= 0:
        raise VenusReproError("--timeout must be a positive number of seconds")
    sc = sc.override(
        profile=prof.name,
        demos=demos.select(args.demo) if args.demo else None,
        frames=args.frames,
        timeout=args.timeout,
        kernel_flavour=args.kernel_flavour,
        kernel_image=args.kernel,
        display=args.display,
        gpu_options=args.gpu_options,
        host_env=_host_env(args.host_env),
        sources=_sources(args),
        ring_wake=getattr(args, "ring_wake", None),
        host_vulkan=args.host_vulkan,
    )
    env = None
    if args.environment is not None:
        from .environment import Environment

        env = Environment.load(args.environment)
        prof = env.profile
        sc = sc.in_environment(env)
    return RunOptions(sc, prof, run_dir=args.run_dir, boot_timeout=args.boot_timeout, no_preflight=args.no_preflight, environment=env)


def cmd_bench(args) -> int:
    if args.diagnose:
        from . import bench_diagnose

        report = bench_diagnose.bench()
        print(json.dumps(report, indent=2) if args.json else bench_diagnose.render(report))
        return 0
    from . import bench
    from .run import new_run_dir

    prof = _profile(args.profile, args.manifest)
    if args.cold:
        _no_manifest(prof, "bench --cold")
    if args.repeat <= 0:
        raise VenusReproError("--repeat must be a positive number")
    if args.frames is not None and args.frames <= 0:
        raise VenusReproError("--frames must be a positive number")
    selected = demos.select(args.demo or bench.DEFAULT_DEMOS)
    for d in selected:
        if d.expect is not None:
            raise VenusReproError(f"bench: {d.name} is a known failure; it has no frame rate to measure")
    plotting = bench.plotting_available()
    if not plotting:
        log.warn("matplotlib is not installed (pip install 'venus-repro[bench]'): bench.json only, the plot is skipped")
    run_dir = new_run_dir(args.run_dir, prof)
    report = bench.bench(prof, selected, args.repeat, args.frames, run_dir, args.cold, args.host_vulkan or "lavapipe")
    report["plot"] = str(bench.plot(report, run_dir / "bench.png")) if plotting else None
    (run_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    plot = report["plot"] or "skipped (matplotlib is not installed)"
    print(json.dumps(report, indent=2) if args.json else bench.render(report) + f"\nplot: {plot}")
    return 0


def cmd_fingerprint(args) -> int:
    from . import fingerprint
    from .machine import StartCommand
    from .provision import components

    prof = _profile(args.profile, args.manifest)
    c, env = components(_environment(args, prof))
    with tempfile.TemporaryDirectory(prefix="venus-repro-fp-") as tmp:
        fp = fingerprint.fingerprint(c, StartCommand(c, Path(tmp), machine=env.machine), profile.cache_dir(), env=env)
    if args.json:
        print(json.dumps(fp, indent=2))
    else:
        from .compare import flatten

        print(tabulate([[k, v] for k, v in flatten(fp).items()], tablefmt="plain"))
    return 0


def cmd_compare(args) -> int:
    from . import compare

    report = compare.compare(args.run_a, args.run_b)
    print(json.dumps(report, indent=2) if args.json else compare.render(report))
    return 0


def cmd_bundle(args) -> int:
    from . import bundle
    from .compare import load_run

    _, result = load_run(args.run_dir)
    if result.profile == profile.NIX:
        from . import nixbundle
        from .environment import Environment

        # The manifest the run used (its environment names it), and the Debian profile the guest is packed from.
        used = Environment.load(args.run_dir / "environment.json").profile.manifest
        out = bundle.bundle(args.run_dir, args.output, profile.load(nixbundle.guest_profile_for(used)), nix_manifest=used)
    else:
        out = bundle.bundle(args.run_dir, args.output, profile.load(result.profile or "debian-trixie"))
    print(f"{out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


def cmd_bisect(args) -> int:
    from . import bisect

    if args.tries <= 0:
        raise VenusReproError("--tries must be a positive number")
    if args.source is not None:
        from . import source_bisect

        if args.good is not None or args.bad is not None:
            raise VenusReproError("with --source, give the commits as --good REV --bad REV (no GOOD BAD environments)")
        if not (args.good_rev and args.bad_rev):
            raise VenusReproError("--source needs --good REV and --bad REV")
        work = bisect.new_bisect_dir(args.run_dir)
        report = source_bisect.bisect_source(args.source, args.good_rev, args.bad_rev, args.steps, args.profile, args.tries, work)
    else:
        if args.good is None or args.bad is None:
            raise VenusReproError("bisect needs GOOD and BAD (run directories, bundles or scenario files), or --source")
        if args.good_rev or args.bad_rev or args.profile:
            raise VenusReproError("--good/--bad/--profile belong to --source")
        work = bisect.new_bisect_dir(args.run_dir)
        good = bisect.load_endpoint(args.good, args.trust_bundle, work)
        bad = bisect.load_endpoint(args.bad, args.trust_bundle, work)
        steps = None
        if args.steps:
            from . import scenario

            steps = scenario.load(args.steps)
        report = bisect.bisect(good, bad, steps, args.tries, work)
    print(json.dumps(report, indent=2) if args.json else bisect.render(report))
    return 0 if report["outcome"] == "found" else 1


def cmd_replay(args) -> int:
    from . import bundle, compare
    from .report import render

    if args.profile not in (None, profile.NIX):
        raise VenusReproError("replay runs on the bundle's own profile, or --profile nix --manifest FILE for a nix-profile run's bundle")
    if (args.profile == profile.NIX) != (args.manifest is not None):
        raise VenusReproError("--profile nix and --manifest FILE go together")
    result, comparison, original, notes = bundle.replay(args.bundle, args.run_dir, trust=args.trust_bundle, nix_manifest=args.manifest)
    _, first = compare.load_run(original)
    reproduced = result.verdict == first.verdict
    if args.json:
        print(json.dumps({"reproduced": reproduced, "result": result.to_json(), "comparison": comparison, **notes}, indent=2))
    else:
        print(render(result))
        print()
        print(compare.render(comparison))
        for line in notes.get("left_out", []):
            print(f"left out here: {line}")
        for d in notes.get("store_paths", []):
            print(f"store path differs: {d['what']}: bundle {d['bundle']}, here {d['here']}")
        print(f"\n{'reproduced' if reproduced else 'NOT reproduced'}: original verdict {first.verdict}, this run {result.verdict}")
    return 0 if reproduced else 1


def cmd_doctor(args) -> int:
    from . import doctor
    from .machine import StartCommand
    from .provision import components

    prof = _profile(args.profile, args.manifest)
    c, env = components(_environment(args, prof))
    with tempfile.TemporaryDirectory(prefix="venus-repro-doctor-") as tmp:
        start = StartCommand(c, Path(tmp), machine=env.machine)
        checks = doctor.preflight(c, start, c.accel)
        stderr_lines = [ch.line() for ch in checks]
    failed = [ch for ch in checks if ch.status == doctor.FAIL]
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [ch.as_dict() for ch in checks]}, indent=2))
    else:
        rows = [[ch.status.upper(), ch.name, ch.detail + (f"\n  fix: {ch.fix}" if ch.fix else "")] for ch in checks]
        print(tabulate(rows, headers=["", "check", "detail"], tablefmt="simple"))
        if failed:
            from . import diagnose

            lines = [diagnose.Line("preflight", i, t) for i, t in enumerate(stderr_lines, 1)]
            report = diagnose.report_dict(lines, diagnose.Context())
            if report["findings"]:
                print()
                print(diagnose.render({"findings": report["findings"], "codes": []}))
        print(f"\n{len(failed)} failed, {sum(ch.status == doctor.WARN for ch in checks)} warnings, {len(checks)} checks")
    return 1 if failed else 0


def cmd_boot(args) -> int:
    from .machine import Machine, StartCommand
    from .provision import components
    from .run import new_run_dir

    prof = _profile(args.profile, args.manifest)
    c, _ = components(_environment(args, prof))
    run_dir = new_run_dir(args.run_dir, prof)
    log.info(f"booting {c.kernel_flavour} kernel ({c.kernel_release or c.kernel.path}); run directory {run_dir}")
    log.info("serial console attached: 'exit' in the guest powers off; Ctrl-A x quits QEMU")
    status = Machine(StartCommand(c, run_dir, mode="shell")).interact()
    return 0 if status == 0 else 1


def cmd_provision(args) -> int:
    from .provision import components

    prof = _profile(args.profile, args.manifest)
    c, env = components(_environment(args, prof))
    info = {
        "profile": prof.name,
        "host_root": str(c.host_root),
        "kernel": c.kernel.as_dict() | {"flavour": c.kernel_flavour, "release": c.kernel_release},
        "initramfs": str(c.initramfs),
        "demos": str(c.demo_bin.parent) if c.demo_bin else None,
        "ring_wake": str(c.ring_wake) if c.ring_wake else None,
        "versions": c.versions,
        "origins": {k: list(v) for k, v in c.origins.items()},
        "lock_sha256": c.lock_digest,
        # What QEMU will be started with (a run may still override it).
        "machine": {
            "accel": c.accel,
            "display": c.display,
            "smp": prof.qemu.smp,
            "memory": prof.qemu.memory,
            "hostmem": prof.qemu.hostmem,
        },
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        rows = [[k, v] for k, v in c.versions.items()]
        rows += [["kernel", f"{c.kernel_release} ({(c.kernel.page_size or 0) // 1024}K pages)"], ["initramfs", info["initramfs"]]]
        print(tabulate(rows, tablefmt="plain"))
    return 0


def cmd_lock(args) -> int:
    from . import registry
    from .provision import lock

    if args.scenario is not None:
        from . import scenario

        from . import environment
        from .provision import Provisioner

        sc = scenario.load(str(args.scenario))
        prof = _profile(args.profile if args.profile != "debian-trixie" else sc.profile, args.manifest)
        _no_manifest(prof, "lock")
        pinning = sc.pinning(prof)
        what = [*sc.guest_packages, *(f"{n} from {sc.source(n).suite}" for n in sorted(sc.locked))]
        if not what:
            raise VenusReproError(f"{args.scenario} adds no guest_packages and takes no component from another suite: nothing to pin")
        if not args.refresh:
            env = environment.resolve(sc.environment(prof), Provisioner(prof), pinning)
            n = len(env.layer(environment.GUEST_EXTRA)) + sum(len(env.layer(registry.spec(c).layer)) for c in sc.locked)
            print(f"{pinning.lock_path}: {n} pins cover {', '.join(what)}")
            return 0
        changes = environment.pin_scenario(sc.environment(prof), Provisioner(prof), pinning)
        print(tabulate(changes, headers=["set", "package", "was", "now"], tablefmt="simple") if changes else "no changes")
        print(f"{pinning.lock_path}: review and keep it beside the scenario")
        return 0
    if args.sources:
        from .provision import sources

        if not args.refresh:
            pinned = sources.load()
            print("\n".join(f"{s.name}: {s.package} {s.version} ({s.suite}) {s.orig.name}" for s in pinned.values()))
            return 0
        changes = sources.refresh(profile.cache_dir() / "apt")
        print(tabulate(changes, headers=["source", "was", "now"], tablefmt="simple") if changes else "no changes")
        print(f"{sources.SOURCES}: review and commit it")
        return 0
    prof = _profile(args.profile, args.manifest)
    _no_manifest(prof, "lock")
    if not args.refresh:
        lk = lock.Lock.load(prof)
        n = sum(len(lk.pins(s)) for s in prof.package_sets())
        print(f"{prof.lock_path}: {n} pins cover profile {prof.name}")
        return 0
    _, changes = lock.refresh(prof, profile.cache_dir() / "apt", tuple(args.only))
    if changes:
        print(tabulate(changes, headers=["set", "package", "was", "now"], tablefmt="simple"))
        print(f"{len(changes)} pins changed in {prof.lock_path}; review and commit it")
    else:
        print(f"{prof.lock_path}: no changes")
    return 0


def cmd_diagnose(args) -> int:
    from . import diagnose

    if args.gpu_options is not None:
        diagnose.check_gpu_options(args.gpu_options, "--gpu-options")
    ctx = diagnose.Context(
        guest_page_size=args.guest_page_size, host_page_size=args.host_page_size, accel=args.accel, gpu_options=args.gpu_options
    )
    report = diagnose.diagnose(args.paths, ctx)
    print(json.dumps(report, indent=2) if args.json else diagnose.render(report))
    return 0


def cmd_build_virglrenderer(args) -> int:
    from .provision.build import build_virglrenderer

    b = build_virglrenderer(*_builder(args, "build-virglrenderer"))
    if args.json:
        print(json.dumps(b.as_dict(), indent=2))
    else:
        print(f"library:       {b.library}\nrender server: {b.render_server}\n")
        print(f"venus-repro run --virglrenderer {b.library} --render-server {b.render_server}")
    return 0


def cmd_build_guest_or_host(args) -> int:
    """build-mesa (the guest's Venus ICD) and build-qemu (the host's QEMU)."""
    from .provision import build

    if args.command == "build-mesa":
        b = build.build_mesa(*_builder(args, args.command))
        summary = f"Mesa {b.info.get('mesa_version')} Venus ICD for the guest's {b.info['guest_library']}:\nlibrary:  {b.library}\nICD JSON: {b.icd_json}"
    else:
        b = build.build_qemu(*_builder(args, args.command, meson=False))
        summary = f"QEMU {b.info.get('qemu_version')} for the host root: {b.binary}"
    print(json.dumps(b.as_dict(), indent=2) if args.json else summary)
    return 0


def _builder(args, command: str, meson: bool = True):
    """(Provisioner, source, options) for a build-* command; meson options may be given without -D."""
    from .provision import Provisioner

    prof = _profile(args.profile, args.manifest)
    _no_manifest(prof, command)
    options = tuple(o if not meson or o.startswith("-D") else f"-D{o}" for o in args.options)
    return Provisioner(prof), args.source, options


def cmd_carry(args) -> int:
    from . import carry
    from .provision import components

    if args.carry_command == "unpack":
        manifest = carry.unpack(args.carry, args.dest)
        print(f"venus-repro run --profile nix --manifest {manifest} --host-vulkan host")
        return 0
    prof = _profile(args.profile, args.manifest)
    _no_manifest(prof, "carry pack")
    if prof.gpu_renderer is None:
        raise VenusReproError(f"profile {prof.name} pins no gpu_renderer: a carry runs on the host's GPU driver")
    if not args.output.name.endswith(".tar.xz"):
        raise VenusReproError(f"{args.output}: name the carry OUT.tar.xz")
    from . import registry

    # What a host-GPU run takes (--host-vulkan host): the profile's virglrenderer for GPU drivers.
    env = _environment(args, prof).with_sources(virglrenderer=registry.Source(registry.SUITE, suite=prof.gpu_renderer[0], exact=True))
    c, _ = components(env)
    info = carry.pack(c, args.output.resolve())
    print(json.dumps(info, indent=2) if args.json else f"{info['carry']}: {info['bytes'] / 1e6:.1f} MB ({info['root_files']} root files, {info['demos']} demos)")
    return 0


def cmd_unpack(args) -> int:
    from .provision import deb

    args.output.mkdir(parents=True, exist_ok=True)
    for path in args.debs:
        if not path.is_file():
            raise VenusReproError(f"{path}: no such .deb")
        deb.unpack(path, args.output)
    return 0


def cmd_guest_initramfs(args) -> int:
    import shutil

    from .provision import Provisioner

    prof = _profile(args.profile, args.manifest)
    _no_manifest(prof, "guest-initramfs")
    kdir, initrd = Provisioner(prof).guest(args.kernel_flavour, args.demos.resolve())
    args.output.mkdir(parents=True, exist_ok=True)
    for src, name in ((kdir / "vmlinuz", "vmlinuz"), (initrd, "initrd.cpio"), (kdir / "release", "release")):
        shutil.copyfile(src, args.output / name)
    print(f"{args.output / 'vmlinuz'}\n{args.output / 'initrd.cpio'}")
    return 0


def cmd_demos(args) -> int:
    if args.build_script:
        script = [f"mkdir -p {args.out} {args.shaders}", *demos.shader_script(args.shaders), *demos.compile_script(args.cc, args.out, args.shaders, args.vulkan)]
        print("\n".join(["set -e", *script]))
        return 0
    rows = [[d.name, d.timeout, d.description] for d in demos.catalogue().values()]
    print(tabulate(rows, headers=["demo", "timeout (s)", "what it does"], tablefmt="simple"))
    return 0


COMMANDS = {"run": cmd_run, "boot": cmd_boot, "provision": cmd_provision, "lock": cmd_lock, "demos": cmd_demos, "diagnose": cmd_diagnose, "doctor": cmd_doctor, "bench": cmd_bench, "fingerprint": cmd_fingerprint, "compare": cmd_compare, "bundle": cmd_bundle, "replay": cmd_replay, "bisect": cmd_bisect, "build-virglrenderer": cmd_build_virglrenderer, "build-mesa": cmd_build_guest_or_host, "build-qemu": cmd_build_guest_or_host, "guest-initramfs": cmd_guest_initramfs, "unpack": cmd_unpack, "carry": cmd_carry}


# Errors of the machine rather than of venus-repro: a full disk, a read-only or
# forbidden folder. One line naming the path, exit status 2.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command](args)
    except VenusReproError as exc:
        print(f"venus-repro: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("venus-repro: interrupted (QEMU and its render server were stopped)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`venus-repro diagnose … | head`): nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Terminated:
        print("venus-repro: terminated by SIGTERM (QEMU and its render server were stopped)", file=sys.stderr)
        return 143
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            return _internal_error()
        where = exc.filename or "(a file)"
        print(f"venus-repro: error: {where}: {exc.strerror}", file=sys.stderr)
        return 2
    except Exception:
        return _internal_error()


def _internal_error() -> int:
    """A bug: keep the terminal clean, keep the details (call from an except clause)."""
    with tempfile.NamedTemporaryFile("w", prefix="venus-repro-crash-", suffix=".txt", delete=False) as f:
        traceback.print_exc(file=f)
    print(f"venus-repro: internal error (a bug; details in {f.name})", file=sys.stderr)
    return 70
