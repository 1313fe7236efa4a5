//! Where a scan's records go: JSONL report records (plus consensus records with
//! `--repeat`) or OONI measurements, with progress on stderr as they pass.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ooni::{OoniContext, measurement};
use super::outcome::TargetOutcome;
use super::repeat::{ConsensusRecord, RepeatTracker};
use super::resume::PriorRun;
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressMode};
use crate::report::{HeaderRecord, ReportRecord, SummaryRecord, TargetRecord};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// censorprobe's JSONL report (header, targets, summary).
    #[default]
    Jsonl,
    /// One OONI-style measurement per target (reports/ooni-mapping.md).
    Ooni,
}

/// Writes a scan's records as they complete.
pub struct ScanOutput {
    out: Box<dyn Write + Send>,
    path: PathBuf,
    format: OutputFormat,
    /// The serialized record, reused between records.
    buf: Vec<u8>,
    repeat: Option<RepeatTracker>,
    progress: Option<Progress>,
    ooni: Option<OoniContext>,
}

impl std::fmt::Debug for ScanOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanOutput")
            .field("path", &self.path)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl ScanOutput {
    /// Opens the destination: the resumed report (appending), `out`, or stdout.
    /// `repeat` > 1 emits a consensus after each target's last attempt; `total` is the
    /// number of records this run will write, for the progress display.
    pub fn open(
        out: Option<&Path>,
        format: OutputFormat,
        prior: &PriorRun,
        repeat: u32,
        progress: ProgressMode,
        total: u64,
    ) -> Result<ScanOutput> {
        let (out, path): (Box<dyn Write + Send>, PathBuf) =
            if let Some(file) = prior.open_for_append()? {
                (Box::new(file), prior.path.clone().unwrap_or_default())
            } else {
                match out {
                    Some(p) if p != Path::new("-") => {
                        let file = File::create(p).map_err(|source| Error::ReportWrite {
                            path: p.to_owned(),
                            source,
                        })?;
                        (Box::new(BufWriter::new(file)), p.to_owned())
                    }
                    _ => (Box::new(BufWriter::new(io::stdout())), PathBuf::from("-")),
                }
            };
        let repeat = (repeat > 1).then(|| {
            let mut tracker = RepeatTracker::new(repeat);
            for (domain, attempts) in &prior.pending {
                tracker.seed(domain, attempts.clone());
            }
            tracker
        });
        Ok(ScanOutput {
            out,
            path,
            format,
            buf: Vec::with_capacity(4096),
            repeat,
            progress: Progress::start(progress, total),
            ooni: None,
        })
    }

    fn io_error(&self, source: io::Error) -> Error {
        Error::ReportWrite {
            path: self.path.clone(),
            source,
        }
    }

    fn write_buf(&mut self) -> Result<()> {
        self.buf.push(b'\n');
        let result = self.out.write_all(&self.buf);
        result.map_err(|e| self.io_error(e))
    }

    fn write_json(&mut self, value: &impl Serialize) -> Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, value).map_err(|e| self.io_error(e.into()))?;
        self.write_buf()
    }

    /// Writes the header (JSONL) or takes the run's context from it (OONI).
    pub fn header(&mut self, header: HeaderRecord) -> Result<()> {
        match self.format {
            OutputFormat::Jsonl => self.write_json(&ReportRecord::Header(header))?,
            OutputFormat::Ooni => self.ooni = Some(OoniContext::from_header(&header)),
        }
        self.flush()
    }

    /// Consensus records a resumed run owes: targets whose attempts were all recorded
    /// before the kill but whose consensus was not.
    pub fn settle_prior(&mut self, prior: &PriorRun, repeat: u32) -> Result<()> {
        if repeat <= 1 || self.format != OutputFormat::Jsonl {
            return Ok(());
        }
        let mut owed: Vec<&Vec<TargetOutcome>> = prior
            .pending
            .values()
            .filter(|attempts| attempts.len() as u32 >= repeat)
            .collect();
        owed.sort_by(|a, b| a[0].domain.cmp(&b[0].domain));
        for attempts in owed {
            let consensus = ConsensusRecord::of(attempts);
            if let Some(tracker) = &mut self.repeat {
                tracker.forget(&consensus.domain);
            }
            self.write_json(&ReportRecord::Consensus(Box::new(consensus)))?;
        }
        self.flush()
    }

    /// Writes one target record (unflushed), then its consensus if it was the last attempt.
    pub fn target(&mut self, record: TargetRecord) -> Result<()> {
        // Judged the way check, diff and summary judge the written record.
        let outcome = if self.progress.is_some() || self.repeat.is_some() {
            Some(TargetOutcome::from(&record))
        } else {
            None
        };
        match self.format {
            OutputFormat::Jsonl => {
                self.buf.clear();
                serde_json::to_writer(&mut self.buf, &ReportRecord::Target(Box::new(record)))
                    .map_err(|e| self.io_error(e.into()))?;
            }
            OutputFormat::Ooni => {
                let context = self.ooni.as_ref().expect("the header comes first");
                self.buf.clear();
                serde_json::to_writer(&mut self.buf, &measurement(&record, context))
                    .map_err(|e| self.io_error(e.into()))?;
                self.write_buf()?;
                if let (Some(progress), Some(outcome)) = (&mut self.progress, outcome) {
                    progress.record(&outcome.progress_class());
                }
                return Ok(());
            }
        }
        self.write_buf()?;
        let Some(outcome) = outcome else {
            return Ok(());
        };
        if let Some(progress) = &mut self.progress {
            progress.record(&outcome.progress_class());
        }
        if let Some(consensus) = self.repeat.as_mut().and_then(|t| t.add(outcome)) {
            self.write_json(&ReportRecord::Consensus(Box::new(consensus)))?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        let result = self.out.flush();
        result.map_err(|e| self.io_error(e))
    }

    /// Ends the progress display and writes the summary (JSONL only).
    pub fn summary(&mut self, summary: &SummaryRecord) -> Result<()> {
        if let Some(progress) = &mut self.progress {
            progress.finish();
        }
        if self.format == OutputFormat::Jsonl {
            self.write_json(&ReportRecord::Summary(summary.clone()))?;
        }
        self.flush()
    }
}
