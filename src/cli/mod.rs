//! The `mode` command: picks the command, runs it on a current-thread tokio
//! runtime, renders text or JSON, and maps every error to the contract's exit
//! code with one line on stderr. No logic beyond choosing and formatting.

mod args;
mod automation;
mod render;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use serde::Serialize;

pub use args::Cli;
use args::{Command, ConfigCommand};

use crate::config;
use crate::controller::requester::What;
use crate::controller::{self, Context, Error, RequestOutcome};
use crate::state::{StateDir, TransitionOutcome, TransitionRecord};
use crate::systemd::Bus;

/// What a command produced: text or a JSON value, and its exit code.
struct Output {
    text: String,
    json: serde_json::Value,
    code: u8,
    /// The one stderr line for a non-zero exit.
    error: Option<String>,
}

impl Output {
    fn ok<T: Serialize>(text: String, value: &T) -> Self {
        Self {
            text,
            json: serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            code: 0,
            error: None,
        }
    }
}

fn outcome_code(outcome: TransitionOutcome) -> u8 {
    match outcome {
        TransitionOutcome::Converged | TransitionOutcome::Noop => 0,
        TransitionOutcome::Refused => 3,
        TransitionOutcome::Failed | TransitionOutcome::InProgress => 4,
    }
}

fn transition_output(record: &TransitionRecord, ctx: &Context) -> Output {
    let (text, error) = render::transition(record, ctx.state.root());
    Output {
        text,
        json: serde_json::to_value(record).unwrap_or_default(),
        code: outcome_code(record.outcome),
        error,
    }
}

