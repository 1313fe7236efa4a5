//! `--resume REPORT.jsonl`: what an interrupted scan already measured.
//!
//! Targets with a record (with `--repeat N`: with N records) are not measured again;
//! new records are appended to the same file after a header that says so, and the
//! summary at the end covers both runs. A last line cut short by the kill is cut off
//! before appending, so the resumed report reads cleanly; lines garbled elsewhere stay
//! where they are (and are reported).

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::ScanError;
use crate::compress::{Compression, create_report, detect_file, open_report_reader, report_writer};
use crate::record::{ResumeInfo, SummaryBuilder, TargetRecord};
use crate::report::outcome::TargetOutcome;
use crate::report::read::{ReadStats, ReportLine, read_lines};

/// What an earlier run of the report recorded. Empty when not resuming.
#[derive(Debug, Default)]
pub struct PriorRun {
    pub path: Option<PathBuf>,
    /// Target records per domain.
    pub attempts: HashMap<String, u32>,
    /// Domains that already have a consensus record.
    pub consensus: HashSet<String>,
    /// With `--repeat`: the recorded attempts of domains without a consensus yet.
    pub pending: HashMap<String, Vec<TargetOutcome>>,
    pub target_records: usize,
    pub stats: ReadStats,
}

impl PriorRun {
    /// Reads the report at `path`; a file that does not exist yet is an empty prior run.
    pub fn load(path: &Path, repeat: u32) -> Result<PriorRun, ScanError> {
        let mut prior = PriorRun {
            path: Some(path.to_owned()),
            ..PriorRun::default()
        };
        if !path.exists() {
            return Ok(prior);
        }
        let stats = read_lines(path, |_, line: ReportLine| {
            match line {
                ReportLine::Target(head) => {
                    let outcome = TargetOutcome::from(*head);
                    prior.target_records += 1;
                    *prior.attempts.entry(outcome.domain.clone()).or_default() += 1;
                    if repeat > 1 && !prior.consensus.contains(&outcome.domain) {
                        prior
                            .pending
                            .entry(outcome.domain.clone())
                            .or_default()
                            .push(outcome);
                    }
                }
                ReportLine::Consensus(consensus) => {
                    prior.pending.remove(&consensus.domain);
                    prior.consensus.insert(consensus.domain.clone());
                }
                ReportLine::Header(_) | ReportLine::Summary(_) => {}
            }
            Ok(())
        })?;
        if stats.lines > 0 && stats.records == 0 {
            // Appending JSONL to another format (an OONI-style report, a binary file)
            // would spoil it and measure everything again.
            return Err(ScanError::BadResume {
                path: path.to_owned(),
                reason: format!(
                    "not a censorprobe JSONL report: none of its {} line(s) is a censorprobe record (an OONI-format report cannot be resumed)",
                    stats.lines
                ),
            });
        }
        if let Some(warning) = stats.warning() {
            tracing::warn!("resuming {}: {warning}", path.display());
        }
        prior.stats = stats;
        Ok(prior)
    }

    pub fn is_resuming(&self) -> bool {
        self.path.is_some()
    }

    /// Attempts already recorded for `domain`.
    pub fn done(&self, domain: &str) -> u32 {
        self.attempts.get(domain).copied().unwrap_or(0)
    }

