//! The `mode` command: parses, dispatches the command once to the
//! controller (on a current-thread tokio runtime where it needs the bus),
//! renders text or JSON, and ends with the controller's `Exit` and one line
//! on stderr. No logic beyond choosing and formatting.

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
use crate::controller::{self, Context, Error, Exit, Reconciled, RequestOutcome};
use crate::state::TransitionRecord;
use crate::systemd::Bus;

/// What a command produced: text or a JSON value, and how it ends.
struct Output {
    text: String,
    json: serde_json::Value,
    exit: Exit,
    /// The one stderr line for a non-zero exit.
    error: Option<String>,
}

impl Output {
    fn ok<T: Serialize>(text: String, value: &T) -> Self {
        Self {
            text,
            json: serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            exit: Exit::Success,
            error: None,
        }
    }

    /// Nothing on stdout: the command's output went out as it ran.
    fn done() -> Self {
        Self::ok(String::new(), &serde_json::Value::Null)
    }

    /// An error as the contract prints it: its line, and under `--json`
    /// `{"error", "exit_code"}`.
    fn failed(line: String, exit: Exit) -> Self {
        Self {
            text: String::new(),
            json: serde_json::json!({"error": line, "exit_code": exit}),
            exit,
            error: Some(line),
        }
    }
}

fn transition_output(record: &TransitionRecord, ctx: &Context) -> Output {
    let (text, error) = render::transition(record, ctx.state.root());
    Output {
        text,
        json: serde_json::to_value(record).unwrap_or_default(),
        exit: Exit::of_outcome(record.outcome),
        error,
    }
}

/// A finished transition as output; one that ran but could not be fully
/// recorded shows its outcome with the exit of the write failure.
fn recorded(result: Result<TransitionRecord, Error>, ctx: &Context) -> Result<Output, Error> {
    match result {
        Ok(record) => Ok(transition_output(&record, ctx)),
        Err(e @ Error::Unrecorded { .. }) => {
            let Error::Unrecorded { record, .. } = &e else {
                return Err(e);
            };
            let mut out = transition_output(record, ctx);
            out.exit = e.exit();
            out.error = Some(e.to_string());
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

/// A request as output: the transition that served it, ending as the
/// request did (the controller says why wherever its record does not).
fn request_output(outcome: RequestOutcome, ctx: &Context) -> Output {
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
            if exit != out.exit || why.is_some() {
                out.error = why.or(out.error);
            }
            out.exit = exit;
            out
        }
        RequestOutcome::Finished {
            record: None,
            exit,
            why,
        } => Output::failed(why.unwrap_or_default(), exit),
    }
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

/// `mode watch`: one line (or JSON document) a change, until the reader
/// goes away (a status bar restarted) or the bus does.
async fn watch(ctx: &Context, bus: &Bus, json: bool) -> Result<Output, Error> {
    controller::watch(ctx, bus, async |s| {
        let line = if json {
            render::watch_json(s).to_string()
        } else {
            render::watch_line(s)
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    })
    .await?;
    Ok(Output::done())
}

/// The commands that ask the bus, each dispatched to the controller once.
async fn run_async(cli: &Cli, ctx: &mut Context) -> Result<Output, Error> {
    let bus = Bus::connect().await?;
    ctx.fit_to_machine(&bus).await?;
    let ctx = &*ctx;
    let caller = format!("cli uid={}", nix::unistd::getuid());
    Ok(match &cli.command {
        Command::Request {
            mode,
            no_wait,
            timeout,
        } => {
            let secs = timeout.unwrap_or(ctx.config.timeouts.request_secs);
            let outcome =
                controller::request(ctx, &bus, *mode, !no_wait, Duration::from_secs(secs)).await?;
            request_output(outcome, ctx)
        }
        // An instance naming its requester (`MODE:USER`, `reconcile:USER`)
        // is the unit serving someone's polkit-authorized request.
        Command::Apply { mode } => {
            match controller::apply_instance(ctx, &bus, mode, &caller).await {
                Ok(Some(record)) => transition_output(&record, ctx),
                Err(e) => recorded(Err(e), ctx)?,
                Ok(None) => nothing_to_reconcile(),
            }
        }
        Command::IdleCheck(args) => automation::idle_check(ctx, &bus, args).await?,
        Command::Boot { boot_mode } => automation::boot(ctx, &bus, *boot_mode).await?,
        Command::Reconcile => match controller::reconcile_as_caller(ctx, &bus).await {
            Ok(Reconciled::Ran(record)) => transition_output(&record, ctx),
            Ok(Reconciled::Served(outcome)) => request_output(outcome, ctx),
            Ok(Reconciled::Nothing) => nothing_to_reconcile(),
            Err(e) => recorded(Err(e), ctx)?,
        },
        Command::Status => {
            let s = controller::status(ctx, &bus).await?;
            let mut out = Output::ok(render::status(&s), &s);
            (out.exit, out.error) = s.exit();
            out
        }
        Command::WayBack => {
            controller::way_back(ctx, &bus).await?;
            Output::done()
        }
        Command::Watch => watch(ctx, &bus, cli.json).await?,
        Command::Notify => {
            controller::notify(ctx, &bus).await?;
            Output::done()
        }
        Command::Current => {
            let o = controller::current(ctx, &bus).await?;
            Output::ok(format!("{}\n", o.mode), &o)
        }
        Command::DryRun { mode } => {
            let d = controller::dry_run(ctx, &bus, *mode).await?;
            Output::ok(render::dry_run(&d), &d)
        }
        Command::Explain { mode } => {
            let e = controller::explain(ctx, &bus, *mode).await?;
            let text = render::explain(&e.observed, e.dry_run.as_ref());
            Output::ok(
                text.clone(),
                &serde_json::json!({"explanation": text, "observed": e.observed, "dry_run": e.dry_run}),
            )
        }
        Command::Desired
        | Command::Config(_)
        | Command::Completions { .. }
        | Command::Manpage { .. } => {
            return Err(Error::Internal("this command needs no bus".into()))
        }
    })
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
        Some(Context::open(config::load(&cli.config)?, &cli.state_dir))
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
        return if e.use_stderr() {
            Exit::Usage
        } else {
            Exit::Success
        }
        .into();
    }
    let line = usage_line(&e.render().to_string());
    if std::env::args().any(|a| a == "--json") {
        println!(
            "{}",
            serde_json::json!({"error": line, "exit_code": Exit::Usage})
        );
    }
    eprintln!("mode: {line}");
    Exit::Usage.into()
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
    let out = execute(&cli).unwrap_or_else(|e| Output::failed(e.to_string(), e.exit()));
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
    if !out.exit.is_success() {
        let line = out.error.unwrap_or_else(|| format!("exit {}", out.exit));
        eprintln!("mode: {line}");
    }
    out.exit.into()
}
