# QEMU for an aarch64 guest with virtio-gpu-gl and Venus.
#
# Linux: nixpkgs' release (QEMU 11), with OpenGL: upstream's virtio-gpu-gl is
# built only with OpenGL and realizes only on a GL display (SDL, offscreen in the
# VM check), and that works there as it is.
# macOS: the user's fork, pannous/qemu - the QEMU they run on the Mac. Upstream
# cannot run Venus there: `--enable-opengl` needs epoxy/egl.h, which nixpkgs'
# darwin libepoxy lacks (-Degl=no); without OpenGL virtio-gpu-gl is not built,
# and cocoa is no GL display. The fork builds virtio-gpu-gl without OpenGL when
# virglrenderer is found (hw/display/meson.build, "Venus-only mode"), asks
# virglrenderer for Venus and the render server only, and presents scanouts
# through a host Vulkan swapchain on the cocoa window's CAMetalLayer (MoltenVK).
# ../shared/MACOS.md has the sources.
{
  lib,
  stdenv,
  qemu,
  virglrenderer,
  fetchFromGitLab,
  vulkan-loader,
  vulkan-headers,
  # A QEMU source tree to build instead of nixpkgs' release tarball: the flake
  # passes the user's fork on darwin (its `qemu-fork` input), null elsewhere.
  # Pass another tree (a branch of the fork, upstream master) to A/B it without
  # editing this file. (Not `src`: callPackage would fill that from nixpkgs.)
  qemuSrc ? null,
  qemuVersion ? "10.2.50-unstable-2026-01-28-pannous",
  # virtio-gpu-gl with OpenGL (upstream's way) or in the fork's Venus-only mode,
  # which needs no GL and presents through Vulkan.
  withOpenGL ? qemuSrc == null,
  # What a git tree lacks and a release tarball carries: the meson subprojects
  # QEMU calls subproject() on, at the revisions of its subprojects/*.wrap
  # (the same in QEMU 10.0.13 and in the later upstream wraps read through the
  # code index, so in the fork's 10.2.50 too). dtc and slirp come from nixpkgs as system
  # libraries, and libvfio-user is for the vfio-user server, which is off; so
  # these three are all a build from git needs. The hashes are the Nix hashes of
  # the GitLab archives, as published in several public Nix expressions, and
  # checked here against an independent copy: Debian's QEMU 10.0.13 source
  # carries the same three trees. tests/test_nix.py also runs this file's
  # prePatch on that source stripped to what git holds: configure refuses it
  # offline before ("missing subprojects") and runs all three after.
  gitSubprojects ? {
    keycodemapdb = fetchFromGitLab {
      owner = "qemu-project";
      repo = "keycodemapdb";
      rev = "f5772a62ec52591ff6870b7e8ef32482371f22c6";
      hash = "sha256-GbZ5mrUYLXMi0IX4IZzles0Oyc095ij2xAsiLNJwfKQ=";
    };
    berkeley-softfloat-3 = fetchFromGitLab {
      owner = "qemu-project";
      repo = "berkeley-softfloat-3";
      rev = "b64af41c3276f97f0e181920400ee056b9c88037";
      hash = "sha256-Yflpx+mjU8mD5biClNpdmon24EHg4aWBZszbOur5VEA=";
    };
    berkeley-testfloat-3 = fetchFromGitLab {
      owner = "qemu-project";
      repo = "berkeley-testfloat-3";
      rev = "e7af9751d9f9fd3b47911f51a5cfd08af256a9ab";
      hash = "sha256-inQAeYlmuiRtZm37xK9ypBltCJ+ycyvIeIYZK8a+RYU=";
    };
  },
}:
let
  isDarwin = stdenv.hostPlatform.isDarwin;
  fromGit = qemuSrc != null;
  # What `meson subprojects download` would do: the tree at the wrap's revision,
  # then the wrap's patch_directory (subprojects/packagefiles/NAME: the meson.build
  # QEMU writes for the Berkeley trees) copied over it. The copies keep their
  # modes (keycodemapdb's tools/keymap-gen is run as a program); preConfigure's
  # patchShebangs then fixes its interpreter like the rest of the tree.
  addSubprojects = lib.concatStrings (
    lib.mapAttrsToList (name: tree: ''
      cp -r ${tree} subprojects/${name}
      chmod -R u+w subprojects/${name}
      if [ -d subprojects/packagefiles/${name} ]; then
        cp -r subprojects/packagefiles/${name}/. subprojects/${name}/
      fi
    '') gitSubprojects
  );
in
(qemu.override (
  {
    # The guest is aarch64 on every host; one target instead of all of them.
    hostCpuTargets = [ "aarch64-softmmu" ];
    # Venus reaches the host's Vulkan through virglrenderer (its render server).
    virglSupport = true;
    inherit virglrenderer;
    openGLSupport = withOpenGL;
    # With OpenGL: SDL with gl=on is the GL display that needs neither X nor
    # /dev/dri on Linux (SDL_VIDEODRIVER=offscreen); nixpkgs turns it off on
    # darwin by default. Without: the cocoa window (nixpkgs' darwin build has
    # cocoa and HVF already).
    sdlSupport = withOpenGL;
    # rutabaga (gfxstream) is another GPU stack; Venus does not use it.
    rutabagaSupport = false;
    # Ceph (rbd block devices) is not needed, and at some nixpkgs revisions
    # qemu defaults it on while ceph has no darwin platform: say it here.
    cephSupport = false;
  }
  // lib.optionalAttrs isDarwin {
    # GBM and libdrm are Linux-only: darwin must not ask for them.
    libgbm = null;
    libdrm = null;
  }
  // lib.optionalAttrs fromGit {
    # The manual is not what the fork changes, and sphinx on a development tree
    # is one more way for the build to fail.
    enableDocs = false;
  }
)).overrideAttrs
  (
    old:
    {
      configureFlags =
        old.configureFlags
        # As the user configures the fork (scripts/rebuild-qemu.sh): 9p shares,
        # and no -Werror on a development tree. --disable-download makes a
        # subproject this file forgot a configure error, never a fetch.
        ++ lib.optionals fromGit [
          "--disable-download"
          "--enable-virtfs"
          "--disable-werror"
        ]
        # OpenGL is `auto` unless said: an epoxy that some input brings along must
        # not turn the fork's Venus-only branch of hw/display/meson.build off.
        ++ lib.optional (!withOpenGL) "--disable-opengl";
    }
    // lib.optionalAttrs fromGit {
      src = qemuSrc;
      version = qemuVersion;
      prePatch = (old.prePatch or "") + addSubprojects;
      passthru = (old.passthru or { }) // {
        fork = true;
        inherit gitSubprojects;
      };
    }
    // lib.optionalAttrs (!withOpenGL) {
      # The fork's swapchain (hw/display/virtio-gpu-vk-swapchain.m) links the
      # Vulkan loader (meson `dependency('vulkan')`), which finds MoltenVK
      # through VK_DRIVER_FILES at run time (the manifest's vulkan_icd).
      buildInputs = old.buildInputs ++ [
        vulkan-loader
        vulkan-headers
      ];
    }
  )
