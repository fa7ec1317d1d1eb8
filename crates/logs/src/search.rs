//! Searching an app's files: a filter over records and a scan that keeps
//! the newest (or oldest) matches, skipping files whose time range cannot match.

use crate::record::{LogRecord, Stream};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

/// Which end of the matching history a limited search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// The newest `limit` matches (what `tail` shows).
    #[default]
    Backward,
    /// The oldest `limit` matches (paging forward from `since`).
    Forward,
}

/// What to look for in an app's logs. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Replica short id, or a prefix of it.
    pub replica: Option<String>,
    /// Release number.
    pub release: Option<i64>,
    /// Stack service (exactly).
    pub service: Option<String>,
    /// Stdout or stderr only.
    pub stream: Option<Stream>,
    /// Lines at or after this instant (Unix ms).
    pub since_ms: Option<i64>,
    /// Lines strictly before this instant (Unix ms).
    pub until_ms: Option<i64>,
    /// Text the line contains, case-insensitively (see [`Query::with_text`]).
    pub(crate) text: Option<String>,
    /// Most records returned.
    pub limit: usize,
    /// Which end of the history `limit` keeps.
    pub direction: Direction,
}

impl Query {
    /// Everything, newest `limit` first kept.
    pub fn new(limit: usize) -> Self {
        Query {
            limit,
            ..Default::default()
        }
    }

    /// Also requires the line to contain `text`, ignoring case.
    pub fn with_text(mut self, text: &str) -> Self {
        self.text = (!text.is_empty()).then(|| text.to_lowercase());
        self
    }

    /// The text filter, lowercased.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Whether `r` passes every filter (the limit aside).
    pub fn matches(&self, r: &LogRecord) -> bool {
        if let Some(p) = &self.replica {
            if !r.replica.starts_with(p.as_str()) {
                return false;
            }
        }
        if self.release.is_some_and(|n| n != r.release) {
            return false;
        }
        if self.service.is_some() && self.service != r.service {
            return false;
        }
        if self.stream.is_some_and(|s| s != r.stream) {
            return false;
        }
        let ms = r.ms();
        if self.since_ms.is_some_and(|s| ms < s) || self.until_ms.is_some_and(|u| ms >= u) {
            return false;
        }
        match &self.text {
            Some(t) => contains_ignore_case(&r.line, t),
            None => true,
        }
    }

    /// Whether a file holding lines from `min` to `max` (Unix ms) may match.
    pub(crate) fn overlaps(&self, min: i64, max: i64) -> bool {
        self.since_ms.is_none_or(|s| max >= s) && self.until_ms.is_none_or(|u| min < u)
    }
}

/// `hay` contains the lowercased `needle`, ignoring case (ASCII needles
/// without allocating).
fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        return n.is_empty()
            || h.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b));
    }
    hay.to_lowercase().contains(needle)
}

/// One file of a consistent view of an app's logs: an open handle (so a
/// rotation cannot take it away), the length to read and its time range.
#[derive(Debug)]
pub(crate) struct SnapFile {
    pub file: File,
    pub len: u64,
    pub min_ms: i64,
    pub max_ms: i64,
}

/// The matches of `query` in `files` (oldest file first): the `limit`
/// newest (or oldest) by time, in time order.
///
/// Files are only roughly in time order: replicas' followers write
/// independently, and lines caught up after a restart land after newer
/// lines of other replicas. So the selection is by timestamp, not by
/// position, and a file is skipped when its range cannot beat what is kept.
pub(crate) fn search(files: &[SnapFile], query: &Query) -> std::io::Result<Vec<LogRecord>> {
    let mut kept = Kept::new(query.limit, query.direction);
    let order: Vec<usize> = match query.direction {
        Direction::Backward => (0..files.len()).rev().collect(),
        Direction::Forward => (0..files.len()).collect(),
    };
    for i in order {
        let f = &files[i];
        if query.overlaps(f.min_ms, f.max_ms) && kept.may_take(f.min_ms, f.max_ms) {
            scan(f, query, |n, r| kept.offer((r.ms(), i, n), r))?;
        }
    }
    Ok(kept.into_sorted())
}

/// Reads one file's records that match, with their position in it.
fn scan(
    f: &SnapFile,
    query: &Query,
    mut found: impl FnMut(usize, LogRecord),
) -> std::io::Result<()> {
    // A snapshot may be searched more than once.
    (&f.file).seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::with_capacity(64 * 1024, (&f.file).take(f.len));
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        n += 1;
        let Ok(r) = serde_json::from_str::<LogRecord>(line.trim_end()) else {
            continue;
        };
        if query.matches(&r) {
            found(n, r);
        }
    }
}

