# services.modeController: the NixOS side of mode-controller. The units are
# the package's (pkgs/systemd/ and pkgs/systemd-user/, installed under
# lib/systemd/ with the store paths filled in), taken with systemd.packages;
# this module adds only what NixOS needs on top of them, as drop-ins: which
# units are wanted (the boot policy, the idle timer, the way back, the
# notifications; the optional ones are masked when off), the idle interval,
# a writable audit directory elsewhere, and the switch-to-configuration
# markers below. It renders
# /etc/mode-controller/config.json from `settings` (freeform JSON in the
# schema `mode` reads), and `mode config check` validates that file while
# the system is built: the schema, its defaults and its rules live in the
# binary only.
#
# Why those drop-ins keep `nixos-rebuild switch` from changing the mode
# (X-OnlyManualStart on the mode targets, X-RestartIfChanged=false on the
# controller's units and the workloads): docs/nixos.md, "Boot and
# `nixos-rebuild switch`" (switch-to-configuration-ng reads drop-ins too).
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.modeController;
  settingsFormat = pkgs.formats.json { };

  stateDir = "/run/mode-controller";
  dataDir = "/var/lib/mode-controller";
  defaultAuditLog = "${dataDir}/transitions.jsonl";
  auditDir = dirOf cfg.settings.audit_log;

  # Keys of the file that typed options own (the idle threshold too, below).
  setElsewhere = {
    default_mode = "defaultMode";
    keep_running = "keepRunning";
    capability_placement = "capabilityPlacement";
    boot_mode = "bootMode";
  };

  renderedSettings = cfg.settings // {
    default_mode = cfg.defaultMode;
    keep_running = cfg.keepRunning;
    capability_placement = cfg.capabilityPlacement;
    boot_mode = cfg.bootMode;
    idle = cfg.settings.idle or { } // {
      threshold_secs = cfg.idle.thresholdSecs;
    };
  };

  configFile = settingsFormat.generate "mode-controller-config.json" renderedSettings;
  placementFile = settingsFormat.generate "mode-controller-capability-placement.json" cfg.capabilityPlacement;

  # What NixOS adds to each packaged unit that runs the controller (a
  # drop-in): no restart on a switch (see the top of this file), and an
  # audit log outside the StateDirectory kept writable under
  # ProtectSystem=strict.
  controllerDropin = {
    overrideStrategy = "asDropin";
    restartIfChanged = false;
    serviceConfig = lib.optionalAttrs (auditDir != dataDir) { ReadWritePaths = [ auditDir ]; };
  };
  # An optional unit that is off is masked, as if it were not installed: a
  # switch that turns it off stops it.
  optionalUnit = on: dropin: if on then dropin // { overrideStrategy = "asDropin"; } else { enable = false; };
  # Only the controller starts the mode targets (see the top of this file).
  manualTarget = {
    overrideStrategy = "asDropin";
    unitConfig.X-OnlyManualStart = true;
  };
