# The driver (driver/, CLI venus-repro) as a Python application.
{
  lib,
  python3Packages,
}:
let
  pyproject = lib.importTOML ../pyproject.toml;
in
python3Packages.buildPythonApplication {
  pname = "venus-repro";
  inherit (pyproject.project) version;
  pyproject = true;
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../README.md
      ../driver
      ../demos
      ../tests
    ];
  };
  build-system = [ python3Packages.setuptools ];
  # The runtime dependencies named by the design, from nixpkgs.
  dependencies = with python3Packages; [
    pexpect
    pyyaml
    tabulate
  ];
  # Unit tests run in `checks.unit`; the VM tests need root and QEMU (checks.vm).
  doCheck = false;
  passthru.tests.unit = python3Packages.callPackage ./driver-tests.nix { };
  meta = {
    description = "Boot a Venus VM, run Vulkan demos, assert and explain the outcome";
    mainProgram = "venus-repro";
    license = lib.licenses.mit;
  };
}
