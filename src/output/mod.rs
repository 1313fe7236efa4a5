//! Where a scan's records go. The scan emits typed records into one [`RecordSink`]; the
//! JSONL report, the OONI export, the consensus of repeated attempts and the progress
//! display are sinks, combined with [`Fanout`] and the [`ConsensusSink`] decorator.
//!
//! The order of calls is: [`RecordSink::header`] once, then [`RecordSink::target`] per
//! record with a [`RecordSink::flush`] whenever the scan has caught up, then
//! [`RecordSink::finish`] with the summary. Records are serialized straight from the
//! typed structs: no `serde_json::Value` on the way.

use std::io;
use std::path::PathBuf;

use crate::record::{HeaderRecord, SummaryRecord, TargetRecord};
use crate::report::consensus::ConsensusRecord;

mod consensus;
mod jsonl;
pub mod ooni;
mod progress;

pub use consensus::{ConsensusSink, RepeatTracker};
pub use jsonl::{JsonlSink, OoniSink, OpenReport, REPORT_BUFFER_BYTES};
pub use progress::ProgressSink;

/// The longest a record received by the scan's writer waits in the report's buffer
/// before it is written out (a full buffer is written at once). A killed scan (SIGKILL,
/// power loss) loses at most the records of this last interval; Ctrl-C, SIGTERM and
/// SIGHUP lose nothing (the writer drains and flushes before the summary).
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// censorprobe's JSONL report (header, targets, summary).
    #[default]
    Jsonl,
    /// One OONI-style measurement per target (reports/ooni-mapping.md).
    Ooni,
}

/// Failures to write a scan's records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    #[error("cannot write report to {path}")]
    ReportWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record that `serde_json` refused (it has no such records today; kept typed so
    /// the cause is not lost if one appears).
    #[error("cannot write report to {path}")]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Receives a scan's records in order (see the module documentation).
pub trait RecordSink: Send {
    /// The run's header, before any target record.
    fn header(&mut self, header: &HeaderRecord) -> Result<(), OutputError>;
    /// One target record (one attempt with `--repeat`); need not be flushed.
    fn target(&mut self, record: &TargetRecord) -> Result<(), OutputError>;
    /// The consensus of a target's attempts, right after its last attempt.
    fn consensus(&mut self, _consensus: &ConsensusRecord) -> Result<(), OutputError> {
        Ok(())
    }
    /// Makes everything received so far durable (the scan has caught up).
    fn flush(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
    /// The summary, last; flushes.
    fn finish(&mut self, summary: &SummaryRecord) -> Result<(), OutputError>;
}

impl<S: RecordSink + ?Sized> RecordSink for Box<S> {
    fn header(&mut self, header: &HeaderRecord) -> Result<(), OutputError> {
        (**self).header(header)
    }
    fn target(&mut self, record: &TargetRecord) -> Result<(), OutputError> {
        (**self).target(record)
    }
    fn consensus(&mut self, consensus: &ConsensusRecord) -> Result<(), OutputError> {
        (**self).consensus(consensus)
    }
    fn flush(&mut self) -> Result<(), OutputError> {
        (**self).flush()
    }
    fn finish(&mut self, summary: &SummaryRecord) -> Result<(), OutputError> {
        (**self).finish(summary)
    }
}

/// Passes every call to each sink in turn, in the order given; stops at the first error.
#[derive(Default)]
pub struct Fanout {
    sinks: Vec<Box<dyn RecordSink>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Fanout {
    pub fn new() -> Fanout {
        Fanout::default()
    }

    /// Adds a sink after the ones already there.
    #[must_use]
    pub fn with(mut self, sink: impl RecordSink + 'static) -> Fanout {
        self.sinks.push(Box::new(sink));
        self
    }

    pub fn push(&mut self, sink: Box<dyn RecordSink>) {
        self.sinks.push(sink);
    }
}

impl RecordSink for Fanout {
    fn header(&mut self, header: &HeaderRecord) -> Result<(), OutputError> {
        self.sinks.iter_mut().try_for_each(|s| s.header(header))
    }
    fn target(&mut self, record: &TargetRecord) -> Result<(), OutputError> {
        self.sinks.iter_mut().try_for_each(|s| s.target(record))
    }
    fn consensus(&mut self, consensus: &ConsensusRecord) -> Result<(), OutputError> {
        self.sinks
            .iter_mut()
            .try_for_each(|s| s.consensus(consensus))
    }
    fn flush(&mut self) -> Result<(), OutputError> {
        self.sinks.iter_mut().try_for_each(RecordSink::flush)
    }
    fn finish(&mut self, summary: &SummaryRecord) -> Result<(), OutputError> {
        self.sinks.iter_mut().try_for_each(|s| s.finish(summary))
    }
}
