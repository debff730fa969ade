# NixOS VM test: the module's units and the real `mode` binary on a booted
# NixOS. Stand-ins (sleep processes) play the display manager, vLLM and k3s,
# so the test is about the transitions, not about GPUs. It checks: boot lands
# in defaultMode; desktop -> compute -> studio-local -> desktop with unit
# states, state files and slice budgets; k3s untouched throughout; a
# non-root request refused; `switch-to-configuration` in compute mode keeps
# compute; a reboot from compute normalizes back to desktop. A second
# machine, `bootlast`, has `bootMode = "last"` and the idle timer: a reboot
# from compute comes back to compute, and with the kept mode gone, to the
# default; its idle check runs in its hardened unit and requests nothing.
#
# Called by the flake's checks with `module = self.nixosModules.default`;
# on its own it imports ../../nixos-modules (which builds the package).
{
  pkgs,
  module ? ../../nixos-modules,
  ...
}:

pkgs.testers.runNixOSTest {
  name = "mode-controller-mode-switch";

  # What both machines share: the module, a desktop's graphical stack
  # without a GPU, and the stand-in workloads.
  defaults =
    { lib, pkgs, ... }:
    let
      standIn = description: {
        inherit description;
        serviceConfig.ExecStart = "${pkgs.coreutils}/bin/sleep infinity";
      };
    in
    {
      imports = [ module ];

      services.modeController = {
        enable = true;
        defaultMode = "desktop";
        settings.modes = {
          compute.start = [ "vllm.service" ];
          compute.slices."ai.slice" = {
            CPUWeight = 1000;
            MemoryHigh = "2G";
          };
          studio-local.slices."ai.slice" = {
            CPUWeight = 10;
            CPUQuota = "50%";
          };
        };
      };

      # The graphical stack of a desktop, without a GPU or a greeter.
      systemd.defaultUnit = "graphical.target";
      systemd.services.display-manager = standIn "Stand-in display manager" // {
        wantedBy = [ "graphical.target" ];
      };
      # A compute workload joins compute.target as docs/nixos.md says.
      systemd.services.vllm = lib.recursiveUpdate (standIn "Stand-in vLLM") {
        wantedBy = [ "compute.target" ];
        partOf = [ "compute.target" ];
        serviceConfig.Slice = "ai.slice";
      };
      systemd.services.k3s = lib.recursiveUpdate (standIn "Stand-in k3s") {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.Slice = "platform.slice";
      };

      users.users.alice.isNormalUser = true;
    };

  # A later generation that changes the units a switch could be tempted to
  # (re)start: the targets, the display manager, the workload, the
  # controller's configuration.
  nodes.machine.specialisation.changed.configuration = {
    systemd.targets.desktop.unitConfig.X-TestGeneration = "2";
    systemd.targets.compute.unitConfig.X-TestGeneration = "2";
    systemd.services.display-manager.environment.TEST_GENERATION = "2";
    systemd.services.vllm.environment.TEST_GENERATION = "2";
    services.modeController.settings.timeouts.job_secs = 60;
  };

  # Comes back in the mode it was in. The timer's first check is five
  # minutes after boot, later than this test looks, so the test starts the
  # check itself.
  nodes.bootlast.services.modeController = {
    bootMode = "last";
    idle = {
      enable = true;
      thresholdSecs = 7200;
    };
  };

  testScript =
    { nodes, ... }:
    let
      system = nodes.machine.system.build.toplevel;
    in
    ''
      import json

      def is_active(unit):
          return machine.execute(f"systemctl is-active --quiet {unit}")[0] == 0

      def expect_active(*units):
          for unit in units:
              assert is_active(unit), f"{unit} should be active"

      def expect_inactive(*units):
          for unit in units:
              assert not is_active(unit), f"{unit} should not be active"

      def state_file(name):
          return machine.succeed(f"cat /run/mode-controller/{name}").strip()

      def last_transition():
          return json.loads(state_file("last-transition.json"))

      def prop(unit, name):
          return machine.succeed(f"systemctl show --property={name} --value {unit}").strip()

      def observed():
          return machine.succeed("mode current").strip()

      def k3s_identity():
          return (prop("k3s.service", "MainPID"), prop("k3s.service", "ActiveEnterTimestampMonotonic"))

      def request(mode):
          machine.succeed(f"mode request {mode}")
          t = last_transition()
          assert t["to"] == mode and t["outcome"] in ("converged", "noop"), t
          assert state_file("current") == mode
          assert state_file("desired") == mode
          assert observed() == mode

      def expect_desktop():
          expect_active("desktop.target", "graphical.target", "display-manager.service")
          expect_inactive("compute.target", "vllm.service", "studio-local-policy.service", "audio-priority.service")

      def expect_compute():
          expect_active("compute.target", "vllm.service")
          expect_inactive("desktop.target", "graphical.target", "display-manager.service")

      machine.wait_for_unit("multi-user.target")
      machine.wait_for_unit("mode-controller-boot.service")

      with subtest("boot lands in defaultMode"):
          expect_desktop()
          assert observed() == "desktop"
          assert state_file("current") == "desktop"
          assert machine.succeed("mode desired").strip() == "desktop"
          assert last_transition()["to"] == "desktop"
          machine.succeed("test -s /etc/mode-controller/config.json")
          machine.succeed("mode config check /etc/mode-controller/config.json")
          machine.succeed("test -e /run/mode-controller/capability-placement.json")
          assert json.loads(state_file("capability-placement.json"))["studio"] == "local"

      k3s = k3s_identity()
      expect_active("k3s.service")

      with subtest("a non-root request is refused and changes nothing"):
          status, out = machine.execute("su - alice -c 'mode request compute' 2>&1")
          assert status == 6, f"expected exit 6, got {status}: {out}"
          expect_desktop()
          # Anyone may ask.
          machine.succeed("su - alice -c 'mode status'")
          machine.succeed("su - alice -c 'mode dry-run compute'")

      with subtest("desktop -> compute"):
          request("compute")
          expect_compute()
          assert prop("ai.slice", "CPUWeight") == "1000"
          assert prop("ai.slice", "MemoryHigh") == str(2 * 1024**3)
          assert k3s_identity() == k3s, "k3s was restarted"

      with subtest("a switch in compute mode keeps compute"):
          before = last_transition()["id"]
          vllm_pid = prop("vllm.service", "MainPID")
          machine.succeed("${system}/specialisation/changed/bin/switch-to-configuration test")
          expect_compute()
          # The changed workload is not restarted behind the controller's back.
          assert prop("vllm.service", "MainPID") == vllm_pid, "the switch restarted vllm.service with no drain"
          assert observed() == "compute"
          assert last_transition()["id"] == before, "the switch ran a transition"
          assert k3s_identity() == k3s, "k3s was restarted"
          machine.succeed("${system}/bin/switch-to-configuration test")
          expect_compute()

      with subtest("compute -> studio-local"):
          request("studio-local")
          expect_active("desktop.target", "display-manager.service", "studio-local-policy.service", "audio-priority.service")
          expect_inactive("compute.target", "vllm.service")
          assert prop("ai.slice", "CPUWeight") == "10"
          assert prop("ai.slice", "CPUQuotaPerSecUSec") == "500ms"
          assert k3s_identity() == k3s, "k3s was restarted"

      with subtest("studio-local -> desktop"):
          request("desktop")
          expect_desktop()
          assert prop("ai.slice", "MemoryHigh") == "infinity"
          assert k3s_identity() == k3s, "k3s was restarted"

      with subtest("the audit log holds every transition"):
          lines = machine.succeed("cat /var/lib/mode-controller/transitions.jsonl").strip().splitlines()
          assert [json.loads(line)["to"] for line in lines][-3:] == ["compute", "studio-local", "desktop"], lines

      with subtest("a reboot from compute normalizes to defaultMode"):
          request("compute")
          machine.reboot()
          machine.wait_for_unit("multi-user.target")
          machine.wait_for_unit("mode-controller-boot.service")
          expect_desktop()
          assert observed() == "desktop"
          expect_active("k3s.service")

      machine.shutdown()

      def bootlast_boots():
          bootlast.wait_for_unit("multi-user.target")
          bootlast.wait_for_unit("mode-controller-boot.service")
          t = json.loads(bootlast.succeed("cat /run/mode-controller/last-transition.json"))
          assert t["requested_by"] == "boot" and t["outcome"] in ("converged", "noop"), t
          return bootlast.succeed("mode current").strip()

      with subtest("bootMode = last: the idle check runs and requests nothing"):
          assert bootlast_boots() == "desktop"
          bootlast.succeed("systemctl is-active mode-idle-check.timer")
          # Nobody at the seat, but not for idle.thresholdSecs yet.
          bootlast.succeed("systemctl start mode-idle-check.service")
          log = bootlast.succeed("journalctl -b -u mode-idle-check.service --no-pager -o cat")
          assert "stay" in log and "of 7200 s" in log, log
          assert bootlast.succeed("mode current").strip() == "desktop"

      with subtest("bootMode = last: a reboot from compute comes back to compute"):
          bootlast.succeed("mode request compute")
          assert bootlast.succeed("cat /var/lib/mode-controller/desired").strip() == "compute"
          bootlast.reboot()
          assert bootlast_boots() == "compute"
          bootlast.succeed("systemctl is-active compute.target vllm.service")
          bootlast.fail("systemctl is-active display-manager.service")

      with subtest("bootMode = last: with no kept mode, boot falls back to defaultMode"):
          bootlast.succeed("rm /var/lib/mode-controller/desired")
          bootlast.reboot()
          assert bootlast_boots() == "desktop"
          bootlast.succeed("systemctl is-active desktop.target display-manager.service")
    '';
}
