# virglrenderer with Venus (and so virgl_render_server) on every system.
#
# Linux: nixpkgs' release (1.3.0), which runs Venus there as it is.
# macOS: the user's fork, pannous/virglrenderer main - the stack they run on the
# Mac. Upstream 1.3.0's render server does not build on macOS (signalfd,
# <threads.h>, SOCK_SEQPACKET, MSG_CMSG_CLOEXEC), the Vulkan loader hides MoltenVK
# from it without portability enumeration, and it cannot export MoltenVK's
# host-visible memory; the fork has all three (../shared/MACOS.md, README "On a Mac").
{
  lib,
  stdenv,
  fetchFromGitHub,
  virglrenderer,
  moltenvk ? null,
  # The source tree; null: the fork on darwin, nixpkgs' release elsewhere.
  # Pass another (upstream main, which gained a macOS render server after 1.3.0,
  # or a branch of the fork) to A/B it without editing this file. (Not `src`:
  # callPackage would fill that from nixpkgs' package of the name.)
  virglrendererSrc ? null,
  virglrendererVersion ? null,
  # Our patch (nix/patches/virglrenderer): import SHM-backed resources into
  # Vulkan as host pointers (VK_EXT_external_memory_host) when they cannot be
  # imported as fds, the case MoltenVK hosts hit. The fork already does this
  # (vkr_device_memory.c: use_host_pointer_import maps the resource's SHM fd
  # and imports it with VkImportMemoryHostPointerInfoEXT), so it is for the
  # upstream releases only. Off: A/B a stock build.
  withFdFallbackPatch ? virglrendererSrc == null && !stdenv.hostPlatform.isDarwin,
}:
let
  isDarwin = stdenv.hostPlatform.isDarwin;
  # pannous/virglrenderer, branch main: the user's confirmed working state on the Mac
  # (based on upstream 960bd667, meson version 1.2.0). The hash is the tree's narHash,
  # computed from the tarball kept in ../shared/sources.
  fork = fetchFromGitHub {
    owner = "pannous";
    repo = "virglrenderer";
    rev = "905aad7c12cea6edb66be753c1200a1c087b4e20";
    hash = "sha256-U66c5nfsfm5ksM6whnsu3H2mEzEeQYg4zC0j4i8tiug=";
  };
  source =
    if virglrendererSrc != null then
      {
        src = virglrendererSrc;
        version = if virglrendererVersion != null then virglrendererVersion else virglrenderer.version;
      }
    else if isDarwin then
      {
        src = fork;
        version = "1.2.0-unstable-2026-01-28-pannous";
      }
    else
      null;
  finalVersion = if source != null then source.version else virglrenderer.version;
  patch = ./patches/virglrenderer + "/venus-import-shm-resources-as-host-pointers-${finalVersion}.patch";
in
assert isDarwin -> moltenvk != null;
assert lib.assertMsg (withFdFallbackPatch -> builtins.pathExists patch)
  "no fd-fallback patch for virglrenderer ${finalVersion} in nix/patches/virglrenderer (port it, or set withFdFallbackPatch = false)";
(virglrenderer.override {
  # nixpkgs gates Venus to Linux; on macOS it runs on MoltenVK.
  vulkanSupport = true;
}).overrideAttrs
  (
    old:
    lib.optionalAttrs (source != null) {
      inherit (source) src;
      version = finalVersion;
    }
    // {
      patches = (old.patches or [ ]) ++ lib.optional withFdFallbackPatch patch;
      mesonFlags =
        (old.mesonFlags or [ ])
        # A fork()ed render-server worker loses its XPC connection on macOS and
        # MoltenVK then fails with "Unable to reach MTLCompilerService": run the
        # workers as threads there.
        ++ lib.optional isDarwin (lib.mesonOption "render-server-worker" "thread")
        # (nixpkgs already passes -Dvulkan-dload=false with vulkanSupport: the loader is
        # linked - on darwin the loader that finds MoltenVK through VK_DRIVER_FILES -
        # instead of dlopening libvulkan.so.1, which has no darwin name. The tests check it.)
        # Said, not left to the default: a render server that loads the host's
        # Vulkan driver before it forks its workers breaks NVIDIA's driver (every
        # guest vkCreateDevice fails with -3; virglrenderer issue 630).
        ++ [ (lib.mesonBool "vulkan-preload" false) ];
      buildInputs = (old.buildInputs or [ ]) ++ lib.optional isDarwin moltenvk;
      passthru = (old.passthru or { }) // {
        fdFallbackPatch = if withFdFallbackPatch then patch else null;
        fork = isDarwin && virglrendererSrc == null;
      };
    }
  )
