//! The transition plan as data: one exhaustive `match` over (observed,
//! target) producing ordered steps. `apply`, `dry-run` and `explain` all read
//! the same plan, so what is explained is what will run.

use serde::Serialize;

use crate::config::{Config, Drain, GuardSeverity, JobPolicy, ModeConfig, SliceBudget};
use crate::mode::{Mode, ObservedMode};

/// One step of a transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Step {
    /// Apply a mode's budget to a slice (runtime properties).
    SetBudget {
        unit: String,
        budget: SliceBudget,
    },
    Stop {
        unit: String,
    },
    Start {
        unit: String,
    },
    /// Check a guard's condition after teardown (hard; it may wait for it).
    Check {
        guard: String,
    },
    /// Wait for vLLM's queue to empty (or the timeout) before it stops.
    DrainVllm {
        unit: String,
        timeout_secs: u64,
    },
    /// Reopen a vLLM server paused by a drain, right before it stops (into
    /// its own graceful stop) or on a rollback: the requests it held go on.
    ResumeVllm {
        unit: String,
    },
    /// Handle the user jobs in a slice by the mode's drain policy.
    DrainJobs {
        unit: String,
        policy: Drain,
    },
    /// Drain this machine's Slurm node (no new job lands) and handle its
    /// running jobs by the mode's policy: requeue after the checkpoint
    /// signal, wait until they end, or (refuse) none may run.
    SlurmDrain {
        node: String,
        policy: Drain,
    },
    /// Let Slurm place jobs on the node again, once compute is reached.
    SlurmResume {
        node: String,
    },
    /// Taint this machine's Kubernetes node (NoSchedule) and label it with
    /// the mode, then handle its GPU pods by the mode's policy: evict them
    /// through the Eviction API, wait until they end, or (refuse) none may run.
    K3sDrain {
        node: String,
        policy: Drain,
    },
    /// Take the taint away and label the node compute, once compute is reached.
    K3sResume {
        node: String,
    },
    /// A user's executable (`integrations.exec`), run with the transition on stdin.
    Exec {
        name: String,
    },
    /// Last: every service the switch started must stay active for the
    /// window, and those with a readiness check must answer it, before the
    /// mode counts as reached. `unit` is the mode's target.
    Settle {
        unit: String,
        window_ms: u64,
        /// The units that have a readiness check, should the switch start them.
        ready: Vec<String>,
    },
}

