# mode-controller as a flake: the package, the NixOS module (with the
# package defaulting to this flake's build), an overlay, and checks (the
# package with its unit tests, the NixOS VM test).
#
# No flake.lock is committed yet: the machines this project is developed on
# cannot fetch inputs. `nix flake lock` on a connected machine creates it.
{
  description = "Switch a workstation between desktop, studio and compute modes as verified systemd transitions";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: prev: {
        mode-controller = final.callPackage ./pkgs/mode-controller/package.nix { };
      };

      packages = forAllSystems (pkgs: rec {
        mode-controller = pkgs.callPackage ./pkgs/mode-controller/package.nix { };
        default = mode-controller;
      });

      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nixos-modules/mode-controller.nix ];
          services.modeController.package = lib.mkDefault (
            self.packages.${pkgs.stdenv.hostPlatform.system}.default
              or (pkgs.callPackage ./pkgs/mode-controller/package.nix { })
          );
        };

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        mode-switch = import ./tests/nixos/mode-switch.nix {
          inherit pkgs;
          module = self.nixosModules.default;
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.cargo
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.nixfmt
          ];
        };
      });
    };
}
