# Entry point for configurations that import this checkout directly
# (`imports = [ /path/to/mode-controller/nixos-modules ];`). nixpkgs has no
# `mode-controller` package, so unless an overlay provides one, the package
# is built from this checkout with the configuration's own nixpkgs. The
# flake's `nixosModules.default` uses the flake's build instead.
{ lib, pkgs, ... }:
{
  imports = [ ./mode-controller.nix ];

  services.modeController.package = lib.mkDefault (
    pkgs.mode-controller or (pkgs.callPackage ../pkgs/mode-controller/package.nix { })
  );
}
