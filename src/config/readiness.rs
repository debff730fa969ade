//! When a started unit counts as up: it stays active through the settle
//! window (`timeouts.settle_ms`) and, where one is configured, answers its
//! readiness check (an HTTP URL that must return 2xx, such as vLLM's
//! `/health`) within the check's timeout.

use serde::{Deserialize, Serialize};

use super::Problem;

/// The longest a readiness check may be given (a large model loads for minutes).
pub const MAX_READY_SECS: u64 = 3600;

/// One unit's readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// `http://host[:port]/path`: ready once a GET answers 2xx.
    pub http: String,
    /// How long after its start the unit may take to answer.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    120
}

impl Readiness {
    /// The field's problems (`at` is the field path of this entry).
    pub fn problems(&self, at: &str, out: &mut Vec<Problem>) {
        if let Err(e) = mode_guards::probe::http::HttpUrl::parse(&self.http) {
            out.push((format!("{at}.http"), e.to_string()));
        }
        if !(1..=MAX_READY_SECS).contains(&self.timeout_secs) {
            out.push((
                format!("{at}.timeout_secs"),
                format!(
                    "{} is out of range: between 1 and {MAX_READY_SECS} seconds",
                    self.timeout_secs
                ),
            ));
        }
    }
}
