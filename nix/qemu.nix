# QEMU for an aarch64 guest with virtio-gpu-gl and Venus.
{
  lib,
  stdenv,
  qemu,
  virglrenderer,
}:
qemu.override (
  {
    # The guest is aarch64 on every host; one target instead of all of them.
    hostCpuTargets = [ "aarch64-softmmu" ];
    # virtio-gpu-gl needs an OpenGL display, and Venus reaches the host's
    # Vulkan through virglrenderer (its render server).
    openGLSupport = true;
    virglSupport = true;
    inherit virglrenderer;
    # SDL with gl=on is the GL display that needs neither X nor /dev/dri on
    # Linux (SDL_VIDEODRIVER=offscreen); on macOS it opens a window. nixpkgs
    # turns SDL off on darwin by default.
    sdlSupport = true;
    # rutabaga (gfxstream) is another GPU stack; Venus does not use it.
    rutabagaSupport = false;
    # Ceph (rbd block devices) is not needed, and at some nixpkgs revisions
    # qemu defaults it on while ceph has no darwin platform: say it here.
    cephSupport = false;
  }
  // lib.optionalAttrs stdenv.hostPlatform.isDarwin {
    # GBM and libdrm are Linux-only; with openGLSupport on, darwin must not ask
    # for them. HVF and cocoa come with nixpkgs' darwin build already.
    libgbm = null;
    libdrm = null;
  }
)
