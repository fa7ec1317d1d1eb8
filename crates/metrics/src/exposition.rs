//! The two Prometheus exposition formats `/metrics` speaks, chosen from the
//! request's `Accept` header the way Prometheus' own client libraries do:
//! OpenMetrics only for clients that ask for it (the Prometheus server does),
//! the classic text format (0.0.4) for everyone else — `curl`, `promtool`,
//! older scrapers. Both are written by `prometheus-client` from one registry.

use prometheus_client::registry::Registry;

/// An exposition format of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text (`# EOF`, `# UNIT`, counter families without `_total`).
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, the default.
    Text,
}

/// `Content-Type` of [`Format::OpenMetrics`].
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    /// The format to answer a request whose `Accept` header is `accept`:
    /// the acceptable media range with the highest `q` (then the most
    /// specific, then the first) that names a format Slipway writes.
    /// `application/openmetrics-text` gives OpenMetrics; `text/plain`,
    /// `text/*`, `*/*`, anything else and no header give the text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut ranges: Vec<(f32, u8, usize, Format)> = accept
            .split(',')
            .enumerate()
            .filter_map(|(i, range)| {
                let (format, specificity, q) = media_range(range)?;
                (q > 0.0).then_some((q, specificity, i, format))
            })
            .collect();
        // Highest q first, then the most specific, then header order.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        ranges.first().map_or(Format::Text, |r| r.3)
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// Every metric of `registry` in this format.
    pub fn encode(self, registry: &Registry) -> Result<String, std::fmt::Error> {
        let mut body = String::new();
        match self {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut body, registry)?,
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?
            }
        }
        Ok(body)
    }
}

/// One media range of an `Accept` header: the format it selects, how
/// specific it is (2 = `type/subtype`, 1 = `type/*`, 0 = `*/*`) and its
/// `q`; `None` for a range naming no format of ours.
fn media_range(range: &str) -> Option<(Format, u8, f32)> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim().to_ascii_lowercase();
    let mut q = 1.0;
    for param in parts {
        if let Some((k, v)) = param.split_once('=') {
            if k.trim().eq_ignore_ascii_case("q") {
                q = v
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))?;
            }
        }
    }
    let (format, specificity) = match media.as_str() {
        "application/openmetrics-text" => (Format::OpenMetrics, 2),
        "text/plain" => (Format::Text, 2),
        "text/*" => (Format::Text, 1),
        "*/*" => (Format::Text, 0),
        _ => return None,
    };
    Some((format, specificity, q))
}

#[cfg(test)]
mod tests {
    use super::Format::{self, OpenMetrics, Text};
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::{Registry, Unit};

    #[test]
    fn negotiation() {
        let cases = [
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain"), Text),
            (Some("text/plain; version=0.0.4"), Text),
            (Some("text/html"), Text),
            (Some("application/json"), Text),
            (Some("application/openmetrics-text"), OpenMetrics),
            (Some("Application/OpenMetrics-Text; version=1.0.0"), OpenMetrics),
            // What Prometheus 2.x sends when it scrapes.
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                OpenMetrics,
            ),
            (Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"), Text),
            (Some("text/plain;q=0.4, application/openmetrics-text;q=0.5"), OpenMetrics),
            (Some("*/*, application/openmetrics-text"), OpenMetrics),
            (Some("application/openmetrics-text;q=0, */*"), Text),
            (Some("application/openmetrics-text;q=nope"), Text),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn both_formats_from_one_registry() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        c.inc();
        registry.register("jobs", "Jobs done\nso far \\ \"all\"", c);
        let h = Histogram::new([0.5]);
        h.observe(0.25);
        registry.register_with_unit("wait", "Wait", Unit::Seconds, h);

        let text = Text.encode(&registry).unwrap();
        assert!(
            text.contains("# HELP jobs_total Jobs done\\nso far \\\\ \"all\".\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE jobs_total counter\njobs_total 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE wait_seconds histogram\n"), "{text}");
        assert!(
            text.contains("wait_seconds_bucket{le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert_eq!(
            Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );

        let om = OpenMetrics.encode(&registry).unwrap();
        assert!(om.contains("# TYPE jobs counter\njobs_total 1\n"), "{om}");
        assert!(om.contains("# UNIT wait_seconds seconds\n"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert_eq!(
            OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }
}
