//! OpenMetrics text output, for `promtool tsdb create-blocks-from
//! openmetrics` (Prometheus's backfill), so that a Prometheus block can be
//! built from exactly the samples the remote-write payloads carry.
//!
//! Lines are written scrape by scrape (time-ordered); families carry no
//! `# TYPE` line, so every series is stored under its exposed name, as the
//! remote-write path stores it. Timestamps are seconds with millisecond
//! decimals; the file ends with `# EOF`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::sim::{Scrape, Sink};

pub struct OpenMetricsSink {
    path: PathBuf,
    out: BufWriter<File>,
    line: String,
}

impl OpenMetricsSink {
    pub fn create(path: &Path) -> Result<OpenMetricsSink, Error> {
        let file = File::create(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(OpenMetricsSink {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            line: String::new(),
        })
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// Escapes a label value as the text formats require.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Formats a sample value: integers without a fraction, others in Rust's
/// shortest round-trip form (exact in both directions).
fn format_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

impl Sink for OpenMetricsSink {
    fn scrape(&mut self, scrape: &Scrape<'_>) -> Result<(), Error> {
        let seconds = scrape.t_ms.div_euclid(1000);
        let millis = scrape.t_ms.rem_euclid(1000);
        for (labels, value) in scrape.series.iter().zip(scrape.values) {
            self.line.clear();
            self.line.push_str(labels.metric_name());
            self.line.push('{');
            let mut first = true;
            for (name, v) in labels.0.iter().filter(|(n, _)| *n != "__name__") {
                if !first {
                    self.line.push(',');
                }
                first = false;
                self.line.push_str(name);
                self.line.push_str("=\"");
                escape_into(&mut self.line, v);
                self.line.push('"');
            }
            self.line.push_str("} ");
            format_value(&mut self.line, *value);
            let _ = writeln!(self.line, " {seconds}.{millis:03}");
            let res = self.out.write_all(self.line.as_bytes());
            res.map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        let res = self
            .out
            .write_all(b"# EOF\n")
            .and_then(|()| self.out.flush());
        res.map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_escapes() {
        for (v, want) in [
            (3.0, "3"),
            (0.125, "0.125"),
            (1e21, "1000000000000000000000"),
            (f64::NAN, "NaN"),
        ] {
            let mut s = String::new();
            format_value(&mut s, v);
            assert_eq!(s, want);
        }
        let mut s = String::new();
        escape_into(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }
}