/// Orders records by time, then file, then position in the file.
type Key = (i64, usize, usize);

struct Entry(Key, LogRecord);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// The best `limit` records seen so far, the worst one on top of the heap.
enum Kept {
    /// Keeps the newest: a min-heap.
    Newest(usize, BinaryHeap<Reverse<Entry>>),
    /// Keeps the oldest: a max-heap.
    Oldest(usize, BinaryHeap<Entry>),
}

impl Kept {
    fn new(limit: usize, direction: Direction) -> Self {
        match direction {
            Direction::Backward => Kept::Newest(limit, BinaryHeap::new()),
            Direction::Forward => Kept::Oldest(limit, BinaryHeap::new()),
        }
    }

    /// Whether a file holding `min..=max` may hold a record worth keeping.
    fn may_take(&self, min_ms: i64, max_ms: i64) -> bool {
        match self {
            Kept::Newest(limit, heap) => {
                heap.len() < *limit || heap.peek().is_some_and(|w| max_ms >= (w.0).0 .0)
            }
            Kept::Oldest(limit, heap) => {
                heap.len() < *limit || heap.peek().is_some_and(|w| min_ms <= w.0 .0)
            }
        }
    }

    fn offer(&mut self, key: Key, r: LogRecord) {
        match self {
            Kept::Newest(limit, heap) => {
                if heap.len() < *limit {
                    heap.push(Reverse(Entry(key, r)));
                } else if heap.peek().is_some_and(|w| key > (w.0).0) {
                    heap.pop();
                    heap.push(Reverse(Entry(key, r)));
                }
            }
            Kept::Oldest(limit, heap) => {
                if heap.len() < *limit {
                    heap.push(Entry(key, r));
                } else if heap.peek().is_some_and(|w| key < w.0) {
                    heap.pop();
                    heap.push(Entry(key, r));
                }
            }
        }
    }

    fn into_sorted(self) -> Vec<LogRecord> {
        let mut all: Vec<Entry> = match self {
            Kept::Newest(_, heap) => heap.into_iter().map(|Reverse(e)| e).collect(),
            Kept::Oldest(_, heap) => heap.into_vec(),
        };
        all.sort();
        all.into_iter().map(|Entry(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{from_ms, MAX_LINE};

    fn rec(ms: i64, replica: &str, release: i64, stream: Stream, line: &str) -> LogRecord {
        LogRecord::new(from_ms(ms), replica, release, stream, line, MAX_LINE)
    }

    #[test]
    fn filters_combine() {
        let r = rec(5_000, "abc123", 3, Stream::Stderr, "GET /Health OK");
        assert!(Query::new(1).matches(&r));
        let q = Query {
            replica: Some("abc".into()),
            release: Some(3),
            stream: Some(Stream::Stderr),
            since_ms: Some(5_000),
            until_ms: Some(5_001),
            ..Query::new(1)
        }
        .with_text("health ok");
        assert!(q.matches(&r));
        assert!(!Query {
            replica: Some("abd".into()),
            ..q.clone()
        }
        .matches(&r));
        assert!(!Query {
            release: Some(2),
            ..q.clone()
        }
        .matches(&r));
        assert!(!Query {
            stream: Some(Stream::Stdout),
            ..q.clone()
        }
        .matches(&r));
        assert!(!Query {
            until_ms: Some(5_000),
            ..q.clone()
        }
        .matches(&r));
        assert!(!Query {
            since_ms: Some(5_001),
            ..q.clone()
        }
        .matches(&r));
        assert!(!q.clone().with_text("missing").matches(&r));
        let db = Query {
            service: Some("db".into()),
            ..Query::new(1)
        };
        assert!(!db.matches(&r), "a line without a service");
        assert!(db.matches(&r.clone().with_service(Some("db"))));
        assert!(!db.matches(&r.clone().with_service(Some("dbx"))));
        let accents = rec(1, "a", 1, Stream::Stdout, "ÉCOLE fermée");
        assert!(Query::new(1).with_text("école").matches(&accents));
    }

    #[test]
    fn time_ranges_overlap() {
        let q = Query {
            since_ms: Some(100),
            until_ms: Some(200),
            ..Query::new(1)
        };
        assert!(q.overlaps(50, 100));
        assert!(q.overlaps(199, 300));
        assert!(!q.overlaps(0, 99));
        assert!(!q.overlaps(200, 300));
        assert!(Query::new(1).overlaps(0, 1));
    }
}
