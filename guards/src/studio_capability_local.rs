//! `studio_capability_local`: the studio capability is placed on this
//! machine, as the configuration's `capability_placement` says now (handed
//! in as `Facts::capability_placement`); entering studio-local anywhere else
//! would be a lie.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::spec::{Blocked, GuardSpec};
use crate::{Facts, Guard, Outcome, Severity, Verdict};

pub const SPEC: GuardSpec<Evidence> = GuardSpec {
    name: "studio_capability_local",
    severity: Severity::Hard,
    hard_when: None,
    after_teardown: None,
    build: |_, _| Arc::new(StudioCapabilityLocal),
    advice,
};

/// Where the placement puts the studio, and where that was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub source: String,
    /// `local` or a host name.
    pub studio: String,
}

fn advice(b: &Blocked<Evidence>) -> Option<String> {
    Some(if b.failed {
        format!(
            "the studio runs on {}: use that machine, or set capability_placement.studio to \"local\" in the configuration",
            b.evidence.as_ref().map_or("another host", |e| e.studio.as_str())
        )
    } else {
        "run `mode reconcile` to regenerate the state directory, or check its capability-placement.json".into()
    })
}

pub struct StudioCapabilityLocal;

impl Guard for StudioCapabilityLocal {
    fn name(&self) -> &str {
        SPEC.name
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let source = "capability_placement";
        let Some(object) = facts.capability_placement.as_object() else {
            return Verdict::error(format!("{source} is not a JSON object"));
        };
        let where_ = match object.get("studio") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Verdict::error(format!(
                    "{source}: \"studio\" should be a host name or \"local\", found {other}"
                ))
            }
            None => {
                return Verdict::error(format!(
                    "{source} does not place the studio (no \"studio\" key)"
                ))
            }
        };
        let evidence = Evidence {
            source: source.into(),
            studio: where_.clone(),
        };
        if where_ == "local" {
            return SPEC.verdict(
                Outcome::Pass,
                "the studio capability is placed on this machine",
                &evidence,
            );
        }
        SPEC.fail(
            format!("the studio capability is placed on {where_:?}, not on this machine ({source} in the configuration)"),
            &evidence,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::blocked;
    use serde_json::json;

    fn check(placement: serde_json::Value) -> Verdict {
        let mut facts = Facts::new("studio-local");
        facts.capability_placement = placement;
        StudioCapabilityLocal.check(&facts)
    }

    #[test]
    fn passes_when_the_studio_is_local() {
        let v = check(json!({"studio": "local", "vllm": "gpu-box"}));
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    }

    #[test]
    fn fails_naming_the_host_the_studio_is_placed_on() {
        let v = check(json!({"studio": "studio-pc", "vllm": "local"}));
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.reason.contains("placed on \"studio-pc\""), "{}", v.reason);
        assert_eq!(v.evidence["studio"], "studio-pc");
    }

    #[test]
    fn the_advice_names_the_host_the_check_found_or_the_file_to_mend() {
        let r = blocked(SPEC.name, check(json!({"studio": "studio-pc"}))).unwrap();
        assert_eq!(
            crate::advice(&r).unwrap(),
            "the studio runs on studio-pc: use that machine, or set capability_placement.studio to \"local\" in the configuration"
        );
        let r = blocked(SPEC.name, check(json!({"studio": 3}))).unwrap();
        assert!(
            crate::advice(&r)
                .unwrap()
                .contains("capability-placement.json"),
            "{r:?}"
        );
    }

    #[test]
    fn a_missing_or_malformed_placement_is_an_error_naming_it() {
        for placement in [
            serde_json::Value::Null,
            json!([1]),
            json!({"vllm": "local"}),
            json!({"studio": 3}),
        ] {
            let v = check(placement.clone());
            assert_eq!(v.outcome, Outcome::Error, "{placement}: {}", v.reason);
            assert!(v.reason.contains("capability_placement"), "{}", v.reason);
        }
    }
}
