# TEST DOUBLE for nixpkgs (see README.md): `lib` and `import nixpkgs { system; }`.
{
  outputs = _: { lib = import ./lib.nix; };
}
