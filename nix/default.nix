# The flake's components for one host system. Each package has a callPackage
# file of its own beside this one (or in ../kernels); this file only wires
# them together and decides what is built for which platform.
{
  nixpkgs,
  system,
  # The user's QEMU fork (pannous/qemu), a source tree: the flake's `qemu-fork`
  # input. Only darwin's QEMU is built from it (nix/qemu.nix says why).
  qemuFork ? null,
  # The flake's lock and revision (flake.nix), recorded in the manifest; null outside the flake.
  flake ? null,
}:
let
  pkgs = import nixpkgs { inherit system; };
  inherit (pkgs) lib;
  host = pkgs.stdenv.hostPlatform;

  # The guest is aarch64-linux on every host, and on every host it is fetched,
  # never built for Linux: Debian's 16K kernel and userland from the lock (the
  # same pins as the Debian profile), packed by the driver, with the demos
  # cross-built by zig. So a Mac needs no Linux builder (guest/debian.nix).
  debianPackages = pkgs.callPackage ./guest/debian-packages.nix { };
  guest-demos = pkgs.callPackage ./guest/demos-zig.nix { inherit venus-repro debianPackages; };
  guest = pkgs.callPackage ./guest/debian.nix {
    inherit venus-repro debianPackages;
    demos = guest-demos;
  };

  # Opt-in, and built for aarch64-linux (natively, cross from x86_64-linux, or by
  # a Linux builder on a Mac): the kernel from source and an Alpine guest.
  guestPkgs =
    if host.isLinux && host.isAarch64 then
      pkgs
    else if host.isLinux then
      pkgs.pkgsCross.aarch64-multiplatform
    else
      import nixpkgs { system = "aarch64-linux"; };

  venus-repro = pkgs.callPackage ./driver.nix { };
  moltenvk = if host.isDarwin then pkgs.moltenvk else null;
  virglrenderer = pkgs.callPackage ./virglrenderer.nix { inherit moltenvk; };
  qemu = pkgs.callPackage ./qemu.nix {
    inherit virglrenderer;
    qemuSrc =
      if !host.isDarwin then
        null
      else if qemuFork != null then
        qemuFork
      else
        throw "darwin's QEMU is the user's fork: pass qemuFork (the flake's qemu-fork input) to nix/default.nix";
  };
  kernel-from-source = guestPkgs.callPackage ../kernels/linux-16k.nix { };
  alpine-guest-demos = guestPkgs.callPackage ./demos.nix { };
  # Host builds of the same demos render the reference frames. They use the
  # Linux DRM uapi (the zero-copy variants), so there are none on darwin.
  host-demos = if host.isLinux then pkgs.callPackage ./demos.nix { } else null;
  alpine-minirootfs = guestPkgs.callPackage ./guest/alpine-minirootfs.nix { };
  alpine-initramfs = guestPkgs.callPackage ./guest/initramfs.nix {
    inherit alpine-minirootfs;
    demos = alpine-guest-demos;
  };
  # The host's Vulkan driver: lavapipe on Linux (no GPU needed), MoltenVK on macOS.
  vulkanIcd =
    if host.isDarwin then
      "${moltenvk}/share/vulkan/icd.d/MoltenVK_icd.json"
    else
      "${pkgs.mesa}/share/vulkan/icd.d/lvp_icd.${host.uname.processor}.json";
  # The EGL vendor for QEMU's SDL GL display on Linux: the build sandbox (checks.vm)
  # has no /etc/glvnd or /usr/share/glvnd where libglvnd would look for Mesa.
  eglVendor = if host.isLinux then "${pkgs.mesa}/share/glvnd/egl_vendor.d/50_mesa.json" else null;
  # Linux hosts run the guest under TCG, where the render server needs this shim.
  ring-wake = if host.isLinux then pkgs.callPackage ./ring-wake.nix { } else null;
  manifest = pkgs.callPackage ./manifest.nix {
    inherit
      qemu
      virglrenderer
      guest
      host-demos
      vulkanIcd
      eglVendor
      ring-wake
      flake
      ;
    inherit (pkgs) vulkan-tools;
  };
in
{
  packages = {
    inherit
      venus-repro
      virglrenderer
      qemu
      guest
      guest-demos
      manifest
      kernel-from-source
      alpine-minirootfs
      alpine-initramfs
      ;
    default = venus-repro;
  }
  // lib.optionalAttrs host.isDarwin { inherit moltenvk; }
  // lib.optionalAttrs host.isLinux { inherit host-demos; };

  # `nix run .#<name>`: venus-repro <verb> with the nix profile and this
  # system's manifest; extra arguments are passed through.
  app = name: verb: {
    type = "app";
    program = lib.getExe (
      pkgs.writeShellScriptBin "venus-repro-${name}" ''
        exec ${lib.getExe venus-repro} ${verb} --profile nix --manifest ${manifest}/manifest.json "$@"
      ''
    );
    meta.description = "venus-repro ${verb} with the flake's pinned components";
  };

  checks = {
    # The driver's unit tests (parsers, decoders, diagnosis), in the build sandbox.
    unit = venus-repro.tests.unit;
  }
  // lib.optionalAttrs host.isLinux {
    # The end-to-end scenario: boot the 16K guest under TCG with an SDL
    # offscreen GL display and assert the demos' verdict.
    vm = pkgs.callPackage ./vm-check.nix { inherit venus-repro manifest; };
  };

  devShell = pkgs.mkShell {
    inputsFrom = [ venus-repro ];
    packages = [
      qemu
      pkgs.ruff
    ];
  };
}
