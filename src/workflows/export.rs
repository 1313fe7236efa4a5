//! `censorprobe export --format parquet REPORT…`: reports as one columnar table for the
//! engines researchers already use (`DuckDB`, `ClickHouse`, pandas/pyarrow, Spark).
//!
//! One row per target record × stage × address: the DNS stage gives a row per address
//! of its verdict (forged, then genuine; one row without an address when it named
//! none), the HTTP and TLS stages a row per address probed (one row from the stage's
//! own fields when it probed none). Every row repeats what identifies it (report file
//! and line, vantage, shard, tool version, scan start) and its target's outcome, so a
//! query needs no join. The columns are typed: timestamps in µs UTC, verdicts, methods
//! and stages as dictionary strings (the report's wire words), timings as f64
//! milliseconds. `reports/sql/` has the table definitions and example queries.
//!
//! Streaming: reports are read one line at a time through [`crate::report::read`]
//! (so every report format it reads is exported), rows are built into Arrow batches of
//! [`BATCH_ROWS`] and handed to the Parquet writer, which writes a row group every
//! `row_group_rows`. Memory stays flat in the size of the input. Shard reports (and
//! reports of several vantages or days) go into one file; their header says which
//! vantage and shard each row comes from. Consensus and summary records are not
//! exported: they are derived from the target records, which are.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, ListBuilder, StringBuilder, StringDictionaryBuilder,
    TimestampMicrosecondBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::observation::DnsServerRole;
use crate::observation::web::{HttpObservation, TlsObservation};
use crate::record::assessment::{EvidenceKind, WebAssessment};
use crate::record::{DnsSection, HeaderRecord, TargetRecord};
use crate::report::read::{ReadError, ReadStats, ReportLine, read_lines};
use crate::vocab::{Blocking, PoisoningMethod, Stage, StageName};

/// Rows built into one Arrow batch before it goes to the writer.
pub const BATCH_ROWS: usize = 4096;

/// Rows of one Parquet row group by default: a few MiB of memory while it is built,
/// and row groups large enough for engines to skip by their statistics.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 65_536;

/// The version of the table's layout, in the file's key-value metadata
/// (`censorprobe.export_version`): raised when a column changes meaning or goes away.
pub const EXPORT_VERSION: &str = "1";

/// Why an export failed (a damaged line is no failure: it is counted per report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot list the reports in {path}")]
    ListReports {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no report (*.jsonl, *.jsonl.zst, *.jsonl.gz) in this directory")]
    EmptyDirectory { path: PathBuf },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the Parquet file {path}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("cannot build a batch of rows")]
    Arrow(#[from] ArrowError),
}

/// How the file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Rows per row group (at least 1).
    pub row_group_rows: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
        }
    }
}

/// What one report gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportExported {
    pub path: PathBuf,
    pub target_records: usize,
    pub rows: u64,
    /// Damaged lines and records of unknown types (see [`ReadStats::warning`]).
    pub stats: ReadStats,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportTotals {
    pub reports: Vec<ReportExported>,
    pub rows: u64,
    pub row_groups: usize,
}

impl ExportTotals {
    pub fn target_records(&self) -> usize {
        self.reports.iter().map(|r| r.target_records).sum()
    }
}

