//! The file sinks: censorprobe's JSONL report, and the OONI export (one measurement a
//! line). Both write to a destination opened when the header arrives, so a scan that
//! fails to start leaves an existing report untouched.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ooni::{OoniContext, measurement};
use super::{OutputError, RecordSink};
use crate::compress::{Compression, create_report};
use crate::record::{HeaderRecord, Observations, SummaryRecord, TargetRecord, TargetView};
use crate::report::consensus::ConsensusRecord;

/// One line of the JSONL report, borrowed: the same bytes as `report::ReportRecord`,
/// without cloning the record into it.
#[derive(Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum RecordLine<'a> {
    Header(&'a HeaderRecord),
    Target(&'a TargetRecord),
    /// A target record in the lean form (`--observations default`, entirely `ok`).
    #[serde(rename = "target")]
    LeanTarget(TargetView<'a>),
    Consensus(&'a ConsensusRecord),
    Summary(&'a SummaryRecord),
}

type Writer = Box<dyn Write + Send>;

/// How a sink's destination is opened (when the header arrives).
pub enum OpenReport {
    /// Creates (truncates) the file; `None` or `-` is stdout.
    Create(Option<PathBuf>),
    /// A writer opened by the caller.
    Writer(Writer),
    /// Opened by this function, e.g. the resumed report opened for appending.
    With(Box<dyn FnOnce() -> io::Result<Writer> + Send>),
}

impl std::fmt::Debug for OpenReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenReport::Create(path) => f.debug_tuple("Create").field(path).finish(),
            OpenReport::Writer(_) => f.write_str("Writer"),
            OpenReport::With(_) => f.write_str("With"),
        }
    }
}

/// Bytes of records buffered before they are written out. The scan's writer also
/// flushes at most [`crate::output::FLUSH_INTERVAL`] after a record arrives, so a killed
/// scan loses at most the records of that last fraction of a second.
pub const REPORT_BUFFER_BYTES: usize = 256 * 1024;

/// A destination that serializes each line straight into a large buffer.
struct LineWriter {
    /// The file's name in error messages (`-` for stdout).
    path: PathBuf,
    open: Option<OpenReport>,
    out: Option<BufWriter<Writer>>,
    /// A compressed report (named `.zst` or `.gz`) is flushed after every record: a
    /// compressor holds back what it has not flushed, so only a flushed record survives
    /// a kill; the flush makes it decodable from the file at once.
    flush_each_record: bool,
}

impl LineWriter {
    fn new(path: PathBuf, open: OpenReport) -> LineWriter {
        LineWriter {
            flush_each_record: Compression::from_path(&path).is_compressed(),
            path,
            open: Some(open),
            out: None,
        }
    }

    fn io_error(&self, source: io::Error) -> OutputError {
        OutputError::ReportWrite {
            path: self.path.clone(),
            source,
        }
    }

    fn open(&mut self) -> Result<(), OutputError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let out: Writer = match open {
            OpenReport::Create(Some(path)) if path != Path::new("-") => {
                create_report(&path).map_err(|e| self.io_error(e))?
            }
            OpenReport::Create(_) => Box::new(io::stdout()),
            OpenReport::Writer(writer) => writer,
            OpenReport::With(open) => open().map_err(|e| self.io_error(e))?,
        };
        self.out = Some(BufWriter::with_capacity(REPORT_BUFFER_BYTES, out));
        Ok(())
    }

    /// Serializes `value` and a newline into the buffer (no per-line allocation).
    fn line(&mut self, value: &impl Serialize) -> Result<(), OutputError> {
        let out = self.out.as_mut().expect("the header comes first");
        let flush_each_record = self.flush_each_record;
        let written = serde_json::to_writer(&mut *out, value).and_then(|()| {
            out.write_all(b"\n")
                .and_then(|()| {
                    if flush_each_record {
                        out.flush()
                    } else {
                        Ok(())
                    }
                })
                .map_err(serde_json::Error::io)
        });
        written.map_err(|source| {
            if source.is_io() {
                self.io_error(source.into())
            } else {
                OutputError::Serialize {
                    path: self.path.clone(),
                    source,
                }
            }
        })
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        let result = out.flush();
        result.map_err(|e| self.io_error(e))
    }
}

fn display_path(open: &OpenReport, path: Option<PathBuf>) -> PathBuf {
    match (open, path) {
        (_, Some(path)) => path,
        (OpenReport::Create(Some(path)), None) => path.clone(),
        _ => PathBuf::from("-"),
    }
}

/// censorprobe's JSONL report: header, target records (and consensus records), summary.
pub struct JsonlSink {
    out: LineWriter,
    observations: Observations,
}

impl std::fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink")
            .field("path", &self.out.path)
            .finish_non_exhaustive()
    }
}

impl JsonlSink {
    /// Writes to `out`; `path` names it in errors (default: the created file, or `-`).
    pub fn new(out: OpenReport, path: Option<PathBuf>) -> JsonlSink {
        JsonlSink {
            out: LineWriter::new(display_path(&out, path), out),
            observations: Observations::Default,
        }
    }