/// A finished transition as output; one that ran but could not be fully
/// recorded shows its outcome with the exit code of the write failure.
fn recorded(result: Result<TransitionRecord, Error>, ctx: &Context) -> Result<Output, Error> {
    match result {
        Ok(record) => Ok(transition_output(&record, ctx)),
        Err(e @ Error::Unrecorded { .. }) => {
            let Error::Unrecorded { record, .. } = &e else {
                return Err(e);
            };
            let mut out = transition_output(record, ctx);
            out.code = e.exit_code();
            out.error = Some(e.to_string());
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

/// What a request (or a reconcile asked of the unit) printed: the record of
/// the transition that served it, or the sentence why there is none.
/// `unit` is named in the hints.
fn request_output(outcome: RequestOutcome, ctx: &Context, unit: &str) -> Output {
    match outcome {
        RequestOutcome::Queued { unit, job } => Output::ok(
            format!("queued {unit} (job {job}); follow it with `mode status`\n"),
            &serde_json::json!({"queued": unit, "job": job}),
        ),
        RequestOutcome::Finished {
            record: Some(r),
            exit,
            why,
        } => {
            let mut out = transition_output(&r, ctx);
            if exit != out.code || why.is_some() {
                out.error = why.or(out.error).or_else(|| {
                    Some(format!(
                        "the transition to {} {}, but recording it failed: {}",
                        r.to,
                        r.outcome.word(),
                        r.record_error
                            .clone()
                            .unwrap_or_else(|| format!("see `journalctl -u {unit}`"))
                    ))
                });
            }
            out.code = exit;
            out
        }
        RequestOutcome::Finished {
            record: None,
            exit,
            why,
        } => {
            let why = why.unwrap_or_else(|| {
                format!("the transition unit exited with code {exit}; see `journalctl -u {unit}`")
            });
            Output {
                text: String::new(),
                json: serde_json::json!({"error": why, "exit_code": exit}),
                code: if exit == 0 { 1 } else { exit },
                error: Some(why),
            }
        }
    }
}

/// The unit a reconcile by this (unprivileged) user runs as, for hints.
fn reconcile_unit() -> String {
    controller::requester::Requester::caller().map_or_else(
        |_| "mode-controller@reconcile:USER.service".into(),
        |r| {
            controller::requester::Instance {
                what: What::Reconcile,
                user: Some(r.name),
            }
            .unit()
        },
    )
}

fn nothing_to_reconcile() -> Output {
    Output::ok(
        "already converged: nothing to do\n".into(),
        &serde_json::json!({"outcome": "noop"}),
    )
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))
}

async fn run_async(cli: &Cli, ctx: &mut Context) -> Result<Output, Error> {
    let bus = Bus::connect().await?;
    ctx.fit_to_machine(&bus).await?;
    let ctx = &*ctx;
    let caller = format!("cli uid={}", nix::unistd::getuid());
    match &cli.command {
        Command::Request {
            mode,
            no_wait,
            timeout,
        } => {
            let secs = timeout.unwrap_or(ctx.config.timeouts.request_secs);
            let outcome =
                controller::request(ctx, &bus, *mode, !no_wait, Duration::from_secs(secs)).await?;
            Ok(request_output(
                outcome,
                ctx,
                &format!("mode-controller@{mode}.service"),
            ))
        }
        Command::Apply { mode } => match (mode.what, &mode.user) {
            (What::Mode(m), None) => recorded(controller::apply(ctx, &bus, m, &caller).await, ctx),
            _ => match controller::apply_instance(ctx, &bus, mode, &caller).await {
                Ok(Some(record)) => Ok(transition_output(&record, ctx)),
                Err(e) => recorded(Err(e), ctx),
                Ok(None) => Ok(nothing_to_reconcile()),
            },
        },
        Command::IdleCheck(args) => automation::idle_check(ctx, &bus, args).await,
        Command::Boot { boot_mode } => automation::boot(ctx, &bus, *boot_mode).await,
        Command::Reconcile if !nix::unistd::getuid().is_root() => {
            let timeout = Duration::from_secs(ctx.config.timeouts.request_secs);
            match controller::reconcile_through_polkit(ctx, &bus, timeout).await? {
                RequestOutcome::Finished {
                    record: None,
                    exit: 0,
                    ..
                } => Ok(nothing_to_reconcile()),
                outcome => Ok(request_output(outcome, ctx, &reconcile_unit())),
            }
        }
        Command::Reconcile => match controller::reconcile(ctx, &bus).await {
            Ok(Some(record)) => Ok(transition_output(&record, ctx)),
            Err(e) => recorded(Err(e), ctx),
            Ok(None) => Ok(nothing_to_reconcile()),
        },
        Command::Status => {
            let s = controller::status(ctx, &bus).await?;
            let mut out = Output::ok(render::status(&s), &s);
            if let Some(first) = s.problems.first() {
                out.code = 7;
                out.error = Some(format!(
                    "{first}; `sudo mode reconcile` or a new request rewrites it"
                ));
            }
            Ok(out)
        }
        Command::WayBack => {
            crate::idle::wayback::run::way_back(ctx, &bus).await?;
            Ok(Output::ok(String::new(), &serde_json::Value::Null))
        }
        Command::Watch => {
            let json = cli.json;
            controller::watch(ctx, &bus, async |s| {
                let line = if json {
                    render::watch_json(s).to_string()
                } else {
                    render::watch_line(s)
                };
                let mut out = std::io::stdout().lock();
                // A reader that went away (a status bar restarted) ends the watch.
                writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
            })
            .await?;
            Ok(Output::ok(String::new(), &serde_json::Value::Null))
        }
        Command::Notify => {
            let mut notifier = crate::systemd::Notifier::connect().await?;
            let mut last: Option<controller::Snapshot> = None;
            let mut failure = None;
            controller::watch(ctx, &bus, async |s| {
                let news = last.as_ref().and_then(|l| controller::news(l, s));
                last = Some(s.clone());
                let Some((summary, body, urgent)) = news else {
                    return true;
                };
                // The notification service gone (the session ending) ends this too.
                match notifier.notify(&summary, &body, urgent).await {
                    Ok(()) => true,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            })
            .await?;
            match failure {
                Some(e) => Err(e.into()),
                None => Ok(Output::ok(String::new(), &serde_json::Value::Null)),
            }
        }
        Command::Current => {
            let lock = ctx.state.lock_holder();
            let recorded = ctx.state.current().unwrap_or(None);
            let o = ctx.observe(&bus, lock.as_ref(), recorded).await?;
            Ok(Output::ok(format!("{}\n", o.mode), &o))
        }
        Command::DryRun { mode } => {
            let d = controller::dry_run(ctx, &bus, *mode).await?;
            Ok(Output::ok(render::dry_run(&d), &d))
        }
        Command::Explain { mode } => {
            let lock = ctx.state.lock_holder();
            let recorded = ctx.state.current().unwrap_or(None);
            let o = ctx.observe(&bus, lock.as_ref(), recorded).await?;
            let dry = match mode {
                Some(m) => Some(controller::dry_run(ctx, &bus, *m).await?),
                None => None,
            };
            let text = render::explain(&o, dry.as_ref());
            Ok(Output::ok(
                text.clone(),
                &serde_json::json!({"explanation": text, "observed": o, "dry_run": dry}),
            ))
        }
        Command::Desired
        | Command::Config(_)
        | Command::Completions { .. }
        | Command::Manpage { .. } => Err(Error::Internal("this command needs no bus".into())),
    }
}

/// Commands that need neither the bus nor a runtime.
fn run_local(cli: &Cli, ctx: Option<&Context>) -> Option<Result<Output, Error>> {
    match &cli.command {
        Command::Desired => ctx.map(|ctx| {
            controller::desired_mode(ctx).map(|(m, source)| {
                Output::ok(
                    format!("{m}\n"),
                    &serde_json::json!({"desired": m, "source": source}),
                )
            })
        }),
        Command::Config(ConfigCommand::Check { file }) => Some(check_config(file)),
        Command::Config(ConfigCommand::Defaults) => {
            let d = config::defaults();
            Some(Ok(Output::ok(
                serde_json::to_string_pretty(&d).unwrap_or_default() + "\n",
                &d,
            )))
        }
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "mode", &mut buf);
            Some(Ok(raw(buf)))
        }
        Command::Manpage { dir } => Some(man_pages(dir.as_deref())),
        _ => None,
    }
}