/// The reports named by `inputs` ([`crate::report::read::report_files`]: directories
/// searched recursively); a directory without any report is an error.
pub fn report_paths(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ExportError> {
    let mut paths = Vec::new();
    for input in inputs {
        let found =
            crate::report::read::report_files(std::slice::from_ref(input)).map_err(|err| {
                ExportError::ListReports {
                    path: err.path,
                    source: err.source,
                }
            })?;
        if found.is_empty() {
            return Err(ExportError::EmptyDirectory {
                path: input.clone(),
            });
        }
        paths.extend(found);
    }
    Ok(paths)
}

/// Exports `reports` (files or directories) into the Parquet file `out`. The file is
/// written beside `out` under a temporary name and renamed at the end: a failed export
/// leaves no partial file.
pub fn export_parquet(
    reports: &[PathBuf],
    out: &Path,
    options: ExportOptions,
) -> Result<ExportTotals, ExportError> {
    let paths = report_paths(reports)?;
    let write_error = |source| ExportError::Write {
        path: out.to_owned(),
        source,
    };
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::Builder::new()
        .prefix(".censorprobe-export-")
        .suffix(".parquet.tmp")
        // Created like any output file (subject to the umask), not private as a
        // temporary file is by default: the file keeps these once renamed.
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(write_error)?;
    let totals = export_to(&paths, temporary.as_file_mut(), out, options)?;
    temporary.as_file().sync_all().map_err(write_error)?;
    temporary
        .persist(out)
        .map_err(|error| write_error(error.error))?;
    Ok(totals)
}

/// Exports the reports at `paths` into `sink` (`out` names it in errors).
pub fn export_to<W: Write + Send>(
    paths: &[PathBuf],
    sink: W,
    out: &Path,
    options: ExportOptions,
) -> Result<ExportTotals, ExportError> {
    let parquet_error = |source| ExportError::Parquet {
        path: out.to_owned(),
        source,
    };
    let schema = schema();
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_created_by(format!("censorprobe {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "censorprobe.export_version".to_owned(),
            EXPORT_VERSION.to_owned(),
        )]))
        .build();
    let mut writer =
        ArrowWriter::try_new(sink, Arc::clone(&schema), Some(properties)).map_err(parquet_error)?;
    let mut columns = Columns::default();
    let mut totals = ExportTotals::default();
    for path in paths {
        let mut context = ReportContext::new(path);
        let mut exported = ReportExported {
            path: path.clone(),
            target_records: 0,
            rows: 0,
            stats: ReadStats::default(),
        };
        // A write failure inside the visitor cannot stop the reader (an error there
        // counts the line as damaged): it is kept, and later lines are skipped.
        let mut failure: Option<ExportError> = None;
        let stats = read_lines(path, |line, record: ReportLine<TargetRecord>| {
            if failure.is_some() {
                return Ok(());
            }
            match record {
                ReportLine::Header(header) => context.header(&header),
                ReportLine::Target(target) => {
                    exported.target_records += 1;
                    for row in stage_rows(&target) {
                        columns.push(&context, line as u64, &target, &row);
                        exported.rows += 1;
                    }
                    if columns.rows >= BATCH_ROWS {
                        let written = columns
                            .finish(&schema)
                            .map_err(ExportError::from)
                            .and_then(|batch| writer.write(&batch).map_err(parquet_error));
                        if let Err(error) = written {
                            failure = Some(error);
                        }
                    }
                }
                ReportLine::Consensus(_) | ReportLine::Summary(_) => {}
            }
            Ok(())
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        if exported.target_records == 0 {
            return Err(ReadError::NoTargetRecords {
                path: path.clone(),
                lines: stats.lines,
                unparsed: stats.unparsed.len(),
            }
            .into());
        }
        exported.stats = stats;
        totals.rows += exported.rows;
        totals.reports.push(exported);
    }
    if columns.rows > 0 {
        writer
            .write(&columns.finish(&schema)?)
            .map_err(parquet_error)?;
    }
    let metadata = writer.close().map_err(parquet_error)?;
    totals.row_groups = metadata.num_row_groups();
    Ok(totals)
}

/// The table's columns, in order (`reports/sql/` defines the same table).
pub fn schema() -> SchemaRef {
    let words = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let time = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let list = || DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    Arc::new(Schema::new(vec![
        Field::new("report_file", words(), false),
        Field::new("record_line", DataType::UInt64, false),
        Field::new("vantage", words(), true),
        Field::new("shard", words(), true),
        Field::new("tool_version", words(), true),
        Field::new("scan_started_at", time(), true),
        Field::new("domain", DataType::Utf8, false),
        Field::new("attempt", DataType::UInt32, true),
        Field::new("categories", list(), false),
        Field::new("target_started_at", time(), true),
        Field::new("target_duration_ms", DataType::Float64, false),
        Field::new("blocked", DataType::Boolean, true),
        Field::new("blocking_layer", words(), true),
        Field::new("accessible", DataType::Boolean, true),
        Field::new("stage", words(), false),
        Field::new("verdict", words(), false),
        Field::new("method", words(), true),
        Field::new("methods", list(), false),
        Field::new("rcode", words(), true),
        Field::new("failed_at", words(), true),
        Field::new("injector", words(), true),
        Field::new("control_passed", DataType::Boolean, true),
        Field::new("residual", DataType::Boolean, true),
        Field::new("address", DataType::Utf8, true),
        Field::new("port", DataType::UInt16, true),
        Field::new("address_role", words(), true),
        Field::new("dns_reply_ms", DataType::Float64, true),
        Field::new("connect_ms", DataType::Float64, true),
        Field::new("first_byte_ms", DataType::Float64, true),
        Field::new("handshake_ms", DataType::Float64, true),
        Field::new("total_ms", DataType::Float64, true),
    ]))
}

/// Why an address is on a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRole {
    /// DNS: an address the verdict calls forged.
    Forged,
    /// DNS: an address the verdict calls genuine.
    Genuine,
    /// HTTP/TLS: the address the stage connected to.
    Probed,
}

