//! One stored log line and how it is written: an NDJSON object with a
//! millisecond UTC timestamp.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest line kept, in bytes; longer ones are cut (on a character
/// boundary). Docker itself splits lines at 16 KiB.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// Parses `stdout` / `stderr`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One line an app's replica printed, as stored and as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When Docker received the line (millisecond precision, UTC).
    #[serde(serialize_with = "ser_ts", deserialize_with = "de_ts")]
    pub ts: DateTime<Utc>,
    /// Short (12 hex) container id of the replica.
    pub replica: String,
    /// Release the replica runs.
    pub release: i64,
    /// Stdout or stderr.
    pub stream: Stream,
    /// The text, without its newline, at most [`MAX_LINE`] bytes.
    pub line: String,
    /// The stack service the replica belongs to (apps deployed from a
    /// Compose file; absent for single-service apps and older lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl LogRecord {
    /// A record; the time is truncated to milliseconds and the line cut to `max_line` bytes.
    pub fn new(
        ts: DateTime<Utc>,
        replica: impl Into<String>,
        release: i64,
        stream: Stream,
        line: &str,
        max_line: usize,
    ) -> Self {
        LogRecord {
            ts: truncate_ms(ts),
            replica: replica.into(),
            release,
            stream,
            line: cut(line, max_line).to_owned(),
            service: None,
        }
    }

    /// The record, marked as printed by a replica of stack service `service`.
    pub fn with_service(mut self, service: Option<&str>) -> Self {
        self.service = service.filter(|s| !s.is_empty()).map(str::to_owned);
        self
    }

    /// The timestamp in Unix milliseconds.
    pub fn ms(&self) -> i64 {
        self.ts.timestamp_millis()
    }
}

/// `ts` without its sub-millisecond part.
pub fn truncate_ms(ts: DateTime<Utc>) -> DateTime<Utc> {
    from_ms(ts.timestamp_millis())
}

/// The instant `ms` Unix milliseconds denote (the epoch when out of range).
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn ser_ts<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn de_ts<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_milliseconds() {
        let ts = DateTime::parse_from_rfc3339("2025-03-04T05:06:07.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = LogRecord::new(ts, "abc", 2, Stream::Stderr, "héllo", MAX_LINE);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"ts":"2025-03-04T05:06:07.123Z","replica":"abc","release":2,"stream":"stderr","line":"héllo"}"#
        );
        let back: LogRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.ms() % 1000, 123);
        let r = r.with_service(Some("db"));
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            text.ends_with(r#","line":"héllo","service":"db"}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<LogRecord>(&text).unwrap(), r);
    }

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
        let long = "x".repeat(MAX_LINE + 10);
        let r = LogRecord::new(Utc::now(), "a", 1, Stream::Stdout, &long, MAX_LINE);
        assert_eq!(r.line.len(), MAX_LINE);
    }
}
