//! `mode boot`: the boot policy, run once per boot by
//! `mode-controller-boot.service`. `default` applies the configured default
//! mode; `last` replays the desired mode kept under /var/lib/mode-controller,
//! guards permitting, and falls back to the default when it cannot.

use serde::Serialize;

use crate::config::BootMode;
use crate::mode::Mode;
use crate::state::{TransitionOutcome, TransitionRecord};
use crate::systemd::Bus;

use super::apply::apply;
use super::{Context, Error};

/// The requester recorded for boot transitions.
pub const REQUESTER: &str = "boot";

/// What boot chose, why, and what happened.
#[derive(Debug, Serialize)]
pub struct BootOutcome {
    pub boot_mode: BootMode,
    /// The mode boot went for first.
    pub chosen: Mode,
    /// Why that mode.
    pub reason: String,
    pub transition: TransitionRecord,
    /// The switch to the default mode after the chosen one was refused or failed.
    pub fallback: Option<TransitionRecord>,
}

impl BootOutcome {
    /// The transition that decided where the machine is now.
    pub fn last(&self) -> &TransitionRecord {
        self.fallback.as_ref().unwrap_or(&self.transition)
    }
}

/// The boot policy in force: the configured one unless `over` names another.
pub fn boot_mode(ctx: &Context, over: Option<BootMode>) -> BootMode {
    over.unwrap_or(ctx.config.boot_mode)
}

/// The mode boot goes for first, and why.
fn choose(ctx: &Context, policy: BootMode) -> (Mode, String) {
    let default = ctx.config.default_mode;
    if policy == BootMode::Default {
        return (
            default,
            format!("boot_mode is default: the default mode, {default}"),
        );
    }
    let kept = ctx
        .state
        .persistent_dir()
        .map(|d| d.join("desired").display().to_string())
        .unwrap_or_else(|| "no persistent directory".into());
    match ctx.state.kept_desired() {
        Ok(Some(m)) => (m, format!("boot_mode is last: the last desired mode, {m} ({kept})")),
        Ok(None) => (
            default,
            format!("boot_mode is last, but no desired mode was kept ({kept}): the default mode, {default}"),
        ),
        Err(e) => (default, format!("boot_mode is last, but {e}: the default mode, {default}")),
    }
}

pub async fn boot(ctx: &Context, bus: &Bus, policy: BootMode) -> Result<BootOutcome, Error> {
    let (chosen, reason) = choose(ctx, policy);
    let transition = apply(ctx, bus, chosen, REQUESTER).await?;
    let default = ctx.config.default_mode;
    let missed = matches!(
        transition.outcome,
        TransitionOutcome::Refused | TransitionOutcome::Failed
    );
    let fallback = if missed && chosen != default {
        Some(apply(ctx, bus, default, REQUESTER).await?)
    } else {
        None
    };
    Ok(BootOutcome {
        boot_mode: policy,
        chosen,
        reason,
        transition,
        fallback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateDir;

    fn ctx(t: &tempfile::TempDir) -> Context {
        Context::new(
            crate::config::defaults(),
            StateDir::new(t.path().join("run")).keeping_desired_in(t.path().join("lib")),
        )
    }

    #[test]
    fn default_policy_chooses_the_default_mode_whatever_was_kept() {
        let t = tempfile::tempdir().unwrap();
        let c = ctx(&t);
        c.state.ensure().unwrap();
        c.state.set_desired(Mode::Compute).unwrap();
        let (m, why) = choose(&c, BootMode::Default);
        assert_eq!(m, Mode::Desktop);
        assert!(why.contains("boot_mode is default"), "{why}");
    }

    #[test]
    fn last_policy_chooses_the_kept_mode_or_says_why_not() {
        let t = tempfile::tempdir().unwrap();
        let c = ctx(&t);
        let (m, why) = choose(&c, BootMode::Last);
        assert_eq!(m, Mode::Desktop);
        assert!(why.contains("no desired mode was kept"), "{why}");
        c.state.ensure().unwrap();
        c.state.set_desired(Mode::Compute).unwrap();
        assert_eq!(choose(&c, BootMode::Last).0, Mode::Compute);
        std::fs::write(t.path().join("lib/desired"), "gaming\n").unwrap();
        let (m, why) = choose(&c, BootMode::Last);
        assert_eq!(m, Mode::Desktop);
        assert!(why.contains("corrupt") && why.contains("gaming"), "{why}");
    }
}