impl AddressRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressRole::Forged => "forged",
            AddressRole::Genuine => "genuine",
            AddressRole::Probed => "probed",
        }
    }
}

/// The stage part of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRow<'a> {
    pub stage: StageName,
    /// The verdict's wire word.
    pub verdict: &'static str,
    pub method: Option<PoisoningMethod>,
    pub methods: &'a [PoisoningMethod],
    pub rcode: Option<&'a str>,
    pub failed_at: Option<Stage>,
    pub injector: Option<&'a str>,
    pub control_passed: Option<bool>,
    pub residual: Option<bool>,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub address_role: Option<AddressRole>,
    pub dns_reply_ms: Option<f64>,
    pub times: WebTimes,
}

impl StageRow<'_> {
    fn new(stage: StageName, verdict: &'static str) -> Self {
        StageRow {
            stage,
            verdict,
            method: None,
            methods: &[],
            rcode: None,
            failed_at: None,
            injector: None,
            control_passed: None,
            residual: None,
            address: None,
            port: None,
            address_role: None,
            dns_reply_ms: None,
            times: WebTimes::default(),
        }
    }
}

/// The timings of a web probe, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WebTimes {
    pub connect_ms: Option<f64>,
    pub first_byte_ms: Option<f64>,
    pub handshake_ms: Option<f64>,
    pub total_ms: Option<f64>,
}

impl From<&HttpObservation> for WebTimes {
    fn from(observation: &HttpObservation) -> Self {
        WebTimes {
            connect_ms: Some(observation.connect.connect_ms),
            first_byte_ms: observation.first_byte_ms,
            handshake_ms: None,
            total_ms: Some(observation.total_ms),
        }
    }
}

impl From<&TlsObservation> for WebTimes {
    fn from(observation: &TlsObservation) -> Self {
        WebTimes {
            connect_ms: Some(observation.connect.connect_ms),
            first_byte_ms: observation.first_byte_ms,
            handshake_ms: observation.handshake_ms,
            total_ms: Some(observation.total_ms),
        }
    }
}

/// The rows of one target record, DNS first, then HTTP, then TLS.
pub fn stage_rows(record: &TargetRecord) -> Vec<StageRow<'_>> {
    let mut rows = Vec::new();
    if let Some(dns) = &record.dns {
        dns_rows(dns, &mut rows);
    }
    if let Some(http) = &record.http {
        web_rows(StageName::Http, http, &mut rows);
    }
    if let Some(tls) = &record.tls {
        web_rows(StageName::Tls, tls, &mut rows);
    }
    rows
}

fn dns_rows<'a>(section: &'a DnsSection, rows: &mut Vec<StageRow<'a>>) {
    let assessment = &section.assessment;
    let mut base = StageRow::new(StageName::Dns, assessment.verdict.as_str());
    base.method = assessment.method;
    base.methods = &assessment.methods;
    base.rcode = assessment.rcode.as_deref();
    base.dns_reply_ms = first_reply_ms(section);
    let addresses = assessment
        .forged_ips
        .iter()
        .map(|ip| (*ip, AddressRole::Forged))
        .chain(
            assessment
                .genuine_ips
                .iter()
                .map(|ip| (*ip, AddressRole::Genuine)),
        );
    let before = rows.len();
    for (ip, role) in addresses {
        let mut row = base.clone();
        row.address = Some(ip);
        row.address_role = Some(role);
        rows.push(row);
    }
    if rows.len() == before {
        rows.push(base);
    }
}

/// When the resolver's first reply came: from the stored replies, or (a lean record
/// keeps no replies) from the evidence that states it.
fn first_reply_ms(section: &DnsSection) -> Option<f64> {
    let replies = section
        .queries
        .iter()
        .filter(|query| query.role == DnsServerRole::Resolver)
        .flat_map(|query| query.replies.iter().map(|reply| reply.elapsed_ms));
    let stated = || {
        section.assessment.evidence.iter().find_map(|evidence| {
            matches!(
                evidence.kind,
                EvidenceKind::CommonAddress
                    | EvidenceKind::ResolverNxdomain
                    | EvidenceKind::ResolverNoData
            )
            .then_some(evidence.ms)
            .flatten()
        })
    };
    replies.reduce(f64::min).or_else(stated)
}

