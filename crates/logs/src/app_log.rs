//! One app's files: the active NDJSON file, the rotated segments (named
//! with their sequence number and time range, the cheap index a search uses
//! to skip them), and the live broadcast of new records.

use crate::record::{cut, LogRecord};
use crate::search::SnapFile;
use crate::Retention;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Name of the file new records are appended to.
pub(crate) const ACTIVE: &str = "current.ndjson";
/// Records a follower may fall behind before it skips some.
const LIVE_CAPACITY: usize = 4096;

/// A rotated file: read-only from now on.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    seq: u64,
    min_ms: i64,
    max_ms: i64,
}

/// `seg-<seq>-<first ms>-<last ms>.ndjson`.
fn segment_name(seq: u64, min_ms: i64, max_ms: i64) -> String {
    format!("seg-{seq:010}-{}-{}.ndjson", min_ms.max(0), max_ms.max(0))
}

fn parse_segment_name(name: &str) -> Option<(u64, i64, i64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".ndjson")?;
    let mut parts = rest.split('-');
    let seq = parts.next()?.parse().ok()?;
    let min = parts.next()?.parse().ok()?;
    let max = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((seq, min, max))
}

/// What changes under the lock.
#[derive(Debug, Default)]
struct Active {
    /// Open for appending; None before the first write.
    writer: Option<BufWriter<File>>,
    /// Bytes in the active file.
    len: u64,
    min_ms: Option<i64>,
    max_ms: Option<i64>,
    /// Oldest first.
    segments: VecDeque<Segment>,
    next_seq: u64,
    /// The app was deleted: nothing is written any more.
    removed: bool,
}

/// The log of one app.
pub(crate) struct AppLog {
    dir: PathBuf,
    retention: Retention,
    state: Mutex<Active>,
    live: broadcast::Sender<Arc<LogRecord>>,
}

