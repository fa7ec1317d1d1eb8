//! The store on a real temporary directory: rotation bounds, search filters,
//! the time index, following, resuming and reopening after a restart.

use super::*;
use crate::app_log::ACTIVE;
use std::io::Write;

const T0: i64 = 1_750_000_000_000;

fn rec(ms: i64, replica: &str, release: i64, stream: Stream, line: &str) -> LogRecord {
    LogRecord::new(from_ms(ms), replica, release, stream, line, MAX_LINE)
}

fn small() -> Retention {
    Retention {
        max_file_bytes: 2048,
        files: 3,
    }
}

/// Room for the 60 sample lines (about 7 KB) in several files.
fn roomy() -> Retention {
    Retention {
        max_file_bytes: 2048,
        files: 10,
    }
}

fn files_in(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn rotation_keeps_the_disk_bounded_and_the_newest_lines() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::new(dir.path().to_path_buf(), small());
    for i in 0..2_000 {
        // Batches of varying size, as the collector writes them.
        let batch = (0..(i % 3 + 1))
            .map(|k| {
                rec(
                    T0 + i * 10 + k,
                    "aaaaaaaaaaaa",
                    1,
                    Stream::Stdout,
                    &format!("request {i}.{k}"),
                )
            })
            .collect();
        store.append(1, batch).unwrap();
        let (files, bytes) = store.usage(1).unwrap();
        assert!(files <= 3, "{files} files");
        assert!(bytes <= 3 * 2048, "{bytes} bytes");
    }
    let on_disk = files_in(&store.app_dir(1));
    assert_eq!(on_disk.len(), 3, "{on_disk:?}");
    assert!(on_disk.iter().all(|(_, len)| *len <= 2048), "{on_disk:?}");
    assert!(on_disk.iter().any(|(n, _)| n == ACTIVE));
    let newest = store.search(1, &Query::new(1)).unwrap();
    assert_eq!(newest[0].line, "request 1999.1");
    let oldest = store
        .search(1, &Query::new(5).with_text("request 0.0"))
        .unwrap();
    assert!(oldest.is_empty(), "rotated away: {oldest:?}");
    // One file: a rotation simply starts over.
    let one = LogStore::new(
        dir.path().join("one"),
        Retention {
            max_file_bytes: 1024,
            files: 1,
        },
    );
    for i in 0..100 {
        one.append(1, vec![rec(T0 + i, "b", 1, Stream::Stdout, "x")])
            .unwrap();
    }
    assert_eq!(files_in(&one.app_dir(1)).len(), 1);
    assert!(one.usage(1).unwrap().1 <= 1024);
}

#[test]
fn lines_too_long_for_a_file_are_cut_to_fit() {
    let dir = tempfile::tempdir().unwrap();
    let r = Retention {
        max_file_bytes: 1024,
        files: 2,
    };
    assert_eq!(r.max_line(), 512);
    let store = LogStore::new(dir.path().to_path_buf(), r);
    // Control characters cost six bytes each once escaped.
    let nasty = "\u{1}".repeat(r.max_line());
    store
        .append(
            1,
            vec![
                rec(T0, "a", 1, Stream::Stdout, &nasty),
                rec(T0 + 1, "a", 1, Stream::Stdout, &"é".repeat(400)),
            ],
        )
        .unwrap();
    for (name, len) in files_in(&store.app_dir(1)) {
        assert!(len <= 1024, "{name}: {len}");
    }
    let got = store.search(1, &Query::new(10)).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].line.len() < nasty.len());
    assert!(got[1].line.chars().all(|c| c == 'é'));
    assert_eq!(Retention::default().max_line(), MAX_LINE);
    let bounded = Retention {
        max_file_bytes: 1,
        files: 0,
    }
    .bounded();
    assert_eq!((bounded.max_file_bytes, bounded.files), (MIN_FILE_BYTES, 1));
}

