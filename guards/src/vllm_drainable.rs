//! `vllm_drainable`: the vLLM server has nothing running or queued, on two
//! consecutive scrapes of `/metrics`, so stopping it loses no request.
//! Unreachable while its unit is active is an error; not active is skipped.

use std::thread;
use std::time::Duration;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::probe::http::{self, HttpUrl};
use crate::probe::prometheus;
use crate::settings::VllmSettings;
use crate::spec::{Blocked, GuardSpec};
use crate::{Facts, Guard, Outcome, Severity, Verdict};

/// The controller builds it for the vLLM units a plan drains
/// (`VllmDrainable::for_units`); `build` gives the one of `guard_settings.vllm.unit`.
pub const SPEC: GuardSpec<Evidence> = GuardSpec {
    name: "vllm_drainable",
    severity: Severity::Soft,
    hard_when: None,
    after_teardown: None,
    build: |settings, _| Arc::new(VllmDrainable::new(&settings.vllm)),
    advice,
};

/// The last scrape of vLLM's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub endpoint: String,
    pub running: f64,
    pub waiting: f64,
    /// How many scrapes were taken.
    pub scrapes: u64,
}

fn advice(b: &Blocked<Evidence>) -> Option<String> {
    Some(if b.failed {
        let requests = match &b.evidence {
            Some(e) => format!("{} running and {} waiting requests", e.running, e.waiting),
            None => "requests".into(),
        };
        format!("wait for vLLM's {requests} to finish (or stop sending them), or raise guard_settings.vllm.drain_wait_secs")
    } else {
        "check the vLLM unit (systemctl status) and guard_settings.vllm.endpoint".into()
    })
}
pub const RUNNING_METRIC: &str = "vllm:num_requests_running";
pub const WAITING_METRIC: &str = "vllm:num_requests_waiting";

/// Unit states in which vLLM may be serving.
const LIVE_STATES: [&str; 4] = ["active", "activating", "reloading", "deactivating"];

pub struct VllmDrainable {
    settings: VllmSettings,
    /// The vLLM units that may serve on the endpoint (`settings.unit`, or
    /// every profile unit of the mode being left).
    units: Vec<String>,
}

/// Which requests must reach 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueWait {
    /// Running and waiting: an open server with nothing to do.
    RunningAndWaiting,
    /// Running only: a paused server holds its waiting requests (queued
    /// before the pause or arrived since) without ever running them, so
    /// only running ones can finish.
    RunningOnly,
}

/// One scrape's counts (summed over engines).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queue {
    pub running: f64,
    pub waiting: f64,
}

impl Queue {
    pub fn is_empty(&self) -> bool {
        self.running == 0.0 && self.waiting == 0.0
    }
}

impl VllmDrainable {
    pub fn new(settings: &VllmSettings) -> Self {
        Self::for_units(settings, std::slice::from_ref(&settings.unit))
    }

    /// The guard for several vLLM units sharing the endpoint (vLLM
    /// profiles): whichever of them runs is drained.
    pub fn for_units(settings: &VllmSettings, units: &[String]) -> Self {
        Self {
            settings: settings.clone(),
            units: if units.is_empty() {
                vec![settings.unit.clone()]
            } else {
                units.to_vec()
            },
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.request_timeout_ms.max(1))
    }

    /// One scrape of `base`'s `/metrics`.
    pub fn scrape(&self, base: &HttpUrl) -> Result<Queue, String> {
        let url = base.with_path("/metrics");
        let response = http::get(&url, self.request_timeout()).map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!(
                "{} answered HTTP {}",
                url.to_url(),
                response.status
            ));
        }
        let value = |metric: &str| {
            prometheus::sum(&response.body, metric)
                .ok_or_else(|| format!("{} has no {metric}", url.to_url()))
        };
        Ok(Queue {
            running: value(RUNNING_METRIC)?,
            waiting: value(WAITING_METRIC)?,
        })
    }
}

impl Guard for VllmDrainable {
    fn name(&self) -> &str {
        SPEC.name
    }

    fn timeout(&self) -> Duration {
        crate::secs_and_ms(
            self.settings.drain_wait_secs,
            self.settings.scrape_interval_ms.saturating_mul(2),
        )
        .saturating_add(self.request_timeout().saturating_mul(3))
        .saturating_add(Duration::from_secs(2))
    }

