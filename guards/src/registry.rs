//! Building guards by name: the built-in guards from `GuardSettings` and
//! `Roots`, the external guards from the configuration, and the polling
//! form of `gpu_display_released` used after teardown.

use std::sync::Arc;

use crate::{
    AudioIdle, CpuLoadSafe, ExternalGuard, GpuDisplayReleased, GraphicalSessionAbsent, Guard,
    GuardSettings, MemoryHeadroom, Roots, ScheduledWorkSafe, Scheduler, StudioCapabilityLocal,
    TargetReachable, UserJobsSafe, VllmDrainable,
};

/// The names of the built-in guards (contract.md).
pub const BUILTIN_GUARDS: [&str; 11] = [
    "graphical_session_absent",
    "gpu_display_released",
    "audio_idle",
    "memory_headroom",
    "cpu_load_safe",
    "user_jobs_safe",
    "vllm_drainable",
    "target_reachable",
    "studio_capability_local",
    "slurm_jobs_safe",
    "k3s_gpu_pods_safe",
];

/// The built-in guard called `name`, or `None` for an unknown name.
pub fn builtin(name: &str, settings: &GuardSettings, roots: &Roots) -> Option<Arc<dyn Guard>> {
    let guard: Arc<dyn Guard> = match name {
        "graphical_session_absent" => Arc::new(GraphicalSessionAbsent::new(&settings.sessions)),
        "target_reachable" => Arc::new(TargetReachable),
        "gpu_display_released" => Arc::new(GpuDisplayReleased::new(&settings.gpu, roots)),
        "audio_idle" => Arc::new(AudioIdle::new(&settings.audio, roots)),
        "memory_headroom" => Arc::new(MemoryHeadroom::new(&settings.memory, roots)),
        "cpu_load_safe" => Arc::new(CpuLoadSafe::new(&settings.cpu, roots)),
        "user_jobs_safe" => Arc::new(UserJobsSafe::new(&settings.ai_slice)),
        "vllm_drainable" => Arc::new(VllmDrainable::new(&settings.vllm)),
        "studio_capability_local" => Arc::new(StudioCapabilityLocal),
        "slurm_jobs_safe" => Arc::new(ScheduledWorkSafe::new(Scheduler::Slurm)),
        "k3s_gpu_pods_safe" => Arc::new(ScheduledWorkSafe::new(Scheduler::K3s)),
        _ => return None,
    };
    Some(guard)
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
    Arc::new(GpuDisplayReleased::new(&settings.gpu, roots).waiting_until_released())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_name_builds_a_guard_reporting_that_name() {
        let settings = GuardSettings::default();
        let roots = Roots::system();
        for name in BUILTIN_GUARDS {
            let guard = builtin(name, &settings, &roots).unwrap();
            assert_eq!(guard.name(), name);
        }
        assert!(builtin("vibes_ok", &settings, &roots).is_none());
    }
}
