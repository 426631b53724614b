# checks.vm (Linux): the default scenario, end to end, in the build sandbox:
# the 16K guest boots under TCG, the demos run on Venus over lavapipe, and the
# verdict must pass (frames bit-identical to the host's).
{
  runCommand,
  venus-repro,
  manifest,
}:
runCommand "venus-repro-vm-check"
  {
    nativeBuildInputs = [ venus-repro ];
    # SDL's offscreen video driver: a GL display without X or /dev/dri.
    SDL_VIDEODRIVER = "offscreen";
  }
  ''
    export HOME=$TMPDIR
    venus-repro run --profile nix --manifest ${manifest}/manifest.json --run-dir $out/run
  ''
