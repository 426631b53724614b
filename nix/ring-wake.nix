# The vkr_ring_wake shim (shims/vkr_ring_wake.c): preloaded into the render
# server when the guest runs under TCG, where a Venus ring wakeup can be lost
# (the file's header explains why). Linux only: it interposes glibc's
# pthread_cond_wait, and macOS runs the guest under HVF, which is not affected.
{
  lib,
  stdenv,
}:
stdenv.mkDerivation {
  pname = "vkr-ring-wake";
  version = "1";
  src = ../shims/vkr_ring_wake.c;
  dontUnpack = true;
  buildPhase = ''
    runHook preBuild
    $CC -O2 -Wall -Wextra -Werror -shared -fPIC -o vkr_ring_wake.so $src -ldl
    runHook postBuild
  '';
  installPhase = ''
    runHook preInstall
    install -Dm755 vkr_ring_wake.so $out/lib/vkr_ring_wake.so
    runHook postInstall
  '';
  meta = {
    description = "Bounded idle wait for virglrenderer's Venus ring thread (TCG lost-wakeup workaround)";
    platforms = lib.platforms.linux;
  };
}
