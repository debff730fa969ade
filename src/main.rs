//! `mode`: switch this workstation between desktop, studio-local and compute
//! as verified systemd transitions. See `mode --help` and docs/.

mod cli;
mod clock;
mod config;
mod controller;
mod idle;
mod integrations;
mod logging;
mod mode;
mod observe;
mod plan;
mod state;
mod systemd;

fn main() -> std::process::ExitCode {
    cli::main()
}
