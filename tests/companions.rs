//! Jobs that a step's transaction pulls in: a failing unit that belongs to
//! the mode fails the step; a failing unit that does not (here a stand-in
//! for systemd-update-utmp-runlevel) is recorded as a warning only.

mod common;

use common::Container;

#[test]
fn a_failing_helper_outside_the_mode_is_a_warning_not_a_failure() {
    let c = Container::boot();
    assert_eq!(c.mode("request compute").code, 0);
    c.write(
        "/run/systemd/system/flaky-helper.service",
        "[Unit]\nDescription=helper that always fails\n[Service]\nType=oneshot\nExecStart=/bin/false\n",
    );
    c.write(
        "/run/systemd/system/graphical.target.d/helper.conf",
        "[Unit]\nWants=flaky-helper.service\n",
    );
    assert_eq!(c.sh("systemctl daemon-reload").code, 0);

    let r = c.mode("request desktop --json");
    assert_eq!(r.code, 0, "{r:?}");
    let t = r.json();
    let warned: Vec<&serde_json::Value> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["warnings"].is_array())
        .collect();
    assert!(!warned.is_empty(), "{t}");
    for step in warned {
        let w = step["warnings"][0].as_str().unwrap();
        assert!(w.contains("flaky-helper.service ended 'failed'"), "{step}");
    }
    assert_eq!(t["outcome"], "converged");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
}