fn sample_store(dir: &std::path::Path) -> LogStore {
    let store = LogStore::new(dir.to_path_buf(), roomy());
    let mut batch = Vec::new();
    for i in 0..60 {
        let (replica, release) = if i % 2 == 0 {
            ("aaaaaaaaaaaa", 1)
        } else {
            ("bbbbbbbbbbbb", 2)
        };
        let stream = if i % 3 == 0 {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        batch.push(rec(
            T0 + i * 1000,
            replica,
            release,
            stream,
            &format!("GET /Path-{i} HTTP/1.1"),
        ));
    }
    store.append(7, batch).unwrap();
    store
}

#[test]
fn search_filters_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    assert!(files_in(&store.app_dir(7)).len() > 1, "spans segments");
    let all = store.search(7, &Query::new(1000)).unwrap();
    assert_eq!(all.len(), 60);
    assert!(all.windows(2).all(|w| w[0].ts <= w[1].ts), "time order");

    let newest = store.search(7, &Query::new(3)).unwrap();
    let lines: Vec<&str> = newest.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "GET /Path-57 HTTP/1.1",
            "GET /Path-58 HTTP/1.1",
            "GET /Path-59 HTTP/1.1"
        ]
    );
    let oldest = store
        .search(
            7,
            &Query {
                direction: Direction::Forward,
                ..Query::new(2)
            },
        )
        .unwrap();
    assert_eq!(oldest[0].line, "GET /Path-0 HTTP/1.1");
    assert_eq!(oldest[1].line, "GET /Path-1 HTTP/1.1");

    let by_replica = store
        .search(
            7,
            &Query {
                replica: Some("bbb".into()),
                ..Query::new(1000)
            },
        )
        .unwrap();
    assert_eq!(by_replica.len(), 30);
    assert!(by_replica.iter().all(|r| r.release == 2));
    let by_release = store
        .search(
            7,
            &Query {
                release: Some(1),
                stream: Some(Stream::Stderr),
                ..Query::new(1000)
            },
        )
        .unwrap();
    // Even i that are multiples of 3: 0, 6, …, 54.
    assert_eq!(by_release.len(), 10);
    let window = store
        .search(
            7,
            &Query {
                since_ms: Some(T0 + 10_000),
                until_ms: Some(T0 + 20_000),
                ..Query::new(1000)
            },
        )
        .unwrap();
    assert_eq!(window.len(), 10);
    assert_eq!(window[0].line, "GET /Path-10 HTTP/1.1");
    let text = store
        .search(7, &Query::new(1000).with_text("path-4"))
        .unwrap();
    let lines: Vec<&str> = text.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(lines.len(), 11, "4 and 40–49: {lines:?}");
    assert!(store.search(8, &Query::new(10)).unwrap().is_empty());
    assert!(!store.app_dir(8).exists(), "reads create nothing");
}

#[test]
fn newest_and_oldest_are_by_time_not_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::new(dir.path().to_path_buf(), roomy());
    let lines =
        |recs: &[LogRecord]| -> Vec<String> { recs.iter().map(|r| r.line.clone()).collect() };
    // Replica b's follower lags: its lines land after newer lines of a.
    let a = |ms: i64, l: &str| rec(T0 + ms, "aaaa", 1, Stream::Stdout, l);
    store
        .append(1, vec![a(1, "a1"), a(3, "a3"), a(5, "a5")])
        .unwrap();
    store.append(1, vec![a(2, "b2"), a(4, "b4")]).unwrap();
    assert_eq!(
        lines(&store.search(1, &Query::new(2)).unwrap()),
        ["b4", "a5"]
    );
    let oldest = Query {
        direction: Direction::Forward,
        ..Query::new(2)
    };
    assert_eq!(lines(&store.search(1, &oldest).unwrap()), ["a1", "b2"]);
    assert_eq!(
        lines(&store.search(1, &Query::new(10)).unwrap()),
        ["a1", "b2", "a3", "b4", "a5"]
    );
    // Across files: lines caught up after a restart, older than what the
    // previous files hold, land in the newest file.
    for i in 0..60 {
        store
            .append(2, vec![a(1_000 + i, &format!("live {i}"))])
            .unwrap();
    }
    store.append(2, vec![a(500, "caught up")]).unwrap();
    assert!(files_in(&store.app_dir(2)).len() > 2);
    assert_eq!(
        lines(&store.search(2, &oldest).unwrap()),
        ["caught up", "live 0"]
    );
    assert_eq!(
        lines(&store.search(2, &Query::new(2)).unwrap()),
        ["live 58", "live 59"]
    );
}

