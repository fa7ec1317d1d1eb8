//! `GET /apps/{app}/metrics?range=1h&step=10s`: an app's time series for
//! charts, read from the monitoring ring (`crates/metrics`); with
//! `service=S`, one service of a stack's (CPU, memory, replicas: requests
//! are counted per app by the proxy). Read access to the app's repository
//! is enough.

use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::routes::apps::authorize_app;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use serde_json::{json, Map, Value};
use slipway_domain::Access;
use slipway_metrics::{Agg, SeriesKey};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest window: what the ring keeps by default (24 h).
const MAX_RANGE_S: i64 = 24 * 3600;
/// The most points one series may return.
const MAX_POINTS: i64 = 11_000;
/// Series returned, with how samples in one step are combined.
const SERIES: [(&str, Agg); 8] = [
    ("requests_per_s", Agg::Avg),
    ("errors_per_s", Agg::Avg),
    ("p50_ms", Agg::Avg),
    ("p99_ms", Agg::Max),
    ("cpu_percent", Agg::Avg),
    ("memory_bytes", Agg::Avg),
    ("replicas", Agg::Last),
    ("restarts", Agg::Last),
];

/// The series kept per service of a stack.
const SERVICE_SERIES: [(&str, Agg); 3] = [
    ("cpu_percent", Agg::Avg),
    ("memory_bytes", Agg::Avg),
    ("replicas", Agg::Last),
];

/// Parses `90s`, `5m`, `1h`, `1d` (a bare number is seconds) into seconds.
fn parse_duration(name: &str, text: &str) -> ApiResult<i64> {
    let bad = || {
        ApiError::invalid(format!(
            "{name} must be a duration such as 30s, 5m, 1h or 1d, not {text:?}"
        ))
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() || digits.len() > 9 {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(n * scale)
}

/// `GET /apps/{app}/metrics`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> ApiResult<axum::Json<Value>> {
    let (app, _) = authorize_app(&state, &caller, &name, Access::Read).await?;
    if let Some(k) = query
        .keys()
        .find(|k| !["range", "step", "service"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "unknown parameter {k:?}; use range, step and service"
        )));
    }
    let service = query.get("service").cloned();
    if let Some(svc) = &service {
        let stack = state
            .store()
            .active_release(app.id)
            .await?
            .and_then(|r| r.spec.stack);
        let Some(stack) = stack else {
            return Err(ApiError::invalid(format!(
                "app {} is not deployed from a Compose file: it has no services; leave out service",
                app.name
            )));
        };
        if stack.service(svc).is_none() {
            return Err(ApiError::not_found(format!(
                "app {} has no service {svc:?} (its services: {})",
                app.name,
                stack.service_names()
            )));
        }
    }
    let range = match query.get("range") {
        Some(r) => parse_duration("range", r)?,
        None => 3600,
    };
    if !(1..=MAX_RANGE_S).contains(&range) {
        return Err(ApiError::invalid(format!(
            "range must be between 1s and 24h (got {range}s)"
        )));
    }
    let interval_s = state.monitor().interval().as_secs().max(1) as i64;
    let step = match query.get("step") {
        Some(s) => parse_duration("step", s)?,
        // About 360 points, never finer than the sample interval.
        None => (range / 360).max(interval_s),
    };
    if step < 1 || step > range {
        return Err(ApiError::invalid(format!(
            "step must be between 1s and the range ({range}s), got {step}s"
        )));
    }
    if range / step > MAX_POINTS {
        return Err(ApiError::invalid(format!(
            "range/step asks for {} points; at most {MAX_POINTS}",
            range / step
        )));
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(ApiError::internal)?
        .as_millis() as i64;
    let from_ms = now_ms - range * 1000;
    let mut series = Map::new();
    let wanted: &[(&str, Agg)] = if service.is_some() {
        &SERVICE_SERIES
    } else {
        &SERIES
    };
    for &(key, agg) in wanted {
        let series_key = match &service {
            Some(svc) => SeriesKey::new(key, &[("app", &app.name), ("service", svc)]),
            None => SeriesKey::app(key, &app.name),
        };
        let points: Vec<Value> = state
            .monitor()
            .series()
            .query(&series_key, from_ms, now_ms, step * 1000, agg)
            .into_iter()
            .map(|(t, v)| json!([t / 1000, v]))
            .collect();
        series.insert(key.to_string(), Value::Array(points));
    }
    Ok(axum::Json(json!({
        "app": app.name,
        "service": service,
        "from": from_ms / 1000,
        "to": now_ms / 1000,
        "range_s": range,
        "step_s": step,
        "series": series,
    })))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("range", "90s").unwrap(), 90);
        assert_eq!(parse_duration("range", "5m").unwrap(), 300);
        assert_eq!(parse_duration("range", "1h").unwrap(), 3600);
        assert_eq!(parse_duration("range", "1d").unwrap(), 86_400);
        assert_eq!(parse_duration("range", "15").unwrap(), 15);
        for bad in ["", "h", "1w", "-5m", "1.5h", "99999999999s", "1h30m"] {
            assert!(parse_duration("range", bad).is_err(), "{bad}");
        }
    }
}