impl Step {
    pub fn action(&self) -> &'static str {
        match self {
            Step::SetBudget { .. } => "set-budget",
            Step::Stop { .. } => "stop",
            Step::Start { .. } => "start",
            Step::Check { .. } => "check",
            Step::DrainVllm { .. } => "drain-vllm",
            Step::ResumeVllm { .. } => "resume-vllm",
            Step::DrainJobs { .. } => "drain-jobs",
            Step::Settle { .. } => "settle",
            Step::SlurmDrain { .. } => "slurm-drain",
            Step::SlurmResume { .. } => "slurm-resume",
            Step::K3sDrain { .. } => "k3s-drain",
            Step::K3sResume { .. } => "k3s-resume",
            Step::Exec { .. } => "exec",
        }
    }

    pub fn unit(&self) -> &str {
        match self {
            Step::SetBudget { unit, .. }
            | Step::Stop { unit }
            | Step::Start { unit }
            | Step::ResumeVllm { unit } => unit,
            Step::Check { guard } => guard,
            Step::DrainVllm { unit, .. } | Step::DrainJobs { unit, .. } => unit,
            Step::Settle { unit, .. } => unit,
            Step::SlurmDrain { node, .. }
            | Step::SlurmResume { node }
            | Step::K3sDrain { node, .. }
            | Step::K3sResume { node } => node,
            Step::Exec { name } => name,
        }
    }

    /// The step in words, for `explain`.
    pub fn describe(&self) -> String {
        match self {
            Step::SetBudget { unit, budget } => {
                let text = serde_json::to_string(budget).unwrap_or_default();
                format!("set the budget of {unit} to {text}")
            }
            Step::Stop { unit } => format!("stop {unit}"),
            Step::Start { unit } => format!("start {unit}"),
            Step::Check { guard } => {
                format!("check {guard} (hard; waits for it within its timeout)")
            }
            Step::DrainVllm { unit, timeout_secs } => format!(
                "drain {unit}: pause it (POST /pause?mode=wait: new requests are held), then wait up to {timeout_secs} s in all for its running requests to finish"
            ),
            Step::ResumeVllm { unit } => {
                format!("resume {unit} (POST /resume: the requests it held go on)")
            }
            Step::DrainJobs { unit, policy } => match policy.jobs {
                JobPolicy::Checkpoint => format!(
                    "checkpoint the user jobs in {unit}: send {}, allow {} s, then stop their units",
                    policy.checkpoint_signal.name(),
                    policy.grace_secs
                ),
                JobPolicy::Wait => {
                    format!("wait up to {} s for the user jobs in {unit} to end", policy.wait_secs)
                }
                JobPolicy::Refuse => format!("refuse if user jobs run in {unit}"),
            },
            Step::SlurmDrain { node, policy } => match policy.jobs {
                JobPolicy::Checkpoint => format!(
                    "drain the Slurm node {node}, send its jobs {}, allow {} s, then requeue those still running",
                    policy.checkpoint_signal.name(),
                    policy.grace_secs
                ),
                JobPolicy::Wait => format!(
                    "drain the Slurm node {node} and wait up to {} s for its jobs to end",
                    policy.wait_secs
                ),
                JobPolicy::Refuse => {
                    format!("drain the Slurm node {node} (refused before this if a job runs there)")
                }
            },
            Step::SlurmResume { node } => format!("resume the Slurm node {node}"),
            Step::K3sDrain { node, policy } => match policy.jobs {
                JobPolicy::Checkpoint => format!(
                    "taint the Kubernetes node {node} NoSchedule and evict its GPU pods (PodDisruptionBudgets honoured)"
                ),
                JobPolicy::Wait => format!(
                    "taint the Kubernetes node {node} NoSchedule and wait up to {} s for its GPU pods to end",
                    policy.wait_secs
                ),
                JobPolicy::Refuse => format!(
                    "taint the Kubernetes node {node} NoSchedule (refused before this if a GPU pod runs there)"
                ),
            },
            Step::K3sResume { node } => {
                format!("take the taint off the Kubernetes node {node} and label it compute")
            }
            Step::Exec { name } => format!("run the exec step {name} with the transition on stdin"),
            Step::Settle {
                window_ms, ready, ..
            } => {
                let mut text = format!(
                    "watch every service this switch started: each must stay active for {:.1} s",
                    *window_ms as f64 / 1000.0
                );
                if !ready.is_empty() {
                    text.push_str(&format!(
                        "; {} must also answer {} readiness check",
                        ready.join(", "),
                        if ready.len() == 1 { "its" } else { "their" }
                    ));
                }
                text
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub from: ObservedMode,
    pub to: Mode,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.steps.is_empty()
    }

    /// Units the plan starts, for the `target_reachable` guard.
    pub fn units_to_start(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Start { unit } => Some(unit.clone()),
                _ => None,
            })
            .collect()
    }
}

fn budgets(target: &ModeConfig) -> Vec<Step> {
    target
        .slices
        .iter()
        .map(|(slice, budget)| Step::SetBudget {
            unit: slice.clone(),
            budget: budget.clone(),
        })
        .collect()
}

/// Stop the overlay of the mode being left (last started, first stopped).
fn leave_overlay(left: &ModeConfig) -> Vec<Step> {
    left.overlay
        .iter()
        .rev()
        .map(|u| Step::Stop { unit: u.clone() })
        .collect()
}

fn enter_overlay(target: &ModeConfig) -> Vec<Step> {
    target
        .overlay
        .iter()
        .map(|u| Step::Start { unit: u.clone() })
        .collect()
}

/// Stop what the mode excludes, check what must hold once it is gone
/// (compute: the display has let go of the GPU), then start its target and
/// companions.
fn switch_target(target: &ModeConfig) -> Vec<Step> {
    let stops = target.stop.iter().map(|u| Step::Stop { unit: u.clone() });
    let checks = post_teardown_checks(target);
    let starts = std::iter::once(&target.target)
        .chain(&target.start)
        .map(|u| Step::Start { unit: u.clone() });
    stops.chain(checks).chain(starts).collect()
}

/// Guards whose spec has them checked again, as hard, after the teardown
/// of a switch into the mode, when its configuration enables them.
fn post_teardown_checks(target: &ModeConfig) -> Vec<Step> {
    let guards = &target.guards;
    mode_guards::SPECS
        .iter()
        .filter(|s| s.after_teardown())
        .filter(|s| {
            guards
                .get(s.name())
                .is_some_and(|g| *g != GuardSeverity::Off)
        })
        .map(|s| Step::Check {
            guard: s.name().to_string(),
        })
        .collect()
}