impl AppLog {
    /// Reads what `dir` holds (if anything): segments by name, the active
    /// file's size and time range (a half-written last line is dropped).
    pub fn open(dir: PathBuf, retention: Retention) -> io::Result<Self> {
        let mut st = Active::default();
        if dir.is_dir() {
            let mut segments = Vec::new();
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                if let Some((seq, min_ms, max_ms)) = name.to_str().and_then(parse_segment_name) {
                    segments.push(Segment {
                        path: entry.path(),
                        seq,
                        min_ms,
                        max_ms,
                    });
                }
            }
            segments.sort_by_key(|s| s.seq);
            st.next_seq = segments.last().map_or(0, |s| s.seq + 1);
            st.segments = segments.into();
            let active = dir.join(ACTIVE);
            if active.exists() {
                let (len, min, max) = scan_active(&active)?;
                st.len = len;
                st.min_ms = min;
                st.max_ms = max;
            }
        }
        let log = AppLog {
            dir,
            retention,
            state: Mutex::new(st),
            live: broadcast::channel(LIVE_CAPACITY).0,
        };
        // The retention may have shrunk since the files were written.
        log.trim(&mut log.state.lock().unwrap());
        Ok(log)
    }

    /// Appends `records` (buffered, flushed before returning), rotating by
    /// size, then hands them to live followers.
    pub fn append(&self, records: Vec<LogRecord>) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        if st.removed || records.is_empty() {
            return Ok(());
        }
        let max = self.retention.max_file_bytes;
        for r in &records {
            let bytes = encode(r, max);
            if st.len > 0 && st.len + bytes.len() as u64 > max {
                self.rotate(&mut st)?;
            }
            let writer = match st.writer.as_mut() {
                Some(w) => w,
                None => {
                    fs::create_dir_all(&self.dir)?;
                    let f = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.dir.join(ACTIVE))?;
                    st.writer.insert(BufWriter::with_capacity(64 * 1024, f))
                }
            };
            writer.write_all(&bytes)?;
            st.len += bytes.len() as u64;
            let ms = r.ms();
            st.min_ms = Some(st.min_ms.map_or(ms, |m| m.min(ms)));
            st.max_ms = Some(st.max_ms.map_or(ms, |m| m.max(ms)));
        }
        if let Some(w) = st.writer.as_mut() {
            w.flush()?;
        }
        // Under the lock: a snapshot sees a record either in the files or live, never both.
        for r in records {
            let _ = self.live.send(Arc::new(r));
        }
        Ok(())
    }

    /// Closes the active file as a segment and starts an empty one; drops
    /// the oldest segments beyond the retention.
    fn rotate(&self, st: &mut Active) -> io::Result<()> {
        if let Some(mut w) = st.writer.take() {
            w.flush()?;
        }
        let (min_ms, max_ms) = (st.min_ms.unwrap_or(0), st.max_ms.unwrap_or(0));
        let path = self.dir.join(segment_name(st.next_seq, min_ms, max_ms));
        fs::rename(self.dir.join(ACTIVE), &path)?;
        st.segments.push_back(Segment {
            path,
            seq: st.next_seq,
            min_ms,
            max_ms,
        });
        st.next_seq += 1;
        st.len = 0;
        st.min_ms = None;
        st.max_ms = None;
        self.trim(st);
        Ok(())
    }

    /// Keeps at most `files - 1` segments besides the active file.
    fn trim(&self, st: &mut Active) {
        while st.segments.len() + 1 > self.retention.files {
            let Some(old) = st.segments.pop_front() else {
                break;
            };
            if let Err(e) = fs::remove_file(&old.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %old.path.display(), error = %e, "cannot remove an old log segment");
                }
            }
        }
    }

    /// A consistent view: open handles of every file (oldest first) with the
    /// lengths written so far, and, when asked, a subscription to every
    /// record written after it.
    pub fn snapshot(
        &self,
        subscribe: bool,
    ) -> io::Result<(Vec<SnapFile>, Option<crate::Follower>)> {
        let st = self.state.lock().unwrap();
        let mut files = Vec::new();
        for s in &st.segments {
            match File::open(&s.path) {
                Ok(file) => {
                    let len = file.metadata()?.len();
                    files.push(SnapFile {
                        file,
                        len,
                        min_ms: s.min_ms,
                        max_ms: s.max_ms,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let (Some(min_ms), Some(max_ms)) = (st.min_ms, st.max_ms) {
            files.push(SnapFile {
                file: File::open(self.dir.join(ACTIVE))?,
                len: st.len,
                min_ms,
                max_ms,
            });
        }
        let rx = subscribe.then(|| self.live.subscribe());
        Ok((files, rx))
    }

    /// Deletes every file; later appends are ignored.
    pub fn remove(&self) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.removed = true;
        st.writer = None;
        st.segments.clear();
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Files and bytes on disk.
    pub fn usage(&self) -> (usize, u64) {
        let st = self.state.lock().unwrap();
        let seg_bytes: u64 = st
            .segments
            .iter()
            .filter_map(|s| fs::metadata(&s.path).ok())
            .map(|m| m.len())
            .sum();
        let active = usize::from(self.dir.join(ACTIVE).exists());
        (st.segments.len() + active, seg_bytes + st.len)
    }
}

/// One NDJSON line; a line too long for a file is cut until the record fits.
fn encode(r: &LogRecord, max_bytes: u64) -> Vec<u8> {
    let mut bytes = line_of(r);
    let mut r = r.clone();
    while bytes.len() as u64 > max_bytes && !r.line.is_empty() {
        let excess = (bytes.len() as u64 - max_bytes) as usize;
        let keep = r.line.len().saturating_sub(excess.max(1));
        r.line = cut(&r.line, keep).to_owned();
        bytes = line_of(&r);
    }
    bytes
}

fn line_of(r: &LogRecord) -> Vec<u8> {
    let mut v = serde_json::to_vec(r).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Size and time range of the active file; a last line without its newline
/// (the server died mid-write) is cut off.
fn scan_active(path: &Path) -> io::Result<(u64, Option<i64>, Option<i64>)> {
    let mut reader = BufReader::new(File::open(path)?);
    let (mut len, mut min, mut max) = (0u64, None::<i64>, None::<i64>);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        len += n as u64;
        if let Ok(r) = serde_json::from_str::<LogRecord>(line.trim_end()) {
            let ms = r.ms();
            min = Some(min.map_or(ms, |m| m.min(ms)));
            max = Some(max.map_or(ms, |m| m.max(ms)));
        }
    }
    let file_len = fs::metadata(path)?.len();
    if file_len != len {
        OpenOptions::new().write(true).open(path)?.set_len(len)?;
    }
    Ok((len, min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let name = segment_name(7, 1_700_000_000_123, 1_700_000_009_999);
        assert_eq!(name, "seg-0000000007-1700000000123-1700000009999.ndjson");
        assert_eq!(
            parse_segment_name(&name),
            Some((7, 1_700_000_000_123, 1_700_000_009_999))
        );
        assert_eq!(parse_segment_name("current.ndjson"), None);
        assert_eq!(parse_segment_name("seg-1-2.ndjson"), None);
    }
}
