//! Signals by name: the numbers are the syscall crate's (rustix), the names
//! the ones systemd and kill(1) print. One table, for the checkpoint signal a
//! drain sends and for the signal that ended a transition unit.

pub use rustix::process::Signal;

const NAMES: [(Signal, &str); 31] = [
    (Signal::HUP, "SIGHUP"),
    (Signal::INT, "SIGINT"),
    (Signal::QUIT, "SIGQUIT"),
    (Signal::ILL, "SIGILL"),
    (Signal::TRAP, "SIGTRAP"),
    (Signal::ABORT, "SIGABRT"),
    (Signal::BUS, "SIGBUS"),
    (Signal::FPE, "SIGFPE"),
    (Signal::KILL, "SIGKILL"),
    (Signal::USR1, "SIGUSR1"),
    (Signal::SEGV, "SIGSEGV"),
    (Signal::USR2, "SIGUSR2"),
    (Signal::PIPE, "SIGPIPE"),
    (Signal::ALARM, "SIGALRM"),
    (Signal::TERM, "SIGTERM"),
    (Signal::STKFLT, "SIGSTKFLT"),
    (Signal::CHILD, "SIGCHLD"),
    (Signal::CONT, "SIGCONT"),
    (Signal::STOP, "SIGSTOP"),
    (Signal::TSTP, "SIGTSTP"),
    (Signal::TTIN, "SIGTTIN"),
    (Signal::TTOU, "SIGTTOU"),
    (Signal::URG, "SIGURG"),
    (Signal::XCPU, "SIGXCPU"),
    (Signal::XFSZ, "SIGXFSZ"),
    (Signal::VTALARM, "SIGVTALRM"),
    (Signal::PROF, "SIGPROF"),
    (Signal::WINCH, "SIGWINCH"),
    (Signal::IO, "SIGIO"),
    (Signal::POWER, "SIGPWR"),
    (Signal::SYS, "SIGSYS"),
];

/// `SIGTERM` for `Signal::TERM`.
pub fn name(signal: Signal) -> &'static str {
    NAMES
        .iter()
        .find(|(s, _)| *s == signal)
        .map_or("an unnamed signal", |(_, n)| n)
}

/// The name of signal number `raw`, or `signal N` for one without a name
/// (a real-time signal).
pub fn name_of(raw: i32) -> String {
    match Signal::from_named_raw(raw) {
        Some(s) => name(s).to_string(),
        None => format!("signal {raw}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named_as_the_kernel_numbers_them() {
        assert_eq!(name_of(9), "SIGKILL");
        assert_eq!(name_of(15), "SIGTERM");
        assert_eq!(name_of(6), "SIGABRT");
        assert_eq!(name_of(10), "SIGUSR1");
        assert_eq!(name_of(40), "signal 40");
        for (s, n) in NAMES {
            assert_eq!(Signal::from_named_raw(s.as_raw()), Some(s), "{n}");
            assert_eq!(name(s), n);
        }
    }
}