    /// Which records keep every observation (`--observations`; default: those whose
    /// outcome is not entirely `ok`).
    #[must_use]
    pub fn with_observations(mut self, observations: Observations) -> JsonlSink {
        self.observations = observations;
        self
    }

    /// Creates the report file `out` (stdout for `None` or `-`) at the header.
    pub fn create(out: Option<&Path>) -> JsonlSink {
        JsonlSink::new(OpenReport::Create(out.map(Path::to_owned)), None)
    }
}

impl RecordSink for JsonlSink {
    fn header(&mut self, header: &HeaderRecord) -> Result<(), OutputError> {
        self.out.open()?;
        self.out.line(&RecordLine::Header(header))?;
        self.out.flush()
    }

    fn target(&mut self, record: &TargetRecord) -> Result<(), OutputError> {
        if self.observations == Observations::Default && record.is_entirely_ok() {
            self.out.line(&RecordLine::LeanTarget(record.lean_view()))
        } else {
            self.out.line(&RecordLine::Target(record))
        }
    }

    fn consensus(&mut self, consensus: &ConsensusRecord) -> Result<(), OutputError> {
        self.out.line(&RecordLine::Consensus(consensus))
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush()
    }

    fn finish(&mut self, summary: &SummaryRecord) -> Result<(), OutputError> {
        self.out.line(&RecordLine::Summary(summary))?;
        self.out.flush()
    }
}

/// `--format ooni`: one OONI-style measurement per target record; the header gives the
/// run's context, and consensus and summary records have no OONI form.
pub struct OoniSink {
    out: LineWriter,
    context: Option<OoniContext>,
}

impl std::fmt::Debug for OoniSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OoniSink")
            .field("path", &self.out.path)
            .finish_non_exhaustive()
    }
}

impl OoniSink {
    /// Writes to `out`; `path` names it in errors (default: the created file, or `-`).
    pub fn new(out: OpenReport, path: Option<PathBuf>) -> OoniSink {
        OoniSink {
            out: LineWriter::new(display_path(&out, path), out),
            context: None,
        }
    }

    /// Creates the file `out` (stdout for `None` or `-`) at the header.
    pub fn create(out: Option<&Path>) -> OoniSink {
        OoniSink::new(OpenReport::Create(out.map(Path::to_owned)), None)
    }
}

impl RecordSink for OoniSink {
    fn header(&mut self, header: &HeaderRecord) -> Result<(), OutputError> {
        self.out.open()?;
        self.context = Some(OoniContext::from_header(header));
        self.out.flush()
    }

    fn target(&mut self, record: &TargetRecord) -> Result<(), OutputError> {
        let context = self.context.as_ref().expect("the header comes first");
        self.out.line(&measurement(record, context))
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush()
    }

    fn finish(&mut self, _summary: &SummaryRecord) -> Result<(), OutputError> {
        self.out.flush()
    }
}

