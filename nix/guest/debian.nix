# The guest the Debian profile boots — Debian's 16K-page arm64 kernel and the
# trixie userland with Mesa's Venus driver — assembled from the lock's packages
# by the driver's own recipe (`venus-repro guest-initramfs`: unpack and pack in
# Python, no root, no compiler), with the demos cross-built by zig. Every input
# is a fixed-output fetch or built for this system: on a Mac it needs no Linux
# builder. tests/test_guest_recipe.py proves the recipe byte-identical to the
# Debian profile's guest.
{
  lib,
  runCommand,
  venus-repro,
  debianPackages,
  demos,
  # A kernel flavour the lock pins (kernel-<flavour>): 16k is the page size HVF needs.
  kernelFlavour ? "16k",
}:
let
  debs = debianPackages "guest-arm64" ++ debianPackages "kernel-${kernelFlavour}";
in
runCommand "venus-repro-debian-guest-${kernelFlavour}"
  {
    nativeBuildInputs = [ venus-repro ];
    passthru = { inherit kernelFlavour debs; };
  }
  ''
    mkdir -p cache/debs
    ${lib.concatMapStringsSep "\n" (d: "ln -s ${d} cache/debs/${lib.escapeShellArg d.debName}") debs}
    VENUS_REPRO_CACHE=$PWD/cache venus-repro guest-initramfs \
      --kernel-flavour ${kernelFlavour} --demos ${demos}/bin -o $out
  ''
