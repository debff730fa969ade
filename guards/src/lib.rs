//! Typed guards for mode-controller: each guard looks at one part of the
//! machine and says whether a mode switch is safe, naming every blocker with
//! its evidence. Guards never change anything; they only read and report.

mod advice;
mod audio_idle;
mod cpu_load_safe;
mod deadline;
mod external;
mod facts;
mod gpu_display_released;
mod graphical_session_absent;
mod memory_headroom;
pub mod probe;
mod registry;
mod report;
mod roots;
mod run;
mod scheduled_work_safe;
mod settings;
mod studio_capability_local;
mod target_reachable;
mod trust;
mod user_jobs_safe;
mod vllm_drainable;

pub use advice::advice;
pub use audio_idle::{read_audio, AudioClient, AudioIdle, AudioReading};
pub use cpu_load_safe::CpuLoadSafe;
pub use deadline::{secs_and_ms, Deadline};
pub use external::ExternalGuard;
pub use facts::{
    Facts, ScheduledWork, SessionInfo, SliceProcess, SliceUnit, UnitState, GRAPHICAL_TYPES,
};
pub use gpu_display_released::{
    resolve_display, DisplayGpu, DisplayGpuUse, GpuDisplayReleased, GpuHolder, UnknownHolder,
};
pub use graphical_session_absent::GraphicalSessionAbsent;
pub use memory_headroom::MemoryHeadroom;
pub use registry::{builtin, external, gpu_release_verification, BUILTIN_GUARDS};
pub use report::{GuardReport, GuardResult, Outcome, Severity, Verdict};
pub use roots::Roots;
pub use run::evaluate_all;
pub use scheduled_work_safe::{ScheduledWorkSafe, Scheduler};
pub use settings::within;
pub use settings::{
    AiSliceSettings, AudioSettings, CpuSettings, ExternalGuardSettings, ExtraDevice, GpuSettings,
    GuardSettings, MemorySettings, ScanMethod, SessionSettings, SettingsError, VllmSettings,
    MAX_EXTERNAL_SECS, MAX_INTERVAL_MS, MAX_MIB, MAX_WAIT_SECS,
};
pub use studio_capability_local::StudioCapabilityLocal;
pub use target_reachable::TargetReachable;
pub use trust::check_trusted;
pub use user_jobs_safe::UserJobsSafe;
pub use vllm_drainable::{Queue, QueueWait, VllmDrainable};

use std::time::Duration;

/// One check that can block (hard) or warn about (soft) a transition.
///
/// `check` reads the world through `facts` (gathered once over D-Bus by the
/// controller) and through whatever roots the guard was built with (procfs,
/// sysfs, ...), so tests can point a guard at a prepared tree.
pub trait Guard: Send + Sync {
    /// The stable name reported in `last-guards.json`.
    fn name(&self) -> &str;
    /// How long `check` may take before it is reported as `error`.
    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
    /// Decide. A guard that cannot decide returns `Outcome::Error`.
    fn check(&self, facts: &Facts) -> Verdict;
}