in
{
  # Switching without sudo (services.modeController.polkit), on its own.
  imports = [ ./polkit.nix ];

  options.services.modeController = {
    enable = lib.mkEnableOption ''
      mode-controller, which switches this machine between the desktop,
      studio-local and compute modes as verified, reversible systemd
      transitions (`mode request MODE`)'';

    package = lib.mkPackageOption pkgs "mode-controller" { };

    defaultMode = lib.mkOption {
      type = lib.types.enum [
        "desktop"
        "studio-local"
        "compute"
      ];
      default = "desktop";
      example = "compute";
      description = ''
        The mode this machine is in after boot, and the desired mode while
        none has been requested; rendered as `default_mode`. At boot
        `mode-controller-boot.service` applies it once (with
        {option}`services.modeController.bootMode` = `"last"`, only when no
        desired mode was kept or it cannot be reached). With `compute` the
        machine boots to `multi-user.target`, so the greeter is never
        brought up only to be torn down. Takes effect at the next boot.
      '';
    };

    bootMode = lib.mkOption {
      type = lib.types.enum [
        "default"
        "last"
      ];
      default = "default";
      example = "last";
      description = ''
        What `mode boot` brings the machine to, rendered as `boot_mode`:
        `"default"`, {option}`services.modeController.defaultMode`;
        `"last"`, the last desired mode (kept in `desired` next to the audit
        log), guards permitting, else `defaultMode`.
      '';
    };

    wayBack.enable = lib.mkEnableOption ''
      the way back from compute: `mode-way-back.service` runs in compute
      mode and turns Enter held at the seat for two seconds (the
      `way_back` settings) into a request for desktop, recorded as `input`'';

    notifications.enable = lib.mkEnableOption ''
      desktop notifications of each switch for the users of the graphical
      session: the user unit `mode-notify.service` runs `mode notify` in
      each graphical session (a switch starting, converging, refused with
      its blocker, or failing)'';

    idle = {
      enable = lib.mkEnableOption ''
        idle automation: `mode-idle-check.timer` runs `mode idle-check`
        every {option}`services.modeController.idle.interval`, which
        requests compute once the desktop has been unattended for
        {option}`services.modeController.idle.thresholdSecs`'';

      thresholdSecs = lib.mkOption {
        type = lib.types.ints.positive;
        default = 1800;
        example = 3600;
        description = ''
          How long the seat must be unattended before compute is requested;
          rendered as `idle.threshold_secs`, so `mode idle-check` run by
          hand uses it too. The other idle settings are in
          {option}`services.modeController.settings` (`idle`).
        '';
      };

      interval = lib.mkOption {
        type = lib.types.nonEmptyStr;
        default = "2min";
        example = "10min";
        description = "How often the check runs: the timer's `OnUnitActiveSec=`, a systemd time span.";
      };
    };

    workloads = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default =
        let
          starts = lib.concatMap (m: lib.toList (m.start or [ ])) (lib.attrValues (cfg.settings.modes or { }));
          profiles = lib.optional (cfg.settings.vllm_profiles or null != null) "vllm@.service";
        in
        lib.unique (lib.filter (u: lib.isString u && lib.hasSuffix ".service" u) (starts ++ profiles));
      defaultText = lib.literalMD "every service in the modes' `start` lists, and `vllm@.service` with vLLM profiles";
      example = [
        "vllm.service"
        "train@.service"
      ];
      description = ''
        Services the controller drains, stops and starts (or templates of
        them): they get `restartIfChanged = false`, so `nixos-rebuild
        switch` never restarts them behind the controller's back, without
        a drain. A changed definition takes effect when the controller next
        starts them.
      '';
    };

    keepRunning = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ "k3s.service" ];
      example = [
        "k3s.service"
        "sshd.service"
      ];
      description = "Units that no transition may ever stop; rendered as `keep_running`.";
    };

    capabilityPlacement = lib.mkOption {
      type = lib.types.submodule {
        freeformType = lib.types.attrsOf lib.types.str;
        options = lib.genAttrs [ "studio" "vllm" "k3s" "training" ] (
          capability:
          lib.mkOption {
            type = lib.types.str;
            default = "local";
            example = "gpu-box.lan";
            description = ''Where ${capability} runs: `"local"` or the name of another host.'';
          }
        );
      };
      default = { };
      example.vllm = "gpu-box.lan";
      description = ''
        Where each capability lives: rendered as `capability_placement` and
        linked to `/run/mode-controller/capability-placement.json`.
      '';
    };

    settings = lib.mkOption {
      type = lib.types.submodule {
        freeformType = settingsFormat.type;
        options.audit_log = lib.mkOption {
          type = lib.types.strMatching "/.*";
          default = defaultAuditLog;
          description = "Where completed transitions are appended, one JSON object a line.";
        };
      };
      default = { };
      example = lib.literalExpression ''
        {
          modes.compute.start = [ "vllm.service" ];
          modes.compute.guards.audio_idle = "hard";
          modes.studio-local.slices."ai.slice" = { CPUQuota = "100%"; MemoryHigh = "8G"; };
          guard_settings.gpu.display_gpu = "0000:01:00.0";
          timeouts.job_secs = 60;
        }
      '';
      description = ''
        The configuration of `mode`, rendered as JSON to
        `/etc/mode-controller/config.json`: any field of the schema
        (`docs/configuration.md`), written as it is in the file. The binary
        merges the file over its built-in defaults, objects key by key and
        lists replacing, so set only what differs, and leave a field out
        (rather than `null`) to keep its default. The module sets `version`,
        `guard_settings.gpu.nvml_library` (where NixOS links the driver's
        libnvidia-ml) and `guard_settings.audio.pw_dump` (PipeWire's
        `pw-dump`) by default; `default_mode`, `keep_running`,
        `capability_placement`, `boot_mode` and `idle.threshold_secs` come
        from their options. {option}`services.modeController.checkConfig`
        checks the file while the system is built.
      '';
    };

    checkConfig = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Check the rendered configuration with `mode config check` while the
        system is built, so a configuration the binary would reject fails
        `nixos-rebuild` instead of the next transition. Skipped when
        cross-compiling.
      '';
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions =
          lib.mapAttrsToList (key: option: {
            assertion = !(cfg.settings ? ${key});
            message = "services.modeController.settings.${key} is set from services.modeController.${option}; set that instead.";
          }) setElsewhere
          ++ [
            {
              assertion = !(cfg.settings.idle or { } ? threshold_secs);
              message = "services.modeController.settings.idle.threshold_secs is set from services.modeController.idle.thresholdSecs; set that instead.";
            }
            {
              # "last" reads the desired mode kept next to the audit log.
              assertion = cfg.bootMode != "last" || !lib.any (d: lib.hasPrefix d "${auditDir}/") [ "/run/" "/tmp/" "/dev/" ];
              message = ''services.modeController: bootMode is "last", but the desired mode is kept next to the audit log, in ${auditDir}/desired, which does not survive a reboot; move settings.audit_log to a persistent directory (the default is ${defaultAuditLog}) or set bootMode = "default".'';
            }
            {
              assertion = cfg.defaultMode != "studio-local" || cfg.capabilityPlacement.studio == "local";
              message = ''services.modeController: defaultMode is "studio-local" but capabilityPlacement.studio is "${cfg.capabilityPlacement.studio}"; the studio-local mode needs the studio on this machine.'';
            }
          ];

        services.modeController.settings = {
          version = lib.mkDefault 1;
          guard_settings.gpu.nvml_library = lib.mkDefault "/run/opengl-driver/lib/libnvidia-ml.so.1";
          # audio_idle reads each user's PipeWire graph with it (the units' PATH has no PipeWire).
          guard_settings.audio.pw_dump = lib.mkDefault (lib.getExe' pkgs.pipewire "pw-dump");
        };

        environment.systemPackages = [ cfg.package ];
        environment.etc."mode-controller/config.json".source = configFile;

        system.checks = lib.optional (cfg.checkConfig && pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform) (
          pkgs.runCommand "mode-controller-config-check" { } ''
            ${lib.getExe cfg.package} config check ${configFile}
            touch $out
          ''
        );

        systemd.tmpfiles.settings."10-mode-controller" =
          lib.genAttrs (lib.unique [ stateDir dataDir auditDir ]) (_: {
            d = {
              mode = "0755";
              user = "root";
              group = "root";
            };
          })
          // {
            "${stateDir}/capability-placement.json"."L+".argument = "${placementFile}";
          };

        # The units: desktop.target, compute.target, the studio overlay, the
        # three budgeted slices, the transition template, the boot policy,
        # the idle check, the way back, the notifications (a user unit).
        systemd.packages = [ cfg.package ];

        systemd.targets.desktop = manualTarget;
        systemd.targets.compute = manualTarget;

        systemd.services."mode-controller@" = controllerDropin;
        systemd.services.mode-controller-boot = controllerDropin // {
          wantedBy = [ "multi-user.target" ];
        };
        # Only the timer starts the idle check; nothing wants the service.
        systemd.services.mode-idle-check = optionalUnit cfg.idle.enable controllerDropin;
        systemd.timers.mode-idle-check = optionalUnit cfg.idle.enable {
          wantedBy = [ "timers.target" ];
          timerConfig.OnUnitActiveSec = [
            ""
            cfg.idle.interval
          ];
        };
        systemd.services.mode-way-back = optionalUnit cfg.wayBack.enable {
          wantedBy = [ "compute.target" ];
          restartIfChanged = false;
        };
        systemd.user.services.mode-notify = optionalUnit cfg.notifications.enable {
          wantedBy = [ "graphical-session.target" ];
        };

        # Booting into compute goes straight to multi-user.target: bringing up
        # the greeter only for the controller to stop it again slows the boot,
        # has the display stack take the GPUs meant for compute, and leaves a
        # window in which someone logs in (a user's graphical session then
        # blocks the switch). Stronger than the display managers' plain
        # definition, weaker than lib.mkForce.
        systemd.defaultUnit = lib.mkIf (cfg.defaultMode == "compute") (lib.mkOverride 90 "multi-user.target");
      }
      {
        # Workloads are never restarted by a switch: a changed vLLM would be
        # stopped mid-request with no drain (see docs/nixos.md).
        systemd.services = lib.listToAttrs (
          map (unit: lib.nameValuePair (lib.removeSuffix ".service" unit) { restartIfChanged = lib.mkDefault false; }) cfg.workloads
        );
      }
    ]
  );

  meta.maintainers = [ ];
}
