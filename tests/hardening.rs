//! The sandbox of the shipped services, as the container's systemd loads
//! them: every mode-* service gets the one hardening drop-in
//! (pkgs/systemd/mode-.service.d), and `systemd-analyze security` keeps
//! each within its exposure. The cost of each option is measured, not
//! timed here: scripts/bench-hardening.sh, docs/performance.md.

mod common;

use common::Container;

/// The exposure each unit must not exceed (what `systemd-analyze security`
/// of systemd 252 gave when these were last tightened).
const EXPOSURE: [(&str, f64); 4] = [
    ("mode-controller@compute.service", 2.7),
    ("mode-controller-boot.service", 2.8),
    ("mode-idle-check.service", 2.7),
    ("mode-way-back.service", 2.5),
];

fn exposure(c: &Container, unit: &str) -> f64 {
    let r = c.sh(&format!(
        "systemd-analyze security --no-pager {unit} | tail -1"
    ));
    // "→ Overall exposure level for UNIT: 3.4 OK :-)"
    r.stdout
        .rsplit(": ")
        .next()
        .and_then(|tail| tail.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure for {unit}: {r:?}"))
}

#[test]
fn every_mode_service_gets_the_one_sandbox_and_stays_within_its_exposure() {
    let c = Container::boot();
    for (unit, most) in EXPOSURE {
        let shown = c.sh(&format!(
            "systemctl show -p DropInPaths -p CapabilityBoundingSet -p SystemCallFilter {unit}"
        ));
        assert!(
            shown.stdout.contains("mode-.service.d/10-hardening.conf"),
            "{unit} gets the shared hardening: {shown:?}"
        );
        assert!(
            shown
                .stdout
                .contains("CapabilityBoundingSet=cap_dac_read_search cap_sys_ptrace\n"),
            "{unit}: no CAP_KILL, nothing but what the guards read with: {shown:?}"
        );
        let filter = shown
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("SystemCallFilter="))
            .unwrap_or_default();
        for denied in ["setpriority", "setuid", "chown"] {
            assert!(
                !filter.split_whitespace().any(|s| s == denied),
                "{unit} may not call {denied}: {filter}"
            );
        }
        assert!(
            filter.split_whitespace().any(|s| s == "pidfd_getfd"),
            "{unit} keeps pidfd_getfd for the GPU guard"
        );
        if unit == "mode-way-back.service" {
            // Long-running: its start cost is paid once. Its console note
            // and the hold are tested under this sandbox in way_back.rs.
            let mounts = c.sh(&format!("systemctl show -p ProtectKernelTunables {unit}"));
            assert_eq!(
                mounts.stdout, "ProtectKernelTunables=yes\n",
                "{unit} has the expensive mount protection too"
            );
        }
        let level = exposure(&c, unit);
        assert!(level <= most, "{unit}: exposure {level} over {most}");
    }
}