/// From an unknown state: stop every overlay `to` does not have, then the
/// full switch into `to`.
fn recover(config: &Config, to: Mode) -> Vec<Step> {
    let target = config.mode(to);
    let foreign_overlays = Mode::ALL
        .iter()
        .flat_map(|m| config.mode(*m).overlay.iter().rev())
        .filter(|u| !target.overlay.contains(u))
        .fold(Vec::<String>::new(), |mut acc, u| {
            if !acc.contains(u) {
                acc.push(u.clone());
            }
            acc
        })
        .into_iter()
        .map(|unit| Step::Stop { unit });
    foreign_overlays
        .chain(switch_target(target))
        .chain(enter_overlay(target))
        .collect()
}

/// What runs before anything stops: every vLLM unit that runs in `from`
/// (any mode, when `from` is unknown) but not in `to` is drained, and when
/// the machine leaves compute the user jobs are handled by `to`'s policy
/// (with `refuse`, `user_jobs_safe` refuses instead).
fn drains(config: &Config, from: Option<Mode>, to: Mode, drain: &Drain) -> Vec<Step> {
    let vllm = config
        .vllm_units()
        .into_iter()
        .filter(|u| !config.vllm_runs_in(u, to))
        .filter(|u| from.is_none_or(|f| config.vllm_runs_in(u, f)))
        .map(|unit| Step::DrainVllm {
            unit,
            timeout_secs: drain.vllm_timeout_secs,
        });
    let leaving_compute = to != Mode::Compute && from.is_none_or(|f| f == Mode::Compute);
    let jobs = (leaving_compute && drain.jobs != JobPolicy::Refuse).then(|| Step::DrainJobs {
        unit: config.guard_settings.ai_slice.slice.clone(),
        policy: drain.clone(),
    });
    // The scheduler first: once the node is drained no new job lands on it.
    let slurm = slurm_node(config)
        .filter(|_| leaving_compute)
        .map(|node| Step::SlurmDrain {
            node,
            policy: drain.clone(),
        });
    let k3s = k3s_node(config)
        .filter(|_| leaving_compute)
        .map(|node| Step::K3sDrain {
            node,
            policy: drain.clone(),
        });
    slurm
        .into_iter()
        .chain(k3s)
        .chain(vllm)
        .chain(jobs)
        .collect()
}

/// The Slurm node, when the integration is on (named by `Context::new`).
fn slurm_node(config: &Config) -> Option<String> {
    let slurm = config.integrations.slurm.as_ref()?;
    Some(slurm.node.clone().unwrap_or_default())
}

/// The Kubernetes node, likewise.
fn k3s_node(config: &Config) -> Option<String> {
    let k3s = config.integrations.k3s.as_ref()?;
    Some(k3s.node.clone().unwrap_or_default())
}

/// After the switch is reached: the scheduler told (entering compute, the
/// Slurm node takes jobs again), then the user's exec steps for `to`.
fn announce(config: &Config, to: Mode) -> Vec<Step> {
    let entering = to == Mode::Compute;
    let resume = slurm_node(config)
        .filter(|_| entering)
        .map(|node| Step::SlurmResume { node });
    let untaint = k3s_node(config)
        .filter(|_| entering)
        .map(|node| Step::K3sResume { node });
    let exec = config
        .integrations
        .exec
        .iter()
        .filter(|e| e.runs_for(to))
        .map(|e| Step::Exec {
            name: e.name.clone(),
        });
    resume.into_iter().chain(untaint).chain(exec).collect()
}

