//! `GET /apps/{app}/logs`: search an app's stored logs by replica, stack
//! service, release, stream, time and text, and optionally follow new
//! matching lines live. NDJSON, one record per line (`ts`, `replica`,
//! `release`, `stream`, `line`, and `service` for a stack's lines); while following, a blank line every 15 s keeps the connection
//! alive. Read access to the app's repository is enough.

use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::routes::apps::authorize_app;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use slipway_deploy::{Direction, LogRecord, LogStream, Query};
use slipway_domain::Access;
use std::time::Duration;

/// Most records one request returns.
pub const MAX_LIMIT: usize = 10_000;
/// Records returned when neither `limit` nor `tail` is given.
const DEFAULT_LIMIT: usize = 100;
/// Longest `q`, in characters.
const MAX_TEXT: usize = 256;
/// Longest relative time accepted (`since=3650d`).
const MAX_AGO_S: i64 = 3650 * 86_400;
/// Blank line sent to a follower after this much silence.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// The parameters this route knows.
const PARAMS: [&str; 11] = [
    "tail",
    "limit",
    "replica",
    "service",
    "release",
    "stream",
    "since",
    "until",
    "q",
    "follow",
    "direction",
];

/// A validated request: what to search and whether to follow.
#[derive(Debug)]
pub(crate) struct LogRequest {
    pub query: Query,
    pub follow: bool,
}

/// Validates the query string; every problem is a 422 saying what is wrong.
pub(crate) fn parse(raw: &str, now: DateTime<Utc>) -> ApiResult<LogRequest> {
    let pairs: Vec<(String, String)> = serde_html_form::from_str(raw)
        .map_err(|e| ApiError::invalid(format!("malformed query string: {e}")))?;
    let mut seen: Vec<&str> = Vec::new();
    for (k, _) in &pairs {
        if !PARAMS.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!(
                "unknown parameter {k:?}; use {}",
                PARAMS.join(", ")
            )));
        }
        if seen.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!("parameter {k} is given twice")));
        }
        seen.push(k);
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let limit = match (get("limit"), get("tail")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give limit or tail (its older name), not both",
            ))
        }
        (Some(v), None) => parse_limit("limit", v)?,
        (None, Some(v)) => parse_limit("tail", v)?,
        (None, None) => DEFAULT_LIMIT,
    };
    let mut query = Query::new(limit);
    if let Some(v) = get("replica") {
        let ok = (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(ApiError::invalid(format!(
                "replica must be a container id or its start (hex digits, as `slipway ps` shows), not {v:?}"
            )));
        }
        query.replica = Some(v.to_ascii_lowercase());
    }
    if let Some(v) = get("service") {
        if !slipway_domain::stack::valid_service_name(v) {
            return Err(ApiError::invalid(format!(
                "service must be the name of one of the app's services (lowercase letters, digits, - and _), not {v:?}"
            )));
        }
        query.service = Some(v.to_owned());
    }
    if let Some(v) = get("release") {
        let n = v
            .trim_start_matches('v')
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0);
        query.release = Some(n.ok_or_else(|| {
            ApiError::invalid(format!(
                "release must be a release number such as 3, not {v:?}"
            ))
        })?);
    }
    if let Some(v) = get("stream") {
        query.stream = Some(LogStream::parse(v).ok_or_else(|| {
            ApiError::invalid(format!("stream must be stdout or stderr, not {v:?}"))
        })?);
    }
    query.since_ms = get("since")
        .map(|v| parse_time("since", v, now))
        .transpose()?;
    query.until_ms = get("until")
        .map(|v| parse_time("until", v, now))
        .transpose()?;
    if let (Some(s), Some(u)) = (query.since_ms, query.until_ms) {
        if s >= u {
            return Err(ApiError::invalid("since must be before until"));
        }
    }
    if let Some(v) = get("q") {
        if v.chars().count() > MAX_TEXT {
            return Err(ApiError::invalid(format!(
                "q is longer than {MAX_TEXT} characters"
            )));
        }
        query = query.with_text(v);
    }
    query.direction = match get("direction") {
        None | Some("backward") => Direction::Backward,
        Some("forward") => Direction::Forward,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "direction must be backward (the newest lines) or forward (the oldest), not {v:?}"
            )))
        }
    };
    let follow = match get("follow") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "follow must be true or false, not {v:?}"
            )))
        }
    };
    if follow && query.until_ms.is_some() {
        return Err(ApiError::invalid(
            "follow streams new lines; it cannot be combined with until",
        ));
    }
    if follow && query.direction == Direction::Forward {
        return Err(ApiError::invalid(
            "follow continues after the newest lines; it cannot be combined with direction=forward",
        ));
    }
    Ok(LogRequest { query, follow })
}

