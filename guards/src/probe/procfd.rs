//! The `/proc/*/fd` scan: which processes hold which GPU device nodes open,
//! matched by device number (so renamed or bind-mounted nodes are found),
//! read through pidfds or by listing `/proc/PID/fd`. Processes whose fds
//! cannot be read are listed as unreadable, never dropped.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
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
    /// An fd whose link target is exactly this path (costs a readlink per fd).
    Path(PathBuf),
}

/// How the fds of a process are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScanMethod {
    /// Duplicate each fd through a pidfd (`pidfd_getfd`) and `statx` it:
    /// about half the cost of listing. Used on the live procfs only; falls
    /// back to listing where not permitted or not supported.
    #[default]
    Pidfd,
    /// List `/proc/PID/fd` and `statx` each entry (what `fuser` and `lsof` do).
    ProcListing,
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

    fn needs_link_targets(&self) -> bool {
        self.stand_ins
            .iter()
            .any(|s| matches!(s.matches, StandInMatch::Path(_)))
    }

    fn classify(&self, major: u32, minor: u32, link: Option<&Path>) -> Option<DeviceKind> {
        for s in &self.stand_ins {
            let hit = match &s.matches {
                StandInMatch::CharDevice { major: a, minor: b } => (*a, *b) == (major, minor),
                StandInMatch::Path(p) => link == Some(p.as_path()),
            };
            if hit {
                return Some(DeviceKind::StandIn { gpu: s.gpu.clone() });
            }
        }
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

/// Scan every process under `procfs` (except `skip`, normally this process,
/// whose own NVML handle would otherwise count) for fds matching `rule`.
/// Processes are split over the CPUs; on the live procfs each process's
/// fds are read through a pidfd (`pidfd_getfd` + `statx`), which costs
/// half of listing `/proc/PID/fd`; elsewhere (prepared trees, path
/// stand-ins, no permission) the directory is listed.
pub fn scan(
    procfs: &Path,
    rule: &DeviceRule,
    skip: &BTreeSet<u32>,
    method: ScanMethod,
) -> Result<FdScan, ProbeError> {
    let entries = std::fs::read_dir(procfs).map_err(|e| ProbeError::read(procfs, e))?;
    let pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| !skip.contains(pid))
        .collect();
    let via_pidfd =
        method == ScanMethod::Pidfd && !rule.needs_link_targets() && is_own_live_procfs(procfs);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(pids.len().max(1));
    let mut result = if workers <= 1 {
        scan_pids(procfs, rule, &pids, via_pidfd)
    } else {
        let chunks: Vec<Vec<u32>> = (0..workers)
            .map(|w| pids.iter().copied().skip(w).step_by(workers).collect())
            .collect();
        std::thread::scope(|scope| {
            let spawned: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    let worker = std::thread::Builder::new()
                        .name("fd-scan".into())
                        .spawn_scoped(scope, move || {
                            if via_pidfd {
                                private_fd_table();
                            }
                            scan_pids(procfs, rule, chunk, via_pidfd)
                        });
                    (worker, chunk)
                })
                .collect();
            let mut total = FdScan::default();
            for (worker, chunk) in spawned {
                let part = match worker {
                    // No thread to be had: scan this share here, by listing
                    // (this thread's fd table is the process's own).
                    Err(_) => scan_pids(procfs, rule, chunk, false),
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

fn scan_pids(procfs: &Path, rule: &DeviceRule, pids: &[u32], via_pidfd: bool) -> FdScan {
    let mut result = FdScan::default();
    for &pid in pids {
        let fd_dir = procfs.join(pid.to_string()).join("fd");
        let scanned = match via_pidfd {
            true => match scan_via_pidfd(procfs, &fd_dir, pid, rule) {
                // Not allowed to take fds (Yama, LSM) or no pidfd_getfd
                // (kernel < 5.6): listing may still be allowed.
                Err(Errno::PERM) | Err(Errno::NOSYS) | Err(Errno::ACCESS) => {
                    scan_by_listing(&fd_dir, rule)
                }
                other => other,
            },
            false => scan_by_listing(&fd_dir, rule),
        };
        match scanned {
            Ok(ProcessScan::Gone) => {}
            Ok(ProcessScan::Scanned { devices, fds }) => {
                result.processes_scanned += 1;
                result.fds_scanned += fds;
                if !devices.is_empty() {
                    result.holders.push(DeviceHolder { pid, devices });
                }
            }
            Err(error) => {
                result.processes_scanned += 1;
                result.unreadable.push(UnreadableProcess {
                    pid,
                    error: format!("{}: {error}", fd_dir.display()),
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

/// Whether `procfs` is the procfs of this process's own pid namespace, so
/// its pid numbers can be handed to `pidfd_open`.
fn is_own_live_procfs(procfs: &Path) -> bool {
    let is_procfs =
        rustix::fs::statfs(procfs).is_ok_and(|s| s.f_type == rustix::fs::PROC_SUPER_MAGIC);
    let me = std::process::id().to_string();
    is_procfs
        && std::fs::read_link(procfs.join("self"))
            .is_ok_and(|target| target.as_os_str() == me.as_str())
}

/// The size of the fd table (`FDSize:` in `/proc/PID/status`): every open
/// fd number is below it. `None` when the process is gone.
fn fd_table_size(procfs: &Path, pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(procfs.join(pid.to_string()).join("status")).ok()?;
    Some(
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// Read the fds of a live process by duplicating each through its pidfd:
/// one `pidfd_getfd` and one `statx` per fd, no procfs dentries. The
/// duplicate is closed at once; closing a duplicate releases nothing
/// (neither the device nor locks, which belong to the holder).
fn scan_via_pidfd(
    procfs: &Path,
    fd_dir: &Path,
    pid: u32,
    rule: &DeviceRule,
) -> Result<ProcessScan, Errno> {
    use rustix::process::{pidfd_getfd, pidfd_open, Pid, PidfdFlags, PidfdGetfdFlags};
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(ProcessScan::Gone);
    };
    let pidfd = match pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Ok(ProcessScan::Gone),
        Err(e) => return Err(e),
    };
    let Some(table) = fd_table_size(procfs, pid) else {
        return Ok(ProcessScan::Gone);
    };
    // Since Linux 6.2 the size of /proc/PID/fd is the number of open fds;
    // fds are handed out lowest first, so once that many are found the
    // rest of the table is (almost always) empty and need not be probed.
    let open_count = rustix::fs::statx(rustix::fs::CWD, fd_dir, AtFlags::empty(), StatxFlags::SIZE)
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
            Err(e) => return Err(e),
        };
        fds += 1;
        let Ok(st) = rustix::fs::statx(
            &dup,
            c"",
            AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
            StatxFlags::TYPE,
        ) else {
            continue;
        };
        drop(dup);
        if st.stx_mode & S_IFMT != S_IFCHR {
            continue;
        }
        let (major, minor) = (st.stx_rdev_major, st.stx_rdev_minor);
        if let Some(kind) = rule.classify(major, minor, None) {
            let path = std::fs::read_link(fd_dir.join(target.to_string()))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("char {major}:{minor}"));
            devices.push(OpenDevice {
                fd: target,
                path,
                major,
                minor,
                kind,
            });
        }
    }
    Ok(ProcessScan::Scanned { devices, fds })
}

fn scan_by_listing(fd_dir: &Path, rule: &DeviceRule) -> Result<ProcessScan, Errno> {
    let dir_fd = match rustix::fs::open(
        fd_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::SRCH) => return Ok(ProcessScan::Gone),
        Err(e) => return Err(e),
    };
    let mut dir = rustix::fs::Dir::read_from(&dir_fd)?;
    let with_links = rule.needs_link_targets();
    let mut devices = Vec::new();
    let mut fds = 0;
    while let Some(entry) = dir.read() {
        let entry = match entry {
            Ok(e) => e,
            Err(Errno::NOENT) | Err(Errno::SRCH) => return Ok(ProcessScan::Gone),
            Err(e) => return Err(e),
        };
        let name = entry.file_name();
        let Some(fd) = fd_number(name) else { continue };
        fds += 1;
        if let Some(device) = match_fd(&dir_fd, name, fd, rule, with_links) {
            devices.push(device);
        }
    }
    Ok(ProcessScan::Scanned { devices, fds })
}

fn fd_number(name: &CStr) -> Option<u32> {
    name.to_str().ok()?.parse().ok()
}

/// One fd: `statx` through the magic link (without syncing remote file
/// systems) gives the device number; only a match costs a readlink.
fn match_fd(
    dir_fd: &rustix::fd::OwnedFd,
    name: &CStr,
    fd: u32,
    rule: &DeviceRule,
    with_links: bool,
) -> Option<OpenDevice> {
    let link = if with_links {
        rustix::fs::readlinkat(dir_fd, name, Vec::new())
            .ok()
            .map(|c| PathBuf::from(c.to_string_lossy().into_owned()))
    } else {
        None
    };
    let st = rustix::fs::statx(dir_fd, name, AtFlags::STATX_DONT_SYNC, StatxFlags::TYPE).ok()?;
    let is_char = st.stx_mode & S_IFMT == S_IFCHR;
    let (major, minor) = if is_char {
        (st.stx_rdev_major, st.stx_rdev_minor)
    } else if link.is_some() {
        (0, 0)
    } else {
        return None;
    };
    let kind = rule.classify(major, minor, link.as_deref())?;
    if !is_char && !matches!(kind, DeviceKind::StandIn { .. }) {
        return None;
    }
    let path = match link {
        Some(l) => l.to_string_lossy().into_owned(),
        None => rustix::fs::readlinkat(dir_fd, name, Vec::new())
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("char {major}:{minor}")),
    };
    Some(OpenDevice {
        fd,
        path,
        major,
        minor,
        kind,
    })
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
            rule.classify(195, 255, None),
            Some(DeviceKind::NvidiaControl)
        );
        assert_eq!(
            rule.classify(195, 254, None),
            Some(DeviceKind::NvidiaModeset)
        );
        assert_eq!(
            rule.classify(195, 1, None),
            Some(DeviceKind::NvidiaGpu { minor: 1 })
        );
        assert_eq!(rule.classify(1, 3, None), None);
    }
}
