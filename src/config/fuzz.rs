//! A bounded property test over configurations: whatever `parse` accepts,
//! every computation the controller makes from it (plans, guard time
//! limits, drain deadlines, job timeouts, the documents it writes) runs
//! without a panic. Values are drawn around the edges that broke before
//! (0, 1, the bounds, u64::MAX), from a fixed seed so a failure reproduces.

use std::path::Path;
use std::time::{Duration, Instant};

use mode_guards::{external, Deadline, Guard, Roots, VllmDrainable, SPECS};
use serde_json::{json, Value};

use crate::mode::{Mode, ObservedMode};
use crate::plan::{plan, Step};

use super::{parse, Config};

/// Every numeric setting, as a JSON pointer into the configuration.
const NUMBERS: &[&str] = &[
    "/guard_settings/gpu/release_timeout_secs",
    "/guard_settings/gpu/poll_interval_ms",
    "/guard_settings/memory/min_available_mib",
    "/guard_settings/memory/max_pressure_avg10",
    "/guard_settings/cpu/max_pressure_avg10",
    "/guard_settings/cpu/max_load_per_cpu",
    "/guard_settings/vllm/scrape_interval_ms",
    "/guard_settings/vllm/drain_wait_secs",
    "/guard_settings/vllm/request_timeout_ms",
    "/guard_settings/external/0/timeout_secs",
    "/modes/desktop/drain/grace_secs",
    "/modes/desktop/drain/wait_secs",
    "/modes/desktop/drain/vllm_timeout_secs",
    "/modes/studio-local/drain/grace_secs",
    "/modes/studio-local/drain/wait_secs",
    "/modes/studio-local/drain/vllm_timeout_secs",
    "/modes/compute/drain/grace_secs",
    "/timeouts/job_secs",
    "/timeouts/request_secs",
    "/timeouts/settle_ms",
    "/idle/threshold_secs",
    "/idle/max_cpu_pressure",
];

const EDGES: &[u64] = &[
    0,
    1,
    2,
    59,
    999,
    1000,
    3_600,
    60_000,
    60_001,
    86_400,
    86_401,
    2_592_000,
    1 << 30,
    (1 << 30) + 1,
    u32::MAX as u64,
    1 << 53,
    i64::MAX as u64,
    u64::MAX - 1,
    u64::MAX,
];

const QUOTAS: &[&str] = &[
    "1%",
    "100%",
    "102400%",
    "102401%",
    "1844674407370955%",
    "0%",
];

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[(self.next() % from.len() as u64) as usize]
    }
}

fn base() -> Value {
    json!({
        "version": 1,
        "guard_settings": {"external": [{"name": "site_ok", "path": "/usr/bin/true"}]},
        "modes": {"compute": {"guards": {"site_ok": "soft", "gpu_display_released": "hard",
                                         "vllm_drainable": "soft", "memory_headroom": "soft"}}},
    })
}

fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut at = doc;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        at = if let Ok(index) = part.parse::<usize>() {
            match at.get_mut(index) {
                Some(v) => v,
                None => return,
            }
        } else {
            if !at.is_object() {
                *at = json!({});
            }
            let Some(map) = at.as_object_mut() else {
                return;
            };
            map.entry(part.to_string()).or_insert_with(|| json!({}))
        };
        if last {
            *at = value.clone();
        }
    }
}

/// Everything the controller computes from a configuration, short of
/// talking to systemd or waiting.
fn exercise(c: &Config) {
    let roots = Roots::system_with_state_dir("/nonexistent/mode-fuzz");
    let settings = &c.guard_settings;
    let mut limits: Vec<Duration> = SPECS
        .iter()
        .flat_map(|s| {
            [
                s.build(settings, &roots),
                s.build_after_teardown(settings, &roots),
            ]
        })
        .map(|g| g.timeout())
        .collect();
    limits.extend(external(settings).iter().map(|g| g.timeout()));
    let froms = [
        ObservedMode::Desktop,
        ObservedMode::StudioLocal,
        ObservedMode::Compute,
        ObservedMode::Transitioning,
        ObservedMode::FailedTransition,
    ];
    for from in froms {
        for to in Mode::ALL {
            for step in plan(from, to, c).steps {
                if let Step::DrainVllm { timeout_secs, .. } = step {
                    let mut vllm = settings.vllm.clone();
                    vllm.drain_wait_secs = timeout_secs;
                    limits.push(VllmDrainable::new(&vllm).timeout());
                }
            }
            let drain = &c.mode(to).drain;
            for secs in [drain.grace_secs, drain.wait_secs, drain.vllm_timeout_secs] {
                limits.push(Duration::from_secs(secs));
            }
        }
    }
    limits.push(Duration::from_secs(c.timeouts.job_secs));
    limits.push(Duration::from_secs(c.timeouts.request_secs));
    let now = Instant::now();
    for limit in limits {
        let d = Deadline::from(now, limit);
        let _ = (d.passed(), d.left());
    }
    let _ = (
        c.managed_units(),
        c.budgeted_slices(),
        c.placement_document(),
    );
    let text = serde_json::to_string(c).unwrap_or_default();
    assert!(!text.is_empty(), "a valid configuration serializes");
}

