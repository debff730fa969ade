//! Whether root may trust a file it runs or writes, as sshd's StrictModes
//! judges: the file and every directory above it owned by root and
//! writable by no one else (a sticky directory such as /tmp is allowed
//! above a root-owned entry, since no one else can replace that entry).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `Ok` when root may trust `path`; otherwise why not, in words that say
/// what to change. A path that does not exist is judged by its directory.
pub fn check_trusted(path: &Path) -> Result<(), String> {
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(parent) = path.parent() else {
                return Ok(());
            };
            return check_trusted(parent);
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut chain: Vec<PathBuf> = real.ancestors().map(Path::to_path_buf).collect();
    chain.reverse();
    for (i, p) in chain.iter().enumerate() {
        let meta = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let last = i + 1 == chain.len();
        let what = if last && p == &real {
            path.display().to_string()
        } else {
            format!("{} (above {})", p.display(), path.display())
        };
        if meta.uid() != 0 {
            return Err(format!(
                "{what} is owned by uid {}, not root: root will not trust it (chown root)",
                meta.uid()
            ));
        }
        let writable = meta.mode() & 0o022 != 0;
        // A sticky directory above the file: no one else can replace what root owns in it.
        let sticky_above = !last && meta.is_dir() && meta.mode() & 0o1000 != 0;
        if writable && !sticky_above {
            return Err(format!(
                "{what} is writable by users other than root (mode {:04o}): root will not trust it (chmod go-w)",
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn writable_by_others_or_under_such_a_directory_is_refused() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("guard");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        chmod(&f, 0o755);
        assert_eq!(
            check_trusted(&f),
            Ok(()),
            "root's, in a root 0700 dir under sticky /tmp"
        );
        chmod(&f, 0o757);
        let e = check_trusted(&f).unwrap_err();
        assert!(
            e.contains("writable by users other than root") && e.contains("guard"),
            "{e}"
        );
        chmod(&f, 0o755);
        chmod(t.path(), 0o777);
        let e = check_trusted(&f).unwrap_err();
        assert!(e.contains("above"), "{e}");
        chmod(t.path(), 0o700);
        std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
        let e = check_trusted(&f).unwrap_err();
        assert!(e.contains("uid 65534"), "{e}");
        assert!(check_trusted(Path::new("/usr/bin/true")).is_ok());
        assert!(
            check_trusted(&t.path().join("absent")).is_ok(),
            "judged by its directory"
        );
    }
}