#[test]
fn segments_outside_the_time_range_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let files = files_in(&store.app_dir(7));
    let (oldest, _) = files.iter().find(|(n, _)| n.starts_with("seg-")).unwrap();
    // Lines that would match any query, in a segment whose name says it is old.
    let planted = rec(T0 + 59_500, "cccccccccccc", 9, Stream::Stdout, "planted");
    let mut text = serde_json::to_string(&planted).unwrap();
    text.push('\n');
    std::fs::write(store.app_dir(7).join(oldest), text).unwrap();
    let reopened = LogStore::new(dir.path().to_path_buf(), roomy());
    let recent = Query {
        since_ms: Some(T0 + 50_000),
        ..Query::new(1000)
    };
    let got = reopened.search(7, &recent).unwrap();
    assert!(
        got.iter().all(|r| r.line != "planted"),
        "skipped by its name"
    );
    assert!(!got.is_empty());
    let everything = reopened.search(7, &Query::new(1000)).unwrap();
    assert!(everything.iter().any(|r| r.line == "planted"));
}

#[test]
fn reopening_after_a_restart_keeps_lines_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = sample_store(dir.path());
        assert_eq!(store.search(7, &Query::new(1000)).unwrap().len(), 60);
    }
    // The server died mid-write: half a record at the end of the active file.
    let active = dir.path().join("7").join(ACTIVE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap();
    f.write_all(br#"{"ts":"2025-06-15T15:0"#).unwrap();
    drop(f);
    let before = files_in(&dir.path().join("7"));

    let store = LogStore::new(dir.path().to_path_buf(), roomy());
    let all = store.search(7, &Query::new(1000)).unwrap();
    assert_eq!(all.len(), 60);
    let point = store.resume_point(7, "bbbbbbbbbbbb").unwrap().unwrap();
    assert_eq!(point.ms, T0 + 59_000);
    assert_eq!(point.at_ms.len(), 1);
    assert_eq!(point.at_ms[0].line, "GET /Path-59 HTTP/1.1");
    assert_eq!(store.resume_point(7, "dddddddddddd").unwrap(), None);
    store
        .append(
            7,
            vec![rec(T0 + 60_000, "aaaaaaaaaaaa", 1, Stream::Stdout, "after")],
        )
        .unwrap();
    let text = std::fs::read_to_string(&active).unwrap();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<LogRecord>(l).is_ok()),
        "the half line was dropped: {text}"
    );
    let all = store.search(7, &Query::new(1000)).unwrap();
    assert_eq!(all.len(), 61);
    assert_eq!(all[60].line, "after");
    // Rotation carries on numbering after the existing segments.
    for i in 0..100 {
        store
            .append(
                7,
                vec![rec(T0 + 61_000 + i, "a", 1, Stream::Stdout, "more lines")],
            )
            .unwrap();
    }
    let after = files_in(&dir.path().join("7"));
    let newest_before = before.iter().filter(|(n, _)| n.starts_with("seg-")).max();
    let newest_after = after.iter().filter(|(n, _)| n.starts_with("seg-")).max();
    assert!(newest_after > newest_before, "{before:?} → {after:?}");
    assert!(after.len() <= 10);
}

#[test]
fn followers_see_new_lines_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let (history, mut rx) = store.search_and_follow(7, &Query::new(5)).unwrap();
    assert_eq!(history.len(), 5);
    assert!(rx.try_recv().is_err(), "nothing new yet");
    store
        .append(7, vec![rec(T0 + 70_000, "a", 3, Stream::Stdout, "live")])
        .unwrap();
    assert_eq!(rx.try_recv().unwrap().line, "live");
    // Deleting the app ends the follow and its files.
    store.remove_app(7).unwrap();
    assert!(matches!(
        rx.try_recv(),
        Err(broadcast::error::TryRecvError::Closed)
    ));
    assert!(!store.app_dir(7).exists());
    store
        .append(7, vec![rec(T0, "a", 1, Stream::Stdout, "late")])
        .unwrap();
    assert!(!store.app_dir(7).exists(), "late writes are dropped");
    assert!(store.search(7, &Query::new(10)).unwrap().is_empty());
}

#[test]
fn files_of_deleted_apps_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::new(dir.path().to_path_buf(), small());
    for app in [1, 2, 3] {
        store
            .append(app, vec![rec(T0, "a", 1, Stream::Stdout, "x")])
            .unwrap();
    }
    std::fs::create_dir_all(dir.path().join("not-an-app")).unwrap();
    let keep: HashSet<i64> = [2].into();
    assert_eq!(store.remove_other_apps(&keep).unwrap(), 2);
    assert!(!store.app_dir(1).exists());
    assert!(store.app_dir(2).exists());
    assert!(!store.app_dir(3).exists());
    assert!(dir.path().join("not-an-app").exists());
}
