{
  description = "venus-repro: Vulkan in a QEMU VM through Venus, every component pinned";

  # nixpkgs is the only input. The rev is an upstream NixOS/nixpkgs commit from
  # 2026 (qemu 11.0.x). flake.lock pins it by rev only: its narHash could not be
  # computed where this flake was written (no GitHub), and a hash nobody
  # computed is never written here. The first `nix flake lock` on a connected
  # machine adds it (README, "Nix").
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/01820a7b5745da585a04e35531c4b86dec8ce4ad";

  outputs =
    { nixpkgs, ... }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "aarch64-darwin"
        "aarch64-linux"
        "x86_64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f (import ./nix { inherit nixpkgs system; }));
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
