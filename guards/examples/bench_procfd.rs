//! Benchmark of the fd scan behind `gpu_display_released`: child processes
//! hold N fds open on /dev/null, then the guards' scan (through pidfds), the
//! whole compute guard evaluation, two reference scans by listing
//! `/proc/PID/fd` (the strategy the pidfd scan was chosen over, written here
//! as fast as it was made to go) and `fuser` (the same question asked by a
//! standard tool) are timed side by side, round by round, so load on the
//! machine falls on all of them alike. Run via scripts/bench-procfd.sh.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mode_guards::probe::procfd::{self, DeviceRule};
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
    )
    .map_err(|e| e.to_string())?;
    println!(
        "machine: {} CPUs, {} processes and {} fds open before the holders start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        baseline.processes_scanned,
        baseline.fds_scanned
    );
    // Processes out of this process's reach (a sandbox's supervisor) are
    // scanned up to the refusal and reported; the figures still count.
    for u in &baseline.unreadable {
        println!("unreadable: pid {}: {}", u.pid, u.error);
    }
    println!(
        "| fds held by test processes | fds scanned | scan (pidfd) median / max ms | scan CPU median ms | listing: getdents + statx median ms | listing: statx by number median ms | compute evaluation median / max ms | fuser /dev/null median ms | fuser ÷ evaluation |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &count in counts {
        let holders = start_holders(&me, count)?;
        let row = measure(count);
        drop(holders);
        let row = row?;
        println!(
            "| {count} | {} | {:.1} / {:.1} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} | {:.1}x |",
            row.fds_scanned,
            row.pidfd.median,
            row.pidfd.max,
            row.pidfd_cpu.median,
            row.listing.median,
            row.by_number.median,
            row.evaluation.median,
            row.evaluation.max,
            row.fuser.median,
            row.fuser.median / row.evaluation.median.max(0.001)
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
    by_number: Figures,
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

/// Wall time of `f` in ms, and its CPU time (all threads of this process).
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let started = Instant::now();
    let cpu_started = cpu_millis();
    let value = f();
    (value, millis(started.elapsed()), cpu_millis() - cpu_started)
}

/// The figures of one row; every scan must have seen at least the `held` fds.
fn measure(held: usize) -> Result<Row, String> {
    let proc_root = std::path::Path::new("/proc");
    let myself = BTreeSet::from([std::process::id()]);
    // The whole compute evaluation as the controller runs it, with a display
    // GPU configured so the fd scan really runs (this machine has no GPU).
    let mut settings = GuardSettings::default();
    settings.gpu.display_gpu = Some("0000:01:00.0".into());
    let roots = Roots::system();
    let (mut pidfd, mut pidfd_cpu, mut listing, mut by_number, mut evaluations) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut fds_scanned = 0;
    for _ in 0..ROUNDS {
        let (scan, wall, cpu) = timed(|| {
            let rule = DeviceRule::system(proc_root).map_err(|e| e.to_string())?;
            procfd::scan(proc_root, &rule, &myself).map_err(|e| e.to_string())
        });
        let scan = scan?;
        if scan.fds_scanned < held {
            return Err(format!(
                "the scan saw {} fds of the {held} held",
                scan.fds_scanned
            ));
        }
        fds_scanned = scan.fds_scanned;
        pidfd.push(wall);
        pidfd_cpu.push(cpu);

        for (by_number_too, samples) in [(false, &mut listing), (true, &mut by_number)] {
            let (seen, wall, _) = timed(|| listing::scan(proc_root, &myself, by_number_too));
            let seen = seen?;
            if seen < held {
                return Err(format!("listing saw {seen} fds of the {held} held"));
            }
            samples.push(wall);
        }

        let guards: Vec<_> = COMPUTE_GUARDS
            .iter()
            .map(|s| (s.build(&settings, &roots), Severity::Hard))
            .collect();
        let mut facts = Facts::new("compute");
        facts.sessions = Ok(Vec::new());
        let (results, wall, _) = timed(|| evaluate_all(guards, Arc::new(facts)));
        evaluations.push(wall);
        // The scan must have run to the end: an error before it (no GPU
        // topology, no process list) would make the figure meaningless.
        let gpu = GPU_DISPLAY_RELEASED.name;
        let scanned = results
            .iter()
            .find(|r| r.name == gpu)
            .and_then(|r| r.evidence["fds_scanned"].as_u64());
        if scanned.is_none_or(|n| (n as usize) < held) {
            let r = results.iter().find(|r| r.name == gpu);
            return Err(format!("{gpu} did not scan: {:?}", r.map(|r| &r.reason)));
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
        pidfd: figures(pidfd),
        pidfd_cpu: figures(pidfd_cpu),
        listing: figures(listing),
        by_number: figures(by_number),
        evaluation: figures(evaluations),
        fuser: figures(fusers),
    })
}

/// The reference: reading every fd's device number by listing
/// `/proc/PID/fd` (what `fuser` and `lsof` do, and what the guards did
/// before), made as fast as it would go: the processes split over the same
/// number of threads, `getdents64` into one reused buffer per thread, a
/// `statx` relative to the fd directory with the smallest mask and no
/// allocation per fd. `by_number` skips `getdents64` too: it `statx`es fd
/// numbers 0, 1, 2... until it has seen the process's open-fd count (the
/// size of `/proc/PID/fd`), and lists only when that does not add up.
/// Returns the number of fds seen; device numbers are read, not matched
/// (the cost is the same).
mod listing {
    use std::collections::BTreeSet;
    use std::ffi::CStr;
    use std::mem::MaybeUninit;
    use std::path::Path;

    use rustix::fd::OwnedFd;
    use rustix::fs::{AtFlags, Mode, OFlags, RawDir, StatxFlags};
    use rustix::io::Errno;

    pub fn scan(procfs: &Path, skip: &BTreeSet<u32>, by_number: bool) -> Result<usize, String> {
        let pids: Vec<u32> = std::fs::read_dir(procfs)
            .map_err(|e| e.to_string())?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .filter(|pid| !skip.contains(pid))
            .collect();
        let proc_dir = rustix::fs::open(
            procfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| e.to_string())?;
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let proc_dir = &proc_dir;
        let pids = &pids;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    scope.spawn(move || {
                        let mut buf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
                        pids.iter()
                            .skip(w)
                            .step_by(workers)
                            .map(|&pid| process(proc_dir, pid, by_number, &mut buf))
                            .sum::<usize>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| "a listing thread panicked".to_string())
                })
                .sum()
        })
    }

    /// `n` (and `suffix`) as a NUL-terminated name in `out`, without allocating.
    fn name<'a>(n: u32, suffix: &[u8], out: &'a mut [u8; 24]) -> &'a CStr {
        let mut digits = [0u8; 10];
        let (mut start, mut rest) = (digits.len(), n);
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        let digits = &digits[start..];
        let len = digits.len() + suffix.len();
        out[..digits.len()].copy_from_slice(digits);
        out[digits.len()..len].copy_from_slice(suffix);
        out[len] = 0;
        CStr::from_bytes_until_nul(&out[..=len]).unwrap_or_default()
    }

    fn number(name: &[u8]) -> Option<u32> {
        std::str::from_utf8(name).ok()?.parse().ok()
    }

    /// The fds of one process seen (0 when it is gone or unreadable).
    fn process(
        proc_dir: &OwnedFd,
        pid: u32,
        by_number: bool,
        buf: &mut [MaybeUninit<u8>],
    ) -> usize {
        let mut scratch = [0u8; 24];
        let Ok(dir) = rustix::fs::openat(
            proc_dir,
            name(pid, b"/fd", &mut scratch),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return 0;
        };
        if by_number {
            let open = rustix::fs::fstat(&dir).map_or(0, |s| s.st_size as usize);
            let (mut seen, mut missed, mut fd) = (0, 0, 0);
            while seen < open && missed <= open + 64 {
                match device_of(&dir, name(fd, b"", &mut scratch)) {
                    Err(Errno::NOENT) => missed += 1,
                    _ => seen += 1,
                }
                fd += 1;
            }
            if seen >= open && open > 0 {
                return seen;
            }
        }
        let mut seen = 0;
        let mut entries = RawDir::new(&dir, buf);
        while let Some(Ok(entry)) = entries.next() {
            if number(entry.file_name().to_bytes()).is_some() {
                let _ = device_of(&dir, entry.file_name());
                seen += 1;
            }
        }
        seen
    }

    /// The device number of the file behind one fd entry, if a character device.
    fn device_of(dir: &OwnedFd, entry: &CStr) -> Result<Option<(u32, u32)>, Errno> {
        let st = rustix::fs::statx(dir, entry, AtFlags::STATX_DONT_SYNC, StatxFlags::TYPE)?;
        Ok((st.stx_mode & 0o170000 == 0o020000).then_some((st.stx_rdev_major, st.stx_rdev_minor)))
    }
}
