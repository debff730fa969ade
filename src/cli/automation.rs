//! The two automatic commands, `mode idle-check` and `mode boot`: turning
//! their outcome into text and JSON. The use cases live in
//! src/controller/idle.rs and boot.rs, the idle decision in src/idle/.

use std::fmt::Write;

use crate::config::BootMode;
use crate::controller::{self, BootOutcome, Context, Error, Exit, IdleCheck, IdleOptions};
use crate::idle::{CpuPressure, Decision};
use crate::systemd::Bus;

use super::args::IdleCheckArgs;
use super::{render, Output};

pub(super) async fn idle_check(
    ctx: &Context,
    bus: &Bus,
    args: &IdleCheckArgs,
) -> Result<Output, Error> {
    let opts = IdleOptions {
        threshold_secs: args.threshold,
        input_dir: args.input_dir.clone(),
        max_cpu_pressure: args.max_cpu_pressure,
        dry_run: args.dry_run,
    };
    let (check, exit) = controller::idle_check(ctx, bus, &opts).await?;
    let (text, error) = idle_text(&check, ctx);
    Ok(Output {
        text,
        json: serde_json::to_value(&check).unwrap_or_default(),
        exit,
        error: if exit.is_success() { None } else { error },
    })
}

fn idle_text(c: &IdleCheck, ctx: &Context) -> (String, Option<String>) {
    let mut out = String::new();
    let f = &c.figures;
    let idle = match f.idle_secs {
        Some(s) => format!("idle {s} s of {} s", f.threshold_secs),
        None => format!("not idle; threshold {} s", f.threshold_secs),
    };
    let word = match c.decision {
        Decision::Promote if c.acted => "promote: compute requested",
        Decision::Promote => "promote",
        Decision::Stay => "stay",
    };
    let _ = writeln!(out, "decision:  {word} ({}, {idle})", c.observed);
    let label = if c.decision == Decision::Stay {
        "why not:"
    } else {
        "why:"
    };
    for r in &c.reasons {
        let _ = writeln!(out, "{label:<10} {r}");
    }
    if let Some(n) = &c.note {
        let _ = writeln!(out, "note:      {n}");
    }
    let input = match &f.input {
        Some(i) => format!(
            "{} devices in {}, last activity {}",
            i.devices,
            i.dir,
            i.last_activity
                .as_deref()
                .map_or("none seen".into(), crate::clock::Stamp::local_text)
        ),
        None => "not considered".into(),
    };
    let audio = serde_json::to_value(&f.audio)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_string))
        .unwrap_or_default();
    let cpu = match &f.cpu_pressure {
        CpuPressure::Read { avg60 } => {
            format!("{avg60:.1}% (avg60, max {:.1}%)", f.max_cpu_pressure)
        }
        CpuPressure::Absent => "no PSI here".into(),
        CpuPressure::Unreadable { problem } => problem.clone(),
    };
    let _ = writeln!(
        out,
        "idle since: {}",
        f.idle_since
            .as_deref()
            .map_or("-".into(), crate::clock::Stamp::local_text)
    );
    let _ = writeln!(out, "input:     {input}");
    let _ = writeln!(out, "audio:     {audio}");
    let _ = writeln!(out, "cpu:       {cpu}");
    let mut error = None;
    if let Some(t) = &c.transition {
        let (text, err) = render::transition(t, ctx.state.root());
        out.push_str(&text);
        error = err;
    }
    if c.acted {
        // The request's own line, where its record does not say it all.
        error = c.note.clone().or(error);
    }
    (out, error)
}

pub(super) async fn boot(
    ctx: &Context,
    bus: &Bus,
    over: Option<BootMode>,
) -> Result<Output, Error> {
    let policy = controller::boot_mode(ctx, over);
    let outcome = controller::boot(ctx, bus, policy).await?;
    Ok(boot_output(&outcome, ctx))
}

fn boot_output(b: &BootOutcome, ctx: &Context) -> Output {
    let mut text = format!("boot: {}\n", b.reason);
    let (t, mut error) = render::transition(&b.transition, ctx.state.root());
    text.push_str(&t);
    if let Some(f) = &b.fallback {
        let (t, e) = render::transition(f, ctx.state.root());
        let _ = writeln!(text, "falling back to the default mode, {}:", f.to);
        text.push_str(&t);
        error = e;
    }
    let exit = Exit::of_outcome(b.last().outcome);
    Output {
        text,
        json: serde_json::to_value(b).unwrap_or_default(),
        exit,
        error: if exit.is_success() { None } else { error },
    }
}
