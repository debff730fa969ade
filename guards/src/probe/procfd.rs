//! The fd scan: which live processes hold which GPU device nodes open,
//! matched by device number (so renamed or bind-mounted nodes are found).
//! Each process's fds are read through a pidfd (`pidfd_getfd` + `statx`),
//! the one strategy, chosen by measurement (docs/performance.md, "Guard
//! scan"). Processes whose fds cannot be read are listed as unreadable,
//! never dropped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, StatxFlags};
use rustix::io::Errno;
use serde::Serialize;

use super::{read_text, ProbeError};

/// The fixed character major of the NVIDIA driver (`/dev/nvidia*`).
pub const NVIDIA_MAJOR: u32 = 195;
/// The fixed character major of DRM (`/dev/dri/card*`, `renderD*`).
pub const DRM_MAJOR: u32 = 226;
const NVIDIA_MODESET_MINOR: u32 = 254;
const NVIDIA_CONTROL_MINOR: u32 = 255;
const S_IFMT: u16 = 0o170000;
const S_IFCHR: u16 = 0o020000;

/// How the device numbers of one character major are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFamily {
    /// Major 195: minor N is `/dev/nvidiaN`, 254 `nvidia-modeset`, 255 `nvidiactl`.
    Nvidia,
    /// `nvidia-uvm` (dynamic major): shared by every NVIDIA GPU.
    NvidiaUvm,
    /// `nvidia-caps` (dynamic major): shared by every NVIDIA GPU.
    NvidiaCaps,
    /// Major 226: `card*` and `renderD*`, mapped to a GPU through sysfs.
    Drm,
}

/// One exact device a test (or an unusual system) wants treated as a node
/// of the GPU at `gpu` (a PCI address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandIn {
    pub matches: StandInMatch,
    pub gpu: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandInMatch {
    /// A character device with this major:minor.
    CharDevice { major: u32, minor: u32 },
    /// An fd open on the file at this path (the same inode on the same
    /// device, looked up once per scan).
    Path(PathBuf),
}

/// Which open files count as GPU device nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRule {
    pub majors: Vec<(u32, DeviceFamily)>,
    pub stand_ins: Vec<StandIn>,
}

impl DeviceRule {
    /// The real rule: NVIDIA 195, DRM 226, and the dynamic majors of
    /// `nvidia-uvm` and `nvidia-caps` from `<procfs>/devices` (absent when
    /// those modules are not loaded).
    pub fn system(procfs: &Path) -> Result<Self, ProbeError> {
        let devices = procfs.join("devices");
        let text = read_text(&devices)?;
        let mut majors = vec![
            (NVIDIA_MAJOR, DeviceFamily::Nvidia),
            (DRM_MAJOR, DeviceFamily::Drm),
        ];
        majors.extend(dynamic_nvidia_majors(&text));
        Ok(Self {
            majors,
            stand_ins: Vec::new(),
        })
    }

    /// Only the given stand-ins (tests).
    pub fn stand_ins(stand_ins: Vec<StandIn>) -> Self {
        Self {
            majors: Vec::new(),
            stand_ins,
        }
    }

    /// The identity of each path stand-in's file, looked up once per scan
    /// (`None` for device-number stand-ins and for paths that are gone).
    fn path_identities(&self) -> Vec<Option<FileId>> {
        self.stand_ins
            .iter()
            .map(|s| match &s.matches {
                StandInMatch::Path(p) => {
                    rustix::fs::statx(rustix::fs::CWD, p, AtFlags::empty(), StatxFlags::INO)
                        .ok()
                        .map(|st| FileId::of(&st))
                }
                StandInMatch::CharDevice { .. } => None,
            })
            .collect()
    }

