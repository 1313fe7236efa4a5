//! The record contract: what a scan writes and every reader reads back. One header,
//! one record per target as soon as it completes (and, with `--repeat`, a consensus per
//! target), one summary. Field order here is the order on the wire.

pub mod assessment;
pub mod consensus;
mod header;
pub mod location;
pub mod pcap;
mod summary;
mod target;

pub use header::{
    CaptureMode, HeaderRecord, Observations, ResumeInfo, ScanOptions, WebControlOptions,
};
pub use summary::{SummaryBuilder, SummaryRecord};
pub use target::{DnsSection, TargetRecord, TargetView};

use serde::{Deserialize, Serialize};

/// Version of the record layout; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// One line of a JSONL report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum ReportRecord {
    Header(HeaderRecord),
    Target(Box<TargetRecord>),
    /// With `--repeat`: the majority verdict of a target's attempts.
    Consensus(Box<consensus::ConsensusRecord>),
    Summary(SummaryRecord),
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
