# The lock's Debian packages as fixed-output fetches: the same pins (name,
# version, sha256) the Debian profile provisions from, read from the driver's
# lock file, so the flake and `venus-repro run` can never disagree on a package.
# Fetching is all a Mac does with them: nothing is built for Linux.
{
  lib,
  fetchurl,
}:
let
  lock = lib.importJSON ../../driver/data/pins/debian-trixie.lock.json;
  # deb.debian.org keeps the current point release; snapshot.debian.org keeps every
  # version ever published, by date (the lock's day, or any later one).
  day = builtins.replaceStrings [ "-" ] [ "" ] (builtins.substring 0 10 lock.generated);
  fetch =
    pin:
    fetchurl {
      urls = [
        "https://deb.debian.org/debian/${pin.filename}"
        "https://snapshot.debian.org/archive/debian/${day}T235959Z/${pin.filename}"
      ];
      sha256 = pin.sha256;
      # A store name may not hold "~" (Debian's version separator, as in 1-1~deb13u1).
      name = builtins.replaceStrings [ "~" ] [ "-" ] (baseNameOf pin.filename);
      # The file name the driver's package store looks for.
      passthru.debName = baseNameOf pin.filename;
    };
in
# set name (as in the lock: guest-arm64, kernel-16k, …) → the fetched .debs
name: map fetch lock.sets.${name}.packages
