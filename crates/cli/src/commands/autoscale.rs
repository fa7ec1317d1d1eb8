//! `slipway autoscale APP …`: an app's horizontal autoscaling, a client of
//! `/apps/{app}/autoscale`. With --min/--max and a target it turns
//! autoscaling on (or changes it), with --off it turns it off, with nothing
//! else it shows the policy, the replicas and the last decision.

use crate::client::Client;
use crate::commands::alert::seconds;
use crate::{output, GlobalArgs};
use anyhow::bail;
use reqwest::Method;
use serde_json::{json, Value};

/// Options of `slipway autoscale`.
#[derive(clap::Args)]
pub struct AutoscaleArgs {
    /// App name.
    app: String,
    /// Fewest replicas (default 1).
    #[arg(long, value_name = "N")]
    min: Option<i64>,
    /// Most replicas.
    #[arg(long, value_name = "N")]
    max: Option<i64>,
    /// Target CPU % per replica (of its CPU limit, or of one core without one).
    #[arg(long, value_name = "PERCENT", conflicts_with = "rps")]
    cpu: Option<f64>,
    /// Target requests/s per replica (through the proxy).
    #[arg(long, value_name = "REQ_PER_S")]
    rps: Option<f64>,
    /// Scale down only to the highest recommendation of this window (default 5m).
    #[arg(long, value_name = "DURATION")]
    down_window: Option<String>,
    /// Scale up only to the lowest recommendation of this window (default 0s: at once).
    #[arg(long, value_name = "DURATION")]
    up_window: Option<String>,
    /// Turn autoscaling off (replicas stay as they are).
    #[arg(long, conflicts_with_all = ["min", "max", "cpu", "rps", "down_window", "up_window"])]
    off: bool,
}

/// Runs `slipway autoscale`.
pub async fn run(args: AutoscaleArgs, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    let path = format!("/apps/{}/autoscale", args.app);
    let changes = args.min.is_some()
        || args.max.is_some()
        || args.cpu.is_some()
        || args.rps.is_some()
        || args.down_window.is_some()
        || args.up_window.is_some();
    let view: Value = if args.off {
        client.require_token()?;
        client.call(Method::DELETE, &path, None::<&Value>).await?
    } else if changes {
        client.require_token()?;
        let Some(max) = args.max else {
            bail!("give --max N (and --cpu PERCENT or --rps REQ_PER_S) to turn autoscaling on");
        };
        if args.cpu.is_none() && args.rps.is_none() {
            bail!("give a target: --cpu PERCENT or --rps REQ_PER_S per replica");
        }
        let mut body = json!({ "max": max });
        if let Some(v) = args.min {
            body["min"] = json!(v);
        }
        if let Some(v) = args.cpu {
            body["cpu_percent"] = json!(v);
        }
        if let Some(v) = args.rps {
            body["rps_per_replica"] = json!(v);
        }
        if let Some(v) = &args.down_window {
            body["scale_down_window_s"] = json!(seconds("--down-window", v)?);
        }
        if let Some(v) = &args.up_window {
            body["scale_up_window_s"] = json!(seconds("--up-window", v)?);
        }
        client.call(Method::PUT, &path, Some(&body)).await?
    } else {
        client.get(&path).await?
    };
    if g.json {
        return output::json(&view);
    }
    print_view(&view);
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A number as people read it: `5`, `2.5`.
fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) => {
            let t = format!("{f:.2}");
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        None => s(v),
    }
}

fn print_view(v: &Value) {
    let app = s(&v["app"]);
    let replicas = format!("{} wanted, {} ready", s(&v["replicas"]), s(&v["ready"]));
    if v["enabled"] != json!(true) {
        println!("Autoscaling is off for {app} ({replicas}).");
        println!(
            "Turn it on with `slipway autoscale {app} --min 1 --max 3 --rps 50` (or --cpu 70)."
        );
        return;
    }
    let target = if v["cpu_percent"].is_number() {
        format!("{} % CPU per replica", num(&v["cpu_percent"]))
    } else {
        format!("{} req/s per replica", num(&v["rps_per_replica"]))
    };
    println!(
        "Autoscaling {app}: {}–{} replicas at {target}.",
        s(&v["min"]),
        s(&v["max"])
    );
    println!(
        "Windows: scale up after {} s, scale down after {} s.",
        s(&v["scale_up_window_s"]),
        s(&v["scale_down_window_s"])
    );
    println!("Replicas: {replicas}.");
    let m = &v["last_measurement"];
    if m.is_object() {
        println!(
            "Last measurement: {:.1} per replica over {} (target {}), {} recommended.",
            m["per_replica"].as_f64().unwrap_or(0.0),
            s(&m["replicas"]),
            num(&m["target"]),
            s(&m["recommended"])
        );
    } else {
        println!("Last measurement: none yet (the app must run and be sampled).");
    }
    let d = &v["last_decision"];
    if d.is_object() {
        println!("Last decision: {}.", s(&d["reason"]));
    } else {
        println!("Last decision: none since the server started (see `slipway events {app}`).");
    }
}
