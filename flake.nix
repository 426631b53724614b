{
  description = "venus-repro: Vulkan in a QEMU VM through Venus, every component pinned";

  # Both inputs are pinned by rev only in flake.lock: their narHashes could not
  # be computed where this flake was written (no GitHub), and a hash nobody
  # computed is never written here. `nix flake update` on a connected machine
  # re-locks the same revs (the URLs name them) and adds the hashes (README, "Nix").
  inputs = {
    # An upstream NixOS/nixpkgs commit from 2026 (qemu 11.0.x).
    nixpkgs.url = "github:NixOS/nixpkgs/01820a7b5745da585a04e35531c4b86dec8ce4ad";
    # The user's QEMU fork, branch main as of 2026-01-28: darwin's QEMU
    # (nix/qemu.nix). Swap it with --override-input qemu-fork <flake ref>.
    qemu-fork = {
      url = "github:pannous/qemu/e8145fc93bc33c0896ab137cacb946c8aa339a89";
      flake = false;
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      qemu-fork,
      ...
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "aarch64-darwin"
        "aarch64-linux"
        "x86_64-linux"
      ];
      forAllSystems =
        f:
        lib.genAttrs systems (
          system:
          f (
            import ./nix {
              inherit nixpkgs system;
              qemuFork = qemu-fork;
              # What a bundle of a nix-profile run says it came from (venus-repro bundle).
              flake = {
                lock = builtins.fromJSON (builtins.readFile ./flake.lock);
                rev = self.rev or self.dirtyRev or "unknown";
              };
            }
          )
        );
    in
    {
      packages = forAllSystems (vr: vr.packages);

      apps = forAllSystems (vr: {
        # Boots the VM with the flake's components, serial console attached.
        alpine-venus = vr.app "alpine-venus" "boot";
        default = vr.app "alpine-venus" "boot";
        # Runs the default scenario and prints the verdict table.
        test = vr.app "test" "run";
      });

      checks = forAllSystems (vr: vr.checks);

      devShells = forAllSystems (vr: {
        default = vr.devShell;
      });
    };
}
