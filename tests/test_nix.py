"""The Nix flake, evaluated by the pinned Nix against real nixpkgs.

Neither GitHub nor a Nix cache is reachable here, so nothing of the flake is
built. It is evaluated by the pinned Nix (trixie's nix-bin, provisioned like
any component) against a real nixpkgs source snapshot (July 2026:
qemu 11.0.1, virglrenderer 1.3.0, MoltenVK 1.4.1, Linux 6.12.94), and the
tests assert what real nixpkgs makes of our expressions: the derivation
attributes a build would use (tests/nix/facts.nix collects them in one
evaluation), not what we asked for.

The snapshot is the tarball in ``$VENUS_REPRO_NIXPKGS_SNAPSHOT`` or the
project's ``../shared/nixpkgs/``; CI has it. Without it the tests are skipped
with that reason (and fail under CI, which must evaluate).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from venus_repro import nix, profile, sandbox
from venus_repro.provision import Provisioner, manifest, sources

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parent.parent
SYSTEMS = ["aarch64-darwin", "aarch64-linux", "x86_64-linux"]
# QEMU's meson subprojects for a build from git (subprojects/*.wrap, v10.0 to v11.0):
# the revision, and the Nix hash of that revision's tree as a git archive gives it.
QEMU_SUBPROJECTS = {
    "keycodemapdb": ("f5772a62ec52591ff6870b7e8ef32482371f22c6", "sha256-GbZ5mrUYLXMi0IX4IZzles0Oyc095ij2xAsiLNJwfKQ="),
    "berkeley-softfloat-3": ("b64af41c3276f97f0e181920400ee056b9c88037", "sha256-Yflpx+mjU8mD5biClNpdmon24EHg4aWBZszbOur5VEA="),
    "berkeley-testfloat-3": ("e7af9751d9f9fd3b47911f51a5cfd08af256a9ab", "sha256-inQAeYlmuiRtZm37xK9ypBltCJ+ycyvIeIYZK8a+RYU="),
}


def _snapshot_tarball() -> Path | None:
    env = os.environ.get("VENUS_REPRO_NIXPKGS_SNAPSHOT")
    if env:
        return Path(env)
    found = sorted((REPO.parent / "shared" / "nixpkgs").glob("nixpkgs-snap-*.tar.xz"))
    return found[-1] if found else None


@pytest.fixture(scope="session")
def nixpkgs_tree() -> Path:
    """The snapshot, unpacked once into the cache (keyed by the tarball's sha256; published atomically)."""
    tarball = _snapshot_tarball()
    if tarball is None or not tarball.is_file():
        reason = "no nixpkgs snapshot (set VENUS_REPRO_NIXPKGS_SNAPSHOT to a nixpkgs source tarball)"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must evaluate the flake against real nixpkgs")
        pytest.skip(reason)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()[:16]
    final = profile.cache_dir() / "nixpkgs" / digest
    if not final.exists():
        tmp = final.with_name(final.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        subprocess.run(["tar", "-xJf", str(tarball), "-C", str(tmp)], check=True)
        tmp.rename(final)
    (tree,) = [p for p in final.iterdir() if (p / "pkgs").is_dir()]
    return tree


@pytest.fixture(scope="session")
def nixtool(tmp_path_factory, nixpkgs_tree) -> nix.Nix:
    root = Provisioner(profile.load("debian-trixie")).tool_root("nix")
    return nix.Nix(root, tmp_path_factory.mktemp("nix-state"), binds=(REPO, nixpkgs_tree))


# What the stand-in for the user's QEMU tree holds, so that a test can tell it
# in the evaluated derivation's src.
FORK_MARKER = "stand-in for github:pannous/qemu/e8145fc93bc33c0896ab137cacb946c8aa339a89\n"


@pytest.fixture(scope="session")
def qemu_fork(nixtool) -> Path:
    """A folder in the flake's qemu-fork input's place: its tree (709 MB) cannot be fetched here."""
    tree = nixtool.state / "qemu-fork-stand-in"
    tree.mkdir(exist_ok=True)
    (tree / "STAND-IN").write_text(FORK_MARKER)
    return tree


@pytest.fixture(scope="session")
def override(nixpkgs_tree, qemu_fork) -> list[str]:
    return [
        "--override-input", "nixpkgs", f"path:{nixpkgs_tree}",
        "--override-input", "qemu-fork", f"path:{qemu_fork}",
        "--no-write-lock-file",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def facts(nixtool, nixpkgs_tree, qemu_fork) -> dict:
    """tests/nix/facts.nix for every system, against the real nixpkgs."""
    expr = f"import {REPO}/tests/nix/facts.nix {{ nixpkgs = {nixpkgs_tree}; repo = {REPO}; qemuFork = {qemu_fork}; }}"
    return json.loads(nixtool.succeed("eval", "--json", "--impure", "--expr", expr, cwd=REPO))


def test_pinned_nix_version(nixtool):
    assert nixtool.version() == "nix (Nix) 2.26.3"


def test_every_nix_file_parses(nixtool):
    files = sorted([REPO / "flake.nix", *REPO.glob("nix/**/*.nix"), *REPO.glob("kernels/*.nix"), *REPO.glob("tests/nix/*.nix")])
    assert len(files) >= 14
    for f in files:
        proc = nixtool.instantiate("--parse", str(f), cwd=REPO)
        assert proc.returncode == 0, f"{f}: {proc.stderr}"


def test_lock_pins_its_inputs_by_rev_without_an_invented_hash():
    lock = json.loads((REPO / "flake.lock").read_text())
    nodes = lock["nodes"]
    assert nodes["root"]["inputs"] == {"nixpkgs": "nixpkgs", "qemu-fork": "qemu-fork"}
    nixpkgs, fork = nodes["nixpkgs"]["locked"], nodes["qemu-fork"]["locked"]
    assert (nixpkgs["type"], nixpkgs["owner"], nixpkgs["repo"]) == ("github", "NixOS", "nixpkgs") and len(nixpkgs["rev"]) == 40
    # The user's QEMU: pannous/qemu main as MACOS.md records it, a source tree, not a flake.
    assert (fork["type"], fork["owner"], fork["repo"], fork["rev"]) == ("github", "pannous", "qemu", "e8145fc93bc33c0896ab137cacb946c8aa339a89")
    assert nodes["qemu-fork"]["flake"] is False
    for node in (nixpkgs, fork):
        assert "narHash" not in node  # nobody here could compute it (README, "Nix")


def test_flake_shows_every_output_for_every_system(nixtool, override):
    shown = json.loads(nixtool.succeed("flake", "show", "--json", "--all-systems", *override, cwd=REPO))
    for system in SYSTEMS:
        packages = set(shown["packages"][system])
        assert {"venus-repro", "qemu", "virglrenderer", "guest", "guest-demos", "manifest", "default"} <= packages
        assert {"kernel-from-source", "alpine-initramfs"} <= packages  # opt-in: built for aarch64-linux
        assert ("moltenvk" in packages) == (system == "aarch64-darwin")
        assert set(shown["apps"][system]) == {"alpine-venus", "default", "test"}
        assert set(shown["checks"][system]) == ({"unit"} if system == "aarch64-darwin" else {"unit", "vm"})
        assert set(shown["devShells"][system]) == {"default"}


def test_flake_check_evaluates_all_systems(nixtool, override):
    proc = nixtool.run("flake", "check", "--no-build", "--all-systems", *override, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # packages (9-10), apps (3), checks (1-2) and the devShell, for each of the three systems
    assert proc.stderr.count("derivation evaluated to") >= 30


def test_qemu_is_nixpkgs_release_on_linux_and_the_users_fork_on_the_mac(facts):
    for system in SYSTEMS:
        q = facts[system]["qemu"]
        assert q["system"] == system and q["available"], system
        flags = q["configureFlags"]
        assert "--target-list=aarch64-softmmu" in flags
        assert "--enable-virglrenderer" in flags, system
        assert "--enable-rbd" not in flags  # no ceph: it has no darwin platform at some revisions
        assert q["virglrendererIsOurs"], system  # QEMU links the flake's virglrenderer, not nixpkgs' own
        darwin = system == "aarch64-darwin"
        assert ("--enable-hvf" in flags and "--enable-cocoa" in flags) == darwin
        # GBM and libdrm are Linux-only: on darwin they must not be inputs.
        assert ("mesa-libgbm" in q["buildInputs"]) == (not darwin)
        assert ("libdrm" in q["buildInputs"]) == (not darwin)
        if not darwin:
            # nixpkgs' release tarball, by the fetcher's own URL and hash; OpenGL and SDL.
            assert q["version"] == "11.0.1" and not q["fork"] and q["srcMarker"] is None
            assert q["srcUrls"] == ["https://download.qemu.org/qemu-11.0.1.tar.xz"]
            assert q["srcHash"] == "sha256-DSNfWCAnjZFKMVXsJ6+OQljWl+qJKJVXCAfWnAy4zWQ="
            assert "--enable-opengl" in flags and "--disable-opengl" not in flags and "sdl2-compat" in q["buildInputs"]
            assert q["subprojects"] == {} and "subprojects" not in q["prePatch"]
            continue
        # The fork: its source is the flake's qemu-fork input (here the stand-in, by its marker).
        assert q["fork"] and q["srcMarker"] == FORK_MARKER and q["srcUrls"] == []
        assert q["version"] == "10.2.50-unstable-2026-01-28-pannous"
        # Venus-only mode: no OpenGL, no SDL; the swapchain's Vulkan loader instead.
        assert "--enable-opengl" not in flags and "--disable-opengl" in flags and "sdl2-compat" not in q["buildInputs"]
        assert {"vulkan-loader", "vulkan-headers"} <= set(q["buildInputs"])
        assert {"--disable-download", "--enable-virtfs", "--disable-werror"} <= set(flags)
        # Entitlement signing as nixpkgs does it: sigtool's codesign, and no strip after it.
        assert "sigtool" in q["nativeBuildInputs"] and q["dontStrip"]
        assert "skip-macos-icon.patch" in q["patches"]
        # The meson subprojects a git tree lacks, as fixed-output fetches built on the Mac.
        assert set(q["subprojects"]) == set(QEMU_SUBPROJECTS)
        for name, sub in q["subprojects"].items():
            rev, hash_ = QEMU_SUBPROJECTS[name]
            assert sub["hash"] == hash_ and sub["system"] == system, name
            assert any(f"gitlab.com/api/v4/projects/qemu-project%2F{name}/repository/archive" in u and rev in u for u in sub["urls"]), sub
            assert f"subprojects/{name}" in q["prePatch"] and f"subprojects/packagefiles/{name}" in q["prePatch"]


def test_virglrenderer_is_nixpkgs_release_on_linux_and_the_users_fork_on_the_mac(facts):
    ours = "venus-import-shm-resources-as-host-pointers-1.3.0.patch"
    assert (REPO / "nix/patches/virglrenderer" / ours).is_file()
    for system in SYSTEMS:
        v = facts[system]["virglrenderer"]
        assert v["available"], system
        assert "-Dvenus=true" in v["mesonFlags"], system  # nixpkgs gates Venus to Linux; ours is everywhere
        assert "-Dvulkan-preload=false" in v["mesonFlags"], system  # NVIDIA hosts (virglrenderer issue 630)
        assert "vulkan-loader" in v["buildInputs"]
        darwin = system == "aarch64-darwin"
        assert ("-Drender-server-worker=thread" in v["mesonFlags"]) == darwin, system
        assert v["mesonFlags"].count("-Dvulkan-dload=false") == 1, system  # the loader is linked (on darwin: for MoltenVK)
        assert ("MoltenVK" in v["buildInputs"]) == darwin
        if darwin:
            # The user's fork at the pinned rev, by the fetcher's own URL and hash.
            assert v["fork"] and v["version"].endswith("pannous")
            assert any("github.com/pannous/virglrenderer/archive/905aad7c12cea6edb66be753c1200a1c087b4e20" in u for u in v["srcUrls"]), v["srcUrls"]
            assert v["srcHash"] == "sha256-U66c5nfsfm5ksM6whnsu3H2mEzEeQYg4zC0j4i8tiug="
            # The fork imports SHM resources as host pointers itself: our patch is not applied there.
            assert ours not in v["patches"]
        else:
            assert not v["fork"] and v["version"] == "1.3.0"
            assert not any("pannous" in u for u in v["srcUrls"])
            assert v["patches"][-1] == ours  # nixpkgs' own patches stay, ours comes last


def test_the_opt_in_kernel_from_source_is_16k_with_virtio_gpu_built_in(facts):
    for system in SYSTEMS:
        k = facts[system]["kernelFromSource"]
        assert k["version"] == "6.12.94"
        # nixpkgs' merged kernel config (structuredExtraConfig over the defaults)
        assert k["config"]["ARM64_16K_PAGES"] == "y" and k["config"]["ARM64_4K_PAGES"] == "n"
        for option in ("DRM_VIRTIO_GPU", "VIRTIO_PCI", "VIRTIO_BLK", "VIRTIO_CONSOLE", "9P_FS"):
            assert k["config"][option] == "y", (system, option)
        assert k["config"]["MODULE_SIG"] == "n"
    # On macOS that kernel is an aarch64-linux derivation (a Linux builder would build it):
    # which is why the flake's guest does not use it.
    assert facts["aarch64-darwin"]["kernelFromSource"]["system"] == "aarch64-linux"


def test_the_guest_is_the_locks_debian_packages_fetched_and_packed_on_the_host(facts):
    lock = json.loads((REPO / "driver/data/pins/debian-trixie.lock.json").read_text())
    pins = {Path(p["filename"]).name: p for s in ("guest-arm64", "kernel-16k") for p in lock["sets"][s]["packages"]}
    for system in SYSTEMS:
        guest, demos = facts[system]["guest"], facts[system]["guestDemos"]
        assert guest["system"] == system and demos["system"] == system  # built where it is used: no Linux builder
        assert "venus-repro guest-initramfs" in guest["command"] and "--kernel-flavour 16k" in guest["command"]
        assert len(guest["debs"]) == len(pins)
        for deb in guest["debs"]:
            pin = pins[deb["name"].replace("1-deb13", "1~deb13")] if deb["name"] not in pins else pins[deb["name"]]
            assert deb["hash"] == pin["sha256"] and deb["system"] == system
            assert deb["urls"][0] == f"https://deb.debian.org/debian/{pin['filename']}"
            assert deb["urls"][1].startswith("https://snapshot.debian.org/archive/debian/2026") and deb["urls"][1].endswith(pin["filename"])
        assert "zig" in demos["inputs"] and "zig cc -target aarch64-linux-gnu.2.41" in demos["build"]
        assert "venus-repro unpack" in demos["build"] and "libvulkan1_" in demos["build"]


def test_darwin_needs_no_linux_builder(nixtool, override, qemu_fork):
    """Every derivation `nix run .#alpine-venus` needs on a Mac is built by aarch64-darwin, or is a builtin fetch."""
    # The app's program is a store path; the derivations it comes from are its string context.
    context = "p: builtins.attrNames (builtins.getContext p)"
    drvs = json.loads(nixtool.succeed("eval", "--json", *override, ".#apps.aarch64-darwin.alpine-venus.program", "--apply", context, cwd=REPO))
    assert len(drvs) == 1 and drvs[0].endswith("-venus-repro-alpine-venus.drv"), drvs
    shown = json.loads(nixtool.succeed("derivation", "show", "-r", drvs[0], *override, cwd=REPO, timeout=1800))
    systems = {drv["system"] for drv in shown.values()}
    assert len(shown) > 500
    assert systems <= {"aarch64-darwin", "builtin"}, sorted(p for p, d in shown.items() if d["system"] not in ("aarch64-darwin", "builtin"))[:10]
    # In that closure: the fork's QEMU, built from the flake's qemu-fork input (the
    # stand-in, a source in the store), and the three subproject fetches it copies in.
    names = {d["env"].get("name") for d in shown.values()}
    assert {"venus-repro-debian-guest-16k", "virglrenderer-1.2.0-unstable-2026-01-28-pannous"} <= names
    (qemu,) = [d for d in shown.values() if d["env"].get("pname") == "qemu"]
    assert qemu["env"]["version"] == "10.2.50-unstable-2026-01-28-pannous"
    src = qemu["env"]["src"]
    assert src in qemu["inputSrcs"] and Path(nixtool.state / "store" / src.lstrip("/"), "STAND-IN").read_text() == FORK_MARKER
    # fetchurl's derivations have structured attrs: their URLs are in __json
    fetches = [(json.loads(d["env"]["__json"]).get("urls", []), d) for p, d in shown.items() if p in qemu["inputDrvs"] and "__json" in d["env"]]
    for name, (rev, hash_) in QEMU_SUBPROJECTS.items():
        (sub,) = [d for urls, d in fetches if any(rev in u for u in urls)]
        out = sub["outputs"]["out"]
        assert (out["method"], out["hashAlgo"]) == ("nar", "sha256") and sub["system"] == "aarch64-darwin", name
        assert "sha256-" + base64.b64encode(bytes.fromhex(out["hash"])).decode() == hash_, name


# The source package of the QEMU the Debian profile pins (its lock: qemu-system-arm
# 10.0.13+ds-0+deb13u1; data/pins/sources.json: qemu-trixie). Its release tarball carries
# the three subproject trees as `meson subprojects download` left them: an independent
# copy of what the fork's fixed-output fetches must give.
DEBIAN_QEMU_SOURCE = "qemu-trixie"
# What a wrap's patch_directory (QEMU's subprojects/packagefiles/NAME) put into a tree.
QEMU_PACKAGEFILES = {"berkeley-softfloat-3": ("meson.build", "meson_options.txt"), "berkeley-testfloat-3": ("meson.build", "meson_options.txt")}


@pytest.fixture(scope="session")
def debian_qemu_source(nixtool) -> Path:
    """Debian's QEMU 10.0.13 source, unpacked where the pinned Nix (and a tool root) can see it."""
    tarball = sources.fetch(DEBIAN_QEMU_SOURCE)
    work = nixtool.state / "debian-qemu"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    subprocess.run(["tar", "-xJf", str(tarball), "-C", str(work), "--strip-components=1"], check=True)
    return work


@pytest.fixture(scope="session")
def subproject_trees(nixtool, debian_qemu_source) -> dict[str, tuple[Path, str]]:
    """Each subproject of Debian's copy as a git archive of its revision gives it, with its Nix hash."""
    trees = {}
    for name in QEMU_SUBPROJECTS:
        tree = nixtool.state / "subprojects" / name
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(debian_qemu_source / "subprojects" / name, tree, symlinks=True)
        # What meson added, then what `git archive` leaves out (export-ignore).
        for added in (".meson-subproject-wrap-hash.txt", *QEMU_PACKAGEFILES.get(name, ())):
            (tree / added).unlink()
        for attributes in list(tree.rglob(".gitattributes")):
            for line in attributes.read_text().splitlines():
                if line.split()[1:] == ["export-ignore"]:
                    for ignored in attributes.parent.rglob(line.split()[0].removeprefix("**/")):
                        ignored.unlink()
        trees[name] = (tree, nixtool.succeed("hash", "path", str(tree)).strip())
    return trees


def test_the_forks_subproject_hashes_match_debians_copy_of_those_trees(subproject_trees):
    """The Nix hash of each subproject tree as a git archive gives it equals the hash nix/qemu.nix pins.

    (The facts test checks that the evaluated fetches carry QEMU_SUBPROJECTS' hashes.)
    """
    assert {name: h for name, (_, h) in subproject_trees.items()} == {name: h for name, (_, h) in QEMU_SUBPROJECTS.items()}


def test_the_recipe_makes_a_qemu_tree_from_git_configure_offline(facts, nixtool, debian_qemu_source, subproject_trees):
    """nix/qemu.nix's prePatch, as evaluated for darwin, run on a QEMU tree without its subprojects.

    A tree from git (or GitHub's archive, as the flake input fetches it) lacks what
    `meson subprojects download` adds to a release; QEMU's configure then refuses
    to run offline. After the recipe - with the very trees the pinned fetches give
    (same Nix hashes) - it configures with the fork's flags (Linux's share of them),
    runs the three subprojects and leaves OpenGL out. QEMU 10.0.13 (the Debian
    profile's), not the fork, whose tree cannot be fetched here.
    """
    for name, (_, h) in subproject_trees.items():
        assert h == QEMU_SUBPROJECTS[name][1], name  # the trees stand for the fetches' outputs
    root = Provisioner(profile.load("debian-trixie")).tool_root("qemu-configure")
    tree = nixtool.state / "qemu-from-git"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(debian_qemu_source, tree, symlinks=True)
    # As in QEMU's git: no downloaded subprojects, and the wraps' packagefiles present.
    for name in (*QEMU_SUBPROJECTS, "libvfio-user", "dtc"):
        shutil.rmtree(tree / "subprojects" / name, ignore_errors=True)
    for name, files in QEMU_PACKAGEFILES.items():
        (tree / "subprojects/packagefiles" / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(debian_qemu_source / "subprojects" / name / f, tree / "subprojects/packagefiles" / name / f)
    # Debian's "+ds" source drops the firmware blobs that pc-bios/meson.build names:
    # empty stand-ins (nothing here installs them).
    for blob in re.findall(r"'([\w.+-]+\.(?:fd|bin|rom|img|dtb|elf|lid))'", (tree / "pc-bios/meson.build").read_text()):
        path = tree / "pc-bios" / (blob + ".bz2" if blob.endswith(".fd") else blob)
        if not path.exists():
            path.write_bytes(b"")
    q = facts["aarch64-darwin"]["qemu"]
    darwin_only = ("--enable-cocoa", "--enable-hvf")
    # nixpkgs' inputs for these are not in the tool root; they are not what is tested.
    not_here = ("--enable-gnutls", "--enable-smartcard", "--enable-spice", "--enable-usb-redir",
                "--enable-libiscsi", "--enable-capstone", "--enable-tpm")  # fmt: skip
    flags = [f for f in q["configureFlags"] if f not in darwin_only + not_here] + ["--disable-install-blobs"]
    assert {"--disable-download", "--disable-opengl", "--enable-virglrenderer", "--enable-virtfs"} <= set(flags)

    def configure(name: str) -> subprocess.CompletedProcess:
        # The root has gcc but no cc (that link is update-alternatives' job): one on PATH.
        script = (f"mkdir -p {tree}/.bin && ln -sf /usr/bin/gcc {tree}/.bin/cc && export PATH={tree}/.bin:$PATH && "
                  f"cd {tree} && rm -rf {name} && mkdir {name} && cd {name} && ../configure {' '.join(flags)} 2>&1")  # fmt: skip
        return sandbox.run(root, ["/bin/sh", "-c", script], binds=(tree,), timeout=900)

    before = configure("build-without")
    assert before.returncode != 0 and "ERROR: missing subprojects" in before.stdout, before.stdout[-2000:]
    prepatch = q["prePatch"]
    for name, (path, _) in subproject_trees.items():
        (store,) = set(re.findall(rf"cp -r (/nix/store/[a-z0-9]+-source) subprojects/{name}\n", prepatch))
        prepatch = prepatch.replace(store, str(path))
    patched = sandbox.run(root, ["/bin/sh", "-ec", f"cd {tree} && {prepatch}"], binds=(tree, nixtool.state / "subprojects"), timeout=300)
    assert patched.returncode == 0, patched.stderr
    after = configure("build")
    assert after.returncode == 0, after.stdout[-3000:]
    for name in QEMU_SUBPROJECTS:
        assert f"Executing subproject {name}" in after.stdout, name
    assert re.search(r"OpenGL support \(epoxy\)\s+: NO", after.stdout) and re.search(r"virglrenderer\s+: enabled", after.stdout)
    shutil.rmtree(tree)


def test_manifest_for_each_system(facts):
    for system in SYSTEMS:
        m = facts[system]["manifest"]
        manifest.validate(m, system)  # the driver's nix profile reads this shape
        assert m["system"] == system and m["page_size"] == 16384
        assert m["vulkaninfo"].endswith("/bin/vulkaninfo")
        darwin = system == "aarch64-darwin"
        qemu = "10.2.50-unstable-2026-01-28-pannous" if darwin else "11.0.1"
        assert m["qemu"].endswith(f"-qemu-{qemu}/bin/qemu-system-aarch64")
        virgl = "1.2.0-unstable-2026-01-28-pannous" if darwin else "1.3.0"
        assert m["render_server"].endswith(f"-virglrenderer-{virgl}/libexec/virgl_render_server")
        assert m["kernel"].endswith("-venus-repro-debian-guest-16k/vmlinuz")
        assert m["initramfs"].endswith("-venus-repro-debian-guest-16k/initrd.cpio")
        assert m["versions"] == {"qemu": qemu, "virglrenderer": virgl, "kernel_flavour": "16k", "fd_fallback_patch": not darwin}
        if darwin:
            assert m["accel"] == "hvf" and m["vulkan_icd"].endswith("-MoltenVK-1.4.1/share/vulkan/icd.d/MoltenVK_icd.json")
            assert m["host_demos"] is None and m["ring_wake"] is None and m["egl_vendor"] is None
            assert m["virglrenderer"].endswith("/lib/libvirglrenderer.dylib")
            # as the user starts their fork (scripts/run-alpine.sh)
            assert (m["display"], m["hostmem"], m["smp"]) == ("cocoa", "256M", 4)
        else:
            arch = system.split("-")[0]
            assert m["accel"] == "tcg" and m["vulkan_icd"].endswith(f"-mesa-26.1.3/share/vulkan/icd.d/lvp_icd.{arch}.json")
            assert m["host_demos"].endswith("/bin")
            # The build sandbox has no /usr/share/glvnd: the manifest names Mesa's EGL vendor.
            assert m["egl_vendor"].endswith("-mesa-26.1.3/share/glvnd/egl_vendor.d/50_mesa.json")
            # TCG: the render server gets the ring-wake shim, built from shims/.
            assert m["ring_wake"].endswith("/lib/vkr_ring_wake.so")
            assert m["virglrenderer"].endswith("/lib/libvirglrenderer.so")
            assert (m["display"], m["hostmem"], m["smp"]) == ("sdl,gl=on", "1G", 2)


def test_unit_check_tests_the_installed_package(facts):
    for system in SYSTEMS:
        d, unit = facts[system]["driver"], facts[system]["unitCheck"]
        assert d["pythonImportsCheck"] == ["venus_repro"]
        assert {"pexpect", "pyyaml", "tabulate"} <= set(d["dependencies"])
        assert "venus-repro" in unit["inputs"]  # the installed package, not a source tree
        assert "python -m pytest" in unit["command"] and "PYTHONPATH" not in unit["command"]


def test_patch_option_and_a_version_without_a_patch(nixtool, nixpkgs_tree):
    def patches(args: str) -> subprocess.CompletedProcess:
        expr = (f"let pkgs = import {nixpkgs_tree} {{ system = \"x86_64-linux\"; }}; in "
                f"map baseNameOf (pkgs.callPackage {REPO}/nix/virglrenderer.nix {args}).patches")  # fmt: skip
        return nixtool.run("eval", "--json", "--impure", "--expr", expr, cwd=REPO)

    off = patches("{ withFdFallbackPatch = false; }")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout) == ["1001-virglrenderer-amdgpu-Use-inttypes-format-defines.patch"]
    newer = patches("{ virglrenderer = pkgs.virglrenderer.overrideAttrs { version = \"9.9.9\"; }; }")
    assert newer.returncode != 0
    assert "no fd-fallback patch for virglrenderer 9.9.9" in newer.stderr


def test_alpine_pin():
    text = (REPO / "nix/guest/alpine-minirootfs.nix").read_text()
    hexdigest = "041fa34a81788242df9e78fa69b97ab45b8ec47ddbf88864755610414a7bf3de"  # shared/REFERENCE.md
    sri = "sha256-" + base64.b64encode(bytes.fromhex(hexdigest)).decode()
    assert f'hash = "{sri}";' in text and hexdigest in text
    assert "alpine-minirootfs-3.20.3-aarch64.tar.gz" in text


def test_the_opt_in_alpine_initramfs_keeps_the_init_contract(facts):
    script = facts["x86_64-linux"]["alpineInitramfsCommand"]
    assert "-init.sh init" in script  # the driver's guest/init.sh, from the store
    assert ": > etc/venus-repro/modules" in script  # virtio-gpu built in: nothing to load
    assert "VK_DRIVER_FILES=" in script and "virtio_icd.json" in script
    # The Debian guest's /init reads the same env file the Nix guest writes.
    assert ". /etc/venus-repro/env" in (REPO / "driver/guest/init.sh").read_text()


def test_apps_run_the_driver_with_the_nix_profile(nixtool, override):
    programs = "apps: builtins.mapAttrs (system: builtins.mapAttrs (name: app: app.program)) apps"
    shown = json.loads(nixtool.succeed("eval", "--json", *override, ".#apps", "--apply", programs, cwd=REPO))
    for system in SYSTEMS:
        assert set(shown[system]) == {"alpine-venus", "default", "test"}
        for program in shown[system].values():
            assert program.startswith("/nix/store/") and "/bin/venus-repro-" in program
