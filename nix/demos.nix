# The demos (demos/), built with the one recipe the driver also uses
# (`venus-repro demos --build-script`), for whatever platform this is called
# for: the guest's (aarch64-linux) or the host's (reference frames).
{
  lib,
  stdenv,
  buildPackages,
  glslang,
  vulkan-headers,
  vulkan-loader,
  linuxHeaders,
}:
let
  # The recipe runs on the build machine.
  venus-repro = buildPackages.callPackage ./driver.nix { };
in
stdenv.mkDerivation {
  pname = "venus-repro-demos";
  version = venus-repro.version;
  src = lib.fileset.toSource {
    root = ../.;
    fileset = ../demos;
  };
  nativeBuildInputs = [
    glslang
    venus-repro
  ];
  buildInputs = [
    vulkan-headers
    vulkan-loader
  ]
  # <drm/virtgpu_drm.h>: the zero-copy variants allocate virtio-gpu buffers.
  ++ lib.optional stdenv.hostPlatform.isLinux linuxHeaders;
  buildPhase = ''
    runHook preBuild
    VENUS_REPRO_DEMOS=$PWD/demos venus-repro demos --build-script --cc "$CC" --out bin --shaders shaders > build.sh
    sh -x build.sh
    runHook postBuild
  '';
  installPhase = ''
    runHook preInstall
    install -Dm755 -t $out/bin bin/*
    runHook postInstall
  '';
  meta = {
    description = "venus-repro's Vulkan demos (test_tri, vkcube_anim, vkcube_zerocopy)";
    platforms = lib.platforms.linux;
  };
}
