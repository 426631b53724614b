# The guest demos (aarch64-linux), cross-built by zig on whatever system this is
# evaluated for, macOS included: no Linux builder, no nixpkgs cross toolchain.
# The recipe is the driver's own (`venus-repro demos --build-script`), linked
# against the guest's libvulkan.so.1 from the lock's libvulkan1 package; zig
# brings the aarch64 glibc and the kernel's UAPI headers (drm/virtgpu_drm.h).
# tests/test_guest_recipe.py builds them the same way and boots them.
{
  lib,
  stdenvNoCC,
  zig,
  glslang,
  vulkan-headers,
  venus-repro,
  debianPackages,
  # The guest's glibc (Debian trixie: 2.41): binaries must not need a newer one.
  glibcVersion ? "2.41",
}:
let
  libvulkan = lib.findFirst (d: lib.hasPrefix "libvulkan1_" d.name) (throw "the lock's guest set has no libvulkan1") (
    debianPackages "guest-arm64"
  );
in
stdenvNoCC.mkDerivation {
  pname = "venus-repro-guest-demos";
  version = venus-repro.version;
  dontUnpack = true;
  nativeBuildInputs = [
    zig
    glslang
    venus-repro
  ];
  buildPhase = ''
    runHook preBuild
    export ZIG_GLOBAL_CACHE_DIR=$TMPDIR/zig ZIG_LOCAL_CACHE_DIR=$TMPDIR/zig
    venus-repro unpack ${libvulkan} -o vulkan-deb
    venus-repro demos --build-script \
      --cc "zig cc -target aarch64-linux-gnu.${glibcVersion} -isystem ${vulkan-headers}/include" \
      --vulkan $PWD/vulkan-deb/usr/lib/aarch64-linux-gnu/libvulkan.so.1 \
      --out bin --shaders shaders > build.sh
    sh -x build.sh
    runHook postBuild
  '';
  installPhase = ''
    runHook preInstall
    install -Dm755 -t $out/bin bin/*
    runHook postInstall
  '';
  meta.description = "venus-repro's Vulkan demos for the aarch64-linux guest, cross-built by zig";
}
