//! Live logs of an app: the output of each replica, merged, line by line.

use crate::Deployer;
use futures::{Stream, StreamExt};
use serde::Serialize;
use slipway_runtime::{LogOptions, LogStream};

/// One line an app's replica printed.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Short container id of the replica.
    pub replica: String,
    /// Release the replica runs.
    pub release: i64,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The text, without its newline.
    pub line: String,
}

/// Longest line passed on; longer ones are cut.
const MAX_LINE: usize = 16 * 1024;

impl Deployer {
    /// The output of the app's replicas: the last `tail` lines of each, then
    /// (with `follow`) new lines as they come, until every replica stops.
    pub fn logs(
        &self,
        app_id: i64,
        tail: u64,
        follow: bool,
    ) -> impl Stream<Item = LogLine> + Send + 'static {
        let Some(rt) = self.runtime().cloned() else {
            return futures::stream::empty().boxed();
        };
        let streams = self.replicas(app_id).into_iter().map(move |r| {
            let replica = r.id.clone();
            let release = r.release;
            rt.logs(
                &r.container,
                LogOptions {
                    follow,
                    tail: Some(tail),
                    ..Default::default()
                },
            )
            .filter_map(|c| async move { c.ok() })
            .flat_map(move |chunk| {
                let stream = match chunk.stream {
                    LogStream::Stderr => "stderr",
                    LogStream::Stdout => "stdout",
                };
                let text = String::from_utf8_lossy(&chunk.data).into_owned();
                let lines: Vec<LogLine> = text
                    .lines()
                    .map(|l| LogLine {
                        replica: replica.clone(),
                        release,
                        stream,
                        line: l.chars().take(MAX_LINE).collect(),
                    })
                    .collect();
                futures::stream::iter(lines)
            })
            .boxed()
        });
        futures::stream::select_all(streams).boxed()
    }
}
