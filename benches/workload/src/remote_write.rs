//! Remote-write 1.0 output: snappy-compressed `prometheus.WriteRequest`
//! files, and the manifest the sender reads.
//!
//! Like Prometheus's queue manager, the sink shards series by a hash of
//! their labels; each shard sends its samples in time order, one
//! `TimeSeries` with one sample per pending sample, and cuts a request when
//! `samples_per_request` samples are pending. A sender that keeps each
//! shard's requests in order therefore never delivers a series' samples out
//! of order, whatever its concurrency across shards.
//!
//! Files: `<dir>/s<shard>-<seq>.pb.snappy`, and `<dir>/manifest.tsv` with
//! one line per file: `file shard seq samples min_t_ms max_t_ms`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use cairn_proto::prost::Message;

use crate::Error;
use crate::sim::{Scrape, Sink};

pub const MANIFEST: &str = "manifest.tsv";

/// One request file, as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub file: String,
    pub shard: usize,
    pub seq: usize,
    pub samples: u64,
    pub min_t_ms: i64,
    pub max_t_ms: i64,
}

struct Pending {
    series: Vec<TimeSeries>,
    min_t_ms: i64,
    max_t_ms: i64,
    next_seq: usize,
}

pub struct RemoteWriteSink {
    dir: PathBuf,
    samples_per_request: usize,
    shards: Vec<Pending>,
    manifest: Vec<Payload>,
    encoder: snap::raw::Encoder,
    buf: Vec<u8>,
}

impl RemoteWriteSink {
    pub fn create(
        dir: &Path,
        shards: usize,
        samples_per_request: usize,
    ) -> Result<RemoteWriteSink, Error> {
        if shards == 0 || samples_per_request == 0 {
            return Err(Error::BadArgument {
                what: "shards / samples per request",
                value: format!("{shards} / {samples_per_request}"),
            });
        }
        fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(RemoteWriteSink {
            dir: dir.to_path_buf(),
            samples_per_request,
            shards: (0..shards)
                .map(|_| Pending {
                    series: Vec::new(),
                    min_t_ms: i64::MAX,
                    max_t_ms: i64::MIN,
                    next_seq: 0,
                })
                .collect(),
            manifest: Vec::new(),
            encoder: snap::raw::Encoder::new(),
            buf: Vec::new(),
        })
    }

    fn flush(&mut self, shard: usize) -> Result<(), Error> {
        let pending = &mut self.shards[shard];
        if pending.series.is_empty() {
            return Ok(());
        }
        let request = WriteRequest {
            timeseries: std::mem::take(&mut pending.series),
            metadata: Vec::new(),
        };
        let samples = request.timeseries.len() as u64;
        self.buf.clear();
        request.encode(&mut self.buf).map_err(|e| Error::Encode {
            reason: e.to_string(),
        })?;
        let compressed = self
            .encoder
            .compress_vec(&self.buf)
            .map_err(|e| Error::Encode {
                reason: e.to_string(),
            })?;
        let file = format!("s{shard:02}-{:06}.pb.snappy", pending.next_seq);
        let path = self.dir.join(&file);
        fs::write(&path, &compressed).map_err(|source| Error::Io { path, source })?;
        self.manifest.push(Payload {
            file,
            shard,
            seq: pending.next_seq,
            samples,
            min_t_ms: pending.min_t_ms,
            max_t_ms: pending.max_t_ms,
        });
        pending.next_seq += 1;
        pending.min_t_ms = i64::MAX;
        pending.max_t_ms = i64::MIN;
        Ok(())
    }
}

impl Sink for RemoteWriteSink {
    fn scrape(&mut self, scrape: &Scrape<'_>) -> Result<(), Error> {
        let shard_count = self.shards.len() as u64;
        for ((labels, hash), value) in scrape.series.iter().zip(scrape.hashes).zip(scrape.values) {
            let shard = (hash % shard_count) as usize;
            let pending = &mut self.shards[shard];
            pending.series.push(TimeSeries {
                labels: labels
                    .0
                    .iter()
                    .map(|(n, v)| Label {
                        name: (*n).to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                samples: vec![Sample {
                    value: *value,
                    timestamp: scrape.t_ms,
                }],
                ..Default::default()
            });
            pending.min_t_ms = pending.min_t_ms.min(scrape.t_ms);
            pending.max_t_ms = pending.max_t_ms.max(scrape.t_ms);
            if pending.series.len() >= self.samples_per_request {
                self.flush(shard)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        for shard in 0..self.shards.len() {
            self.flush(shard)?;
        }
        write_manifest(&self.dir, &mut self.manifest)
    }
}

/// Writes `manifest` (sorted by `(seq, shard)`) as `<dir>/manifest.tsv`.
pub fn write_manifest(dir: &Path, manifest: &mut [Payload]) -> Result<(), Error> {
    manifest.sort_by_key(|p| (p.seq, p.shard));
    let mut text = String::from("file\tshard\tseq\tsamples\tmin_t_ms\tmax_t_ms\n");
    for p in manifest.iter() {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            p.file, p.shard, p.seq, p.samples, p.min_t_ms, p.max_t_ms
        ));
    }
    let path = dir.join(MANIFEST);
    let mut f = fs::File::create(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    f.write_all(text.as_bytes())
        .map_err(|source| Error::Io { path, source })
}

/// Reads the manifest of a remote-write directory.
pub fn read_manifest(dir: &Path) -> Result<Vec<Payload>, Error> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = || Error::Manifest {
            path: path.clone(),
            line: i + 1,
        };
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            return Err(bad());
        }
        out.push(Payload {
            file: f[0].to_string(),
            shard: f[1].parse().map_err(|_| bad())?,
            seq: f[2].parse().map_err(|_| bad())?,
            samples: f[3].parse().map_err(|_| bad())?,
            min_t_ms: f[4].parse().map_err(|_| bad())?,
            max_t_ms: f[5].parse().map_err(|_| bad())?,
        });
    }
    Ok(out)
}

/// Decodes one payload body (snappy block + protobuf).
pub fn decode_payload(body: &[u8]) -> Result<WriteRequest, Error> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::Decode {
            reason: e.to_string(),
        })?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| Error::Decode {
        reason: e.to_string(),
    })
}
