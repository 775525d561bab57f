//! `cairn query`, `cairn series` and `cairn labels`: a command-line client
//! of the gRPC query service (`cairn.query.v1.QueryService`) of a running
//! Cairn.
//!
//! Output: `table` (aligned columns for people; times in RFC 3339),
//! `json` (the `data` object of Prometheus's HTTP API, byte for byte what
//! `/api/v1/query` answers, so existing scripts read it) or `csv` (one row
//! per sample, a column per label name, timestamps in Unix milliseconds,
//! values in their shortest exact decimal form). Warnings and infos go to
//! stderr. Any failure prints `cairn: <message>` (a PromQL syntax error
//! with the expression and a caret under the position) and exits with 1.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use cairn_proto::query::v1 as pb;
use cairn_proto::query::v1::query_service_client::QueryServiceClient;
use cairn_server::config::PromDuration;
use cairn_server::format::float;
use clap::{Args, ValueEnum};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

/// The default address of the gRPC query service.
pub const DEFAULT_SERVER: &str = "127.0.0.1:9202";

/// Points a range query aims at when `--step` is not given.
const DEFAULT_POINTS: i64 = 250;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// Prometheus's API `data` object.
    Json,
    /// Comma-separated values, a header row first.
    Csv,
}

/// Where the server is and how to print.
#[derive(Debug, Args)]
pub struct Common {
    /// The gRPC address of Cairn (`host:port` or `http://host:port`).
    #[arg(long, env = "CAIRN_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Give up (and cancel the query) after this long, e.g. `30s`.
    #[arg(long)]
    pub timeout: Option<String>,
}

/// `cairn query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The PromQL expression.
    pub expr: String,
    /// Evaluation time of an instant query (RFC 3339, Unix seconds, `now`,
    /// `now-1h`); default now.
    #[arg(long, conflicts_with_all = ["start", "end"])]
    pub time: Option<String>,
    /// Start of a range query.
    #[arg(long, requires = "end")]
    pub start: Option<String>,
    /// End of a range query.
    #[arg(long, requires = "start")]
    pub end: Option<String>,
    /// Step of a range query (`15s`, `1m`, or seconds); default: about 250
    /// points, at least 1s.
    #[arg(long, requires = "start")]
    pub step: Option<String>,
    /// The most series returned (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: u64,
    #[command(flatten)]
    pub common: Common,
}

/// `cairn series`.
#[derive(Debug, Args)]
pub struct SeriesArgs {
    /// Series selectors, e.g. `up{job="node"}`; series matching any.
    #[arg(required = true)]
    pub matchers: Vec<String>,
    #[arg(long)]
    pub start: Option<String>,
    #[arg(long)]
    pub end: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub limit: u64,
    #[command(flatten)]
    pub common: Common,
}

/// `cairn labels`.
#[derive(Debug, Args)]
pub struct LabelsArgs {
    /// A label name: list its values; without: list label names.
    pub name: Option<String>,
    /// Only series matching this selector (repeatable).
    #[arg(long = "match")]
    pub matchers: Vec<String>,
    #[arg(long)]
    pub start: Option<String>,
    #[arg(long)]
    pub end: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub limit: u64,
    #[command(flatten)]
    pub common: Common,
}

/// A failure, as the user sees it.
#[derive(Debug)]
pub struct Failure(pub String);

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        // tonic's channel enforces `--timeout` itself and calls it
        // CANCELLED; the user asked for a deadline.
        if s.code() == tonic::Code::Cancelled && s.message().contains("Timeout expired") {
            return Failure("DeadlineExceeded: the query did not finish within --timeout".into());
        }
        Failure(format!("{:?}: {}", s.code(), s.message()))
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// Parses a time: RFC 3339, Unix seconds, `now`, or `now` plus or minus a
/// duration (`now-1h`, `now+30s`). `now_ms` is the current time.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now_ms);
        }
        let (sign, d) = match rest.split_at(1) {
            ("-", d) => (-1, d),
            ("+", d) => (1, d),
            _ => return Err(Failure(format!("invalid time {s:?}"))),
        };
        return Ok(now_ms + sign * parse_duration(d)?);
    }
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            Failure(format!(
                "invalid time {s:?} (expected RFC 3339, Unix seconds, now or now-1h)"
            ))
        })
}