fn web_rows<'a, V, O>(
    stage: StageName,
    assessment: &'a WebAssessment<V, O>,
    rows: &mut Vec<StageRow<'a>>,
) where
    V: Copy + Into<&'static str>,
    for<'o> &'o O: Into<WebTimes>,
{
    if assessment.attempts.is_empty() {
        let mut row = StageRow::new(stage, assessment.verdict.into());
        row.failed_at = assessment.stage;
        row.injector = assessment.injector.as_ref().map(|i| i.name.as_str());
        row.control_passed = assessment.control.as_ref().map(|c| c.passed);
        row.residual = assessment.residual;
        row.address = assessment.ip;
        row.port = assessment.port;
        row.address_role = assessment.ip.map(|_| AddressRole::Probed);
        if let Some(timings) = &assessment.timings {
            row.times = WebTimes {
                connect_ms: Some(timings.connect_ms),
                first_byte_ms: timings.first_byte_ms,
                handshake_ms: timings.handshake_ms,
                total_ms: Some(timings.total_ms),
            };
        }
        rows.push(row);
        return;
    }
    for attempt in &assessment.attempts {
        let mut row = StageRow::new(stage, attempt.verdict.into());
        row.failed_at = attempt.stage;
        row.injector = attempt.injector.as_ref().map(|i| i.name.as_str());
        row.control_passed = Some(attempt.control.passed);
        row.residual = attempt.residual;
        row.address = Some(attempt.ip);
        row.port = Some(attempt.port);
        row.address_role = Some(AddressRole::Probed);
        row.times = (&attempt.observations.test).into();
        rows.push(row);
    }
}

/// What the latest header of a report says about the rows after it.
#[derive(Debug, Clone)]
struct ReportContext {
    file: String,
    vantage: Option<String>,
    shard: Option<String>,
    tool_version: Option<String>,
    scan_started_at: Option<i64>,
}

impl ReportContext {
    fn new(path: &Path) -> Self {
        ReportContext {
            file: path.display().to_string(),
            vantage: None,
            shard: None,
            tool_version: None,
            scan_started_at: None,
        }
    }

    fn header(&mut self, header: &HeaderRecord) {
        self.vantage.clone_from(&header.vantage);
        self.shard.clone_from(&header.options.shard);
        self.tool_version = Some(header.version.clone());
        self.scan_started_at = micros(&header.started_at);
    }
}

/// An RFC 3339 time as microseconds since the epoch (None if it does not parse).
pub fn micros(text: &str) -> Option<i64> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1000).ok()
}

/// The builders of one batch, one per column of [`schema`] in its order.
struct Columns {
    rows: usize,
    report_file: StringDictionaryBuilder<Int32Type>,
    record_line: UInt64Builder,
    vantage: StringDictionaryBuilder<Int32Type>,
    shard: StringDictionaryBuilder<Int32Type>,
    tool_version: StringDictionaryBuilder<Int32Type>,
    scan_started_at: TimestampMicrosecondBuilder,
    domain: StringBuilder,
    attempt: UInt32Builder,
    categories: ListBuilder<StringBuilder>,
    target_started_at: TimestampMicrosecondBuilder,
    target_duration_ms: Float64Builder,
    blocked: BooleanBuilder,
    blocking_layer: StringDictionaryBuilder<Int32Type>,
    accessible: BooleanBuilder,
    stage: StringDictionaryBuilder<Int32Type>,
    verdict: StringDictionaryBuilder<Int32Type>,
    method: StringDictionaryBuilder<Int32Type>,
    methods: ListBuilder<StringBuilder>,
    rcode: StringDictionaryBuilder<Int32Type>,
    failed_at: StringDictionaryBuilder<Int32Type>,
    injector: StringDictionaryBuilder<Int32Type>,
    control_passed: BooleanBuilder,
    residual: BooleanBuilder,
    address: StringBuilder,
    port: UInt16Builder,
    address_role: StringDictionaryBuilder<Int32Type>,
    dns_reply_ms: Float64Builder,
    connect_ms: Float64Builder,
    first_byte_ms: Float64Builder,
    handshake_ms: Float64Builder,
    total_ms: Float64Builder,
}