/// The man pages, all from clap's description of the commands (one home):
/// mode(1) on stdout, or with `dir` every page written there. Without a
/// `help` subcommand, so the main page lists only pages that exist.
fn man_pages(dir: Option<&std::path::Path>) -> Result<Output, Error> {
    let cmd = Cli::command().disable_help_subcommand(true);
    match dir {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map(|_| raw(buf))
                .map_err(|e| Error::Internal(format!("cannot render the man page: {e}")))
        }
        Some(dir) => {
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                Error::State(crate::state::StateError::Io {
                    file: dir.to_path_buf(),
                    source: e,
                })
            })?;
            Ok(Output::ok(
                format!("wrote the man pages to {}\n", dir.display()),
                &serde_json::json!({"dir": dir}),
            ))
        }
    }
}

fn raw(bytes: Vec<u8>) -> Output {
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Output::ok(text.clone(), &text)
}

fn check_config(file: &std::path::Path) -> Result<Output, Error> {
    if !file.exists() {
        return Err(config::ConfigError::Read {
            path: file.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        }
        .into());
    }
    let c = config::load(file)?;
    config::check_trust(&c, file)?;
    let text = format!(
        "{} is valid: default mode {}, {} managed units, {} slices budgeted\n",
        file.display(),
        c.default_mode,
        c.managed_units().len(),
        c.budgeted_slices().len()
    );
    Ok(Output::ok(
        text,
        &serde_json::json!({"valid": true, "config": c}),
    ))
}

/// The words of a command that changes the machine (and so needs root).
fn mutating(c: &Command) -> Option<String> {
    match c {
        Command::Request { mode, .. } => Some(format!("request {mode}")),
        Command::Apply { mode } => Some(format!("apply {mode}")),
        Command::Reconcile => Some("reconcile".into()),
        Command::Boot { .. } => Some("boot".into()),
        Command::WayBack => Some("way-back".into()),
        _ => None,
    }
}

fn execute(cli: &Cli) -> Result<Output, Error> {
    let needs_config = !matches!(
        cli.command,
        Command::Config(_) | Command::Completions { .. } | Command::Manpage { .. }
    );
    let ctx = if needs_config {
        let config = config::load(&cli.config)?;
        // The desired mode is also kept next to the audit log
        // (/var/lib/mode-controller), for the boot policy "last".
        let kept = config.audit_log.parent().map_or_else(
            || std::path::PathBuf::from("/var/lib/mode-controller"),
            |d| d.to_path_buf(),
        );
        Some(Context::new(
            config,
            StateDir::new(&cli.state_dir).keeping_desired_in(kept),
        ))
    } else {
        None
    };
    if let Some(result) = run_local(cli, ctx.as_ref()) {
        return result;
    }
    let mut ctx = ctx.ok_or_else(|| Error::Internal("no configuration loaded".into()))?;
    if let Some(what) = mutating(&cli.command) {
        // Anyone may ask for a switch or a reconcile: systemd asks polkit.
        let through_polkit = matches!(cli.command, Command::Request { .. } | Command::Reconcile);
        if !through_polkit {
            controller::require_root(&what)?;
        }
        config::check_trust(&ctx.config, &cli.config)?;
        crate::logging::init_journal();
    }
    runtime()?.block_on(run_async(cli, &mut ctx))
}

/// A usage error as the contract has every error: one line on stderr (and
/// one JSON document on stdout under `--json`), exit 2. Help and version
/// print as clap renders them.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    let line = usage_line(&e.render().to_string());
    if std::env::args().any(|a| a == "--json") {
        println!("{}", serde_json::json!({"error": line, "exit_code": 2}));
    }
    eprintln!("mode: {line}");
    ExitCode::from(2)
}

/// clap's several lines, as one: what is wrong, then where to look.
fn usage_line(rendered: &str) -> String {
    let what: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let what = what.join(" ");
    let what = what.strip_prefix("error: ").unwrap_or(&what);
    format!("usage: {what}; see `mode --help`")
}

/// Run the command line and return the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let out = execute(&cli).unwrap_or_else(|e| {
        let line = e.to_string();
        Output {
            text: String::new(),
            json: serde_json::json!({"error": line, "exit_code": e.exit_code()}),
            code: e.exit_code(),
            error: Some(line),
        }
    });
    let mut stdout = std::io::stdout().lock();
    let _ = if cli.json {
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&out.json).unwrap_or_default()
        )
    } else {
        stdout.write_all(out.text.as_bytes())
    };
    if out.code != 0 {
        let line = out.error.unwrap_or_else(|| format!("exit {}", out.code));
        eprintln!("mode: {line}");
    }
    ExitCode::from(out.code)
}
