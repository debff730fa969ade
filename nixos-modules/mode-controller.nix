# services.modeController: the NixOS side of mode-controller. It declares the
# units the controller switches between (desktop.target, compute.target, the
# studio overlay, the three budgeted slices), the transition template
# `mode-controller@.service`, the boot normalization to `defaultMode`, and
# renders /etc/mode-controller/config.json in the schema `mode` reads.
#
# How this module keeps `nixos-rebuild switch` from changing the mode.
# switch-to-configuration (nixpkgs: pkgs/by-name/sw/switch-to-configuration-ng)
# only acts on units that are active; it starts every active target again,
# which starts that target's Wants= again, unless the target has
# `X-OnlyManualStart` (or RefuseManualStart); and it skips a changed active
# service with `X-RestartIfChanged=false`. So:
#
# - desktop.target and compute.target carry `X-OnlyManualStart=true`, so
#   switch-to-configuration never starts them; only the controller does. A
#   switch in compute mode therefore does not start compute.target's wants
#   behind the controller's back, and nothing starts desktop.target (which
#   would stop compute.target through its Conflicts=).
# - graphical.target and the display manager are inactive in compute mode, so
#   switch-to-configuration leaves them alone; NixOS's display managers also
#   set `restartIfChanged = false`.
# - The boot normalization (mode-controller-boot.service) is wanted by
#   multi-user.target, which switch-to-configuration re-starts. It stays
#   active after boot (RemainAfterExit), is never restarted when changed
#   (X-RestartIfChanged=false) and runs only while no transition has been
#   recorded in this boot (ConditionPathExists=!last-transition.json), so a
#   switch never runs it again.
# - `mode-controller@.service` has `restartIfChanged = false`: a switch does
#   not kill a transition in flight.
# - Slice budgets are set at run time over D-Bus (runtime drop-ins under
#   /run/systemd/system.control), which a daemon-reload keeps.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.modeController;
  settingsFormat = pkgs.formats.json { };
  exe = lib.getExe cfg.package;

  modeNames = [
    "desktop"
    "studio-local"
    "compute"
  ];

  # The guards built into `mode` (contract.md, "Built-in guard names").
  builtinGuards = [
    "graphical_session_absent"
    "gpu_display_released"
    "audio_idle"
    "memory_headroom"
    "cpu_load_safe"
    "user_jobs_safe"
    "vllm_drainable"
    "target_reachable"
    "studio_capability_local"
  ];

  stateDir = "/run/mode-controller";
  dataDir = "/var/lib/mode-controller";
  defaultAuditLog = "${dataDir}/transitions.jsonl";
  docsUrl = "https://github.com/mode-controller/mode-controller/blob/main/docs/nixos.md";

  # ------------------------------------------------------------- settings
  # One slice's budget, in systemd's own property names and value syntax.
  sliceBudgetType = lib.types.submodule {
    options = {
      CPUWeight = lib.mkOption {
        type = lib.types.nullOr (lib.types.ints.between 1 10000);
        default = null;
        example = 1000;
        description = "`CPUWeight=` of the slice in this mode (1–10000; systemd's default is 100).";
      };
      IOWeight = lib.mkOption {
        type = lib.types.nullOr (lib.types.ints.between 1 10000);
        default = null;
        example = 1000;
        description = "`IOWeight=` of the slice in this mode (1–10000).";
      };
      CPUQuota = lib.mkOption {
        type = lib.types.nullOr (lib.types.strMatching "[1-9][0-9]*%");
        default = null;
        example = "200%";
        description = ''`CPUQuota=` of the slice in this mode; `"200%"` is two full CPUs.'';
      };
      MemoryHigh = lib.mkOption {
        type = lib.types.nullOr (lib.types.either lib.types.ints.unsigned (lib.types.strMatching "[0-9]+[KMGT]?|infinity"));
        default = null;
        example = "8G";
        description = ''`MemoryHigh=` of the slice in this mode: bytes, a K/M/G/T suffix, or `"infinity"`.'';
      };
      MemoryMax = lib.mkOption {
        type = lib.types.nullOr (lib.types.either lib.types.ints.unsigned (lib.types.strMatching "[0-9]+[KMGT]?|infinity"));
        default = null;
        example = "infinity";
        description = ''`MemoryMax=` of the slice in this mode: bytes, a K/M/G/T suffix, or `"infinity"`.'';
      };
      AllowedCPUs = lib.mkOption {
        type = lib.types.nullOr (lib.types.strMatching "[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*");
        default = null;
        example = "0-3";
        description = ''`AllowedCPUs=` of the slice in this mode, such as `"0-3,8"`.'';
      };
    };
  };

  # What entering one mode means in units. Every field left unset keeps the
  # binary's built-in default; the file is merged over those defaults (objects
  # key by key, lists replace).
  modeType = lib.types.submodule {
    freeformType = settingsFormat.type;
    options = {
      target = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "compute.target";
        description = ''
          The target that marks this mode, started in `replace` mode.
          `null` keeps the built-in default (`desktop.target` for desktop and
          studio-local, `compute.target` for compute).
        '';
      };
      stop = lib.mkOption {
        type = lib.types.nullOr (lib.types.listOf lib.types.str);
        default = null;
        example = [
          "desktop.target"
          "graphical.target"
          "display-manager.service"
        ];
        description = ''
          Units stopped before the target is started; they must be inactive
          in this mode. Replaces the built-in list when set (compute stops
          `desktop.target`, `graphical.target`, `display-manager.service`;
          desktop and studio-local stop `compute.target`). Units in
          {option}`services.modeController.keepRunning` may not appear here.
        '';
      };
      start = lib.mkOption {
        type = lib.types.nullOr (lib.types.listOf lib.types.str);
        default = null;
        example = [ "vllm.service" ];
        description = ''
          Units started after the target; each must end active, or the
          transition fails and is rolled back. Replaces the built-in list
          when set (desktop and studio-local start `graphical.target` and
          `display-manager.service`).
        '';
      };
      overlay = lib.mkOption {
        type = lib.types.nullOr (lib.types.listOf lib.types.str);
        default = null;
        example = [
          "studio-local-policy.service"
          "audio-priority.service"
        ];
        description = ''
          Overlay units, started last and stopped first. Replaces the
          built-in list when set (studio-local: the studio overlay).
        '';
      };
      guards = lib.mkOption {
        type = lib.types.attrsOf (
          lib.types.enum [
            "hard"
            "soft"
            "off"
          ]
        );
        default = { };
        example = {
          audio_idle = "hard";
          cpu_load_safe = "off";
        };
        description = ''
          Severity of each guard evaluated before entering this mode: `hard`
          blocks the transition, `soft` warns and is recorded, `off` skips
          the guard. Merged over the built-in severities guard by guard.
          Known guards: ${lib.concatMapStringsSep ", " (g: "`${g}`") builtinGuards}.
        '';
      };
      slices = lib.mkOption {
        type = lib.types.attrsOf sliceBudgetType;
        default = { };
        example = {
          "ai.slice" = {
            CPUWeight = 1000;
            CPUQuota = "1200%";
            MemoryHigh = "96G";
          };
        };
        description = ''
          Resource budgets set on slices (at run time, over D-Bus) when this
          mode is entered, in systemd's property names. Merged over the
          built-in budgets slice by slice and property by property.
        '';
      };
    };
  };

  # Empty objects and nulls mean "keep the built-in default"; leave them out
  # of the file so it holds exactly what this configuration decides.
  prune =
    v:
    if builtins.isAttrs v && !lib.isDerivation v then
      lib.filterAttrs (_: x: x != null && x != { }) (lib.mapAttrs (_: prune) v)
    else
      v;

  renderedSettings = prune (
    cfg.settings
    // {
      default_mode = cfg.defaultMode;
      keep_running = cfg.keepRunning;
      capability_placement = cfg.capabilityPlacement;
    }
  );

  configFile = settingsFormat.generate "mode-controller-config.json" renderedSettings;
  placementFile = settingsFormat.generate "mode-controller-capability-placement.json" cfg.capabilityPlacement;
  auditLog = renderedSettings.audit_log;

  userModes = cfg.settings.modes;

  # The plain unit's hardening (pkgs/systemd/mode-controller@.service): the
  # controller needs the system bus, read access to every process's /proc (to
  # name GPU and audio holders), its state and audit directories, and nothing
  # else. ProtectKernelTunables is left out as there: it adds about 20 ms to
  # every switch (remounting dozens of /proc and /sys paths) to protect paths
  # the controller never writes. PrivateTmp (nothing uses /tmp),
  # ProtectKernelModules and ProtectKernelLogs (CAP_SYS_MODULE and CAP_SYSLOG
  # are outside the bounding set already) are left out for the same reason:
  # about 8 ms of every switch for no protection gained.
  controllerServiceConfig = {
    Type = "oneshot";
    TimeoutStartSec = "30min";
    RuntimeDirectory = "mode-controller";
    RuntimeDirectoryMode = "0755";
    RuntimeDirectoryPreserve = true;
    StateDirectory = "mode-controller";
    StateDirectoryMode = "0755";
    UMask = "0022";
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    # NVML opens /dev/nvidia*; the holder scan reads device links in /proc.
    PrivateDevices = false;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictAddressFamilies = [
      "AF_UNIX"
      "AF_INET"
      "AF_INET6"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    SystemCallArchitectures = "native";
    # pidfd_getfd (in @debug) lets the GPU guard read other processes' fds;
    # anything else outside the filter fails with EPERM instead of killing
    # the controller mid-transition.
    SystemCallFilter = [
      "@system-service"
      "pidfd_getfd"
    ];
    SystemCallErrorNumber = "EPERM";
    CapabilityBoundingSet = [
      "CAP_SYS_PTRACE"
      "CAP_DAC_READ_SEARCH"
      "CAP_KILL"
    ];
  }
  # An audit log outside the StateDirectory must stay writable under
  # ProtectSystem=strict.
  // lib.optionalAttrs (dirOf auditLog != dataDir) {
    ReadWritePaths = [ (dirOf auditLog) ];
  };

  # The studio overlay: oneshots that stay active while the studio is on.
  # Their ExecStart is a list, so a configuration adds its own tuning
  # commands next to the no-op (see docs/nixos.md).
  overlayService = description: extraAfter: {
    inherit description;
    documentation = [ "man:mode(1)" ];
    partOf = [ "desktop.target" ];
    after = extraAfter;
    conflicts = [ "compute.target" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = [ "${pkgs.coreutils}/bin/true" ];
    };
  };

  budgetedSlice = description: {
    inherit description;
    documentation = [ "man:mode(1)" ];
    before = [ "slices.target" ];
  };