/// Parses a duration in ms: Prometheus's (`1h30m`, `500ms`) or seconds.
pub fn parse_duration(s: &str) -> Result<i64> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
        && f >= 0.0
    {
        return Ok((f * 1000.0).round() as i64);
    }
    s.parse::<PromDuration>()
        .map(|d| d.as_millis_i64())
        .map_err(Failure)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn connect(c: &Common) -> Result<QueryServiceClient<Channel>> {
    let url = if c.server.contains("://") {
        c.server.clone()
    } else {
        format!("http://{}", c.server)
    };
    let channel = Channel::from_shared(url.clone())
        .map_err(|e| Failure(format!("invalid server address {:?}: {e}", c.server)))?
        // Windows of a few MiB: with HTTP/2's 64 KiB default a large
        // range result waits on window updates (benches/grpc_vs_http:
        // 2.3x slower for 10,000 series x 240 points on loopback).
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| Failure(format!("cannot connect to {url}: {e}")))?;
    Ok(QueryServiceClient::new(channel)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(usize::MAX))
}

fn request<T>(msg: T, c: &Common) -> Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = &c.timeout {
        let ms = parse_duration(t)?;
        req.set_timeout(Duration::from_millis(ms.max(1) as u64));
    }
    Ok(req)
}

/// Prints warnings and infos to stderr.
fn annotations(warnings: &[String], infos: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
    for i in infos {
        eprintln!("info: {i}");
    }
}

/// Adds the expression and a caret under the position to a parse error.
fn explain(expr: &str, f: Failure) -> Failure {
    // The server's message contains `<line>:<column>: parse error`.
    let Some(at) = f.0.find(": parse error") else {
        return f;
    };
    let head = &f.0[..at];
    let pos: Vec<&str> = head
        .rsplit(|c: char| !(c.is_ascii_digit() || c == ':'))
        .next()
        .unwrap_or("")
        .split(':')
        .collect();
    let (Some(Ok(line)), Some(Ok(col))) = (
        pos.first().map(|s| s.parse::<usize>()),
        pos.get(1).map(|s| s.parse::<usize>()),
    ) else {
        return f;
    };
    let Some(text) = expr.lines().nth(line.saturating_sub(1)) else {
        return f;
    };
    let pad = " ".repeat(text.chars().take(col.saturating_sub(1)).count());
    Failure(format!("{}\n  {text}\n  {pad}^", f.0))
}

/// `cairn query`: returns what to print on stdout.
pub async fn query(a: QueryArgs) -> Result<String> {
    let mut client = connect(&a.common).await?;
    let now = now_ms();
    if let (Some(start), Some(end)) = (&a.start, &a.end) {
        let (start, end) = (parse_time(start, now)?, parse_time(end, now)?);
        let step = match &a.step {
            Some(s) => parse_duration(s)?,
            None => ((end - start) / DEFAULT_POINTS).max(1000),
        };
        let req = pb::RangeQueryRequest {
            query: a.expr.clone(),
            start_ms: start,
            end_ms: end,
            step_ms: step,
            limit: a.limit,
            ..Default::default()
        };
        let mut stream = client
            .range_query(request(req, &a.common)?)
            .await
            .map_err(|s| explain(&a.expr, s.into()))?
            .into_inner();
        let mut series = Vec::new();
        let mut summary = None;
        while let Some(msg) = stream.message().await? {
            series.extend(msg.series);
            if msg.summary.is_some() {
                summary = msg.summary;
            }
        }
        let summary = summary.ok_or_else(|| Failure("the result stream ended early".into()))?;
        annotations(&summary.warnings, &summary.infos);
        Ok(render_matrix(&series, a.common.output))
    } else {
        let t = a.time.as_deref().map(|t| parse_time(t, now)).transpose()?;
        let req = pb::InstantQueryRequest {
            query: a.expr.clone(),
            time_ms: Some(t.unwrap_or(now)),
            limit: a.limit,
            ..Default::default()
        };
        let resp = client
            .instant_query(request(req, &a.common)?)
            .await
            .map_err(|s| explain(&a.expr, s.into()))?
            .into_inner();
        annotations(&resp.warnings, &resp.infos);
        use pb::instant_query_response::Result as R;
        Ok(match resp.result {
            Some(R::Vector(v)) => render_vector(&v.samples, a.common.output),
            Some(R::Matrix(m)) => render_matrix(&m.series, a.common.output),
            Some(R::Scalar(s)) => {
                render_point("scalar", s.timestamp_ms, &float(s.value), a.common.output)
            }
            Some(R::String(s)) => render_point("string", s.timestamp_ms, &s.value, a.common.output),
            None => return Err(Failure("the server sent no result".into())),
        })
    }
}