    /// What GPU node, if any, an open file is: `rdev` when it is a character
    /// device, `file` its identity, `paths` from `path_identities`.
    fn classify(
        &self,
        rdev: Option<(u32, u32)>,
        file: Option<FileId>,
        paths: &[Option<FileId>],
    ) -> Option<DeviceKind> {
        for (s, path) in self.stand_ins.iter().zip(paths) {
            let hit = match &s.matches {
                StandInMatch::CharDevice { major, minor } => rdev == Some((*major, *minor)),
                StandInMatch::Path(_) => path.is_some() && *path == file,
            };
            if hit {
                return Some(DeviceKind::StandIn { gpu: s.gpu.clone() });
            }
        }
        let (major, minor) = rdev?;
        let family = self.majors.iter().find(|(m, _)| *m == major)?.1;
        Some(match family {
            DeviceFamily::Nvidia => match minor {
                NVIDIA_CONTROL_MINOR => DeviceKind::NvidiaControl,
                NVIDIA_MODESET_MINOR => DeviceKind::NvidiaModeset,
                _ => DeviceKind::NvidiaGpu { minor },
            },
            DeviceFamily::NvidiaUvm => DeviceKind::NvidiaUvm,
            DeviceFamily::NvidiaCaps => DeviceKind::NvidiaCaps,
            DeviceFamily::Drm => DeviceKind::Drm { minor },
        })
    }
}

/// A file by identity: the device it lives on and its inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: (u32, u32),
    ino: u64,
}

impl FileId {
    fn of(st: &rustix::fs::Statx) -> Self {
        Self {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
        }
    }
}

/// The character majors named `nvidia-uvm` and `nvidia-caps*` in `/proc/devices`.
pub fn dynamic_nvidia_majors(devices: &str) -> Vec<(u32, DeviceFamily)> {
    let character = devices.split("Block devices:").next().unwrap_or_default();
    character
        .lines()
        .filter_map(|line| {
            let (major, name) = line.trim().split_once(' ')?;
            let major: u32 = major.parse().ok()?;
            let family = match name.trim() {
                "nvidia-uvm" => DeviceFamily::NvidiaUvm,
                n if n.starts_with("nvidia-caps") => DeviceFamily::NvidiaCaps,
                _ => return None,
            };
            Some((major, family))
        })
        .collect()
}

/// What kind of GPU node an open fd refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceKind {
    NvidiaGpu { minor: u32 },
    NvidiaControl,
    NvidiaModeset,
    NvidiaUvm,
    NvidiaCaps,
    Drm { minor: u32 },
    StandIn { gpu: String },
}

/// One open fd on a GPU node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenDevice {
    pub fd: u32,
    /// Where the fd points, as the kernel names it (`/dev/nvidia0`).
    pub path: String,
    pub major: u32,
    pub minor: u32,
    #[serde(flatten)]
    pub kind: DeviceKind,
}

/// A process and the GPU nodes it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceHolder {
    pub pid: u32,
    pub devices: Vec<OpenDevice>,
}

/// A process whose fds could not be listed: it may hold the GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableProcess {
    pub pid: u32,
    pub error: String,
}

/// The result of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FdScan {
    pub holders: Vec<DeviceHolder>,
    pub unreadable: Vec<UnreadableProcess>,
    pub processes_scanned: usize,
    pub fds_scanned: usize,
}

/// Where a live process's fd table is described (`FDSize`, the open-fd
/// count, the names of fds found). The fds themselves are read through a
/// pidfd, so the pids are this pid namespace's.
const LIVE_PROCFS: &str = "/proc";

