# services.modeController: the NixOS side of mode-controller. It declares the
# units the controller switches between (desktop.target, compute.target, the
# studio overlay, the three budgeted slices), the transition template
# `mode-controller@.service`, the boot policy (`mode boot`: `defaultMode`, or
# with `bootMode = "last"` the last desired mode), the optional idle check
# (`mode idle-check` on a timer), and renders /etc/mode-controller/config.json
# in the schema `mode` reads.
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
# - The boot policy (mode-controller-boot.service) is wanted by
#   multi-user.target, which switch-to-configuration re-starts. It stays
#   active after boot (RemainAfterExit), is never restarted when changed
#   (X-RestartIfChanged=false) and runs only while no transition has been
#   recorded in this boot (ConditionPathExists=!last-transition.json), so a
#   switch never runs it again.
# - `mode-controller@.service` and `mode-idle-check.service` have
#   `restartIfChanged = false`: a switch does not kill a transition in
#   flight, nor an idle check waiting for the compute request it made.
# - The workloads (`workloads`: the services of the modes' start lists, the
#   vLLM profile template) get `restartIfChanged = false`: a switch in a mode
#   that runs them does not restart them with no drain.
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

  # How the work running in compute is drained when a mode is entered from
  # compute (src/config/drain.rs). Each field left `null` keeps the built-in
  # value; the binary merges the rest over it.
  drainType = lib.types.submodule {
    options = {
      jobs = lib.mkOption {
        type = lib.types.nullOr (
          lib.types.enum [
            "refuse"
            "checkpoint"
            "wait"
          ]
        );
        default = null;
        example = "wait";
        description = ''
          What happens to the user jobs in `ai.slice` (every unit there but
          `guard_settings.ai_slice.managed` and vLLM): `"checkpoint"` (the
          built-in) sends them `checkpoint_signal`, gives them `grace_secs`
          to exit, then stops their units; `"wait"` waits up to `wait_secs`
          for them to end and fails the transition (staying in compute) if
          they do not; `"refuse"` makes `user_jobs_safe` a hard guard.
        '';
      };
      checkpoint_signal = lib.mkOption {
        type = lib.types.nullOr (
          lib.types.enum [
            "SIGTERM"
            "SIGINT"
            "SIGUSR1"
            "SIGUSR2"
            "SIGHUP"
          ]
        );
        default = null;
        example = "SIGUSR1";
        description = ''
          The signal `jobs = "checkpoint"` sends to each job's main process
          (built-in: `SIGTERM`; `SIGUSR1` for jobs written for Slurm-style
          requeue).
        '';
      };
      grace_secs = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.unsigned;
        default = null;
        example = 300;
        description = "How long the signalled jobs get, together, to checkpoint and exit before their units are stopped (built-in: 120).";
      };
      wait_secs = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.unsigned;
        default = null;
        example = 7200;
        description = ''How long `jobs = "wait"` waits for the jobs to end (built-in: 3600).'';
      };
      vllm_timeout_secs = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.unsigned;
        default = null;
        example = 300;
        description = ''
          How long vLLM may take, paused, to finish its running requests
          (and those queued before the pause) before it is stopped anyway;
          the timeout is recorded (built-in: 120).
        '';
      };
      vllm_unreadable = lib.mkOption {
        type = lib.types.nullOr (lib.types.enum [ "rollback" "stop" ]);
        default = null;
        example = "stop";
        description = ''
          When vLLM's queue cannot be read during the drain (a `/metrics`
          scrape that fails or times out): `"rollback"` fails the step, rolls
          back and resumes vLLM; `"stop"` stops it anyway with a warning in
          the record (built-in: `"rollback"`).
        '';
      };
    };
  };

  # A share of a GPU's memory, as vLLM's --gpu-memory-utilization takes it.
  memoryShareType = lib.types.addCheck lib.types.number (x: x > 0 && x <= 1) // {
    description = "number above 0 and at most 1";
  };

  vllmProfileType =
    profile: enabled: memoryFraction:
    lib.types.submodule {
      options = {
        enabled = lib.mkOption {
          type = lib.types.bool;
          default = enabled;
          description = "Whether `vllm@${profile}.service` runs in ${profile} mode.";
        };
        memory_fraction = lib.mkOption {
          type = memoryShareType;
          default = memoryFraction;
          example = 0.8;
          description = ''
            The share of each of its GPUs' memory that `vllm@${profile}.service`
            may use, written as `VLLM_GPU_MEMORY_UTILIZATION` to
            `/run/mode-controller/vllm-${profile}.env`.
          '';
        };
      };
    };

  # Opt-in vLLM profiles and GPU placement (src/config/vllm.rs).
  vllmProfilesType = lib.types.submodule {
    options = {
      gpus = lib.mkOption {
        type = lib.types.nonEmptyListOf lib.types.str;
        example = [
          "0000:01:00.0"
          "0000:41:00.0"
        ];
        description = ''
          Every GPU, all by PCI address or all by UUID, in any order: the
          controller writes PCI-ordered indices with
          `CUDA_DEVICE_ORDER=PCI_BUS_ID`, or the UUIDs, so CUDA and NVML
          agree. The one named by `guard_settings.gpu.display_gpu` drives
          the display.
        '';
      };
      compute = lib.mkOption {
        type = vllmProfileType "compute" true 0.9;
        default = { };
        description = "The compute profile: `vllm@compute.service` on every GPU in `gpus`, in compute mode.";
      };
      desktop = lib.mkOption {
        type = vllmProfileType "desktop" false 0.5;
        default = { };
        description = ''
          The desktop profile: `vllm@desktop.service` on every GPU but the
          display one, in desktop mode. Off unless enabled; needs
          `guard_settings.gpu.display_gpu` and a second GPU.
        '';
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
      drain = lib.mkOption {
        type = drainType;
        default = { };
        example = {
          jobs = "checkpoint";
          checkpoint_signal = "SIGUSR1";
          grace_secs = 300;
        };
        description = ''
          How vLLM and the user jobs in `ai.slice` are drained when this
          mode is entered from compute, before anything stops. Merged over
          the built-in ladder field by field. Only leaving compute drains,
          so `modes.compute.drain` is never used.
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

  # `idle` is left out of the pruning: there `input_devices = null` means
  # "leave input devices out", not "keep the built-in /dev/input" (the only
  # field of the schema whose null differs from its default).
  renderedSettings =
    prune (
      removeAttrs cfg.settings [ "idle" ]
      // {
        default_mode = cfg.defaultMode;
        keep_running = cfg.keepRunning;
        capability_placement = cfg.capabilityPlacement;
        boot_mode = cfg.bootMode;
        # audio_idle reads each user's PipeWire graph with this pw-dump
        # (the service's PATH has no PipeWire); a setting of its own wins.
        guard_settings = lib.recursiveUpdate {
          audio.pw_dump = "${pkgs.pipewire}/bin/pw-dump";
        } (cfg.settings.guard_settings or { });
      }
    )
    // {
      idle = cfg.settings.idle // {
        threshold_secs = cfg.idle.thresholdSecs;
      };
    };

  configFile = settingsFormat.generate "mode-controller-config.json" renderedSettings;
  placementFile = settingsFormat.generate "mode-controller-capability-placement.json" cfg.capabilityPlacement;
  auditLog = renderedSettings.audit_log;

  userModes = cfg.settings.modes;

  # The GPU holders the binary allows by default (guards/src/settings.rs).
  builtinGpuAllow = [
    "nvidia-persistenced"
    "nvidia-powerd"
    "nv-hostengine"
    "nvidia-device-plugin"
  ];

  # GPUs as the binary compares them: case and the 0000: domain ignored.
  sameGpu = a: b: lib.removePrefix "0000:" (lib.toLower a) == lib.removePrefix "0000:" (lib.toLower b);

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
    # Home directories stay hidden; /run/user comes back read-only, because
    # audio_idle connects to each user's PipeWire socket
    # (/run/user/UID/pipewire-0) to read its graph (ProtectHome = true hides
    # it; connecting to a socket on a read-only mount works).
    ProtectHome = "tmpfs";
    BindReadOnlyPaths = [ "-/run/user" ];
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
  # Switching without sudo (services.modeController.polkit), on its own.
  imports = [ ./polkit.nix ];

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
        applies it once (with {option}`services.modeController.bootMode` =
        `"last"`, only when no desired mode was kept or it cannot be
        reached). Before that, the machine boots to the graphical target, or
        to `multi-user.target` when this is `compute`, so the greeter is
        never brought up only to be torn down. Changing it takes effect at
        the next boot; `nixos-rebuild switch` does not change the current
        mode.
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
        What `mode boot` (run once per boot by `mode-controller-boot.service`)
        brings the machine to. `"default"`: {option}`services.modeController.defaultMode`,
        whatever was desired before the reboot. `"last"`: the last desired
        mode, guards permitting. Every time the desired mode is written
        (`mode request`, `mode apply`, a successful idle promotion) it is
        also kept in `desired` next to the audit log
        (`/var/lib/mode-controller/desired`), which survives the reboot;
        when nothing was kept, it is unreadable, or the switch to it is
        refused or fails, boot applies `defaultMode` instead. The boot
        itself still goes through the target chosen by `defaultMode`, so a
        desktop machine kept in compute shows its greeter briefly before
        the controller stops it.
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
        {option}`services.modeController.idle.thresholdSecs` (nobody active
        at the seat, no input, no audio, a quiet CPU, no guard blocking)'';

      thresholdSecs = lib.mkOption {
        type = lib.types.ints.positive;
        default = 1800;
        example = 3600;
        description = ''
          How long the seat must be unattended before compute is requested;
          rendered as `idle.threshold_secs`, so `mode idle-check` run by
          hand uses it too. The other idle settings (`input_devices`,
          `max_cpu_pressure`) are in
          {option}`services.modeController.settings.idle`.
        '';
      };

      interval = lib.mkOption {
        type = lib.types.nonEmptyStr;
        default = "2min";
        example = "10min";
        description = ''
          How often the check runs: the timer's `OnUnitActiveSec=`, a
          systemd time span. The first check runs five minutes after boot.
        '';
      };
    };

    workloads = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default =
        let
          named = lib.concatMap (m: m.start or [ ]) (lib.attrValues (cfg.settings.modes or { }));
          profiles = lib.optional (cfg.settings.vllm_profiles or null != null) "vllm@.service";
        in
        lib.unique (lib.filter (u: lib.hasSuffix ".service" u) (named ++ profiles));
      defaultText = lib.literalMD "every service in the modes' `start` lists, and `vllm@.service` with vLLM profiles";
      example = [
        "vllm.service"
        "train@.service"
      ];
      description = ''
        Services the controller drains, stops and starts (or templates of
        them): they get `restartIfChanged = false`, so `nixos-rebuild
        switch` in a mode that runs them never restarts them behind the
        controller's back, without a drain. A changed definition takes
        effect when the controller next starts them (leave the mode and
        come back: `mode request desktop`, then `mode request compute`).
        Each must be defined in `systemd.services` (or a package's unit).
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
            type = lib.types.submodule {
              freeformType = settingsFormat.type;
              options.gpu = lib.mkOption {
                type = lib.types.submodule {
                  freeformType = settingsFormat.type;
                  options = {
                    display_gpu = lib.mkOption {
                      type = lib.types.nullOr (
                        lib.types.strMatching "([0-9a-fA-F]{1,8}:)?[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}\\.[0-7]|(GPU|MIG|gpu|mig)-.+"
                      );
                      default = null;
                      example = "0000:01:00.0";
                      description = ''
                        The GPU that drives the display, which compute must
                        find released: a PCI address (`0000:01:00.0`, as
                        `lspci -D` prints it) or an NVML UUID (`GPU-…`).
                        `null`: the GPU the firmware booted the display on
                        (`boot_vga`), or the only GPU there is.
                      '';
                    };
                    allow = lib.mkOption {
                      type = lib.types.nullOr (lib.types.listOf lib.types.str);
                      default = null;
                      example = builtinGpuAllow ++ [ "sunshine" ];
                      description = ''
                        Processes allowed to hold the display GPU while the
                        machine enters compute, matched against the command
                        name, the executable's file name and `argv[0]`'s.
                        `null` keeps the built-in list
                        (${lib.concatMapStringsSep ", " (p: "`${p}`") builtinGpuAllow}); a
                        list replaces it, so repeat the built-in names you
                        still want.
                      '';
                    };
                    nvml_library = lib.mkOption {
                      type = lib.types.strMatching "/.+";
                      default = "/run/opengl-driver/lib/libnvidia-ml.so.1";
                      example = lib.literalExpression ''"''${config.hardware.nvidia.package}/lib/libnvidia-ml.so.1"'';
                      description = ''
                        Where libnvidia-ml is, for the GPU guard's NVML
                        queries. The default is where NixOS links the
                        driver's libraries ({option}`hardware.graphics.enable`).
                        Without NVML the guard decides from `/proc` alone
                        and says so.
                      '';
                    };
                  };
                };
                default = { };
                description = ''
                  Settings of the `gpu_display_released` guard. Besides the
                  options here, the binary reads `require_nvml`,
                  `release_timeout_secs`, `poll_interval_ms`, `fd_scan` and
                  `extra_devices` (freeform; see `docs/guards.md`).
                '';
              };
            };
            default = { };
            example = lib.literalExpression ''
              {
                gpu.display_gpu = "0000:01:00.0";
                gpu.allow = [ "nvidia-persistenced" "nvidia-powerd" "sunshine" ];
                memory.min_available_mib = 8192;
                vllm.endpoint = "http://127.0.0.1:8000";
              }
            '';
            description = ''
              Guard thresholds and facts: the display GPU, the allow-list of
              GPU holders and the NVML library (typed, under `gpu`), and
              freeform the rest as `docs/guards.md` describes it: memory and
              CPU pressure limits (`memory`, `cpu`), the AI slice
              (`ai_slice`), the vLLM endpoint and unit (`vllm`), external
              guards (`external`). `mode config check` names any field the
              installed binary does not know.
            '';
          };
          vllm_profiles = lib.mkOption {
            type = lib.types.nullOr vllmProfilesType;
            default = null;
            example = lib.literalExpression ''
              {
                gpus = [ "0000:01:00.0" "0000:41:00.0" ];
                compute.memory_fraction = 0.9;
                desktop = { enabled = true; memory_fraction = 0.5; };
              }
            '';
            description = ''
              vLLM profiles and GPU placement. `null` (the default): vLLM is
              a plain compute workload (`guard_settings.vllm.unit`, wanted
              by `compute.target`). With profiles the controller starts and
              stops `vllm@compute.service` and `vllm@desktop.service` itself
              and writes each one's `CUDA_DEVICE_ORDER`/`CUDA_VISIBLE_DEVICES` and memory share
              to `/run/mode-controller/vllm-PROFILE.env`; the configuration
              declares the `vllm@` template that reads it (see
              `docs/nixos.md`).
            '';
          };
          idle = lib.mkOption {
            type = lib.types.submodule { freeformType = settingsFormat.type; };
            default = { };
            example = {
              input_devices = null;
              max_cpu_pressure = 60;
            };
            description = ''
              Idle settings besides the threshold (which is
              {option}`services.modeController.idle.thresholdSecs`):
              `input_devices`, the directory whose `event*` nodes' times
              count as input (built-in `"/dev/input"`; `null` leaves input
              out), and `max_cpu_pressure`, the CPU pressure (`some avg60`,
              percent) above which the desktop counts as still working
              (built-in 40). Written as given, nulls included.
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
        `default_mode`, `keep_running`, `capability_placement`, `boot_mode`
        and `idle.threshold_secs` come from
        {option}`services.modeController.defaultMode`,
        {option}`services.modeController.keepRunning`,
        {option}`services.modeController.capabilityPlacement`,
        {option}`services.modeController.bootMode` and
        {option}`services.modeController.idle.thresholdSecs`.
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

  config = lib.mkIf cfg.enable (lib.mkMerge [ {
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
          boot_mode = "bootMode";
        };
        profiles = cfg.settings.vllm_profiles;
        displayGpu = cfg.settings.guard_settings.gpu.display_gpu;
        keptDesiredDir = dirOf auditLog;
      in
      lib.concatLists (lib.mapAttrsToList perMode userModes)
      ++ lib.mapAttrsToList (key: option: {
        assertion = !(cfg.settings ? ${key});
        message = "services.modeController.settings.${key} is set from services.modeController.${option}; set that instead.";
      }) setElsewhere
      ++ [
        {
          assertion = !(cfg.settings.idle ? threshold_secs);
          message = "services.modeController.settings.idle.threshold_secs is set from services.modeController.idle.thresholdSecs; set that instead.";
        }
        {
          # "last" reads the desired mode kept next to the audit log.
          assertion =
            cfg.bootMode != "last"
            || !(lib.any (volatile: lib.hasPrefix volatile "${keptDesiredDir}/") [
              "/run/"
              "/tmp/"
              "/dev/"
            ]);
          message = ''services.modeController: bootMode is "last", but the desired mode is kept next to the audit log, in ${keptDesiredDir}/desired, which does not survive a reboot; move settings.audit_log to a persistent directory (the default is ${defaultAuditLog}) or set bootMode = "default".'';
        }
        {
          assertion = profiles == null || !profiles.desktop.enabled || displayGpu != null;
          message = "services.modeController.settings.vllm_profiles.desktop.enabled: the desktop profile runs on every GPU but the display one; name that GPU in settings.guard_settings.gpu.display_gpu.";
        }
        {
          assertion =
            profiles == null || !profiles.desktop.enabled || displayGpu == null || lib.any (sameGpu displayGpu) profiles.gpus;
          message = "services.modeController.settings.vllm_profiles.gpus: the display GPU ${toString displayGpu} (settings.guard_settings.gpu.display_gpu) is not in the list.";
        }
        {
          assertion = profiles == null || !profiles.desktop.enabled || lib.length profiles.gpus >= 2;
          message = "services.modeController.settings.vllm_profiles.desktop.enabled: the desktop profile needs a GPU besides the display one, and vllm_profiles.gpus lists only one.";
        }
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
      # A burst of requests must never meet systemd's start rate limit.
      unitConfig.StartLimitIntervalSec = 0;
      # Nor may nixos-rebuild switch.
      restartIfChanged = false;
      environment.MODE_REQUESTED_BY = "unit";
      serviceConfig = controllerServiceConfig // {
        ExecStart = "${exe} apply %i";
        # A refusal (exit 3) is an answer, not a failed unit; `mode request`
        # still exits 3, and real failures stay failed.
        SuccessExitStatus = "3";
      };
    };

    # The boot policy (`mode boot` reads boot_mode): defaultMode, or the
    # last desired mode, once per boot (see the top of this file for why it
    # cannot run again on a switch).
    systemd.services.mode-controller-boot = {
      description =
        if cfg.bootMode == "last" then
          "Bring this machine to its last desired mode (else ${cfg.defaultMode})"
        else
          "Bring this machine to its default mode (${cfg.defaultMode})";
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
        "systemd-logind.service"
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
        ExecStart = "${exe} boot";
      };
    };

    # Idle automation: `mode idle-check` decides, and as root requests
    # compute (recorded as requested by "idle"), waiting for the outcome.
    # Only the timer starts it; nothing wants it, so a switch never does.
    systemd.services.mode-idle-check = lib.mkIf cfg.idle.enable {
      description = "Turn an unattended desktop into a compute node";
      documentation = [
        "man:mode(1)"
        docsUrl
      ];
      after = [
        "dbus.service"
        "systemd-logind.service"
      ];
      before = [ "shutdown.target" ];
      conflicts = [ "shutdown.target" ];
      restartIfChanged = false;
      serviceConfig = controllerServiceConfig // {
        ExecStart = "${exe} idle-check";
      };
    };

    systemd.timers.mode-idle-check = lib.mkIf cfg.idle.enable {
      description = "Check every ${cfg.idle.interval} whether this desktop is unattended";
      documentation = [
        "man:mode(1)"
        docsUrl
      ];
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "5min";
        OnUnitActiveSec = cfg.idle.interval;
        AccuracySec = "15s";
      };
    };

    systemd.services.mode-way-back = lib.mkIf cfg.wayBack.enable {
      description = "The way back from compute: a key held at the seat requests desktop";
      documentation = [ "man:mode(1)" ];
      partOf = [ "compute.target" ];
      after = [ "compute.target" ];
      wantedBy = [ "compute.target" ];
      restartIfChanged = false;
      serviceConfig = {
        ExecStart = "${exe} way-back";
        ExecStopPost = "${pkgs.coreutils}/bin/rm -f /run/issue.d/50-mode-controller.issue";
        Restart = "on-failure";
        RestartSec = 2;
      };
    };

    systemd.user.services.mode-notify = lib.mkIf cfg.notifications.enable {
      description = "Desktop notifications for mode switches";
      documentation = [ "man:mode(1)" ];
      partOf = [ "graphical-session.target" ];
      after = [ "graphical-session.target" ];
      wantedBy = [ "graphical-session.target" ];
      serviceConfig = {
        ExecStart = "${exe} notify";
        Restart = "on-failure";
        RestartSec = 5;
      };
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
      map (unit: {
        name = lib.removeSuffix ".service" unit;
        value.restartIfChanged = lib.mkDefault false;
      }) cfg.workloads
    );
  }
  ]);

  meta.maintainers = [ ];
}
