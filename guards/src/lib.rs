//! Typed guards for mode-controller: each guard looks at one part of the
//! machine and says whether a mode switch is safe, naming every blocker with
//! its evidence. Guards never change anything; they only read and report.
//! Each built-in guard is one `GuardSpec` in its own file; `registry` lists
//! them. This file only names the modules and what they export.

mod advice;
mod audio_idle;
mod cpu_load_safe;
mod deadline;
mod external;
mod facts;
mod gpu_display_released;
mod graphical_session_absent;
mod guard;
mod memory_headroom;
pub mod probe;
mod registry;
mod report;
mod roots;
mod run;
mod scheduled_work_safe;
mod settings;
mod spec;
mod studio_capability_local;
mod target_reachable;
#[cfg(test)]
mod testing;
mod trust;
mod user_jobs_safe;
mod vllm_drainable;

pub use advice::advice;
pub use audio_idle::{read_audio, AudioClient, AudioIdle, AudioReading, AudioSource};
pub use cpu_load_safe::{CpuLoadSafe, Evidence as CpuLoadEvidence};
pub use deadline::{secs_and_ms, Deadline};
pub use external::ExternalGuard;
pub use facts::{
    Facts, ScheduledWork, SessionInfo, SliceProcess, SliceUnit, UnitState, GRAPHICAL_TYPES,
};
pub use gpu_display_released::{
    resolve_display, ChosenBy, DisplayGpu, DisplayGpuUse, GpuDisplayReleased, GpuHolder,
    UnknownHolder,
};
pub use graphical_session_absent::GraphicalSessionAbsent;
pub use guard::Guard;
pub use memory_headroom::MemoryHeadroom;
pub use registry::{builtin, external, gpu_release_verification, spec, SPECS};
pub use report::{GuardReport, GuardResult, Outcome, Severity, Verdict};
pub use roots::Roots;
pub use run::evaluate_all;
pub use scheduled_work_safe::{ScheduledWorkSafe, Scheduler};
pub use settings::within;
pub use settings::{
    AiSliceSettings, AudioSettings, CpuSettings, ExternalGuardSettings, ExtraDevice, GpuSettings,
    GuardSettings, MemorySettings, SessionSettings, SettingsError, VllmSettings, MAX_EXTERNAL_SECS,
    MAX_INTERVAL_MS, MAX_MIB, MAX_WAIT_SECS,
};
pub use spec::{Blocked, Build, GuardSpec, HardWhen, Spec};
pub use studio_capability_local::StudioCapabilityLocal;
pub use target_reachable::TargetReachable;
pub use trust::check_trusted;
pub use user_jobs_safe::UserJobsSafe;
pub use vllm_drainable::{Queue, QueueWait, VllmDrainable};

// The spec of each built-in guard, under the name the controller, the plan
// and the configuration's defaults use for it.
pub use audio_idle::SPEC as AUDIO_IDLE;
pub use cpu_load_safe::SPEC as CPU_LOAD_SAFE;
pub use gpu_display_released::SPEC as GPU_DISPLAY_RELEASED;
pub use graphical_session_absent::SPEC as GRAPHICAL_SESSION_ABSENT;
pub use memory_headroom::SPEC as MEMORY_HEADROOM;
pub use scheduled_work_safe::{K3S as K3S_GPU_PODS_SAFE, SLURM as SLURM_JOBS_SAFE};
pub use studio_capability_local::SPEC as STUDIO_CAPABILITY_LOCAL;
pub use target_reachable::SPEC as TARGET_REACHABLE;
pub use user_jobs_safe::SPEC as USER_JOBS_SAFE;
pub use vllm_drainable::SPEC as VLLM_DRAINABLE;