/// The ordered steps that take the machine from `from` to `to`: drains
/// first, then the budgets of `to`, then the unit moves.
pub fn plan(from: ObservedMode, to: Mode, config: &Config) -> Plan {
    use Mode as M;
    use ObservedMode as O;
    let target = config.mode(to);
    let studio = &config.modes.studio_local;
    let moves: Vec<Step> = match (from, to) {
        (O::Desktop, M::Desktop) | (O::StudioLocal, M::StudioLocal) | (O::Compute, M::Compute) => {
            vec![]
        }
        (O::Desktop, M::StudioLocal) => enter_overlay(target),
        (O::StudioLocal, M::Desktop) => leave_overlay(studio),
        (O::Desktop, M::Compute) | (O::Compute, M::Desktop) => switch_target(target),
        (O::StudioLocal, M::Compute) => [leave_overlay(studio), switch_target(target)].concat(),
        // The studio is entered from a verified desktop: desktop first, then the overlay.
        (O::Compute, M::StudioLocal) => {
            [switch_target(&config.modes.desktop), enter_overlay(target)].concat()
        }
        (O::Transitioning | O::FailedTransition, _) => recover(config, to),
    };
    let steps = if moves.is_empty() {
        moves
    } else {
        let drains = drains(config, from.as_mode(), to, &target.drain);
        // A drained vLLM unit that `to` stops is stopped even where the
        // moves do not stop it (desktop -> studio-local only adds the
        // overlay); the plain vLLM unit stops with compute.target.
        let stop_drained: Vec<Step> = drains
            .iter()
            .filter_map(|s| match s {
                Step::DrainVllm { unit, .. }
                    if target.stop.contains(unit)
                        && !moves
                            .iter()
                            .any(|m| matches!(m, Step::Stop { unit: u } if u == unit)) =>
                {
                    Some(Step::Stop { unit: unit.clone() })
                }
                _ => None,
            })
            .collect();
        reopen_before_stop(
            config,
            [
                drains,
                budgets(target),
                settle(config, target, [stop_drained, moves].concat()),
                announce(config, to),
            ]
            .concat(),
        )
    };
    Plan { from, to, steps }
}

/// A drained vLLM is resumed right before the step that stops it (its own
/// stop, or compute's target, which it is part of). A paused vLLM holds the
/// requests that arrived after the door closed without ever answering them,
/// and stopping it then drops them (the real server answered HTTP 500 or
/// closed the connection with no answer); resumed a moment before the
/// SIGTERM they start, and its own graceful stop (`--shutdown-timeout`)
/// finishes them while refusing newer ones with HTTP 500.
fn reopen_before_stop(config: &Config, mut steps: Vec<Step>) -> Vec<Step> {
    let drained: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::DrainVllm { unit, .. } => Some(unit.clone()),
            _ => None,
        })
        .collect();
    let compute_target = &config.modes.compute.target;
    for unit in drained {
        let stop_at = steps
            .iter()
            .position(|s| matches!(s, Step::Stop { unit: u } if *u == unit || u == compute_target));
        if let Some(at) = stop_at {
            steps.insert(at, Step::ResumeVllm { unit });
        }
    }
    steps
}

/// `plan` plus a start of each of `missing` (vLLM profile units of `to`
/// that are not running: boot does not start them, so a desktop whose
/// opt-in AI was never started is still desktop, and asking for desktop
/// starts it) that the plan does not start already.
pub fn with_missing_starts(mut p: Plan, config: &Config, missing: &[String]) -> Plan {
    let new: Vec<Step> = missing
        .iter()
        .filter(|u| {
            !p.steps
                .iter()
                .any(|s| matches!(s, Step::Start { unit } if unit == *u))
        })
        .map(|unit| Step::Start { unit: unit.clone() })
        .collect();
    if new.is_empty() {
        return p;
    }
    // Before the settle step (which then watches them too), or before the
    // announcements, or at the end with a settle step of their own.
    let at = p
        .steps
        .iter()
        .position(|s| {
            matches!(
                s,
                Step::Settle { .. } | Step::SlurmResume { .. } | Step::Exec { .. }
            )
        })
        .unwrap_or(p.steps.len());
    let has_settle = p.steps.iter().any(|s| matches!(s, Step::Settle { .. }));
    let insert = if has_settle {
        new
    } else {
        settle(config, config.mode(p.to), new)
    };
    p.steps.splice(at..at, insert);
    p
}

/// `plan`, clearing drift first: outside compute, every compute workload in
/// `strays` is stopped (a vLLM unit drained before it stops), so a request
/// for the mode the machine is in makes it that mode again.
pub fn plan_clearing(from: ObservedMode, to: Mode, config: &Config, strays: &[String]) -> Plan {
    let mut p = plan(from, to, config);
    if to == Mode::Compute || strays.is_empty() {
        return p;
    }
    let vllm = config.vllm_units();
    let timeout_secs = config.mode(to).drain.vllm_timeout_secs;
    let clear = strays.iter().flat_map(|unit| {
        let drain = vllm.contains(unit).then(|| Step::DrainVllm {
            unit: unit.clone(),
            timeout_secs,
        });
        drain.into_iter().chain([Step::Stop { unit: unit.clone() }])
    });
    p.steps = reopen_before_stop(config, clear.chain(p.steps).collect());
    p
}

