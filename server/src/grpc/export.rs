//! `Export`: the raw samples of the series matching selectors, as one
//! Arrow IPC stream split over the call's messages.
//!
//! A blocking thread selects the series (decoding on demand), fills record
//! batches of at most `max_rows_per_batch` rows, encodes each with Arrow's
//! `StreamWriter` and hands the bytes to a channel of [`CHANNEL_DEPTH`]
//! messages: when the client reads slowly (HTTP/2 flow control) the thread
//! waits, so at most a few batches are in memory whatever the export's
//! size. A client that goes away closes the channel and the thread stops;
//! so does a passed deadline. The export holds a query slot and counts in
//! `cairn_queries_in_flight` until its thread ends.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use cairn_engine::{Matcher, Sample, Series};
use cairn_proto::query::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

use crate::error::Error;
use crate::exec::InFlight;
use crate::http::AppState;
use crate::storage::Storage;

/// Rows per record batch when the request does not say.
pub const DEFAULT_ROWS_PER_BATCH: usize = 65_536;
/// The most rows per record batch a request may ask for.
pub const MAX_ROWS_PER_BATCH: usize = 1 << 20;
/// Encoded batches waiting for the client, at most.
const CHANNEL_DEPTH: usize = 2;

/// The stream of an export's messages.
pub type ExportStream = tokio_stream::wrappers::ReceiverStream<Result<pb::ExportResponse, Status>>;

fn arrow_error(e: arrow::error::ArrowError) -> Error {
    Error::Internal {
        reason: format!("arrow encoding: {e}"),
    }
}

/// Starts an export; its messages arrive on the returned stream.
pub async fn start(
    state: Arc<AppState>,
    sets: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
    max_rows: usize,
    deadline: Option<Instant>,
) -> Result<ExportStream, Error> {
    if sets.is_empty() {
        return Err(Error::BadParam {
            param: "matchers".into(),
            reason: "no series selector given".into(),
        });
    }
    if end < start {
        return Err(Error::BadParam {
            param: "end".into(),
            reason: "end timestamp must not be before start time".into(),
        });
    }
    let rows = match max_rows {
        0 => DEFAULT_ROWS_PER_BATCH,
        n => n.min(MAX_ROWS_PER_BATCH),
    };
    let storage = state.storage()?.clone();
    let in_flight = InFlight::new(&state.metrics.queries_in_flight);
    let slot = state
        .query_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Unavailable {
            reason: "shutting down".into(),
        })?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        let _held = (slot, in_flight);
        let out = Sender { tx, deadline };
        if let Err(e) = produce(&*storage, &sets, start, end, rows, &out) {
            // The client may be gone already; nothing else to tell.
            let _ = out.tx.blocking_send(Err(e));
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Where encoded bytes go.
struct Sender {
    tx: mpsc::Sender<Result<pb::ExportResponse, Status>>,
    deadline: Option<Instant>,
}

/// Why production stopped early.
enum Stop {
    /// The client went away: stop quietly.
    Gone,
    /// An error to send.
    Failed(Status),
}

impl Sender {
    fn send(&self, bytes: Vec<u8>) -> Result<(), Stop> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Stop::Failed(Status::deadline_exceeded(
                "export exceeded the client's deadline",
            )));
        }
        self.tx
            .blocking_send(Ok(pb::ExportResponse { arrow_ipc: bytes }))
            .map_err(|_| Stop::Gone)
    }
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e.to_grpc_status())
    }
}

fn produce(
    storage: &dyn Storage,
    sets: &[Vec<Matcher>],
    start: i64,
    end: i64,
    rows: usize,
    out: &Sender,
) -> Result<(), Status> {
    match produce_inner(storage, sets, start, end, rows, out) {
        Ok(()) | Err(Stop::Gone) => Ok(()),
        Err(Stop::Failed(s)) => Err(s),
    }
}

/// The Arrow column name of a label.
fn column_name(label: &str) -> String {
    match label {
        "timestamp" | "value" => format!("label:{label}"),
        _ => label.to_string(),
    }
}

fn produce_inner(
    storage: &dyn Storage,
    sets: &[Vec<Matcher>],
    start: i64,
    end: i64,
    rows: usize,
    out: &Sender,
) -> Result<(), Stop> {
    let querier = storage.querier()?;
    let mut series: Vec<Series> = Vec::new();
    for m in sets {
        series.extend(querier.select(m, start, end).map_err(Error::from)?);
    }
    if sets.len() > 1 {
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        series.dedup_by(|a, b| a.labels == b.labels);
    }
    let names: BTreeSet<&str> = series
        .iter()
        .flat_map(|s| s.labels.iter().map(|l| &*l.name))
        .collect();
    let mut label_names: Vec<String> = Vec::with_capacity(names.len());
    if names.contains(cairn_engine::labels::METRIC_NAME) {
        label_names.push(cairn_engine::labels::METRIC_NAME.to_string());
    }
    label_names.extend(
        names
            .iter()
            .filter(|n| **n != cairn_engine::labels::METRIC_NAME)
            .map(|n| n.to_string()),
    );
    let mut fields: Vec<Field> = label_names
        .iter()
        .map(|n| Field::new(column_name(n), DataType::Utf8, true))
        .collect();
    fields.push(Field::new(
        "timestamp",
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    ));
    fields.push(Field::new("value", DataType::Float64, false));
    let schema = Arc::new(Schema::new(fields));

    let mut writer = StreamWriter::try_new(Vec::new(), &schema).map_err(arrow_error)?;
    let mut batch = Batch::new(label_names.len(), rows);
    let mut buf: Vec<Sample> = Vec::new();
    for s in &series {
        buf.clear();
        s.read_samples(start, end, &mut buf);
        let values: Vec<Option<&str>> = label_names.iter().map(|n| s.labels.get(n)).collect();
        for sample in &buf {
            batch.push(&values, sample);
            if batch.len == rows {
                let rb = batch.finish(&schema)?;
                writer.write(&rb).map_err(arrow_error)?;
                out.send(std::mem::take(writer.get_mut()))?;
            }
        }
    }
    if batch.len > 0 {
        let rb = batch.finish(&schema)?;
        writer.write(&rb).map_err(arrow_error)?;
    }
    writer.finish().map_err(arrow_error)?;
    out.send(std::mem::take(writer.get_mut()))?;
    Ok(())
}

/// The builders of one record batch.
struct Batch {
    labels: Vec<StringBuilder>,
    timestamps: TimestampMillisecondBuilder,
    values: Float64Builder,
    len: usize,
}

impl Batch {
    fn new(columns: usize, rows: usize) -> Batch {
        Batch {
            labels: (0..columns).map(|_| StringBuilder::new()).collect(),
            timestamps: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            values: Float64Builder::with_capacity(rows),
            len: 0,
        }
    }

    fn push(&mut self, labels: &[Option<&str>], s: &Sample) {
        for (b, v) in self.labels.iter_mut().zip(labels) {
            b.append_option(*v);
        }
        self.timestamps.append_value(s.t);
        self.values.append_value(s.v);
        self.len += 1;
    }

    /// The batch so far; the builders start over.
    fn finish(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch, Error> {
        let mut columns: Vec<ArrayRef> = self
            .labels
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        columns.push(Arc::new(self.timestamps.finish()));
        columns.push(Arc::new(self.values.finish()));
        self.len = 0;
        RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error)
    }
}