impl Default for Columns {
    fn default() -> Self {
        let utc = || TimestampMicrosecondBuilder::new().with_timezone("UTC");
        Columns {
            rows: 0,
            report_file: StringDictionaryBuilder::new(),
            record_line: UInt64Builder::new(),
            vantage: StringDictionaryBuilder::new(),
            shard: StringDictionaryBuilder::new(),
            tool_version: StringDictionaryBuilder::new(),
            scan_started_at: utc(),
            domain: StringBuilder::new(),
            attempt: UInt32Builder::new(),
            categories: ListBuilder::new(StringBuilder::new()),
            target_started_at: utc(),
            target_duration_ms: Float64Builder::new(),
            blocked: BooleanBuilder::new(),
            blocking_layer: StringDictionaryBuilder::new(),
            accessible: BooleanBuilder::new(),
            stage: StringDictionaryBuilder::new(),
            verdict: StringDictionaryBuilder::new(),
            method: StringDictionaryBuilder::new(),
            methods: ListBuilder::new(StringBuilder::new()),
            rcode: StringDictionaryBuilder::new(),
            failed_at: StringDictionaryBuilder::new(),
            injector: StringDictionaryBuilder::new(),
            control_passed: BooleanBuilder::new(),
            residual: BooleanBuilder::new(),
            address: StringBuilder::new(),
            port: UInt16Builder::new(),
            address_role: StringDictionaryBuilder::new(),
            dns_reply_ms: Float64Builder::new(),
            connect_ms: Float64Builder::new(),
            first_byte_ms: Float64Builder::new(),
            handshake_ms: Float64Builder::new(),
            total_ms: Float64Builder::new(),
        }
    }
}

impl Columns {
    fn push(&mut self, report: &ReportContext, line: u64, target: &TargetRecord, row: &StageRow) {
        self.rows += 1;
        self.report_file.append_value(&report.file);
        self.record_line.append_value(line);
        self.vantage.append_option(report.vantage.as_deref());
        self.shard.append_option(report.shard.as_deref());
        self.tool_version
            .append_option(report.tool_version.as_deref());
        self.scan_started_at.append_option(report.scan_started_at);
        self.domain.append_value(&target.domain);
        self.attempt.append_option(target.attempt);
        for category in &target.categories {
            self.categories.values().append_value(category);
        }
        self.categories.append(true);
        self.target_started_at
            .append_option(micros(&target.started_at));
        self.target_duration_ms.append_value(target.duration_ms);
        let (blocked, layer) = match target.blocking {
            Blocking::No => (Some(false), None),
            Blocking::At(layer) => (Some(true), Some(layer.as_str())),
            Blocking::Inconclusive => (None, None),
        };
        self.blocked.append_option(blocked);
        self.blocking_layer.append_option(layer);
        self.accessible.append_option(target.accessible);
        self.stage.append_value(row.stage.as_str());
        self.verdict.append_value(row.verdict);
        self.method
            .append_option(row.method.map(PoisoningMethod::as_str));
        for method in row.methods {
            self.methods.values().append_value(method.as_str());
        }
        self.methods.append(true);
        self.rcode.append_option(row.rcode);
        self.failed_at
            .append_option(row.failed_at.map(Stage::as_str));
        self.injector.append_option(row.injector);
        self.control_passed.append_option(row.control_passed);
        self.residual.append_option(row.residual);
        self.address
            .append_option(row.address.map(|ip| ip.to_string()));
        self.port.append_option(row.port);
        self.address_role
            .append_option(row.address_role.map(AddressRole::as_str));
        self.dns_reply_ms.append_option(row.dns_reply_ms);
        self.connect_ms.append_option(row.times.connect_ms);
        self.first_byte_ms.append_option(row.times.first_byte_ms);
        self.handshake_ms.append_option(row.times.handshake_ms);
        self.total_ms.append_option(row.times.total_ms);
    }