/// Scan the processes listed in `procfs` (except `skip`, normally this
/// process, whose own NVML handle would otherwise count) for fds matching
/// `rule`. `procfs` is the live `/proc`, or a prepared tree whose pid
/// directories name live processes (tests: only those are looked at).
/// Processes are split over the CPUs (up to eight threads); each process's
/// fds are read through a pidfd, one `pidfd_getfd` and one `statx` per fd,
/// stopping once as many fds as the process has open were seen.
pub fn scan(procfs: &Path, rule: &DeviceRule, skip: &BTreeSet<u32>) -> Result<FdScan, ProbeError> {
    let entries = std::fs::read_dir(procfs).map_err(|e| ProbeError::read(procfs, e))?;
    let pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| !skip.contains(pid))
        .collect();
    let paths = rule.path_identities();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(pids.len().max(1));
    let mut result = if workers <= 1 {
        scan_pids(rule, &paths, &pids)
    } else {
        let chunks: Vec<Vec<u32>> = (0..workers)
            .map(|w| pids.iter().copied().skip(w).step_by(workers).collect())
            .collect();
        let paths = &paths;
        std::thread::scope(|scope| {
            let spawned: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    let worker = std::thread::Builder::new()
                        .name("fd-scan".into())
                        .spawn_scoped(scope, move || {
                            private_fd_table();
                            scan_pids(rule, paths, chunk)
                        });
                    (worker, chunk)
                })
                .collect();
            let mut total = FdScan::default();
            for (worker, chunk) in spawned {
                let part = match worker {
                    // No thread to be had: scan this share here (in the
                    // process's shared fd table: slower, same answer).
                    Err(_) => scan_pids(rule, paths, chunk),
                    // A worker has no panicking code, but if one did panic
                    // its processes are unknown, not passed.
                    Ok(handle) => handle.join().unwrap_or_else(|_| FdScan {
                        unreadable: chunk
                            .iter()
                            .map(|pid| UnreadableProcess {
                                pid: *pid,
                                error: "the scan of this process failed".into(),
                            })
                            .collect(),
                        ..FdScan::default()
                    }),
                };
                total.holders.extend(part.holders);
                total.unreadable.extend(part.unreadable);
                total.processes_scanned += part.processes_scanned;
                total.fds_scanned += part.fds_scanned;
            }
            total
        })
    };
    result.holders.sort_by_key(|h| h.pid);
    result.unreadable.sort_by_key(|u| u.pid);
    Ok(result)
}

/// Give this worker thread its own fd table: every duplicate taken through
/// a pidfd is installed and closed in it, and workers sharing one table
/// contend on its lock (measured: two workers were no faster than one).
fn private_fd_table() {
    // SAFETY: the table is copied, so every fd open now stays usable here
    // and elsewhere; the worker only uses fds it opens itself (pidfds and
    // their duplicates), closes them before it ends, and hands none to
    // another thread. Failing to unshare only costs speed.
    let _ = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FILES) };
}

fn scan_pids(rule: &DeviceRule, paths: &[Option<FileId>], pids: &[u32]) -> FdScan {
    let mut result = FdScan::default();
    for &pid in pids {
        match scan_process(pid, rule, paths) {
            Ok(ProcessScan::Gone) => {}
            Ok(ProcessScan::Scanned { devices, fds }) => {
                result.processes_scanned += 1;
                result.fds_scanned += fds;
                if !devices.is_empty() {
                    result.holders.push(DeviceHolder { pid, devices });
                }
            }
            Err(failed) => {
                result.processes_scanned += 1;
                result.unreadable.push(UnreadableProcess {
                    pid,
                    error: failed.to_string(),
                });
            }
        }
    }
    result
}

enum ProcessScan {
    /// The process exited before or while it was read.
    Gone,
    Scanned {
        devices: Vec<OpenDevice>,
        fds: usize,
    },
}

/// Why a process's fds could not be read: the call refused and its error.
struct Refused {
    call: &'static str,
    errno: Errno,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call, self.errno)?;
        match self.errno {
            Errno::PERM | Errno::ACCESS => f.write_str(
                " (reading another process's fds takes CAP_SYS_PTRACE, a Yama \
                 ptrace_scope below 3, and pidfd_getfd allowed by the system call filter)",
            ),
            Errno::NOSYS => f.write_str(" (pidfd_getfd needs Linux 5.6 or later)"),
            _ => Ok(()),
        }
    }
}

