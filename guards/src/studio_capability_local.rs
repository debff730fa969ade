//! `studio_capability_local`: the studio capability is placed on this
//! machine, as `capability-placement.json` in the state directory records
//! it; entering studio-local anywhere else would be a lie.

use std::path::PathBuf;

use serde_json::json;

use crate::{Facts, Guard, Verdict};

pub const NAME: &str = "studio_capability_local";
pub const PLACEMENT_FILE: &str = "capability-placement.json";

pub struct StudioCapabilityLocal {
    placement_file: PathBuf,
}

impl StudioCapabilityLocal {
    /// Reads `capability-placement.json` in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            placement_file: state_dir.into().join(PLACEMENT_FILE),
        }
    }
}

impl Guard for StudioCapabilityLocal {
    fn name(&self) -> &str {
        NAME
    }

    fn check(&self, _facts: &Facts) -> Verdict {
        let file = self.placement_file.display();
        let text = match std::fs::read_to_string(&self.placement_file) {
            Ok(t) => t,
            Err(e) => return Verdict::error(format!("cannot read {file}: {e}")),
        };
        let placement: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return Verdict::error(format!("{file} is not valid JSON: {e}")),
        };
        let Some(object) = placement.as_object() else {
            return Verdict::error(format!("{file} is not a JSON object"));
        };
        let where_ = match object.get("studio") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Verdict::error(format!(
                    "{file}: \"studio\" should be a host name or \"local\", found {other}"
                ))
            }
            None => {
                return Verdict::error(format!(
                    "{file} does not place the studio (no \"studio\" key)"
                ))
            }
        };
        let evidence = json!({ "file": file.to_string(), "studio": where_ });
        if where_ == "local" {
            return Verdict::new(
                crate::Outcome::Pass,
                "the studio capability is placed on this machine",
                evidence,
            );
        }
        Verdict::fail(
            format!("the studio capability is placed on {where_:?}, not on this machine ({file})"),
            evidence,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    fn check(content: Option<&str>) -> (Verdict, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = content {
            std::fs::write(dir.path().join(PLACEMENT_FILE), c).unwrap();
        }
        let v = StudioCapabilityLocal::new(dir.path()).check(&Facts::new("studio-local"));
        (v, dir)
    }

    #[test]
    fn passes_when_the_studio_is_local() {
        let (v, _d) = check(Some(r#"{"studio": "local", "vllm": "gpu-box"}"#));
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    }

    #[test]
    fn fails_naming_the_host_the_studio_is_placed_on() {
        let (v, _d) = check(Some(r#"{"studio": "studio-pc", "vllm": "local"}"#));
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.reason.contains("placed on \"studio-pc\""), "{}", v.reason);
        assert_eq!(v.evidence["studio"], "studio-pc");
    }

    #[test]
    fn a_missing_or_corrupt_file_is_an_error_naming_it() {
        for content in [
            None,
            Some("{not json"),
            Some("[1]"),
            Some(r#"{"vllm": "local"}"#),
            Some(r#"{"studio": 3}"#),
        ] {
            let (v, _d) = check(content);
            assert_eq!(v.outcome, Outcome::Error, "{content:?}: {}", v.reason);
            assert!(v.reason.contains(PLACEMENT_FILE), "{}", v.reason);
        }
    }
}
