//! The table of built-in guards, one entry per spec (each in its guard's
//! file), and what is derived from it: building a guard by name, the
//! external guards from the configuration, and the post-teardown form.

use std::sync::Arc;

use crate::spec::Spec;
use crate::{
    audio_idle, cpu_load_safe, gpu_display_released, graphical_session_absent, memory_headroom,
    scheduled_work_safe, studio_capability_local, target_reachable, user_jobs_safe, vllm_drainable,
    ExternalGuard, Guard, GuardSettings, Roots,
};

/// Every built-in guard (contract.md), in the order docs/guards.md lists them.
pub static SPECS: [&dyn Spec; 11] = [
    &graphical_session_absent::SPEC,
    &gpu_display_released::SPEC,
    &audio_idle::SPEC,
    &memory_headroom::SPEC,
    &cpu_load_safe::SPEC,
    &user_jobs_safe::SPEC,
    &vllm_drainable::SPEC,
    &target_reachable::SPEC,
    &studio_capability_local::SPEC,
    &scheduled_work_safe::SLURM,
    &scheduled_work_safe::K3S,
];

/// The spec of the built-in guard called `name`.
pub fn spec(name: &str) -> Option<&'static dyn Spec> {
    SPECS.iter().copied().find(|s| s.name() == name)
}

/// The built-in guard called `name`, or `None` for an unknown name.
pub fn builtin(name: &str, settings: &GuardSettings, roots: &Roots) -> Option<Arc<dyn Guard>> {
    spec(name).map(|s| s.build(settings, roots))
}

/// Every external guard in the configuration, in its order.
pub fn external(settings: &GuardSettings) -> Vec<Arc<dyn Guard>> {
    settings
        .external
        .iter()
        .map(|e| Arc::new(ExternalGuard::new(e)) as Arc<dyn Guard>)
        .collect()
}

/// `gpu_display_released` as the post-teardown verification: it polls every
/// `gpu.poll_interval_ms` until the display GPU is released or
/// `gpu.release_timeout_secs` pass (evaluate it as hard).
pub fn gpu_release_verification(settings: &GuardSettings, roots: &Roots) -> Arc<dyn Guard> {
    gpu_display_released::SPEC.build_after_teardown(settings, roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_name_builds_a_guard_reporting_that_name() {
        let settings = GuardSettings::default();
        let roots = Roots::system();
        for spec in SPECS {
            let guard = builtin(spec.name(), &settings, &roots).unwrap();
            assert_eq!(guard.name(), spec.name());
            let again = spec.build_after_teardown(&settings, &roots);
            assert_eq!(again.name(), spec.name());
        }
        assert!(builtin("vibes_ok", &settings, &roots).is_none());
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = SPECS.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SPECS.len());
    }

    #[test]
    fn only_the_display_gpu_is_checked_again_after_teardown() {
        let again: Vec<&str> = SPECS
            .iter()
            .filter(|s| s.after_teardown())
            .map(|s| s.name())
            .collect();
        assert_eq!(again, [gpu_display_released::SPEC.name]);
    }
}
