//! `studio_capability_local`: the studio capability is placed on this
//! machine, as the configuration's `capability_placement` says now (handed
//! in as `Facts::capability_placement`); entering studio-local anywhere else
//! would be a lie.

use serde_json::json;

use crate::{Facts, Guard, Verdict};

pub const NAME: &str = "studio_capability_local";

pub struct StudioCapabilityLocal;

impl Guard for StudioCapabilityLocal {
    fn name(&self) -> &str {
        NAME
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
        let evidence = json!({ "source": source, "studio": where_ });
        if where_ == "local" {
            return Verdict::new(
                crate::Outcome::Pass,
                "the studio capability is placed on this machine",
                evidence,
            );
        }
        Verdict::fail(
            format!("the studio capability is placed on {where_:?}, not on this machine ({source} in the configuration)"),
            evidence,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

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
