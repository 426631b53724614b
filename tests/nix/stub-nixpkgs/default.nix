# TEST DOUBLE for nixpkgs (see README.md). Every package is a derivation that
# builds nothing and records what it was asked for; overrides keep the record.
{ system, ... }@args:
let
  lib = import ./lib.nix;

  platformOf = sys: rec {
    system = sys;
    isDarwin = sys == "aarch64-darwin";
    isLinux = !isDarwin;
    isAarch64 = builtins.substring 0 7 sys == "aarch64";
    uname.processor = if isAarch64 then "aarch64" else "x86_64";
    linux-kernel.target = if isAarch64 then "Image" else "bzImage";
    extensions.sharedLibrary = if isDarwin then ".dylib" else ".so";
  };

  mkPkgs =
    { hostSystem, buildPkgs }:
    let
      hostPlatform = platformOf hostSystem;

      # A derivation recording `attrs`; passthru is lifted to the top as
      # nixpkgs does. `override`/`overrideAttrs` return a new record.
      mkPkg =
        name: attrs:
        let
          drv = derivation {
            inherit name;
            # Like nixpkgs: a cross-built package is built on the build platform.
            system = if buildPkgs == null then hostSystem else buildPkgs.stdenv.hostPlatform.system;
            builder = "/bin/sh";
            args = [ "-c" "echo stub > $out" ];
          };
          self =
            drv
            // (builtins.removeAttrs attrs [ "passthru" ])
            // (attrs.passthru or { })
            // {
              stub = true;
              meta = { mainProgram = name; } // (attrs.meta or { });
              override = extra: mkPkg name (attrs // { overrideArgs = (attrs.overrideArgs or { }) // extra; });
              overrideAttrs =
                f:
                let
                  old = attrs // (attrs.passthru or { });
                  new = if builtins.isFunction f then f old else f;
                in
                mkPkg name (attrs // new);
            };
        in
        self;

      pkgs = rec {
        inherit lib;
        stdenv = {
          inherit hostPlatform;
          mkDerivation = attrs: mkPkg (attrs.pname or attrs.name) attrs;
        };
        buildPackages = if buildPkgs == null then pkgs else buildPkgs;
        pkgsCross.aarch64-multiplatform = mkPkgs {
          hostSystem = "aarch64-linux";
          buildPkgs = pkgs;
        };

        callPackage =
          f: overrides:
          let
            fn = if builtins.isFunction f then f else import f;
          in
          fn ((builtins.intersectAttrs (builtins.functionArgs fn) pkgs) // overrides);

        # --- the packages the flake overrides or uses -----------------------
        qemu = mkPkg "qemu" { version = "11.0.1"; };
        virglrenderer = mkPkg "virglrenderer" {
          version = "1.3.0";
          patches = [ ];
          mesonFlags = [ "-Dvenus=${if hostPlatform.isLinux then "true" else "false"}" ];
          buildInputs = [ ];
        };
        moltenvk = mkPkg "moltenvk" { version = "1.4.1"; };
        mesa = mkPkg "mesa" { version = "26.1.3"; };
        linux_6_12 = mkPkg "linux" { version = "6.12.94"; };
        vulkan-loader = mkPkg "vulkan-loader" { };
        vulkan-headers = mkPkg "vulkan-headers" { };
        vulkan-tools = mkPkg "vulkan-tools" { };
        linuxHeaders = mkPkg "linux-headers" { };
        glslang = mkPkg "glslang" { };
        cpio = mkPkg "cpio" { };
        ruff = mkPkg "ruff" { };

        python3Packages = rec {
          callPackage =
            f: overrides:
            let
              fn = if builtins.isFunction f then f else import f;
            in
            fn ((builtins.intersectAttrs (builtins.functionArgs fn) (pkgs // python3Packages)) // overrides);
          python = mkPkg "python3" { };
          buildPythonApplication = attrs: mkPkg attrs.pname attrs;
          setuptools = mkPkg "setuptools" { };
          pytest = mkPkg "pytest" { };
          pexpect = mkPkg "pexpect" { };
          pyyaml = mkPkg "pyyaml" { };
          tabulate = mkPkg "tabulate" { };
        };

        fetchurl = { url, hash }: mkPkg "fetchurl" { inherit url hash; };
        closureInfo = { rootPaths }: mkPkg "closure-info" { inherit rootPaths; };
        runCommand = name: env: script: mkPkg name (env // { inherit script; });
        writeTextDir = path: text: mkPkg "text-dir" { inherit path text; };
        writeShellScriptBin = name: text: mkPkg name { inherit text; meta.mainProgram = name; };
        mkShell = attrs: mkPkg "shell" attrs;
      };
    in
    pkgs;
in
mkPkgs {
  hostSystem = args.system or args.localSystem;
  buildPkgs = null;
}
