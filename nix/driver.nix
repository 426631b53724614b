# The driver (source folder driver/, imported as venus_repro, CLI venus-repro)
# as a Python application. The demo and shim sources ship inside the package
# (pyproject.toml maps demos/ and shims/ into it), so the installed wheel is
# all a run needs: no source tree at run time.
{
  lib,
  python3Packages,
}:
let
  pyproject = lib.importTOML ../pyproject.toml;
in
python3Packages.buildPythonApplication (finalAttrs: {
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
      ../shims
    ];
  };
  build-system = [ python3Packages.setuptools ];
  # The runtime dependencies named by the design, from nixpkgs.
  dependencies = with python3Packages; [
    pexpect
    pyyaml
    tabulate
  ];
  pythonImportsCheck = [ "venus_repro" ];
  # Unit tests run in `checks.unit`, against this installed package; the VM
  # tests need root and QEMU (checks.vm).
  doCheck = false;
  passthru.tests.unit = python3Packages.callPackage ./driver-tests.nix { venus-repro = finalAttrs.finalPackage; };
  meta = {
    description = "Boot a Venus VM, run Vulkan demos, assert and explain the outcome";
    mainProgram = "venus-repro";
    license = lib.licenses.mit;
  };
})
