//! Slipway's app log store: what the replicas of each app printed, kept on
//! disk within a fixed budget, searchable, and followed live.
//!
//! Per app a directory `<root>/<app_id>/` holds an active NDJSON file
//! (`current.ndjson`, one [`LogRecord`] per line) and rotated segments
//! `seg-<seq>-<first ms>-<last ms>.ndjson`. The active file is closed as a
//! segment when the next record would take it over `max_file_bytes`, and
//! only the newest `files - 1` segments are kept, so an app never uses more
//! than `files × max_file_bytes`. A segment's name is its time index: a
//! search outside its range does not open it.
//!
//! Every call here does blocking file I/O: async callers use
//! `spawn_blocking`. Writes are buffered per batch and flushed before
//! [`LogStore::append`] returns; followers get each record through a
//! broadcast as it is written.

#![warn(missing_docs)]

mod app_log;
mod record;
mod search;

pub use record::{cut, from_ms, truncate_ms, LogRecord, Stream, MAX_LINE};
pub use search::{Direction, Query};

use app_log::AppLog;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// The live records of one app, as a follower receives them.
pub type Follower = broadcast::Receiver<Arc<LogRecord>>;

/// Smallest file size accepted (smaller settings are raised to it).
pub const MIN_FILE_BYTES: u64 = 1024;

/// How much of an app's log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A file is rotated before it grows past this many bytes.
    pub max_file_bytes: u64,
    /// Files kept per app, the active one included.
    pub files: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_file_bytes: 8 * 1024 * 1024,
            files: 5,
        }
    }
}

impl Retention {
    /// The retention with its values brought into range (1 KiB – 1 GiB per
    /// file, 1 – 1000 files).
    pub fn bounded(self) -> Self {
        Retention {
            max_file_bytes: self.max_file_bytes.clamp(MIN_FILE_BYTES, 1 << 30),
            files: self.files.clamp(1, 1000),
        }
    }

    /// Longest line stored: [`MAX_LINE`], or less so that a record fits a
    /// small file with room to spare.
    pub fn max_line(&self) -> usize {
        MAX_LINE.min((self.max_file_bytes / 2) as usize)
    }
}

/// Where the last stored lines of a replica end: its newest timestamp and
/// every record stored at that millisecond (to resume without duplicates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// Unix milliseconds of the replica's newest stored line.
    pub ms: i64,
    /// The replica's records stored at exactly that millisecond.
    pub at_ms: Vec<LogRecord>,
}

/// The log store of every app. Cheap to clone.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    retention: Retention,
    apps: Mutex<HashMap<i64, Arc<AppLog>>>,
    /// Apps whose logs were removed: late writes of their collectors are dropped.
    deleted: Mutex<HashSet<i64>>,
}

impl LogStore {
    /// A store under `root` (created on the first write).
    pub fn new(root: PathBuf, retention: Retention) -> Self {
        LogStore {
            inner: Arc::new(Inner {
                root,
                retention: retention.bounded(),
                apps: Mutex::new(HashMap::new()),
                deleted: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The retention in force.
    pub fn retention(&self) -> Retention {
        self.inner.retention
    }

    /// The directory of an app's files.
    pub fn app_dir(&self, app_id: i64) -> PathBuf {
        self.inner.root.join(app_id.to_string())
    }

    /// The app's log, opened on first use; None once the app's logs were removed.
    fn app(&self, app_id: i64) -> io::Result<Option<Arc<AppLog>>> {
        if self.inner.deleted.lock().unwrap().contains(&app_id) {
            return Ok(None);
        }
        let mut apps = self.inner.apps.lock().unwrap();
        if let Some(a) = apps.get(&app_id) {
            return Ok(Some(a.clone()));
        }
        let log = Arc::new(AppLog::open(self.app_dir(app_id), self.inner.retention)?);
        apps.insert(app_id, log.clone());
        Ok(Some(log))
    }

    /// Stores `records` of one app (in order) and passes them to followers.
    pub fn append(&self, app_id: i64, records: Vec<LogRecord>) -> io::Result<()> {
        match self.app(app_id)? {
            Some(log) => log.append(records),
            None => Ok(()),
        }
    }

    /// The records matching `query`, in time order.
    pub fn search(&self, app_id: i64, query: &Query) -> io::Result<Vec<LogRecord>> {
        let Some(log) = self.app(app_id)? else {
            return Ok(Vec::new());
        };
        let (files, _) = log.snapshot(false)?;
        search::search(&files, query)
    }

    /// Like [`LogStore::search`], plus every record written after the
    /// search's view (none twice, none missed). Its receiver closes when the
    /// app's logs are removed; the caller applies `query`'s filters to it.
    pub fn search_and_follow(
        &self,
        app_id: i64,
        query: &Query,
    ) -> io::Result<(Vec<LogRecord>, Follower)> {
        let Some(log) = self.app(app_id)? else {
            let (_, rx) = broadcast::channel(1);
            return Ok((Vec::new(), rx));
        };
        let (files, rx) = log.snapshot(true)?;
        let history = search::search(&files, query)?;
        Ok((history, rx.expect("subscribed")))
    }

    /// Where the stored lines of `replica` end, if any were stored.
    pub fn resume_point(&self, app_id: i64, replica: &str) -> io::Result<Option<ResumePoint>> {
        let Some(log) = self.app(app_id)? else {
            return Ok(None);
        };
        let (files, _) = log.snapshot(false)?;
        let last = Query {
            replica: Some(replica.to_owned()),
            ..Query::new(1)
        };
        let Some(newest) = search::search(&files, &last)?.pop() else {
            return Ok(None);
        };
        let ms = newest.ms();
        let same_ms = Query {
            replica: Some(replica.to_owned()),
            since_ms: Some(ms),
            until_ms: Some(ms + 1),
            ..Query::new(100_000)
        };
        let at_ms = search::search(&files, &same_ms)?
            .into_iter()
            .filter(|r| r.replica == replica)
            .collect();
        Ok(Some(ResumePoint { ms, at_ms }))
    }

    /// Deletes an app's files for good (the app was deleted); its followers' streams end.
    pub fn remove_app(&self, app_id: i64) -> io::Result<()> {
        self.inner.deleted.lock().unwrap().insert(app_id);
        let log = self.inner.apps.lock().unwrap().remove(&app_id);
        match log {
            Some(log) => log.remove(),
            None => match std::fs::remove_dir_all(self.app_dir(app_id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Deletes the files of every app not in `existing` (apps deleted while
    /// the server was down). Returns how many apps' files went.
    pub fn remove_other_apps(&self, existing: &HashSet<i64>) -> io::Result<usize> {
        let entries = match std::fs::read_dir(&self.inner.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if !existing.contains(&id) {
                self.remove_app(id)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Files and bytes an app's log takes on disk.
    pub fn usage(&self, app_id: i64) -> io::Result<(usize, u64)> {
        Ok(self.app(app_id)?.map_or((0, 0), |log| log.usage()))
    }
}

#[cfg(test)]
mod tests;