/// The moves, then (when they start anything) the settle step that checks
/// what they started stays up and gets ready.
fn settle(config: &Config, target: &ModeConfig, mut moves: Vec<Step>) -> Vec<Step> {
    let starts = moves.iter().any(|s| matches!(s, Step::Start { .. }));
    let window_ms = config.timeouts.settle_ms;
    if starts && (window_ms > 0 || !config.readiness.is_empty()) {
        moves.push(Step::Settle {
            unit: target.target.clone(),
            window_ms,
            ready: config.readiness.keys().cloned().collect(),
        });
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::defaults;

    fn words(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .filter(|s| {
                !matches!(
                    s,
                    Step::SetBudget { .. }
                        | Step::DrainVllm { .. }
                        | Step::DrainJobs { .. }
                        | Step::Settle { .. }
                )
            })
            .map(|s| format!("{} {}", s.action(), s.unit()))
            .collect()
    }

    fn run(from: Mode, to: Mode) -> Plan {
        plan(from.into(), to, &defaults())
    }

    #[test]
    fn same_mode_is_a_noop_for_all_three() {
        for m in Mode::ALL {
            assert!(run(m, m).is_noop(), "{m}");
        }
    }

    #[test]
    fn desktop_to_compute_stops_the_graphical_stack_then_starts_compute() {
        assert_eq!(
            words(&run(Mode::Desktop, Mode::Compute)),
            [
                "stop desktop.target",
                "stop graphical.target",
                "stop display-manager.service",
                "check gpu_display_released",
                "start compute.target"
            ]
        );
    }

    #[test]
    fn leaving_compute_drains_vllm_then_the_jobs_before_anything_stops() {
        for to in [Mode::Desktop, Mode::StudioLocal] {
            let p = run(Mode::Compute, to);
            assert!(matches!(&p.steps[0], Step::DrainVllm { unit, .. } if unit == "vllm.service"));
            assert!(matches!(&p.steps[1], Step::DrainJobs { unit, .. } if unit == "ai.slice"));
            assert!(matches!(p.steps[2], Step::SetBudget { .. }));
        }
        for from in [Mode::Desktop, Mode::StudioLocal] {
            let p = run(from, Mode::Compute);
            assert!(!p
                .steps
                .iter()
                .any(|s| matches!(s, Step::DrainVllm { .. } | Step::DrainJobs { .. })));
        }
    }

    #[test]
    fn desktop_to_studio_stops_the_drained_desktop_profile() {
        let mut c = defaults();
        c.modes.desktop.start.push("vllm@desktop.service".into());
        c.modes
            .studio_local
            .stop
            .push("vllm@desktop.service".into());
        c.vllm_profiles = Some(crate::config::VllmProfiles::default());
        c.vllm_profiles.as_mut().unwrap().gpus = vec!["0000:01:00.0".into(), "0000:41:00.0".into()];
        c.vllm_profiles.as_mut().unwrap().desktop.enabled = true;
        c.guard_settings.gpu.display_gpu = Some("0000:01:00.0".into());
        let p = plan(ObservedMode::Desktop, Mode::StudioLocal, &c);
        let w: Vec<String> = p
            .steps
            .iter()
            .map(|s| format!("{} {}", s.action(), s.unit()))
            .collect();
        let drain = w
            .iter()
            .position(|s| s == "drain-vllm vllm@desktop.service");
        let stop = w.iter().position(|s| s == "stop vllm@desktop.service");
        assert!(drain.is_some() && stop.is_some() && drain < stop, "{w:?}");
    }

    #[test]
    fn switching_vllm_profile_drains_the_old_one_then_starts_the_new_one() {
        let text = r#"{"version": 1,
            "guard_settings": {"gpu": {"display_gpu": "0000:01:00.0"}},
            "vllm_profiles": {"gpus": ["0000:01:00.0", "0000:41:00.0"], "desktop": {"enabled": true}}}"#;
        let c = crate::config::parse(text, std::path::Path::new("c.json")).unwrap();
        let p = plan(ObservedMode::Desktop, Mode::Compute, &c);
        let drained: Vec<&str> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::DrainVllm { unit, .. } => Some(unit.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(drained, ["vllm@desktop.service"]);
        let w = words(&p);
        let stop_old = w
            .iter()
            .position(|s| s == "stop vllm@desktop.service")
            .unwrap();
        let start_new = w
            .iter()
            .position(|s| s == "start vllm@compute.service")
            .unwrap();
        assert!(stop_old < start_new, "{w:?}");
        let back = plan(ObservedMode::Compute, Mode::Desktop, &c);
        assert!(
            matches!(&back.steps[0], Step::DrainVllm { unit, .. } if unit == "vllm@compute.service")
        );
        assert!(words(&back).contains(&"start vllm@desktop.service".to_string()));
    }

    #[test]
    fn with_the_refuse_policy_no_job_is_touched() {
        let mut c = defaults();
        c.modes.desktop.drain.jobs = JobPolicy::Refuse;
        let p = plan(ObservedMode::Compute, Mode::Desktop, &c);
        assert!(!p.steps.iter().any(|s| matches!(s, Step::DrainJobs { .. })));
        assert!(p.steps.iter().any(|s| matches!(s, Step::DrainVllm { .. })));
    }

    #[test]
    fn the_gpu_release_check_follows_the_configuration() {
        let mut c = defaults();
        c.modes
            .compute
            .guards
            .insert("gpu_display_released".into(), GuardSeverity::Off);
        let p = plan(ObservedMode::Desktop, Mode::Compute, &c);
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Check { .. })));
    }

    #[test]
    fn compute_to_desktop_stops_compute_then_starts_the_desktop() {
        assert_eq!(
            words(&run(Mode::Compute, Mode::Desktop)),
            [
                // Reopened into its own graceful stop: what it held starts.
                "resume-vllm vllm.service",
                "stop compute.target",
                "start desktop.target",
                "start graphical.target",
                "start display-manager.service"
            ]
        );
    }

    #[test]
    fn desktop_and_studio_only_touch_the_overlay() {
        assert_eq!(
            words(&run(Mode::Desktop, Mode::StudioLocal)),
            [
                "start studio-local-policy.service",
                "start audio-priority.service"
            ]
        );
        assert_eq!(
            words(&run(Mode::StudioLocal, Mode::Desktop)),
            [
                "stop audio-priority.service",
                "stop studio-local-policy.service"
            ]
        );
    }

    #[test]
    fn studio_to_compute_removes_the_overlay_first() {
        let w = words(&run(Mode::StudioLocal, Mode::Compute));
        assert_eq!(
            w[..2],
            [
                "stop audio-priority.service",
                "stop studio-local-policy.service"
            ]
        );
        assert_eq!(w.last().map(String::as_str), Some("start compute.target"));
    }

    #[test]
    fn compute_to_studio_goes_through_desktop() {
        let w = words(&run(Mode::Compute, Mode::StudioLocal));
        let desktop = words(&run(Mode::Compute, Mode::Desktop));
        assert_eq!(
            w[..desktop.len()],
            desktop[..],
            "the desktop switch comes first"
        );
        assert_eq!(
            w[desktop.len()..],
            [
                "start studio-local-policy.service",
                "start audio-priority.service"
            ]
        );
    }

    #[test]
    fn budgets_come_first_and_only_when_something_moves() {
        let p = run(Mode::Desktop, Mode::Compute);
        let budget_steps: Vec<&str> = p.steps.iter().take(3).map(Step::unit).collect();
        assert_eq!(
            budget_steps,
            ["ai.slice", "interactive.slice", "platform.slice"]
        );
        assert!(matches!(p.steps[0], Step::SetBudget { .. }));
    }

    #[test]
    fn recovery_from_an_unknown_state_clears_every_foreign_unit() {
        for from in [ObservedMode::FailedTransition, ObservedMode::Transitioning] {
            let w = words(&plan(from, Mode::Compute, &defaults()));
            assert!(w.contains(&"stop audio-priority.service".to_string()));
            assert!(w.contains(&"stop graphical.target".to_string()));
            assert_eq!(w.last().map(String::as_str), Some("start compute.target"));
            let d = words(&plan(from, Mode::StudioLocal, &defaults()));
            assert!(
                !d.contains(&"stop audio-priority.service".to_string()),
                "keeps its own overlay"
            );
            assert_eq!(
                d.last().map(String::as_str),
                Some("start audio-priority.service")
            );
        }
    }

    #[test]
    fn every_pair_ends_in_the_target_mode_shape() {
        for from in Mode::ALL {
            for to in Mode::ALL {
                let p = run(from, to);
                if from != to {
                    assert!(!p.is_noop(), "{from}->{to}");
                    let starts = p.units_to_start();
                    let wanted = defaults().mode(to).target.clone();
                    let overlay_change = matches!(
                        (from, to),
                        (Mode::Desktop, Mode::StudioLocal) | (Mode::StudioLocal, Mode::Desktop)
                    );
                    assert!(
                        overlay_change || starts.contains(&wanted),
                        "{from}->{to} starts {wanted}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_switch_that_starts_anything_ends_by_settling_and_one_that_only_stops_does_not() {
        for (from, to) in [
            (Mode::Desktop, Mode::Compute),
            (Mode::Compute, Mode::Desktop),
            (Mode::Desktop, Mode::StudioLocal),
        ] {
            let p = run(from, to);
            assert!(
                matches!(
                    p.steps.last(),
                    Some(Step::Settle {
                        window_ms: 1500,
                        ..
                    })
                ),
                "{from}->{to}: {:?}",
                p.steps.last()
            );
        }
        let p = run(Mode::StudioLocal, Mode::Desktop);
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Settle { .. })));
    }

    #[test]
    fn a_zero_window_without_readiness_checks_has_no_settle_step_and_a_check_names_its_unit() {
        let mut c = defaults();
        c.timeouts.settle_ms = 0;
        let p = plan(ObservedMode::Desktop, Mode::Compute, &c);
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Settle { .. })));
        c.readiness.insert(
            "vllm.service".into(),
            crate::config::Readiness {
                http: "http://127.0.0.1:8000/health".into(),
                timeout_secs: 60,
            },
        );
        let p = plan(ObservedMode::Desktop, Mode::Compute, &c);
        let last = p.steps.last().map(Step::describe).unwrap_or_default();
        assert!(
            last.contains("vllm.service must also answer its readiness check"),
            "{last}"
        );
    }

    #[test]
    fn clearing_drift_drains_and_stops_a_stray_vllm_outside_compute_only() {
        let strays = ["vllm.service".to_string()];
        let p = plan_clearing(ObservedMode::Desktop, Mode::Desktop, &defaults(), &strays);
        let actions: Vec<String> = p
            .steps
            .iter()
            .map(|s| format!("{} {}", s.action(), s.unit()))
            .collect();
        assert_eq!(
            actions,
            [
                "drain-vllm vllm.service",
                "resume-vllm vllm.service",
                "stop vllm.service"
            ]
        );
        let p = plan_clearing(ObservedMode::Desktop, Mode::Compute, &defaults(), &strays);
        assert_eq!(p, run(Mode::Desktop, Mode::Compute));
    }

    /// The two configurations every ordering rule is checked on: the
    /// defaults, and vLLM profiles (a desktop profile on the second GPU).
    fn rule_configs() -> [(&'static str, Config); 2] {
        let profiles = r#"{"version": 1,
            "guard_settings": {"gpu": {"display_gpu": "0000:01:00.0"}},
            "vllm_profiles": {"gpus": ["0000:01:00.0", "0000:41:00.0"], "desktop": {"enabled": true}}}"#;
        [
            ("defaults", defaults()),
            (
                "vllm-profiles",
                crate::config::parse(profiles, std::path::Path::new("profiles.json")).unwrap(),
            ),
        ]
    }

    const OBSERVED: [ObservedMode; 5] = [
        ObservedMode::Desktop,
        ObservedMode::StudioLocal,
        ObservedMode::Compute,
        ObservedMode::Transitioning,
        ObservedMode::FailedTransition,
    ];

    /// The ordering rules of a plan, as the sentences that are broken.
    fn broken_rules(p: &Plan, c: &Config) -> Vec<String> {
        let at = |f: &dyn Fn(&Step) -> bool| -> Vec<usize> {
            p.steps
                .iter()
                .enumerate()
                .filter(|(_, s)| f(s))
                .map(|(i, _)| i)
                .collect()
        };
        let drains = at(&|s| {
            matches!(
                s,
                Step::DrainVllm { .. }
                    | Step::DrainJobs { .. }
                    | Step::SlurmDrain { .. }
                    | Step::K3sDrain { .. }
            )
        });
        let budgets = at(&|s| matches!(s, Step::SetBudget { .. }));
        let moves = at(&|s| matches!(s, Step::Stop { .. } | Step::Start { .. }));
        let starts = at(&|s| matches!(s, Step::Start { .. }));
        let display = &c.modes.compute.stop;
        let display_stops = at(&|s| matches!(s, Step::Stop { unit } if display.contains(unit)));
        let gpu_checks = at(&|s| matches!(s, Step::Check { .. }));
        let stopped: Vec<&str> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Stop { unit } => Some(unit.as_str()),
                _ => None,
            })
            .collect();
        let mut broken = Vec::new();
        let before = |a: &[usize], b: &[usize]| match (a.iter().max(), b.iter().min()) {
            (Some(last), Some(first)) => last < first,
            _ => true,
        };
        if !before(&drains, &budgets) || !before(&drains, &moves) {
            broken.push("a drain comes after a budget or a move".to_string());
        }
        if !before(&budgets, &moves) {
            broken.push("a budget comes after a stop or a start".to_string());
        }
        for check in &gpu_checks {
            if !before(&display_stops, &[*check]) || !before(&[*check], &starts) {
                broken.push(format!(
                    "the GPU check (step {}) is not between the last display stop and the first start",
                    check + 1
                ));
            }
        }
        if p.to == Mode::Compute && !display_stops.is_empty() && gpu_checks.is_empty() {
            broken.push("the display stops but the GPU release is not checked".to_string());
        }
        for unit in p.units_to_start() {
            if stopped.contains(&unit.as_str()) {
                broken.push(format!("{unit} is both stopped and started"));
            }
        }
        for unit in &c.keep_running {
            if stopped.contains(&unit.as_str()) {
                broken.push(format!("{unit} must keep running but is stopped"));
            }
        }
        broken
    }

    #[test]
    fn every_plan_keeps_the_ordering_rules() {
        let mut checked = 0;
        for (name, c) in rule_configs() {
            for from in OBSERVED {
                for to in Mode::ALL {
                    let p = plan(from, to, &c);
                    let broken = broken_rules(&p, &c);
                    assert!(
                        broken.is_empty(),
                        "{name}: {from} -> {to}: {broken:?}\n{p:#?}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 2 * 5 * 3);
        // The rules can fail: a plan with a budget after a stop, a check
        // before the display stops, k3s stopped, a unit stopped and started.
        let c = defaults();
        let mut p = plan(ObservedMode::Desktop, Mode::Compute, &c);
        let budget = p.steps.remove(0);
        p.steps.push(budget);
        let check = p
            .steps
            .iter()
            .position(|s| matches!(s, Step::Check { .. }))
            .unwrap();
        let check = p.steps.remove(check);
        p.steps.insert(0, check);
        p.steps.push(Step::Stop {
            unit: "k3s.service".into(),
        });
        p.steps.push(Step::Stop {
            unit: "compute.target".into(),
        });
        let broken = broken_rules(&p, &c);
        assert_eq!(broken.len(), 4, "{broken:?}");
    }

    /// Every plan of `rule_configs`, in words, one step a line.
    fn all_plans_text() -> String {
        let mut out = String::new();
        for (name, c) in rule_configs() {
            for from in OBSERVED {
                for to in Mode::ALL {
                    let p = plan(from, to, &c);
                    out.push_str(&format!("== {name}: {from} -> {to}\n"));
                    if p.is_noop() {
                        out.push_str("   (nothing to do)\n");
                    }
                    for (i, s) in p.steps.iter().enumerate() {
                        out.push_str(&format!("{:>3}. {}\n", i + 1, s.describe()));
                    }
                }
            }
        }
        out
    }

    /// src/plan.golden.txt is every plan as it stands (beside this file, so
    /// the package build's unit tests have it too); a change to any plan
    /// shows in review as a change of that file. Regenerate it with
    /// `MODE_UPDATE_GOLDEN=1 cargo test --bin mode golden`.
    #[test]
    fn every_plan_matches_the_golden_text() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan.golden.txt");
        let now = all_plans_text();
        if std::env::var_os("MODE_UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &now).unwrap();
            return;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with MODE_UPDATE_GOLDEN=1",
                path.display()
            )
        });
        if golden != now {
            let first = golden
                .lines()
                .zip(now.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| golden.lines().count().min(now.lines().count()));
            panic!(
                "the plans differ from {} at line {}:\n  golden: {:?}\n  now:    {:?}\n(regenerate with MODE_UPDATE_GOLDEN=1 if the change is meant)",
                path.display(),
                first + 1,
                golden.lines().nth(first),
                now.lines().nth(first)
            );
        }
    }
}