/// The size of the fd table (`FDSize:` in `/proc/PID/status`): every open
/// fd number is below it. `None` when the process is gone.
fn fd_table_size(proc_dir: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("{proc_dir}/status")).ok()?;
    Some(
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// Read the fds of a live process by duplicating each through its pidfd:
/// one `pidfd_getfd` and one `statx` per fd, no procfs dentry per fd (which
/// listing `/proc/PID/fd` costs twice: measured twice as slow). The
/// duplicate is closed at once; closing a duplicate releases nothing the
/// holder owns (neither the device nor its locks).
fn scan_process(
    pid: u32,
    rule: &DeviceRule,
    paths: &[Option<FileId>],
) -> Result<ProcessScan, Refused> {
    use rustix::process::{pidfd_getfd, pidfd_open, Pid, PidfdFlags, PidfdGetfdFlags};
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(ProcessScan::Gone);
    };
    let pidfd = match pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Ok(ProcessScan::Gone),
        Err(errno) => {
            return Err(Refused {
                call: "pidfd_open",
                errno,
            })
        }
    };
    let proc_dir = format!("{LIVE_PROCFS}/{pid}");
    let Some(table) = fd_table_size(&proc_dir) else {
        return Ok(ProcessScan::Gone);
    };
    let fd_dir = format!("{proc_dir}/fd");
    // Since Linux 6.2 the size of /proc/PID/fd is the number of open fds;
    // fds are handed out lowest first, so once that many are found the
    // rest of the table is (almost always) empty and need not be probed.
    let open_count = rustix::fs::statx(
        rustix::fs::CWD,
        fd_dir.as_str(),
        AtFlags::empty(),
        StatxFlags::SIZE,
    )
    .map_or(0, |st| st.stx_size as usize);
    let mut devices = Vec::new();
    let mut fds = 0;
    for target in 0..table {
        if open_count > 0 && fds >= open_count {
            break;
        }
        let Ok(foreign) = i32::try_from(target) else {
            break;
        };
        let dup = match pidfd_getfd(&pidfd, foreign, PidfdGetfdFlags::empty()) {
            Ok(fd) => fd,
            Err(Errno::BADF) => continue,
            Err(Errno::SRCH) => return Ok(ProcessScan::Gone),
            Err(errno) => {
                return Err(Refused {
                    call: "pidfd_getfd",
                    errno,
                })
            }
        };
        fds += 1;
        if let Some((kind, rdev)) = classify_fd(dup, rule, paths) {
            let path = std::fs::read_link(format!("{fd_dir}/{target}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("char {}:{}", rdev.0, rdev.1));
            devices.push(OpenDevice {
                fd: target,
                path,
                major: rdev.0,
                minor: rdev.1,
                kind,
            });
        }
    }
    Ok(ProcessScan::Scanned { devices, fds })
}

/// `statx` a duplicated fd (without syncing remote file systems), close it,
/// and say which GPU node it is with its device number (`0:0` for a path
/// stand-in that is no character device).
fn classify_fd(
    dup: OwnedFd,
    rule: &DeviceRule,
    paths: &[Option<FileId>],
) -> Option<(DeviceKind, (u32, u32))> {
    let st = rustix::fs::statx(
        &dup,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::TYPE | StatxFlags::INO,
    )
    .ok()?;
    drop(dup);
    let rdev = (st.stx_mode & S_IFMT == S_IFCHR).then_some((st.stx_rdev_major, st.stx_rdev_minor));
    let kind = rule.classify(rdev, Some(FileId::of(&st)), paths)?;
    Some((kind, rdev.unwrap_or((0, 0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_dynamic_majors_of_uvm_and_caps_in_proc_devices() {
        let text = "Character devices:\n  1 mem\n195 nvidia-frontend\n226 drm\n507 nvidia-uvm\n510 nvidia-caps\n511 nvidia-caps-imex-channels\n\nBlock devices:\n259 blkext\n509 nvidia-uvm\n";
        let majors = dynamic_nvidia_majors(text);
        assert_eq!(
            majors,
            vec![
                (507, DeviceFamily::NvidiaUvm),
                (510, DeviceFamily::NvidiaCaps),
                (511, DeviceFamily::NvidiaCaps)
            ]
        );
    }

    #[test]
    fn nvidia_minors_name_control_modeset_and_gpu_nodes() {
        let rule = DeviceRule {
            majors: vec![(NVIDIA_MAJOR, DeviceFamily::Nvidia)],
            stand_ins: vec![],
        };
        assert_eq!(
            rule.classify(Some((195, 255)), None, &[]),
            Some(DeviceKind::NvidiaControl)
        );
        assert_eq!(
            rule.classify(Some((195, 254)), None, &[]),
            Some(DeviceKind::NvidiaModeset)
        );
        assert_eq!(
            rule.classify(Some((195, 1)), None, &[]),
            Some(DeviceKind::NvidiaGpu { minor: 1 })
        );
        assert_eq!(rule.classify(Some((1, 3)), None, &[]), None);
    }
}
