# What real nixpkgs makes of the flake's expressions, in one evaluation, for
# tests/test_nix.py: the derivation attributes a build would use (configure and
# meson flags, inputs, sources, patches, platforms, the kernel's merged config)
# for every system. `nixpkgs` is a nixpkgs source tree (the snapshot in CI);
# `qemuFork` stands in for the flake's qemu-fork input (the user's QEMU tree,
# which cannot be fetched here): the tests give a folder with a marker file.
{
  nixpkgs,
  repo,
  qemuFork,
}:
let
  lib = import (nixpkgs + "/lib");
  systems = [
    "aarch64-darwin"
    "aarch64-linux"
    "x86_64-linux"
  ];
  nameOf = d: if d ? pname then d.pname else (builtins.parseDrvName d.name).name;
  # Where a fetcher downloads from ([] for a source that is no fetch).
  urlsOf = f: f.urls or (lib.optional (f ? url) f.url);
  names = ds: map nameOf (builtins.filter (d: d != null && d ? name) ds);
  kernelOptions = [
    "ARM64_4K_PAGES"
    "ARM64_16K_PAGES"
    "DRM_VIRTIO_GPU"
    "VIRTIO_PCI"
    "VIRTIO_BLK"
    "VIRTIO_CONSOLE"
    "9P_FS"
    "MODULE_SIG"
  ];
  facts =
    system:
    let
      vr = import (repo + "/nix") { inherit nixpkgs system qemuFork; };
      p = vr.packages;
      q = p.qemu;
      v = p.virglrenderer;
    in
    {
      packages = builtins.attrNames p;
      checks = builtins.attrNames vr.checks;
      qemu = {
        inherit (q) version system;
        configureFlags = q.configureFlags;
        buildInputs = names q.buildInputs;
        # The virglrenderer QEMU links is the flake's, not nixpkgs' own.
        virglrendererIsOurs = builtins.any (d: d != null && d ? outPath && d.outPath == v.outPath) q.buildInputs;
        available = lib.meta.availableOn q.stdenv.hostPlatform q;
        # Where the source comes from: a fetcher's URLs and hash (nixpkgs' release), or
        # the marker file the tests put in the stand-in for the fork's tree.
        srcUrls = urlsOf q.src;
        srcHash = q.src.outputHash or null;
        # (A fetched src is not read: that would build it.)
        srcMarker =
          if !lib.isDerivation q.src && builtins.pathExists "${q.src}/STAND-IN" then
            builtins.readFile "${q.src}/STAND-IN"
          else
            null;
        fork = q.fork or false;
        # The meson subprojects a git tree is given: each fetcher's URLs and hash.
        subprojects = lib.mapAttrs (_: f: {
          urls = urlsOf f;
          hash = f.outputHash;
          inherit (f) system;
        }) (q.gitSubprojects or { });
        prePatch = q.prePatch or "";
        patches = map (x: baseNameOf (toString x)) q.patches;
        nativeBuildInputs = names q.nativeBuildInputs;
        dontStrip = q.dontStrip or false;
      };
      virglrenderer = {
        inherit (v) version system;
        mesonFlags = v.mesonFlags;
        patches = map (x: baseNameOf (toString x)) v.patches;
        src = v.src.name or (baseNameOf (toString v.src));
        # Where the source comes from, as the fetcher derivation says (not our text).
        srcUrls = urlsOf v.src;
        srcHash = v.src.outputHash or null;
        fork = v.passthru.fork or false;
        buildInputs = names v.buildInputs;
        available = lib.meta.availableOn v.stdenv.hostPlatform v;
      };
      kernelFromSource = {
        inherit (p.kernel-from-source) version system;
        config = lib.genAttrs kernelOptions (o: (p.kernel-from-source.configfile.structuredConfig.${o} or { }).tristate or null);
      };
      guest = {
        inherit (p.guest) system;
        command = p.guest.buildCommand;
        # every .deb it starts from: name, where from, and the hash it must have
        debs = map (d: {
          inherit (d) name system urls;
          hash = d.outputHash;
        }) p.guest.debs;
      };
      guestDemos = {
        inherit (p.guest-demos) system;
        build = p.guest-demos.buildPhase;
        inputs = names p.guest-demos.nativeBuildInputs;
      };
      manifest = builtins.fromJSON (builtins.unsafeDiscardStringContext p.manifest.text);
      unitCheck = {
        command = vr.checks.unit.buildCommand;
        inputs = names vr.checks.unit.nativeBuildInputs;
      };
      alpineInitramfsCommand = p.alpine-initramfs.buildCommand;
      driver = {
        inherit (p.venus-repro) version;
        pythonImportsCheck = p.venus-repro.pythonImportsCheck or [ ];
        dependencies = names (p.venus-repro.propagatedBuildInputs or [ ]);
      };
    };
in
lib.genAttrs systems facts