    /// The rows pushed so far as one batch; the builders start over.
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.report_file.finish()),
            Arc::new(self.record_line.finish()),
            Arc::new(self.vantage.finish()),
            Arc::new(self.shard.finish()),
            Arc::new(self.tool_version.finish()),
            Arc::new(self.scan_started_at.finish()),
            Arc::new(self.domain.finish()),
            Arc::new(self.attempt.finish()),
            Arc::new(self.categories.finish()),
            Arc::new(self.target_started_at.finish()),
            Arc::new(self.target_duration_ms.finish()),
            Arc::new(self.blocked.finish()),
            Arc::new(self.blocking_layer.finish()),
            Arc::new(self.accessible.finish()),
            Arc::new(self.stage.finish()),
            Arc::new(self.verdict.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.methods.finish()),
            Arc::new(self.rcode.finish()),
            Arc::new(self.failed_at.finish()),
            Arc::new(self.injector.finish()),
            Arc::new(self.control_passed.finish()),
            Arc::new(self.residual.finish()),
            Arc::new(self.address.finish()),
            Arc::new(self.port.finish()),
            Arc::new(self.address_role.finish()),
            Arc::new(self.dns_reply_ms.finish()),
            Arc::new(self.connect_ms.finish()),
            Arc::new(self.first_byte_ms.finish()),
            Arc::new(self.handshake_ms.finish()),
            Arc::new(self.total_ms.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(json: &str) -> TargetRecord {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn times_are_microseconds_since_the_epoch() {
        assert_eq!(micros("1970-01-01T00:00:01.000002999Z"), Some(1_000_002));
        assert_eq!(
            micros("2026-11-30T16:00:00+01:00"),
            Some(1_796_050_800_000_000)
        );
        assert_eq!(micros("yesterday"), None);
    }

    /// A lean `ok` record keeps no replies: one row per genuine address, the reply time
    /// from the evidence that states it; no web stage, no web rows.
    #[test]
    fn a_lean_record_gives_a_row_per_genuine_address() {
        let record = target(
            r#"{"record":"target","domain":"a.example","sources":[],"started_at":"2026-11-30T00:00:00Z","duration_ms":4.0,
               "dns":{"verdict":"ok","genuine_ips":["198.18.0.1","2001:db8::1"],"evidence":[{"kind":"common_address","ms":3.5}]},
               "blocking":false}"#,
        );
        let rows = stage_rows(&record);
        assert_eq!(rows.len(), 2, "{rows:#?}");
        for (row, ip) in rows.iter().zip(["198.18.0.1", "2001:db8::1"]) {
            assert_eq!(row.stage, StageName::Dns);
            assert_eq!(row.verdict, "ok");
            assert_eq!(row.address, Some(ip.parse().unwrap()));
            assert_eq!(row.address_role, Some(AddressRole::Genuine));
            assert_eq!(row.dns_reply_ms, Some(3.5));
            assert_eq!(row.port, None);
        }
    }

    /// A stage that names no address still gives its row: the verdict is the finding.
    #[test]
    fn a_verdict_without_addresses_gives_one_row() {
        let record = target(
            r#"{"record":"target","domain":"slow.example","sources":[],"started_at":"2026-11-30T00:00:00Z","duration_ms":4.0,
               "dns":{"verdict":"timeout","evidence":[{"kind":"resolver_silent","detail":"no reply"}]},
               "http":{"verdict":"skipped","name":"slow.example","evidence":[]},
               "blocking":null}"#,
        );
        let rows = stage_rows(&record);
        let stages: Vec<_> = rows
            .iter()
            .map(|r| (r.stage, r.verdict, r.address))
            .collect();
        assert_eq!(
            stages,
            [
                (StageName::Dns, "timeout", None),
                (StageName::Http, "skipped", None)
            ]
        );
    }

    /// The lab demo, in row groups of 5, reads back with the parquet crate's own reader:
    /// every row, in as many row groups as asked, with the schema written.
    #[test]
    fn row_groups_hold_every_row() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let report = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/examples/lab-demo.jsonl");
        let mut bytes = Vec::new();
        let options = ExportOptions { row_group_rows: 5 };
        let totals = export_to(&[report], &mut bytes, Path::new("memory"), options).unwrap();
        assert_eq!(totals.target_records(), 30);
        assert_eq!(totals.row_groups, totals.rows.div_ceil(5) as usize);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), totals.row_groups);
        assert_eq!(reader.schema().fields(), schema().fields());
        let read: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(read as u64, totals.rows);
    }

    /// The column names of the `CREATE TABLE` in a file of `reports/sql/`, in order.
    fn table_columns(file: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("reports/sql")
            .join(file);
        let text = std::fs::read_to_string(path).unwrap();
        let body = text.split("CREATE TABLE").nth(1).expect("a CREATE TABLE");
        let body = &body[body.find('(').unwrap() + 1..];
        body.lines()
            .map(str::trim)
            .take_while(|line| !line.starts_with(')'))
            .filter_map(|line| line.split_whitespace().next())
            .filter(|word| !word.starts_with("--"))
            .map(str::to_owned)
            .collect()
    }

    /// The SQL table definitions name every column of the file, in its order.
    #[test]
    fn the_sql_tables_match_the_schema() {
        let names: Vec<String> = schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(table_columns("duckdb-schema.sql"), names);
        assert_eq!(table_columns("clickhouse-schema.sql"), names);
    }
}