    /// Adds every earlier target record to `summary`, so that it covers both runs.
    /// Records this version cannot read as target records are left out, with a warning.
    pub fn replay(&self, summary: &mut SummaryBuilder) -> Result<(), ScanError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !path.exists() {
            return Ok(());
        }
        // Target records read at load that are not full records of this version.
        let mut replayed = 0;
        read_lines(path, |_, line: ReportLine<TargetRecord>| {
            if let ReportLine::Target(record) = line {
                summary.add(&record);
                replayed += 1;
            }
            Ok(())
        })?;
        let unusable = self.target_records.saturating_sub(replayed);
        if unusable > 0 {
            tracing::warn!(
                "resuming {}: {unusable} earlier target record(s) are not in the summary counts (written by another version?)",
                path.display()
            );
        }
        Ok(())
    }

    /// How to open the report for appending (`None` when not resuming): the scan's
    /// report sink opens it when the header is written.
    pub fn appender(&self) -> Option<ReportAppend> {
        Some(ReportAppend {
            path: self.path.clone()?,
            unterminated_tail: self.stats.unterminated_tail,
            complete_len: self.stats.complete_len,
        })
    }

    /// Opens the report for appending now (see [`ReportAppend::open`]).
    pub fn open_for_append(&self) -> std::io::Result<Option<Box<dyn Write + Send>>> {
        self.appender().map(ReportAppend::open).transpose()
    }

    /// The `resume` entry of the new header's options.
    pub fn header_info(&self) -> ResumeInfo {
        ResumeInfo {
            cut_incomplete_last_line: self.stats.unterminated_tail == Some(false),
            report: self.path.clone(),
            target_records: self.target_records,
            targets_already_measured: self.attempts.len(),
            unparsed_lines: self.stats.unparsed.len(),
        }
    }
}

/// The resumed report, to be opened for appending.
#[derive(Debug, Clone)]
pub struct ReportAppend {
    pub path: PathBuf,
    unterminated_tail: Option<bool>,
    complete_len: u64,
}

impl ReportAppend {
    /// Opens the report for appending: a fragment left by the kill is cut off, and a
    /// complete last line without its newline gets one. A compressed report (`.zst`,
    /// `.gz`, found by its first bytes) is rewritten first (see
    /// [`ReportAppend::open_compressed`]); the new records continue its stream.
    pub fn open(self) -> std::io::Result<Box<dyn Write + Send>> {
        if self.path.exists() {
            let compression = detect_file(&self.path)?;
            if compression.is_compressed() {
                return self.open_compressed(compression);
            }
        }
        // Nothing recorded yet (no file, or an empty one): a new report, compressed as
        // its name says.
        let empty = self.complete_len == 0 && self.unterminated_tail.is_none();
        if empty && Compression::from_path(&self.path).is_compressed() {
            return create_report(&self.path);
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(false)
            .write(true)
            .truncate(false)
            .open(&self.path)?;
        match self.unterminated_tail {
            Some(false) => file.set_len(self.complete_len)?,
            Some(true) => {
                file.seek(SeekFrom::End(0))?;
                file.write_all(b"\n")?;
            }
            None => {}
        }
        file.seek(SeekFrom::End(0))?;
        Ok(Box::new(BufWriter::new(file)))
    }

    /// A compressed stream killed mid-write ends inside a frame (member) whose end
    /// cannot be appended to, and its cut is not at a byte offset of the file: the
    /// complete lines are copied into a new stream of the same compression (written
    /// beside the report, then renamed over it), which the new records continue.
    fn open_compressed(self, compression: Compression) -> std::io::Result<Box<dyn Write + Send>> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let copy = tempfile::NamedTempFile::new_in(dir)?;
        let mut out = report_writer(copy.as_file().try_clone()?, compression)?;
        let mut complete = open_report_reader(&self.path)?;
        match self.unterminated_tail {
            Some(false) => {
                std::io::copy(&mut complete.take(self.complete_len), &mut out)?;
            }
            Some(true) => {
                std::io::copy(&mut complete, &mut out)?;
                out.write_all(b"\n")?;
            }
            None => {
                std::io::copy(&mut complete, &mut out)?;
            }
        }
        out.flush()?;
        copy.persist(&self.path).map_err(|e| e.error)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_report_is_an_empty_prior_run() {
        let dir = tempfile::tempdir().unwrap();
        let prior = PriorRun::load(&dir.path().join("new.jsonl"), 1).unwrap();
        assert!(prior.is_resuming());
        assert_eq!(prior.done("a.test"), 0);
        assert_eq!(prior.target_records, 0);
    }

    #[test]
    fn attempts_and_pending_consensus() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let lines = [
            r#"{"record":"header"}"#,
            r#"{"record":"target","domain":"a.test","attempt":1,"dns":{"verdict":"ok"}}"#,
            r#"{"record":"target","domain":"b.test","attempt":1,"dns":{"verdict":"ok"}}"#,
            r#"{"record":"target","domain":"a.test","attempt":2,"dns":{"verdict":"ok"}}"#,
            r#"{"record":"consensus","domain":"a.test","attempts":2,"consistency":1.0,"blocking":{"majority":false,"consistency":1.0,"counts":{"false":2}},"accessible":{"majority":true,"consistency":1.0,"counts":{"true":2}},"stages":{}}"#,
            r#"{"record":"target","domain":"c.test","att"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let prior = PriorRun::load(&path, 2).unwrap();
        assert_eq!(prior.done("a.test"), 2);
        assert_eq!(prior.done("b.test"), 1);
        assert_eq!(prior.done("c.test"), 0, "a fragment measured nothing");
        assert!(prior.consensus.contains("a.test"));
        assert_eq!(prior.pending.len(), 1);
        assert_eq!(prior.pending["b.test"].len(), 1);

        // Appending cuts the fragment off.
        let mut out = prior.open_for_append().unwrap().unwrap();
        out.write_all(b"{\"record\":\"summary\"}\n").unwrap();
        drop(out);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("c.test"), "{text}");
        assert!(
            text.ends_with("\"stages\":{}}\n{\"record\":\"summary\"}\n"),
            "{text}"
        );
    }

