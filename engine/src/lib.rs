//! cairn-engine: the storage engine at the bottom of Cairn's data path.
//!
//! A write reaches the engine as label sets with samples; the engine resolves
//! each label set to a series id through the label index, appends the samples
//! to the head (compressed in-memory chunks) and the WAL, and acknowledges only
//! once the WAL is fsynced. A read comes in through the [`Querier`] trait:
//! label matchers and a time range in, series with their samples out. The
//! engine knows nothing of PromQL, HTTP or protobuf.

pub mod block;
pub mod chunk;
pub mod db;
pub mod error;
pub mod head;
pub mod index;
pub mod labels;
pub mod matcher;
pub mod querier;
pub mod sample;
pub mod tombstone;
pub mod wal;

pub use chunk::{Chunk, ChunkEncoder, Encoding};
pub use db::{
    AppendOutcome, Db, DbOptions, HeadStats, MaintenanceOptions, MaintenanceReport, RejectReason,
    SeriesHandle, SeriesRejection, WriteSeries, WriteTarget,
};
pub use error::{Error, Result};
pub use index::{CardinalityStats, SeriesRef};
pub use labels::{Label, Labels};
pub use matcher::{MatchOp, Matcher};
pub use querier::{MergedQuerier, Querier, Series};
pub use sample::{STALE_NAN_BITS, Sample, TimestampMs, is_stale_nan};
