# The driver's unit tests (everything not marked `vm` or `nix`): parsers, decoders,
# diagnosis over recorded logs, CLI errors. No network, no root, no QEMU.
{
  lib,
  runCommand,
  python,
  pytest,
  pexpect,
  pyyaml,
  tabulate,
}:
let
  source = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../driver
      ../demos
      ../tests
    ];
  };
in
runCommand "venus-repro-unit-tests"
  {
    nativeBuildInputs = [
      python
      pytest
      pexpect
      pyyaml
      tabulate
    ];
  }
  ''
    cp -r ${source} src && chmod -R u+w src && cd src
    export VENUS_REPRO_CACHE=$TMPDIR/cache HOME=$TMPDIR
    python -m pytest -q -p no:cacheprovider -m "not vm and not nix" tests
    touch $out
  ''
