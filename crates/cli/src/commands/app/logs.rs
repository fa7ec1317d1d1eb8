//! `slipway logs APP`: the search options and the API path they make.

use super::parse;

/// Options of `slipway logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// App name.
    app: String,
    /// After the history, print new lines as they are written.
    #[arg(short, long)]
    follow: bool,
    /// Lines of history, the newest (default 100, at most 10000).
    #[arg(long, short = 'n')]
    tail: Option<u32>,
    /// Only this replica: its id or the start of it, as `slipway ps` shows.
    #[arg(long)]
    replica: Option<String>,
    /// Only this service of a stack (apps deployed from a Compose file).
    #[arg(long)]
    service: Option<String>,
    /// Only this release (3 or v3).
    #[arg(long)]
    release: Option<String>,
    /// Lines since a time: RFC 3339 (2025-01-02T15:04:05Z) or back from now (30s, 10m, 2h, 1d).
    #[arg(long)]
    since: Option<String>,
    /// Lines before a time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Only lines containing TEXT, ignoring case.
    #[arg(long, value_name = "TEXT")]
    grep: Option<String>,
    /// Only stdout or stderr.
    #[arg(long, value_parser = ["stdout", "stderr"])]
    stream: Option<String>,
}

/// `GET /apps/{app}/logs?…` for these options (the server validates the values).
pub fn path(args: &LogsArgs) -> anyhow::Result<String> {
    let app = parse::app_name(&args.app)?;
    let mut url = reqwest::Url::parse("http://slipway.invalid/").expect("a valid URL");
    {
        let mut q = url.query_pairs_mut();
        if let Some(n) = args.tail {
            q.append_pair("tail", &n.to_string());
        }
        if let Some(r) = &args.replica {
            q.append_pair("replica", r);
        }
        if let Some(v) = &args.service {
            q.append_pair("service", v);
        }
        if let Some(r) = &args.release {
            q.append_pair("release", &parse::release(r)?.to_string());
        }
        for (name, value) in [
            ("since", &args.since),
            ("until", &args.until),
            ("q", &args.grep),
            ("stream", &args.stream),
        ] {
            if let Some(v) = value {
                q.append_pair(name, v);
            }
        }
        if args.follow {
            q.append_pair("follow", "true");
        }
    }
    Ok(match url.query().filter(|q| !q.is_empty()) {
        Some(q) => format!("/apps/{app}/logs?{q}"),
        None => format!("/apps/{app}/logs"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        logs: LogsArgs,
    }

    fn path_of(args: &[&str]) -> String {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        path(&Cli::try_parse_from(all).unwrap().logs).unwrap()
    }

    #[test]
    fn options_become_query_parameters() {
        assert_eq!(path_of(&["web"]), "/apps/web/logs");
        assert_eq!(
            path_of(&["web", "-f", "-n", "20"]),
            "/apps/web/logs?tail=20&follow=true"
        );
        assert_eq!(
            path_of(&[
                "web", "--replica", "ab12", "--release", "v3", "--since", "10m", "--until",
                "2025-01-02T15:04:05+01:00", "--grep", "GET /a&b", "--stream", "stderr",
            ]),
            "/apps/web/logs?replica=ab12&release=3&since=10m&until=2025-01-02T15%3A04%3A05%2B01%3A00&q=GET+%2Fa%26b&stream=stderr"
        );
        assert_eq!(
            path_of(&["shop", "--service", "db"]),
            "/apps/shop/logs?service=db"
        );
        assert!(Cli::try_parse_from(["logs", "web", "--stream", "stdin"]).is_err());
    }
}
