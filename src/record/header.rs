//! The header record: what was run, from where, with which options.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::targets::SkippedInput;

/// What was run, from where, with which options.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeaderRecord {
    pub tool: String,
    pub version: String,
    pub schema_version: u32,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vantage: Option<String>,
    pub resolver: SocketAddr,
    /// The control as configured (`none` when disabled).
    pub control: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SocketAddr>,
    /// Every option that shapes the measurement: the scan's configuration as recorded
    /// ([`crate::scan::ScanConfig`] is built from it).
    pub options: Box<ScanOptions>,
    /// Targets loaded (after de-duplication), and how many this run (shard) measures.
    pub targets_loaded: usize,
    pub targets_scheduled: usize,
    /// Input lines that were not targets, with file, line and reason (the first
    /// [`crate::targets::MAX_SKIPPED_KEPT`]).
    pub skipped_inputs: Vec<SkippedInput>,
    /// Further input lines that were not targets, counted only.
    #[serde(default, skip_serializing_if = "crate::targets::is_zero")]
    pub skipped_inputs_omitted: usize,
}

/// The options of a scan, as the header records them. The scan's configuration is built
/// from this ([`crate::scan::ScanConfig::from_options`]), so the record cannot drift from
/// what ran.
///
/// The fields are in alphabetical order of their keys: the header has always written
/// them sorted. Every field has a default and unknown keys are ignored, so headers of
/// older (or newer) versions still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanOptions {
    /// `--asn-db`: the AS table the DNS judge consults with a web control.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn_db: Option<PathBuf>,
    /// Block-page fingerprints file (`None`: the built-in set).
    pub blockpages: Option<PathBuf>,
    /// Extra trust anchors (PEM files).
    pub ca_files: Vec<PathBuf>,
    /// `--capture` (absent: `auto`, capture when permitted).
    #[serde(skip_serializing_if = "CaptureMode::is_auto")]
    pub capture: CaptureMode,
    /// Targets measured at once.
    pub concurrency: usize,
    /// TCP connect timeout of the HTTP and TLS probes.
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Harmless Host/SNI of the benign control connections.
    pub control_name: String,
    /// Timeout of one control lookup.
    #[serde(rename = "control_timeout_ms", with = "millis")]
    pub control_timeout: Duration,
    /// Sockets in the DNS probe's pool (absent from headers written before it was
    /// recorded; `None` means the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_sockets: Option<usize>,
    /// How long one DNS attempt waits for a first reply.
    #[serde(rename = "dns_timeout_ms", with = "millis")]
    pub dns_timeout: Duration,
    /// How long to keep listening after the first reply.
    #[serde(rename = "dns_wait_ms", with = "millis")]
    pub dns_wait: Duration,
    /// How many addresses or prefixes the forged-address list holds.
    pub forged_ips: usize,
    pub http_port: u16,
    /// `--locate`: trace where the censor sits for names whose web stage failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locate: bool,
    /// Injector fingerprints file (`None`: the built-in set; a file extends it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injectors: Option<PathBuf>,
    /// Addresses probed per target by the HTTP and TLS stages.
    pub max_ips: usize,
    /// `--observations`: which target records keep every observation (absent: the
    /// default, only records whose outcome is not entirely `ok`).
    #[serde(skip_serializing_if = "Observations::is_default")]
    pub observations: Observations,
    /// Query types (canonical names: `A`, `AAAA`, ...).
    pub qtypes: Vec<String>,
    /// DNS queries a second (0: unpaced).
    pub rate: f64,
    /// With `--repeat N` (N > 1): N.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// With `--repeat N` (N > 1): the least time between the starts of two passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_interval_ms: Option<u64>,
    /// First re-check of a penalised (server IP, port).
    #[serde(rename = "residual_recheck_ms", with = "millis")]
    pub residual_recheck: Duration,
    /// Longest wait for a penalised (server IP, port) to work again.
    #[serde(rename = "residual_wait_ms", with = "millis")]
    pub residual_wait: Duration,
    /// With `--resume`: what the resumed report held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeInfo>,
    /// DNS attempts after the first when an attempt gets no reply.
    pub retries: u32,
    /// Seed of the shuffled order.
    pub seed: u64,
    /// `I/N`: the part of the shuffled list this run measures.
    pub shard: Option<String>,
    /// Whether a malformed input line is fatal.
    pub strict: bool,
    /// Stages run (`dns`, `http`, `tls`).
    pub tests: Vec<String>,
    pub tls_port: u16,
    /// The server every HTTP and TLS probe goes to.
    pub via: Option<IpAddr>,
    /// With `via`: the destination port range rotated over (`A-B`).
    pub via_ports: Option<String>,
    /// `--web-control`: the helper asked, and how (never its token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_control: Option<WebControlOptions>,
    /// Deadline of an HTTP response or a TLS handshake after the connect.
    #[serde(rename = "web_timeout_ms", with = "millis")]
    pub web_timeout: Duration,
}