/// `cairn series`.
pub async fn series(a: SeriesArgs) -> Result<String> {
    let mut client = connect(&a.common).await?;
    let now = now_ms();
    let req = pb::SeriesRequest {
        matchers: a.matchers.clone(),
        start_ms: a.start.as_deref().map(|t| parse_time(t, now)).transpose()?,
        end_ms: a.end.as_deref().map(|t| parse_time(t, now)).transpose()?,
        limit: a.limit,
    };
    let resp = client.series(request(req, &a.common)?).await?.into_inner();
    annotations(&resp.warnings, &[]);
    let sets: Vec<&[pb::Label]> = resp.series.iter().map(|s| s.labels.as_slice()).collect();
    Ok(match a.common.output {
        Output::Table => sets
            .iter()
            .map(|l| format!("{}\n", series_name(l)))
            .collect(),
        Output::Json => {
            let mut out = String::from("[");
            for (i, l) in sets.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_labels_json(&mut out, l);
            }
            out.push_str("]\n");
            out
        }
        Output::Csv => {
            let names = label_columns(sets.iter().copied());
            let mut out = csv_row(names.iter().map(String::as_str));
            for l in &sets {
                out.push_str(&csv_row(names.iter().map(|n| label(l, n))));
            }
            out
        }
    })
}

/// `cairn labels [NAME]`.
pub async fn labels(a: LabelsArgs) -> Result<String> {
    let mut client = connect(&a.common).await?;
    let now = now_ms();
    let start_ms = a.start.as_deref().map(|t| parse_time(t, now)).transpose()?;
    let end_ms = a.end.as_deref().map(|t| parse_time(t, now)).transpose()?;
    let (header, list) = match &a.name {
        Some(name) => {
            let req = pb::LabelValuesRequest {
                name: name.clone(),
                matchers: a.matchers.clone(),
                start_ms,
                end_ms,
                limit: a.limit,
            };
            let r = client
                .label_values(request(req, &a.common)?)
                .await?
                .into_inner();
            annotations(&r.warnings, &[]);
            ("value", r.values)
        }
        None => {
            let req = pb::LabelNamesRequest {
                matchers: a.matchers.clone(),
                start_ms,
                end_ms,
                limit: a.limit,
            };
            let r = client
                .label_names(request(req, &a.common)?)
                .await?
                .into_inner();
            annotations(&r.warnings, &[]);
            ("name", r.names)
        }
    };
    Ok(match a.common.output {
        Output::Table => list.iter().map(|s| format!("{s}\n")).collect(),
        Output::Json => {
            let mut out = String::from("[");
            for (i, s) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(&mut out, s);
            }
            out.push_str("]\n");
            out
        }
        Output::Csv => {
            let mut out = csv_row([header]);
            for s in &list {
                out.push_str(&csv_row([s.as_str()]));
            }
            out
        }
    })
}

// --- rendering ----------------------------------------------------------------

fn label<'a>(l: &'a [pb::Label], name: &str) -> &'a str {
    l.iter()
        .find(|x| x.name == name)
        .map(|x| x.value.as_str())
        .unwrap_or("")
}

/// A series in Prometheus's notation: `name{a="1", b="2"}`.
fn series_name(l: &[pb::Label]) -> String {
    let name = label(l, "__name__");
    let rest: Vec<String> = l
        .iter()
        .filter(|x| x.name != "__name__")
        .map(|x| format!("{}={:?}", x.name, x.value))
        .collect();
    if rest.is_empty() && !name.is_empty() {
        return name.to_string();
    }
    format!("{name}{{{}}}", rest.join(", "))
}

/// Every label name of the series, `__name__` first, then sorted.
fn label_columns<'a>(sets: impl Iterator<Item = &'a [pb::Label]>) -> Vec<String> {
    let names: BTreeSet<&str> = sets
        .flat_map(|l| l.iter().map(|x| x.name.as_str()))
        .collect();
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    if names.contains("__name__") {
        out.push("__name__".into());
    }
    out.extend(
        names
            .into_iter()
            .filter(|n| *n != "__name__")
            .map(String::from),
    );
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_row<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut line = fields
        .into_iter()
        .map(csv_field)
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| t.to_string())
}

/// Aligned columns, two spaces apart; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let pad = widths[i] - c.chars().count();
                let _ = write!(out, "{c}{}  ", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&mut out, &mut header.iter().copied());
    for r in rows {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out
}

fn write_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn write_labels_json(out: &mut String, l: &[pb::Label]) {
    out.push('{');
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &x.name);
        out.push(':');
        write_str(out, &x.value);
    }
    out.push('}');
}

fn write_point_json(out: &mut String, t: i64, v: f64) {
    out.push('[');
    cairn_server::http::write_timestamp(out, t);
    out.push_str(",\"");
    out.push_str(&float(v));
    out.push_str("\"]");
}