#[test]
fn whatever_validates_never_panics() {
    let started = Instant::now();
    let mut rng = Rng(0x5eed_0fc0_ffee);
    let (mut tried, mut valid) = (0u32, 0u32);
    while tried < 3000 && started.elapsed() < Duration::from_secs(20) {
        let mut doc = base();
        for _ in 0..=(rng.next() % 4) {
            let field = *rng.pick(NUMBERS);
            let n = if rng.next().is_multiple_of(4) {
                rng.next()
            } else {
                *rng.pick(EDGES)
            };
            set(&mut doc, field, json!(n));
        }
        if rng.next().is_multiple_of(3) {
            let quota = *rng.pick(QUOTAS);
            set(
                &mut doc,
                "/modes/compute/slices/ai.slice/CPUQuota",
                json!(quota),
            );
        }
        tried += 1;
        let text = doc.to_string();
        let outcome = std::panic::catch_unwind(|| {
            parse(&text, Path::new("/fuzz.json")).map(|c| exercise(&c))
        });
        match outcome {
            Ok(Ok(())) => valid += 1,
            Ok(Err(e)) => {
                let line = e.to_string();
                assert!(line.contains("/fuzz.json: "), "names the file: {line}");
                assert!(
                    line.lines().all(|l| l.starts_with("/fuzz.json: ")),
                    "one problem a line, each naming the file: {line}"
                );
            }
            Err(_) => panic!("panicked on a configuration: {text}"),
        }
    }
    assert!(tried >= 200, "only {tried} tried in the time bound");
    assert!(valid >= tried / 10, "too few valid: {valid} of {tried}");
    eprintln!("configurations tried: {tried}, valid: {valid}");
}

#[test]
fn the_issue_repros_are_refused_naming_the_field() {
    for (doc, field) in [
        (
            r#"{"version":1,"guard_settings":{"gpu":{"release_timeout_secs":18446744073709551615}}}"#,
            "guard_settings.gpu.release_timeout_secs",
        ),
        (
            r#"{"version":1,"guard_settings":{"external":[{"name":"x","path":"/x","timeout_secs":18446744073709551615}]}}"#,
            "guard_settings.external[0].timeout_secs",
        ),
        (
            r#"{"version":1,"guard_settings":{"vllm":{"drain_wait_secs":18446744073709551615}}}"#,
            "guard_settings.vllm.drain_wait_secs",
        ),
        (
            r#"{"version":1,"modes":{"desktop":{"drain":{"wait_secs":18446744073709551615}}}}"#,
            "modes.desktop.drain.wait_secs",
        ),
        (
            r#"{"version":1,"modes":{"desktop":{"drain":{"grace_secs":18446744073709551615}}}}"#,
            "modes.desktop.drain.grace_secs",
        ),
        (
            r#"{"version":1,"timeouts":{"job_secs":18446744073709551615}}"#,
            "timeouts.job_secs",
        ),
        (
            r#"{"version":1,"idle":{"threshold_secs":18446744073709551615}}"#,
            "idle.threshold_secs",
        ),
        (
            r#"{"version":1,"modes":{"compute":{"slices":{"ai.slice":{"CPUQuota":"1844674407370955%"}}}}}"#,
            "modes.compute.slices.ai.slice.CPUQuota",
        ),
    ] {
        let e = parse(doc, Path::new("/c.json")).unwrap_err().to_string();
        assert!(e.starts_with(&format!("/c.json: {field}: ")), "{e}");
    }
}