#[cfg(test)]
pub(crate) mod bench;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ReportRecord;

    /// The borrowed line serializes exactly as the owned `ReportRecord`.
    #[test]
    fn borrowed_lines_are_report_records() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reports/examples/lab-demo.jsonl");
        let text = std::fs::read_to_string(path).unwrap();
        let mut kinds = std::collections::BTreeSet::new();
        for line in text.lines() {
            let record: ReportRecord = serde_json::from_str(line).unwrap();
            let owned = serde_json::to_string(&record).unwrap();
            let borrowed = match &record {
                ReportRecord::Header(h) => serde_json::to_string(&RecordLine::Header(h)),
                ReportRecord::Target(t) => serde_json::to_string(&RecordLine::Target(t)),
                ReportRecord::Consensus(c) => serde_json::to_string(&RecordLine::Consensus(c)),
                ReportRecord::Summary(s) => serde_json::to_string(&RecordLine::Summary(s)),
            }
            .unwrap();
            assert_eq!(borrowed, owned);
            assert_eq!(borrowed, line, "lab-demo round-trips");
            kinds.insert(owned[..20].to_owned());
        }
        assert!(
            kinds.len() >= 3,
            "header, targets and summary seen: {kinds:?}"
        );
    }

    /// A writer whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The target lines `records` give through a JSONL sink with `observations`.
    fn written_lines(records: &[TargetRecord], observations: Observations) -> Vec<String> {
        let shared = Shared::default();
        let mut sink = JsonlSink::new(OpenReport::Writer(Box::new(shared.clone())), None)
            .with_observations(observations);
        sink.header(&bench::header()).unwrap();
        for record in records {
            sink.target(record).unwrap();
        }
        sink.finish(&SummaryRecord::default()).unwrap();
        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), records.len() + 2, "{text}");
        lines[1..=records.len()].to_vec()
    }

    /// An `ok` name of a bulk DNS scan (resolver A + sink A + UDP control A, one source
    /// line) through the real classifier and serializer: at most 400 bytes a line in the
    /// default JSONL (issue 11), everything kept with `--observations full`.
    #[test]
    fn an_ok_dns_only_name_is_at_most_400_bytes_by_default() {
        let record = bench::ok_record();
        assert!(record.is_entirely_ok(), "{record:#?}");
        let lean = &written_lines(std::slice::from_ref(&record), Observations::Default)[0];
        let full = &written_lines(std::slice::from_ref(&record), Observations::Full)[0];
        println!(
            "ok name: {} bytes lean, {} bytes full",
            lean.len(),
            full.len()
        );
        println!("{lean}");
        assert!(lean.len() <= 400, "{} bytes: {lean}", lean.len());
        assert!(!lean.contains("\"queries\""), "{lean}");
        // The input is the domain as written: the lean line leaves it out, the full keeps it.
        assert!(!lean.contains("\"input\""), "{lean}");
        assert!(full.contains("\"input\""), "{full}");
        assert!(
            full.contains("\"queries\"") && full.contains("\"detail\""),
            "{full}"
        );
        // The lean line reads back (observations empty) and writes back to its bytes.
        let read: ReportRecord = serde_json::from_str(lean).unwrap();
        let ReportRecord::Target(read) = read else {
            panic!("a target record: {lean}")
        };
        let read_dns = read.dns.as_ref().unwrap();
        assert!(read_dns.is_lean());
        assert_eq!(
            read.sources[0].input_or(&read.domain),
            record.sources[0].input
        );
        // The structured evidence reads back whole: kinds, query types, addresses.
        let facts = |e: &[crate::record::assessment::Evidence]| -> Vec<_> {
            e.iter()
                .map(|e| {
                    (
                        e.kind,
                        e.qtype.clone(),
                        e.ips.clone(),
                        e.describe().into_owned(),
                    )
                })
                .collect()
        };
        let stored = &record.dns.as_ref().unwrap().assessment;
        assert_eq!(
            facts(&read_dns.assessment.evidence)
                .iter()
                .map(|f| (f.0, f.1.clone(), f.2.clone()))
                .collect::<Vec<_>>(),
            facts(&stored.evidence)
                .iter()
                .map(|f| (f.0, f.1.clone(), f.2.clone()))
                .collect::<Vec<_>>()
        );
        assert_eq!(read_dns.assessment.genuine_ips, stored.genuine_ips);
        assert_eq!(
            facts(&read_dns.assessment.evidence)[1].3,
            "the control resolved the name to 198.18.1.10 in 0.6 ms"
        );
        assert_eq!(
            serde_json::to_string(&ReportRecord::Target(read)).unwrap(),
            *lean
        );
        // The full line is the in-memory record, byte for byte.
        assert_eq!(
            *full,
            serde_json::to_string(&ReportRecord::Target(Box::new(record))).unwrap()
        );
    }

    #[test]
    fn a_record_not_entirely_ok_keeps_everything_by_default() {
        let record = bench::poisoned_record();
        assert!(!record.is_entirely_ok());
        let default = &written_lines(std::slice::from_ref(&record), Observations::Default)[0];
        let full = &written_lines(std::slice::from_ref(&record), Observations::Full)[0];
        assert_eq!(default, full);
        assert!(default.contains("\"queries\"") && default.contains("\"detail\""));
    }

    #[test]
    fn the_file_is_created_at_the_header_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, "earlier\n").unwrap();
        let sink = JsonlSink::create(Some(&path));
        drop(sink);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier\n");
    }

    /// A compressed report (`.zst`, `.gz`) holds every record as soon as the sink took
    /// it, decodable from the file without any further flush: a scan killed at any
    /// moment loses no record it had written.
    #[test]
    fn a_compressed_report_is_flushed_record_by_record() {
        use std::io::Read as _;

        use crate::record::ReportRecord;
        let demo =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reports/examples/lab-demo.jsonl");
        let text = std::fs::read_to_string(demo).unwrap();
        let records: Vec<ReportRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for name in ["r.jsonl.zst", "r.jsonl.gz"] {
            let path = dir.path().join(name);
            let mut sink = JsonlSink::create(Some(&path)).with_observations(Observations::Full);
            let mut written = 0;
            for record in &records {
                match record {
                    ReportRecord::Header(h) => sink.header(h).unwrap(),
                    ReportRecord::Target(t) => {
                        sink.target(t).unwrap();
                        written += 1;
                        let mut decoded = String::new();
                        crate::compress::open_report_reader(&path)
                            .unwrap()
                            .read_to_string(&mut decoded)
                            .unwrap();
                        assert_eq!(
                            decoded.lines().count(),
                            written + 1,
                            "{name}: the header and {written} target record(s)"
                        );
                        assert!(decoded.ends_with('\n'));
                    }
                    _ => {}
                }
            }
            assert!(written > 20);
        }
    }
}
