# The driver's unit tests (everything not marked `vm` or `nix`): parsers, decoders,
# diagnosis over recorded logs, CLI errors. No network, no root, no QEMU.
# They import the installed package (venus-repro's site-packages, through the
# python setup hook's PYTHONPATH) and run its CLI as `python -m venus_repro`:
# only tests/ and pyproject.toml (pytest's markers) are copied, never driver/.
{
  lib,
  runCommand,
  python,
  pytest,
  hypothesis,
  pexpect,
  pyyaml,
  tabulate,
  venus-repro,
}:
let
  source = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../tests
    ];
  };
in
runCommand "venus-repro-unit-tests"
  {
    nativeBuildInputs = [
      python
      pytest
      hypothesis
      pexpect
      pyyaml
      tabulate
      venus-repro
    ];
  }
  ''
    cp -r ${source} src && chmod -R u+w src && cd src
    export VENUS_REPRO_CACHE=$TMPDIR/cache HOME=$TMPDIR
    python -c 'import venus_repro.resources as r; assert (r.DEMOS / "demos.yaml").is_file()'
    python -m pytest -q -p no:cacheprovider -m "not vm and not nix" tests
    touch $out
  ''