impl Default for ScanOptions {
    /// The command line's defaults (seed 0; no CA, forged addresses, via or shard).
    fn default() -> Self {
        ScanOptions {
            asn_db: None,
            blockpages: None,
            ca_files: Vec::new(),
            capture: CaptureMode::Auto,
            concurrency: 500,
            connect_timeout: Duration::from_secs(5),
            control_name: crate::observation::web::DEFAULT_CONTROL_NAME.to_owned(),
            control_timeout: Duration::from_secs(5),
            dns_sockets: None,
            dns_timeout: Duration::from_secs(2),
            dns_wait: Duration::from_secs(1),
            forged_ips: 0,
            http_port: 80,
            locate: false,
            injectors: None,
            max_ips: 2,
            observations: Observations::Default,
            qtypes: vec!["A".to_owned(), "AAAA".to_owned()],
            rate: 100.0,
            repeat: None,
            repeat_interval_ms: None,
            residual_recheck: Duration::from_secs(5),
            residual_wait: Duration::from_secs(180),
            resume: None,
            retries: 1,
            seed: 0,
            shard: None,
            strict: false,
            tests: vec!["dns".to_owned(), "http".to_owned(), "tls".to_owned()],
            tls_port: 443,
            via: None,
            via_ports: None,
            web_control: None,
            web_timeout: Duration::from_secs(10),
        }
    }
}

/// How a scan asks its web control (`scan --web-control URL`), as the header records it:
/// the token stays out of the report. Keys in alphabetical order, like [`ScanOptions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebControlOptions {
    /// `--web-control-batch`: names in one request.
    pub batch: usize,
    /// `--web-control-ca`: the helper's trust anchor (absent: the Mozilla roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `--web-control-timeout`: deadline of one request.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// The helper's base URL.
    pub url: String,
}

/// `--capture`: whether the scan captures its own flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// Capture when the probe may (root or `CAP_NET_RAW`); otherwise say why not.
    #[default]
    Auto,
    /// No capture; observations carry no `capture` field.
    Off,
    /// Capture, or refuse to start the scan.
    Require,
}

impl CaptureMode {
    pub fn is_auto(&self) -> bool {
        *self == CaptureMode::Auto
    }
}

/// `--observations`: what the JSONL report keeps of a target whose outcome is entirely
/// `ok` (every stage `ok`, not blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observations {
    /// Such a record is written lean: verdicts and structured evidence, no raw DNS
    /// observations. Every other record keeps everything.
    #[default]
    Default,
    /// Every record keeps every observation and evidence sentence.
    Full,
}

impl Observations {
    #[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
    fn is_default(&self) -> bool {
        *self == Observations::Default
    }
}

/// The `resume` entry of the options: what the resumed report held when the run began.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResumeInfo {
    /// Whether an incomplete last line (a fragment left by the kill) was cut off.
    pub cut_incomplete_last_line: bool,
    /// The resumed report.
    pub report: Option<PathBuf>,
    /// Target records it held.
    pub target_records: usize,
    /// Domains it held records of.
    pub targets_already_measured: usize,
    /// Lines that were not records.
    pub unparsed_lines: usize,
}

/// Durations recorded as whole milliseconds (a sub-millisecond part is not recorded).
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}