    fn check(&self, facts: &Facts) -> Verdict {
        self.wait(facts, QueueWait::RunningAndWaiting)
    }
}

impl VllmDrainable {
    /// Scrape until the requests `what` names are 0 on two scrapes in a row
    /// (pass), or `drain_wait_secs` pass (fail); a scrape that fails is an
    /// error, never a pass.
    pub fn wait(&self, facts: &Facts, what: QueueWait) -> Verdict {
        // The unit that serves: the first live one, else the first whose
        // state was not gathered; when every one is known and not live,
        // there is nothing to drain.
        let live = |u: &&String| {
            facts.unit_state(u).is_some_and(|s| {
                s.load_state != "not-found" && LIVE_STATES.contains(&s.active_state.as_str())
            })
        };
        let unknown = |u: &&String| facts.unit_state(u).is_none();
        let Some(unit) = self
            .units
            .iter()
            .find(live)
            .or_else(|| self.units.iter().find(unknown))
        else {
            let words: Vec<String> = self
                .units
                .iter()
                .filter_map(|u| facts.unit_state(u))
                .map(|s| {
                    if s.load_state == "not-found" {
                        format!("{} is not installed", s.unit)
                    } else {
                        format!("{} is {}", s.unit, s.active_state)
                    }
                })
                .collect();
            return Verdict::skipped(format!("{}; nothing to drain", words.join(", ")));
        };
        let state = facts.unit_state(unit);
        let unit_words = match state {
            Some(s) => format!("{unit} is {}", s.active_state),
            None => format!("the state of {unit} was not gathered"),
        };
        let base = match HttpUrl::parse(&self.settings.endpoint) {
            Ok(u) => u,
            Err(e) => return Verdict::error(format!("guard_settings.vllm.endpoint: {e}")),
        };
        let health = base.with_path("/health");
        match http::get(&health, self.request_timeout()) {
            Ok(r) if r.status == 200 => {}
            Ok(r) => {
                return Verdict::error(format!(
                    "{unit_words} but {} answers HTTP {}: vLLM is not healthy, so its queue cannot be read",
                    health.to_url(),
                    r.status
                ))
            }
            Err(e) => return Verdict::error(format!("{unit_words} but vLLM is unreachable: {e}")),
        }

        let interval = Duration::from_millis(self.settings.scrape_interval_ms);
        let deadline = crate::Deadline::after(Duration::from_secs(self.settings.drain_wait_secs));
        let mut empty_in_a_row = 0;
        let mut scrapes: u64 = 0;
        loop {
            let queue = match self.scrape(&base) {
                Ok(q) => q,
                Err(e) => return Verdict::error(format!("cannot read vLLM's queue: {e}")),
            };
            scrapes += 1;
            let evidence = Evidence {
                endpoint: base.to_url(),
                running: queue.running,
                waiting: queue.waiting,
                scrapes,
            };
            let empty = match what {
                QueueWait::RunningAndWaiting => queue.is_empty(),
                QueueWait::RunningOnly => queue.running == 0.0,
            };
            if empty {
                empty_in_a_row += 1;
                if empty_in_a_row >= 2 {
                    return SPEC.verdict(
                        Outcome::Pass,
                        match what {
                            QueueWait::RunningAndWaiting => format!("vLLM has no running or waiting requests on {empty_in_a_row} scrapes {} ms apart", interval.as_millis()),
                            QueueWait::RunningOnly => format!("vLLM has no running requests on {empty_in_a_row} scrapes {} ms apart ({} held waiting)", interval.as_millis(), queue.waiting),
                        },
                        &evidence,
                    );
                }
            } else {
                empty_in_a_row = 0;
                if deadline.passed() {
                    return SPEC.fail(
                        format!(
                            "vLLM still has {} running and {} waiting requests{}",
                            queue.running,
                            queue.waiting,
                            if self.settings.drain_wait_secs > 0 {
                                format!(" after waiting {} s", self.settings.drain_wait_secs)
                            } else {
                                String::new()
                            }
                        ),
                        &evidence,
                    );
                }
            }
            thread::sleep(interval);
        }
    }
}
