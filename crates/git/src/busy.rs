//! Which paths running processes work in, so a clean-up never removes the
//! temporary objects of a push still in progress (one whose server died is
//! finished by git on its own, and may still be moving objects in).

use std::path::PathBuf;

/// Paths that processes hold open (`/proc/*/fd`), work in (`/proc/*/cwd`) or
/// name as their object quarantine (`GIT_QUARANTINE_PATH`,
/// `GIT_OBJECT_DIRECTORY` in `/proc/*/environ`, set for git's hooks).
/// Processes that cannot be read are skipped; off Linux the list is empty.
pub(crate) fn paths_in_use() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return paths;
    };
    for p in procs.flatten() {
        let pid = p.path();
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(pid.join("cwd")) {
            paths.push(cwd);
        }
        if let Ok(fds) = std::fs::read_dir(pid.join("fd")) {
            paths.extend(
                fds.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok()),
            );
        }
        if let Ok(env) = std::fs::read(pid.join("environ")) {
            for var in env.split(|b| *b == 0) {
                let var = String::from_utf8_lossy(var);
                for key in ["GIT_QUARANTINE_PATH=", "GIT_OBJECT_DIRECTORY="] {
                    if let Some(v) = var.strip_prefix(key) {
                        paths.push(PathBuf::from(v));
                    }
                }
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_own_working_directory_is_in_use() {
        let cwd = std::env::current_dir().unwrap();
        assert!(super::paths_in_use().contains(&cwd));
    }
}
