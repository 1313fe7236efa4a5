//! The progress display on stderr as a sink: one unit per target record.

use super::{OutputError, RecordSink};
use crate::progress::{Progress, ProgressMode};
use crate::record::{HeaderRecord, SummaryRecord, TargetRecord};
use crate::report::outcome::TargetOutcome;

/// Counts each target record under its outcome class (`blocked:dns`, ...).
#[derive(Debug)]
pub struct ProgressSink {
    progress: Progress,
}

impl ProgressSink {
    pub fn new(progress: Progress) -> ProgressSink {
        ProgressSink { progress }
    }

    /// The display `mode` asks for, for `total` records (none when it is off).
    pub fn start(mode: ProgressMode, total: u64) -> Option<ProgressSink> {
        Progress::start(mode, total).map(ProgressSink::new)
    }
}

impl RecordSink for ProgressSink {
    fn header(&mut self, _header: &HeaderRecord) -> Result<(), OutputError> {
        Ok(())
    }

    fn target(&mut self, record: &TargetRecord) -> Result<(), OutputError> {
        // Judged the way check, diff and summary judge the written record.
        self.progress
            .record(&TargetOutcome::from(record).progress_class());
        Ok(())
    }

    /// Ends the display (the summary itself is for the report).
    fn finish(&mut self, _summary: &SummaryRecord) -> Result<(), OutputError> {
        self.progress.finish();
        Ok(())
    }
}