fn render_vector(samples: &[pb::VectorSample], output: Output) -> String {
    match output {
        Output::Table => {
            let rows: Vec<Vec<String>> = samples
                .iter()
                .map(|s| {
                    vec![
                        series_name(&s.labels),
                        float(s.value),
                        rfc3339(s.timestamp_ms),
                    ]
                })
                .collect();
            table(&["SERIES", "VALUE", "TIMESTAMP"], &rows)
        }
        Output::Json => {
            let mut out = String::from("{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels_json(&mut out, &s.labels);
                out.push_str(",\"value\":");
                write_point_json(&mut out, s.timestamp_ms, s.value);
                out.push('}');
            }
            out.push_str("]}\n");
            out
        }
        Output::Csv => {
            let names = label_columns(samples.iter().map(|s| s.labels.as_slice()));
            let mut out = csv_row(
                names
                    .iter()
                    .map(String::as_str)
                    .chain(["timestamp_ms", "value"]),
            );
            for s in samples {
                let (t, v) = (s.timestamp_ms.to_string(), float(s.value));
                out.push_str(&csv_row(
                    names
                        .iter()
                        .map(|n| label(&s.labels, n))
                        .chain([t.as_str(), v.as_str()]),
                ));
            }
            out
        }
    }
}

fn render_matrix(series: &[pb::Series], output: Output) -> String {
    match output {
        Output::Table => {
            let mut rows = Vec::new();
            for s in series {
                let name = series_name(&s.labels);
                for (i, p) in s.samples.iter().enumerate() {
                    // The series is named on its first row only.
                    let first = if i == 0 { name.clone() } else { String::new() };
                    rows.push(vec![first, rfc3339(p.timestamp_ms), float(p.value)]);
                }
            }
            table(&["SERIES", "TIMESTAMP", "VALUE"], &rows)
        }
        Output::Json => {
            let mut out = String::from("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels_json(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_point_json(&mut out, p.timestamp_ms, p.value);
                }
                out.push_str("]}");
            }
            out.push_str("]}\n");
            out
        }
        Output::Csv => {
            let names = label_columns(series.iter().map(|s| s.labels.as_slice()));
            let mut out = csv_row(
                names
                    .iter()
                    .map(String::as_str)
                    .chain(["timestamp_ms", "value"]),
            );
            for s in series {
                for p in &s.samples {
                    let (t, v) = (p.timestamp_ms.to_string(), float(p.value));
                    out.push_str(&csv_row(
                        names
                            .iter()
                            .map(|n| label(&s.labels, n))
                            .chain([t.as_str(), v.as_str()]),
                    ));
                }
            }
            out
        }
    }
}

/// A scalar or string result.
fn render_point(kind: &str, t: i64, value: &str, output: Output) -> String {
    match output {
        Output::Table => table(
            &["VALUE", "TIMESTAMP"],
            &[vec![value.to_string(), rfc3339(t)]],
        ),
        Output::Json => {
            let mut out = format!("{{\"resultType\":\"{kind}\",\"result\":[");
            cairn_server::http::write_timestamp(&mut out, t);
            out.push(',');
            write_str(&mut out, value);
            out.push_str("]}\n");
            out
        }
        Output::Csv => {
            let ts = t.to_string();
            csv_row(["timestamp_ms", "value"]) + &csv_row([ts.as_str(), value])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_700_000_000_000;
        let table = [
            ("now", Some(now)),
            ("now-1h", Some(now - 3_600_000)),
            ("now+30s", Some(now + 30_000)),
            ("1700000000", Some(1_700_000_000_000)),
            ("1700000000.5", Some(1_700_000_000_500)),
            ("2023-11-14T22:13:20Z", Some(1_700_000_000_000)),
            ("2023-11-14T23:13:20+01:00", Some(1_700_000_000_000)),
            ("now*2", None),
            ("yesterday", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_time(s, now).ok(), want, "{s}");
        }
    }

    #[test]
    fn parse_errors_get_a_caret() {
        let f = explain(
            "sum(rate(x[5m])",
            Failure("InvalidArgument: invalid parameter \"query\": 1:16: parse error: unclosed left parenthesis".into()),
        );
        let lines: Vec<&str> = f.0.lines().collect();
        assert_eq!(lines[1], "  sum(rate(x[5m])");
        assert_eq!(lines[2], format!("  {}^", " ".repeat(15)));
    }

    #[test]
    fn tables_align_and_csv_quotes() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["long cell".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        assert_eq!(t, "A          BB\nlong cell  x\ns          y\n");
        assert_eq!(csv_row(["a,b", "c\"d", "e"]), "\"a,b\",\"c\"\"d\",e\n");
    }
}
