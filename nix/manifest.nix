# manifest.json: the component paths for the driver's `nix` profile
# (`venus-repro … --profile nix --manifest …`), so the Debian and the Nix
# setups run the same scenarios through the same driver.
{
  stdenv,
  writeTextDir,
  qemu,
  virglrenderer,
  guest,
  host-demos,
  vulkanIcd,
  eglVendor,
  vulkan-tools,
  ring-wake,
  flake ? null,
}:
let
  isDarwin = stdenv.hostPlatform.isDarwin;
in
writeTextDir "manifest.json" (
  builtins.toJSON {
    format = 1;
    system = stdenv.hostPlatform.system;
    qemu = "${qemu}/bin/qemu-system-aarch64";
    render_server = "${virglrenderer}/libexec/virgl_render_server";
    virglrenderer = "${virglrenderer}/lib/libvirglrenderer${stdenv.hostPlatform.extensions.sharedLibrary}";
    vulkan_icd = vulkanIcd;
    vulkaninfo = "${vulkan-tools}/bin/vulkaninfo";
    egl_vendor = eglVendor;
    # Debian's arm64 kernel and the initramfs the driver packed (guest/debian.nix).
    kernel = "${guest}/vmlinuz";
    initramfs = "${guest}/initrd.cpio";
    # The guest must use the host's page size on HVF; 16K everywhere keeps
    # Linux runs honest about the kernel macOS users boot.
    page_size = 16384;
    # HVF on Apple Silicon; TCG on Linux (KVM only where the host is aarch64
    # and /dev/kvm works: the driver decides at run time).
    accel = if isDarwin then "hvf" else "tcg";
    # Linux: SDL with gl=on, offscreen (SDL_VIDEODRIVER), the GL display upstream's
    # virtio-gpu-gl needs. macOS: as the user runs their fork (scripts/run-alpine.sh):
    # the cocoa window, where the fork presents Venus through a Vulkan swapchain,
    # a 256 MiB host-visible region and four CPUs.
    display = if isDarwin then "cocoa" else "sdl,gl=on";
    hostmem = if isDarwin then "256M" else "1G";
    smp = if isDarwin then 4 else 2;
    host_demos = if host-demos == null then null else "${host-demos}/bin";
    ring_wake = if ring-wake == null then null else "${ring-wake}/lib/vkr_ring_wake.so";
    # Where the components came from, for a bundle of a run (venus-repro bundle): the
    # flake's lock and revision, and the guest's pins (the Debian lock the guest is packed from).
    flake = flake;
    guest_pins = {
      lock = "debian-trixie.lock.json";
      lock_sha256 = builtins.hashFile "sha256" ../driver/data/pins/debian-trixie.lock.json;
      kernel_flavour = guest.kernelFlavour;
    };
    versions = {
      qemu = qemu.version;
      virglrenderer = virglrenderer.version;
      kernel_flavour = guest.kernelFlavour;
      fd_fallback_patch = virglrenderer.fdFallbackPatch != null;
    };
  }
)