fn parse_limit(name: &str, v: &str) -> ApiResult<usize> {
    match v.parse::<usize>() {
        Ok(n) if n <= MAX_LIMIT => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "{name} must be a number from 0 to {MAX_LIMIT}, not {v:?}"
        ))),
    }
}

/// An RFC 3339 time, or a duration back from `now` (`30s`, `10m`, `2h`, `1d`), in Unix ms.
fn parse_time(name: &str, v: &str, now: DateTime<Utc>) -> ApiResult<i64> {
    let bad = || {
        ApiError::invalid(format!(
            "{name} must be an RFC 3339 time such as 2025-01-02T15:04:05Z or a duration back from now such as 30s, 10m, 2h or 1d, not {v:?}"
        ))
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_millis());
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    if digits.is_empty() || digits.len() > 9 {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if n * scale > MAX_AGO_S {
        return Err(ApiError::invalid(format!(
            "{name} reaches back more than 3650 days"
        )));
    }
    Ok(now.timestamp_millis() - n * scale * 1000)
}

fn ndjson(r: &LogRecord) -> Bytes {
    let mut v = serde_json::to_vec(r).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// `GET /apps/{app}/logs`.
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    let LogRequest { query, follow } = parse(raw.as_deref().unwrap_or(""), Utc::now())?;
    let body = if follow {
        let records = state
            .deploy()
            .follow_logs(app.id, query)
            .await?
            .map(|r| Some(ndjson(&r)))
            .chain(futures::stream::once(async { None }));
        let ticks = futures::stream::unfold((), |()| async {
            tokio::time::sleep(KEEPALIVE).await;
            Some((Some(Bytes::from_static(b"\n")), ()))
        });
        // Ends with the records (the app was deleted) despite the ticks.
        let stream = futures::stream::select(records, ticks)
            .take_while(|b| futures::future::ready(b.is_some()))
            .map(|b| Ok::<_, std::convert::Infallible>(b.unwrap_or_default()));
        Body::from_stream(stream)
    } else {
        let records = state.deploy().search_logs(app.id, query).await?;
        let stream =
            futures::stream::iter(records).map(|r| Ok::<_, std::convert::Infallible>(ndjson(&r)));
        Body::from_stream(stream)
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn err(raw: &str) -> String {
        let e = parse(raw, now()).unwrap_err();
        assert_eq!(e.status, 422, "{raw}");
        e.message
    }

    #[test]
    fn parameters_become_a_query() {
        let r = parse("", now()).unwrap();
        assert_eq!(r.query.limit, DEFAULT_LIMIT);
        assert!(!r.follow);
        let r = parse(
            "replica=AB12&release=3&stream=stderr&since=10m&until=2025-06-01T11:59:00Z&q=GET%20%2F&limit=5&direction=forward",
            now(),
        )
        .unwrap();
        let q = &r.query;
        assert_eq!(q.replica.as_deref(), Some("ab12"));
        assert_eq!(q.release, Some(3));
        assert_eq!(q.stream, Some(LogStream::Stderr));
        assert_eq!(q.since_ms, Some(now().timestamp_millis() - 600_000));
        assert_eq!(q.until_ms, Some(now().timestamp_millis() - 60_000));
        assert_eq!(q.text(), Some("get /"));
        assert_eq!(q.limit, 5);
        assert_eq!(q.direction, Direction::Forward);
        let r = parse("service=db", now()).unwrap();
        assert_eq!(r.query.service.as_deref(), Some("db"));
        let r = parse("tail=50&follow=true", now()).unwrap();
        assert_eq!(r.query.limit, 50);
        assert!(r.follow);
        assert_eq!(parse("follow=1&limit=0", now()).unwrap().query.limit, 0);
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        assert!(err("limit=10001").contains("0 to 10000"));
        assert!(err("limit=-1").contains("limit"));
        assert!(err("tail=5&limit=5").contains("not both"));
        assert!(err("since=yesterday").contains("RFC 3339"));
        assert!(err("until=5y").contains("until"));
        assert!(err("since=99999d").contains("3650 days"));
        assert!(err("since=1m&until=2m").contains("before until"));
        assert!(err("stream=stdin").contains("stdout or stderr"));
        assert!(err("replica=../x").contains("replica"));
        assert!(err("release=0").contains("release"));
        assert!(err("service=Web").contains("service"));
        assert!(err("service=").contains("service"));
        assert!(err("follow=maybe").contains("follow"));
        assert!(err("follow=true&until=1m").contains("until"));
        assert!(err("follow=true&direction=forward").contains("forward"));
        assert!(err("direction=up").contains("direction"));
        assert!(err("grep=x").contains("unknown parameter"));
        assert!(err("q=a&q=b").contains("twice"));
        assert!(err(&format!("q={}", "x".repeat(MAX_TEXT + 1))).contains("longer"));
    }
}
