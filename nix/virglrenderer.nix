# virglrenderer with Venus (and so virgl_render_server) on every system.
{
  lib,
  stdenv,
  virglrenderer,
  moltenvk ? null,
  # Our patch (nix/patches/virglrenderer): import SHM-backed resources into
  # Vulkan as host pointers (VK_EXT_external_memory_host) when they cannot be
  # imported as fds, the case MoltenVK hosts hit. On by default; turn it off
  # to A/B a stock build.
  withFdFallbackPatch ? true,
}:
let
  isDarwin = stdenv.hostPlatform.isDarwin;
  patch = ./patches/virglrenderer + "/venus-import-shm-resources-as-host-pointers-${virglrenderer.version}.patch";
in
assert isDarwin -> moltenvk != null;
assert lib.assertMsg (withFdFallbackPatch -> builtins.pathExists patch)
  "no fd-fallback patch for virglrenderer ${virglrenderer.version} in nix/patches/virglrenderer (port it, or set withFdFallbackPatch = false)";
(virglrenderer.override {
  # nixpkgs gates Venus to Linux; on macOS it runs on MoltenVK.
  vulkanSupport = true;
}).overrideAttrs
  (old: {
    patches = (old.patches or [ ]) ++ lib.optional withFdFallbackPatch patch;
    mesonFlags =
      (old.mesonFlags or [ ])
      # A fork()ed render-server worker loses its XPC connection on macOS and
      # MoltenVK then fails with "Unable to reach MTLCompilerService": run the
      # workers as threads there.
      ++ lib.optional isDarwin (lib.mesonOption "render-server-worker" "thread")
      # Said, not left to the default: a render server that loads the host's
      # Vulkan driver before it forks its workers breaks NVIDIA's driver (every
      # guest vkCreateDevice fails with -3; virglrenderer issue 630).
      ++ [ (lib.mesonBool "vulkan-preload" false) ];
    # 1.3.0 links libvulkan directly (-Dvulkan-dload=false); on darwin that is
    # the loader, which finds MoltenVK through VK_DRIVER_FILES at run time.
    buildInputs = (old.buildInputs or [ ]) ++ lib.optional isDarwin moltenvk;
    passthru = (old.passthru or { }) // {
      fdFallbackPatch = if withFdFallbackPatch then patch else null;
    };
  })
