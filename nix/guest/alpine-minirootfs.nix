# Alpine's aarch64 minirootfs: the guest's base (busybox, musl). Release files
# on dl-cdn stay put; the sha256 pins the exact tarball (3,947,906 bytes,
# sha256 041fa34a81788242df9e78fa69b97ab45b8ec47ddbf88864755610414a7bf3de).
{ fetchurl }:
fetchurl {
  url = "https://dl-cdn.alpinelinux.org/alpine/v3.20/releases/aarch64/alpine-minirootfs-3.20.3-aarch64.tar.gz";
  hash = "sha256-BB+jSoF4gkLfnnj6abl6tFuOxH3b+IhkdVYQQUp7894=";
}
