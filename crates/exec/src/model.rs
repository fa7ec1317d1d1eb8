//! What clients send and get back: job requests, phase results, job states.

use serde::{Deserialize, Serialize};

/// One source file of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// File name inside the work directory (no `/`, no `..`); the runtime's
    /// source file name when omitted.
    #[serde(default)]
    pub name: Option<String>,
    /// File contents (UTF-8 text).
    pub content: String,
}

/// A request to compile and run a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Language name or alias.
    pub language: String,
    /// Wanted version (exact or prefix); any when omitted.
    #[serde(default)]
    pub version: Option<String>,
    /// Source files; the first one is the entry point.
    pub files: Vec<JobFile>,
    /// Standard input of the run.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Command-line arguments of the run.
    #[serde(default)]
    pub args: Vec<String>,
    /// Wall-clock limit of the compile step in milliseconds.
    #[serde(default)]
    pub compile_timeout: Option<u64>,
    /// Wall-clock limit of the run in milliseconds.
    #[serde(default)]
    pub run_timeout: Option<u64>,
    /// Memory limit of the sandbox in bytes.
    #[serde(default)]
    pub memory_limit: Option<i64>,
}

/// Outcome of one phase (compile or run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseResult {
    /// Standard output, cut at the output cap.
    pub stdout: String,
    /// Standard error, cut at the output cap.
    pub stderr: String,
    /// Exit code (128+N when killed by signal N), None when it never finished.
    pub exit_code: Option<i64>,
    /// Name of the signal that killed it (`SIGKILL`, `SIGXCPU`…).
    pub signal: Option<String>,
    /// Wall time in milliseconds (10 ms resolution).
    pub time_ms: u64,
    /// Peak memory of the sandbox (its memory cgroup: processes plus files in
    /// `/work` and `/tmp`) at the end of the phase, in KiB; None when the
    /// cgroup is unreadable. Cgroup peaks cannot be reset, so the run phase of
    /// a compiled language reports at least the compile step's peak.
    pub memory_kb: Option<u64>,
    /// Output was cut at the cap (or the program hit the file-size limit).
    pub truncated: bool,
    /// The kernel's OOM killer stopped it (memory limit hit).
    pub oom_killed: bool,
    /// The wall-time or CPU-time limit stopped it.
    pub timed_out: bool,
    /// `/work` or `/tmp` had no space left when it ended: it filled its disk.
    #[serde(default)]
    pub disk_full: bool,
}

/// Everything a finished job reports (stored as JSON in the job row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The compile phase, for compiled languages.
    pub compile: Option<PhaseResult>,
    /// The run phase, unless compilation failed.
    pub run: Option<PhaseResult>,
    /// Why the job failed when the phases' exit codes cannot tell: a problem
    /// of the platform (e.g. a missing image), or a limit of the sandbox the
    /// program hit, spelled out: `sandbox disk full: …` (see
    /// [`PhaseResult::disk_full`]) or `out of memory: …` (see
    /// [`PhaseResult::oom_killed`]). A job with an error has failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Life cycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted and persisted, waiting for a worker.
    Pending,
    /// Claimed by a worker and running.
    Running,
    /// Compiled (if needed) and exited 0.
    Succeeded,
    /// Compile error, non-zero exit, signal, OOM or platform error.
    Failed,
    /// Hit the wall-time or CPU-time limit.
    TimedOut,
    /// Cancelled by its owner.
    Cancelled,
}

impl JobState {
    /// The spelling stored in the database and shown to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job can no longer change.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }

    /// Parse the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "timed_out" => JobState::TimedOut,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }
}

impl JobResult {
    /// The final state this result implies.
    pub fn state(&self) -> JobState {
        if self.error.is_some() {
            return JobState::Failed;
        }
        for phase in [&self.compile, &self.run].into_iter().flatten() {
            if phase.timed_out {
                return JobState::TimedOut;
            }
            if phase.exit_code != Some(0) || phase.oom_killed || phase.disk_full {
                return JobState::Failed;
            }
        }
        if self.run.is_some() {
            JobState::Succeeded
        } else {
            JobState::Failed
        }
    }
}

/// Name of signal `n` for reports (Linux numbering).
pub fn signal_name(n: i64) -> String {
    let name = match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return format!("SIG{n}"),
    };
    name.to_string()
}

/// Source files from a zip upload, in archive order (the first is the entry
/// point). Bounded before anything is inflated: at most `max_files` entries
/// and `max_total_bytes` of contents; only top-level UTF-8 text files.
pub fn files_from_zip(
    zip_bytes: &[u8],
    max_files: usize,
    max_total_bytes: usize,
) -> Result<Vec<JobFile>, String> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))
        .map_err(|e| format!("the upload is not a readable zip archive: {e}"))?;
    let mut files = Vec::new();
    let mut total = 0usize;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("zip entry {i}: {e}"))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().to_string();
        if name.contains('/') || name.contains('\\') {
            return Err(format!(
                "zip entry {name:?} is in a folder; put the source files at the top level of the archive"
            ));
        }
        if files.len() == max_files {
            return Err(format!("the zip holds more than {max_files} files"));
        }
        let room = max_total_bytes.saturating_sub(total);
        let mut content = Vec::new();
        (&mut entry)
            .take(room as u64 + 1)
            .read_to_end(&mut content)
            .map_err(|e| format!("zip entry {name:?}: {e}"))?;
        if content.len() > room {
            return Err(format!(
                "the zip's files hold more than {max_total_bytes} bytes"
            ));
        }
        total += content.len();
        let content = String::from_utf8(content)
            .map_err(|_| format!("zip entry {name:?} is not UTF-8 text"))?;
        files.push(JobFile {
            name: Some(name),
            content,
        });
    }
    if files.is_empty() {
        return Err("the zip holds no files".into());
    }
    Ok(files)
}

#[cfg(test)]
mod zip_tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn zips_are_bounded_and_flat() {
        let ok = files_from_zip(
            &zip_of(&[("main.py", b"print(1)"), ("lib.py", b"x=1")]),
            8,
            1000,
        )
        .unwrap();
        assert_eq!(ok[0].name.as_deref(), Some("main.py"));
        assert_eq!(ok.len(), 2);
        assert!(files_from_zip(b"not a zip", 8, 1000).is_err());
        assert!(files_from_zip(&zip_of(&[("a/b.py", b"x")]), 8, 1000)
            .unwrap_err()
            .contains("folder"));
        assert!(files_from_zip(&zip_of(&[("a.py", &[b'x'; 2000])]), 8, 1000)
            .unwrap_err()
            .contains("bytes"));
        assert!(files_from_zip(&zip_of(&[("a", b"1"), ("b", b"2")]), 1, 1000).is_err());
        assert!(files_from_zip(&zip_of(&[("a", &[0xff, 0xfe])]), 8, 1000)
            .unwrap_err()
            .contains("UTF-8"));
    }
}