    #[test]
    fn a_complete_unterminated_last_line_gets_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(
            &path,
            r#"{"record":"target","domain":"a.test","dns":{"verdict":"ok"}}"#,
        )
        .unwrap();
        let prior = PriorRun::load(&path, 1).unwrap();
        assert_eq!(prior.done("a.test"), 1);
        let mut out = prior.open_for_append().unwrap().unwrap();
        out.write_all(b"{\"record\":\"summary\"}\n").unwrap();
        drop(out);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    /// A compressed report killed mid-record: the complete records count, the fragment
    /// is dropped, and appending continues the same compression.
    #[test]
    fn a_compressed_report_cut_short_is_resumed() {
        use crate::compress::{Compression, detect_file, open_report_reader, report_writer};
        let dir = tempfile::tempdir().unwrap();
        for (name, compression) in [
            ("r.jsonl.zst", Compression::Zstd),
            ("r.jsonl.gz", Compression::Gzip),
        ] {
            let path = dir.path().join(name);
            let mut out =
                report_writer(std::fs::File::create(&path).unwrap(), compression).unwrap();
            out.write_all(
                b"{\"record\":\"target\",\"domain\":\"a.test\",\"dns\":{\"verdict\":\"ok\"}}\n",
            )
            .unwrap();
            out.flush().unwrap();
            out.write_all(b"{\"record\":\"target\",\"domain\":\"c.te")
                .unwrap();
            out.flush().unwrap();
            std::mem::forget(out); // killed: the frame never ends
            let prior = PriorRun::load(&path, 1).unwrap();
            assert_eq!(prior.done("a.test"), 1, "{name}");
            assert_eq!(prior.stats.unterminated_tail, Some(false), "{name}");
            let mut out = prior.open_for_append().unwrap().unwrap();
            out.write_all(b"{\"record\":\"summary\"}\n").unwrap();
            drop(out);
            assert_eq!(detect_file(&path).unwrap(), compression, "{name}");
            let mut text = String::new();
            open_report_reader(&path)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(
                text,
                "{\"record\":\"target\",\"domain\":\"a.test\",\"dns\":{\"verdict\":\"ok\"}}\n{\"record\":\"summary\"}\n",
                "{name}"
            );
        }
    }

    /// `--resume new.jsonl.zst` before the file exists starts a compressed report.
    #[test]
    fn resuming_a_compressed_report_not_yet_written_creates_it_compressed() {
        use crate::compress::{Compression, detect_file};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.jsonl.zst");
        let prior = PriorRun::load(&path, 1).unwrap();
        let mut out = prior.open_for_append().unwrap().unwrap();
        out.write_all(b"{\"record\":\"summary\"}\n").unwrap();
        drop(out);
        assert_eq!(detect_file(&path).unwrap(), Compression::Zstd);
    }
}
