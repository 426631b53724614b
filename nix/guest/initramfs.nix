# The guest: Alpine's minirootfs (busybox for /init) + the Venus userspace and
# the demos from nixpkgs (their /nix/store closure), packed as an uncompressed
# newc cpio with the same /init contract the driver's Debian guest has
# (driver/guest/init.sh: console markers, the exchange disk, plan steps).
{
  lib,
  callPackage,
  buildPackages,
  closureInfo,
  vulkan-loader,
  vulkan-tools,
  alpine-minirootfs,
  demos,
}:
let
  venus-icd = callPackage ./venus-icd.nix { };
  closure = closureInfo {
    rootPaths = [
      venus-icd
      vulkan-loader
      vulkan-tools
      demos
    ];
  };
in
buildPackages.runCommand "venus-repro-guest-initramfs"
  {
    nativeBuildInputs = [ buildPackages.cpio ];
    passthru = { inherit venus-icd; };
  }
  ''
    mkdir root && cd root
    tar -xzf ${alpine-minirootfs}
    # The Venus userspace and the demos, at their store paths.
    mkdir -p nix/store
    for p in $(cat ${closure}/store-paths); do cp -a "$p" nix/store/; done
    install -Dm755 ${../../driver/guest/init.sh} init
    mkdir -p etc/venus-repro opt/venus-repro
    # virtio-gpu is built into the flake's kernel: no module to load.
    : > etc/venus-repro/modules
    # What the Debian guest gets from /usr: the ICD, the loader, vulkaninfo.
    cat > etc/venus-repro/env <<ENV
    export VK_DRIVER_FILES=${venus-icd}/share/vulkan/icd.d/virtio_icd.json
    export PATH=\$PATH:${vulkan-tools}/bin
    ENV
    ln -s ${demos}/bin opt/venus-repro/bin
    # Reproducible: fixed order, fixed times, no owner but root.
    find . -exec touch -h -d @0 {} +
    mkdir -p $out
    find . -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --reproducible --owner=0:0 --quiet > $out/initrd.cpio
  ''