in
{
  options.services.modeController = {
    enable = lib.mkEnableOption ''
      mode-controller, which switches this machine between the desktop,
      studio-local and compute modes as verified, reversible systemd
      transitions (`mode request MODE`)'';

    package = lib.mkPackageOption pkgs "mode-controller" { };

    defaultMode = lib.mkOption {
      type = lib.types.enum modeNames;
      default = "desktop";
      example = "compute";
      description = ''
        The mode this machine is in after boot, and the desired mode while
        none has been requested. At boot `mode-controller-boot.service`
        applies it once (before that, the machine boots to the graphical
        target, or to `multi-user.target` when this is `compute`, so the
        greeter is never brought up only to be torn down). Changing it takes
        effect at the next boot; `nixos-rebuild switch` does not change the
        current mode.
      '';
    };

    keepRunning = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ "k3s.service" ];
      example = [
        "k3s.service"
        "sshd.service"
      ];
      description = ''
        Units that no transition may ever stop. A mode whose `stop` list
        names one of them is rejected.
      '';
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
      example = {
        vllm = "gpu-box.lan";
        training = "gpu-box.lan";
      };
      description = ''
        Where each capability lives. Written to
        `/run/mode-controller/capability-placement.json` (a link made by
        systemd-tmpfiles) and into the configuration file; the
        `studio_capability_local` guard refuses the studio-local mode while
        the studio is placed elsewhere.
      '';
    };

    settings = lib.mkOption {
      type = lib.types.submodule {
        freeformType = settingsFormat.type;
        options = {
          version = lib.mkOption {
            type = lib.types.enum [ 1 ];
            default = 1;
            description = "Schema version of the configuration file. Version 1 is the only one.";
          };
          modes = lib.mkOption {
            type = lib.types.attrsOf modeType;
            default = { };
            example = lib.literalExpression ''
              {
                compute.start = [ "vllm.service" ];
                compute.guards.audio_idle = "hard";
                compute.slices."ai.slice" = { CPUWeight = 1000; MemoryHigh = "96G"; };
              }
            '';
            description = ''
              Per-mode units, guards and slice budgets, keyed by mode:
              `desktop`, `studio-local`, `compute`. Whatever is left unset
              keeps the built-in default (`mode explain MODE` shows the
              result).
            '';
          };
          audit_log = lib.mkOption {
            type = lib.types.strMatching "/.*";
            default = defaultAuditLog;
            description = "Where completed transitions are appended, one JSON object a line.";
          };
          timeouts = {
            job_secs = lib.mkOption {
              type = lib.types.nullOr lib.types.ints.positive;
              default = null;
              example = 60;
              description = "How long one systemd job (a start or stop of a unit) may take; `null` keeps the built-in 120 seconds.";
            };
            request_secs = lib.mkOption {
              type = lib.types.nullOr lib.types.ints.positive;
              default = null;
              example = 300;
              description = "How long `mode request` waits for a transition by default; `null` keeps the built-in 900 seconds.";
            };
          };
          guard_settings = lib.mkOption {
            type = lib.types.submodule { freeformType = settingsFormat.type; };
            default = { };
            example = lib.literalExpression ''
              {
                gpu.display_gpu = "0000:01:00.0";
                gpu.allow = [ "nvidia-persistenced" "nvidia-powerd" ];
                gpu.nvml_library = "/run/opengl-driver/lib/libnvidia-ml.so.1";
                memory.min_available_mib = 8192;
                vllm.endpoint = "http://127.0.0.1:8000";
              }
            '';
            description = ''
              Guard thresholds and facts: the display GPU, the allow-list of
              GPU holders, the NVML library path (the binary's default is
              `/run/opengl-driver/lib/libnvidia-ml.so.1`, where NixOS puts
              the driver's libraries), memory and CPU pressure limits, the
              vLLM endpoint. Freeform: written to the file as given, because
              the shape of this section is not final yet (the example shows
              the current draft); `mode config check` names any field the
              installed binary does not know. Left out of the file while
              empty.
            '';
          };
        };
      };
      default = { };
      example = lib.literalExpression ''
        {
          modes.compute.start = [ "vllm.service" ];
          modes.studio-local.slices."ai.slice" = { CPUQuota = "100%"; MemoryHigh = "8G"; };
          timeouts.job_secs = 60;
        }
      '';
      description = ''
        The configuration of `mode`, rendered to
        `/etc/mode-controller/config.json` (version 1 of the schema; see
        `mode config check`). The binary merges the file over its built-in
        defaults, objects key by key, so only what differs needs to be set.
        `default_mode`, `keep_running` and `capability_placement` come from
        {option}`services.modeController.defaultMode`,
        {option}`services.modeController.keepRunning` and
        {option}`services.modeController.capabilityPlacement`.
        The file rendered for the example in `docs/nixos.md` is kept next to
        this module as `example-config.json`.
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

  config = lib.mkIf cfg.enable {
    assertions =
      let
        at = mode: field: "services.modeController.settings.modes.${mode}.${field}";
        # External guards (executables) report under the names they are given.
        knownGuards = builtinGuards ++ map (e: e.name or "") (cfg.settings.guard_settings.external or [ ]);
        perMode =
          mode: m:
          [
            {
              assertion = lib.elem mode modeNames;
              message = "services.modeController.settings.modes.${mode}: unknown mode; the modes are ${lib.concatStringsSep ", " modeNames}.";
            }
            {
              assertion = m.target == null || lib.hasSuffix ".target" m.target;
              message = "${at mode "target"}: '${toString m.target}' is not a .target unit.";
            }
          ]
          ++ map (g: {
            assertion = lib.elem g knownGuards;
            message = "${at mode "guards"}.${g}: unknown guard; the built-in guards are ${lib.concatStringsSep ", " builtinGuards}, and external guards are named in settings.guard_settings.external.";
          }) (lib.attrNames m.guards)
          ++ map (s: {
            assertion = lib.hasSuffix ".slice" s;
            message = ''${at mode "slices"}."${s}": budgets apply to .slice units only.'';
          }) (lib.attrNames m.slices)
          ++ map (u: {
            assertion = !(lib.elem u cfg.keepRunning);
            message = "${at mode "stop"}: ${u} is in services.modeController.keepRunning, and a transition never stops those; remove it from one of the two.";
          }) (lib.optionals (m.stop != null) m.stop);
        setElsewhere = {
          default_mode = "defaultMode";
          keep_running = "keepRunning";
          capability_placement = "capabilityPlacement";
        };
      in
      lib.concatLists (lib.mapAttrsToList perMode userModes)
      ++ lib.mapAttrsToList (key: option: {
        assertion = !(cfg.settings ? ${key});
        message = "services.modeController.settings.${key} is set from services.modeController.${option}; set that instead.";
      }) setElsewhere
      ++ [
        {
          assertion = cfg.defaultMode != "studio-local" || cfg.capabilityPlacement.studio == "local";
          message = ''services.modeController: defaultMode is "studio-local" but capabilityPlacement.studio is "${cfg.capabilityPlacement.studio}"; the studio-local mode needs the studio on this machine (set capabilityPlacement.studio = "local" or choose another defaultMode).'';
        }
      ];

    environment.systemPackages = [ cfg.package ];

    environment.etc."mode-controller/config.json".source = configFile;

    system.checks = lib.optional (cfg.checkConfig && pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform) (
      pkgs.runCommand "mode-controller-config-check" { } ''
        ${exe} config check ${configFile}
        touch $out
      ''
    );

    systemd.tmpfiles.settings."10-mode-controller" =
      {
        ${stateDir}.d = {
          mode = "0755";
          user = "root";
          group = "root";
        };
        ${dataDir}.d = {
          mode = "0755";
          user = "root";
          group = "root";
        };
        "${stateDir}/capability-placement.json"."L+".argument = "${placementFile}";
      }
      // lib.optionalAttrs (dirOf auditLog != dataDir) {
        ${dirOf auditLog}.d = {
          mode = "0755";
          user = "root";
          group = "root";
        };
      };

    # Only the controller starts the mode targets (see the top of this file).
    systemd.targets.desktop = {
      description = "Desktop mode";
      documentation = [ "man:mode(1)" ];
      wants = [ "graphical.target" ];
      after = [ "graphical.target" ];
      conflicts = [ "compute.target" ];
      unitConfig = {
        AllowIsolate = true;
        X-OnlyManualStart = true;
      };
    };

    # Compute workloads join with `wantedBy = [ "compute.target" ]` and
    # `partOf = [ "compute.target" ]`: they start with it and stop when the
    # machine leaves compute.
    systemd.targets.compute = {
      description = "Compute mode";
      documentation = [ "man:mode(1)" ];
      conflicts = [
        "graphical.target"
        "desktop.target"
        "display-manager.service"
      ];
      after = [
        "graphical.target"
        "desktop.target"
        "display-manager.service"
      ];
      unitConfig.X-OnlyManualStart = true;
    };

    systemd.services.studio-local-policy = overlayService "Studio mode policy (low-latency audio protected)" [
      "desktop.target"
    ];
    systemd.services.audio-priority = overlayService "Studio mode audio priority" [
      "studio-local-policy.service"
    ];

    # Budgets change per mode at run time; nothing is fixed here.
    systemd.slices.interactive = budgetedSlice "Interactive work (desktop session, studio)";
    systemd.slices.ai = budgetedSlice "AI workloads (vLLM, training jobs)";
    systemd.slices.platform = budgetedSlice "Platform services (k3s)";

    # One transition: `mode request MODE` starts `mode-controller@MODE.service`
    # over D-Bus, so the switch survives the GUI and the asking terminal
    # being torn down half-way.
    systemd.services."mode-controller@" = {
      description = "Switch this machine to %i mode";
      documentation = [
        "man:mode(1)"
        docsUrl
      ];
      after = [ "dbus.service" ];
      # An isolate elsewhere must not kill a transition in flight.
      unitConfig.IgnoreOnIsolate = true;
      # Nor may nixos-rebuild switch.
      restartIfChanged = false;
      environment.MODE_REQUESTED_BY = "unit";
      serviceConfig = controllerServiceConfig // {
        ExecStart = "${exe} apply %i";
      };
    };

    # The boot policy: normalize to defaultMode once per boot (see the top of
    # this file for why it cannot run again on a switch).
    systemd.services.mode-controller-boot = {
      description = "Bring this machine to its default mode (${cfg.defaultMode})";
      documentation = [
        "man:mode(1)"
        docsUrl
      ];
      wantedBy = [ "multi-user.target" ];
      # Ordered after multi-user.target, which wants it: without default
      # dependencies the target is not ordered after it, so a desktop boot
      # can wait for graphical.target here without a cycle.
      after = [
        "multi-user.target"
        "dbus.service"
      ];
      before = [ "shutdown.target" ];
      conflicts = [ "shutdown.target" ];
      unitConfig = {
        DefaultDependencies = false;
        ConditionPathExists = "!${stateDir}/last-transition.json";
      };
      restartIfChanged = false;
      environment.MODE_REQUESTED_BY = "boot";
      serviceConfig = controllerServiceConfig // {
        RemainAfterExit = true;
        ExecStart = "${exe} apply ${cfg.defaultMode}";
      };
    };

    # Booting into compute goes straight to multi-user.target: bringing up
    # the greeter only for the controller to stop it again slows the boot,
    # has the display stack take the GPUs meant for compute, and leaves a
    # window in which someone logs in (a user's graphical session then
    # blocks the switch). Stronger than the display managers' plain
    # definition, weaker than lib.mkForce.
    systemd.defaultUnit = lib.mkIf (cfg.defaultMode == "compute") (lib.mkOverride 90 "multi-user.target");
  };

  meta.maintainers = [ ];
}
