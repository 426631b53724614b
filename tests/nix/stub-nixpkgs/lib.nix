# TEST DOUBLE: the slice of nixpkgs' lib the flake uses, with the same meaning.
rec {
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  optionalAttrs = cond: attrs: if cond then attrs else { };
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  assertMsg = pred: msg: pred || builtins.throw msg;
  getExe = drv: "${drv}/bin/${drv.meta.mainProgram}";
  importTOML = path: builtins.fromTOML (builtins.readFile path);
  mesonOption = name: value: "-D${name}=${value}";
  mkForce = content: { _type = "override"; priority = 50; inherit content; };
  # Records the file set; the flake's own source is already a store path.
  fileset = {
    unions = sets: { _type = "fileset"; inherit sets; };
    toSource = { root, fileset }: root;
  };
  kernel = {
    yes = { tristate = "y"; optional = false; };
    no = { tristate = "n"; optional = false; };
    module = { tristate = "m"; optional = false; };
  };
  platforms.linux = [ "aarch64-linux" "x86_64-linux" ];
  licenses.mit = { spdxId = "MIT"; };
}
