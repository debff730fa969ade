//! Benchmark of the `/proc/*/fd` scan behind `gpu_display_released`: child
//! processes hold N fds open on /dev/null, then the scan (both methods),
//! the whole compute guard evaluation and `fuser` (the same question asked
//! by a standard tool) are timed side by side. Run via scripts/bench-procfd.sh.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mode_guards::probe::procfd::{self, DeviceRule, ScanMethod};
use mode_guards::{
    evaluate_all, Facts, GuardSettings, Roots, Severity, Spec, AUDIO_IDLE, CPU_LOAD_SAFE,
    GPU_DISPLAY_RELEASED, GRAPHICAL_SESSION_ABSENT, MEMORY_HEADROOM, TARGET_REACHABLE,
};

/// The guards the default configuration evaluates before compute.
static COMPUTE_GUARDS: [&dyn Spec; 6] = [
    &TARGET_REACHABLE,
    &GRAPHICAL_SESSION_ABSENT,
    &GPU_DISPLAY_RELEASED,
    &AUDIO_IDLE,
    &MEMORY_HEADROOM,
    &CPU_LOAD_SAFE,
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("hold") {
        let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        if let Err(e) = hold(n) {
            eprintln!("holder: {e}");
            std::process::exit(1);
        }
        return;
    }
    let counts: Vec<usize> = if args.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    if let Err(e) = run(&counts) {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

/// Child mode: open /dev/null `n` times, say so, wait for stdin to close.
fn hold(n: usize) -> std::io::Result<()> {
    raise_fd_limit(n as u64 + 64)?;
    let files: Vec<std::fs::File> = (0..n)
        .map(|_| std::fs::File::open("/dev/null"))
        .collect::<Result<_, _>>()?;
    println!("ready {}", files.len());
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}

fn raise_fd_limit(n: u64) -> std::io::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let current = getrlimit(Resource::Nofile);
    if current.current.is_some_and(|c| c >= n) {
        return Ok(());
    }
    let max = current.maximum.map_or(n, |m| m.max(n));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(n),
            maximum: Some(max),
        },
    )
    .map_err(std::io::Error::from)
}

/// At least this many holder processes; more when one may not hold enough
/// fds (RLIMIT_NOFILE's hard limit, which only CAP_SYS_RESOURCE raises).
const MIN_HOLDERS: usize = 4;
const ROUNDS: usize = 15;

fn run(counts: &[usize]) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let baseline = procfd::scan(
        std::path::Path::new("/proc"),
        &DeviceRule::system(std::path::Path::new("/proc")).map_err(|e| e.to_string())?,
        &BTreeSet::new(),
        ScanMethod::Pidfd,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "machine: {} CPUs, {} processes and {} fds open before the holders start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        baseline.processes_scanned,
        baseline.fds_scanned
    );
    println!(
        "| fds held by test processes | fds scanned | scan (pidfd) median / max ms | scan CPU time median ms | scan (listing /proc/PID/fd) median ms | compute evaluation median / max ms | fuser /dev/null median ms | fuser ÷ scan |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &count in counts {
        let holders = start_holders(&me, count)?;
        let row = measure();
        drop(holders);
        let row = row?;
        println!(
            "| {count} | {} | {:.1} / {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} | {:.1}x |",
            row.fds_scanned,
            row.pidfd.median,
            row.pidfd.max,
            row.pidfd_cpu.median,
            row.listing.median,
            row.evaluation.median,
            row.evaluation.max,
            row.fuser.median,
            row.fuser.median / row.pidfd.median.max(0.001)
        );
    }
    Ok(())
}

struct Holders(Vec<Child>);

impl Drop for Holders {
    fn drop(&mut self) {
        for c in &mut self.0 {
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }
}

fn start_holders(me: &std::path::Path, count: usize) -> Result<Holders, String> {
    let hard_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .map_or(usize::MAX, |m| m as usize);
    let per_holder = hard_limit.saturating_sub(64).max(1);
    let holder_count = MIN_HOLDERS.max(count.div_ceil(per_holder));
    let mut holders = Holders(Vec::new());
    for i in 0..holder_count {
        let share = count / holder_count + usize::from(i < count % holder_count);
        let mut child = Command::new(me)
            .args(["hold", &share.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        holders.0.push(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if !line.starts_with("ready") {
            return Err(format!("holder {i} did not start: {line:?}"));
        }
    }
    Ok(holders)
}

struct Figures {
    median: f64,
    max: f64,
}

struct Row {
    fds_scanned: usize,
    pidfd: Figures,
    pidfd_cpu: Figures,
    listing: Figures,
    evaluation: Figures,
    fuser: Figures,
}

fn figures(mut samples: Vec<f64>) -> Figures {
    samples.sort_by(f64::total_cmp);
    Figures {
        median: samples[samples.len() / 2],
        max: samples[samples.len() - 1],
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU time of this process (all threads) in ms.
fn cpu_millis() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 * 1000.0 + t.tv_nsec as f64 / 1e6
}

/// Wall and CPU time of `ROUNDS` scans with `method`.
fn time_scans(method: ScanMethod) -> Result<(Figures, Figures, usize), String> {
    let proc_root = std::path::Path::new("/proc");
    let myself = BTreeSet::from([std::process::id()]);
    let (mut wall, mut cpu, mut fds) = (Vec::new(), Vec::new(), 0);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let cpu_started = cpu_millis();
        let rule = DeviceRule::system(proc_root).map_err(|e| e.to_string())?;
        let scan = procfd::scan(proc_root, &rule, &myself, method).map_err(|e| e.to_string())?;
        wall.push(millis(started.elapsed()));
        cpu.push(cpu_millis() - cpu_started);
        fds = scan.fds_scanned;
    }
    Ok((figures(wall), figures(cpu), fds))
}

fn measure() -> Result<Row, String> {
    let (pidfd, pidfd_cpu, fds_scanned) = time_scans(ScanMethod::Pidfd)?;
    let (listing, _, _) = time_scans(ScanMethod::ProcListing)?;

    // The whole compute evaluation as the controller runs it, with a display
    // GPU configured so the fd scan really runs (this machine has no GPU).
    let mut settings = GuardSettings::default();
    settings.gpu.display_gpu = Some("0000:01:00.0".into());
    let roots = Roots::system();
    let mut evaluations = Vec::new();
    for _ in 0..ROUNDS {
        let guards: Vec<_> = COMPUTE_GUARDS
            .iter()
            .map(|s| (s.build(&settings, &roots), Severity::Hard))
            .collect();
        let mut facts = Facts::new("compute");
        facts.sessions = Ok(Vec::new());
        let started = Instant::now();
        let results = evaluate_all(guards, Arc::new(facts));
        evaluations.push(millis(started.elapsed()));
        let gpu = GPU_DISPLAY_RELEASED.name;
        if let Some(r) = results.iter().find(|r| r.name == gpu) {
            if r.outcome == mode_guards::Outcome::Error {
                return Err(format!("{gpu}: {}", r.reason));
            }
        }
    }

    let mut fusers = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        Command::new("fuser")
            .arg("/dev/null")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("fuser: {e}"))?;
        fusers.push(millis(started.elapsed()));
    }
    Ok(Row {
        fds_scanned,
        pidfd,
        pidfd_cpu,
        listing,
        evaluation: figures(evaluations),
        fuser: figures(fusers),
    })
}
