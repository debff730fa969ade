# services.modeController.polkit: switching modes without a root shell. With
# it, members of `group` in an active local session may run `mode request
# MODE` and `mode reconcile` themselves: the polkit rule shipped in
# pkgs/polkit/50-mode-controller.rules (the one home of that rule; only its
# group is substituted here) lets each of them start the transition unit
# instance that names them, mode-controller@MODE:USER.service, and nothing
# else. See docs/operations.md ("Switching without sudo").
{ config, lib, ... }:

let
  cfg = config.services.modeController;
  shipped = builtins.readFile ../pkgs/polkit/50-mode-controller.rules;
  groupLine = ''var GROUP = "mode-controller";'';
  rules = lib.replaceStrings [ groupLine ] [ "var GROUP = ${builtins.toJSON cfg.polkit.group};" ] shipped;
in
{
  options.services.modeController.polkit = {
    enable = lib.mkEnableOption ''
      switching without sudo: members of
      {option}`services.modeController.polkit.group` in an active local
      session may `mode request` and `mode reconcile` (through polkit; each
      record names the uid that asked)'';

    group = lib.mkOption {
      type = lib.types.strMatching "[a-z_][a-z0-9_-]*";
      default = "mode-controller";
      example = "wheel";
      description = ''
        The group whose members may switch. It is created when no other
        part of the configuration defines it; add users with
        `users.users.NAME.extraGroups`.
      '';
    };
  };

  config = lib.mkIf (cfg.enable && cfg.polkit.enable) {
    assertions = [
      {
        assertion = lib.hasInfix groupLine shipped;
        message = "services.modeController.polkit: pkgs/polkit/50-mode-controller.rules no longer sets its group as `${groupLine}`.";
      }
    ];
    security.polkit.enable = true;
    security.polkit.extraConfig = rules;
    users.groups.${cfg.polkit.group} = { };
  };
}
