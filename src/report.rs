//! Report records and writers: JSONL (one header, one record per target as soon as it
//! completes, one summary) and the short human summary on stderr.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classify::web::{HttpAssessment, TlsAssessment};
use crate::observation::{ControlObservation, DnsQueryObservation};
use crate::targets::{SkippedInput, TargetSource};
use crate::verdict::{DnsAssessment, DnsVerdict};
use crate::vocab::{Blocking, SummaryBlockingKey};
use crate::web::observation::TlsObservation;
use crate::web::stage::AddressPlan;

/// Version of the record layout; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// One line of a JSONL report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum ReportRecord {
    Header(HeaderRecord),
    Target(Box<TargetRecord>),
    /// With `--repeat`: the majority verdict of a target's attempts (src/workflows/repeat.rs).
    Consensus(Box<crate::workflows::repeat::ConsensusRecord>),
    Summary(SummaryRecord),
}

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
    /// Block-page fingerprints file (`None`: the built-in set).
    pub blockpages: Option<PathBuf>,
    /// Extra trust anchors (PEM files).
    pub ca_files: Vec<PathBuf>,
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
    /// Addresses probed per target by the HTTP and TLS stages.
    pub max_ips: usize,
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
    /// Deadline of an HTTP response or a TLS handshake after the connect.
    #[serde(rename = "web_timeout_ms", with = "millis")]
    pub web_timeout: Duration,
}

impl Default for ScanOptions {
    /// The command line's defaults (seed 0; no CA, forged addresses, via or shard).
    fn default() -> Self {
        ScanOptions {
            blockpages: None,
            ca_files: Vec::new(),
            concurrency: 500,
            connect_timeout: Duration::from_secs(5),
            control_name: crate::web::stage::DEFAULT_CONTROL_NAME.to_owned(),
            control_timeout: Duration::from_secs(5),
            dns_sockets: None,
            dns_timeout: Duration::from_secs(2),
            dns_wait: Duration::from_secs(1),
            forged_ips: 0,
            http_port: 80,
            max_ips: 2,
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
            web_timeout: Duration::from_secs(10),
        }
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

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// The DNS stage of one target: verdict and evidence, plus every observation behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsSection {
    #[serde(flatten)]
    pub assessment: DnsAssessment,
    pub resolver: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SocketAddr>,
    pub queries: Vec<DnsQueryObservation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlObservation>,
    /// TLS handshakes to the resolver's addresses when only inconsistency with the
    /// control stood against them ("TLS as proof").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_proof: Vec<TlsObservation>,
    /// Without a control, when an answer carried a bogon address: the resolver's reply
    /// for the benign name, whose addresses tell which bogon ranges are normal on this
    /// network. (Silent questions carry their own benign queries, in `rechecks`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benign_query: Option<DnsQueryObservation>,
}

/// Everything measured for one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetRecord {
    pub domain: String,
    /// Set when the target is an address literal (no DNS stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned_ips: Vec<IpAddr>,
    pub sources: Vec<TargetSource>,
    /// Further input lines that named the target (see [`crate::targets::Target`]).
    #[serde(default, skip_serializing_if = "crate::targets::is_zero")]
    pub sources_omitted: usize,
    /// Distinct Citizen Lab category codes from the sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Which attempt this is (1-based), with `--repeat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    pub started_at: String,
    pub duration_ms: f64,
    /// The DNS stage; null for address literals and when the stage is off.
    pub dns: Option<DnsSection>,
    /// Where the HTTP and TLS probes went, and why there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<AddressPlan>,
    /// The HTTP stage (null when off).
    #[serde(default)]
    pub http: Option<HttpAssessment>,
    /// The TLS stage (null when off).
    #[serde(default)]
    pub tls: Option<TlsAssessment>,
    /// `false`, the blocked layer (`dns`, `tcp_ip`, `http`, `tls`), or null (inconclusive).
    pub blocking: Blocking,
    /// Whether the site was reachable from this vantage point (null: nothing says).
    pub accessible: Option<bool>,
}

impl TargetRecord {
    pub fn dns_verdict(&self) -> Option<DnsVerdict> {
        self.dns.as_ref().map(|d| d.assessment.verdict)
    }
}

/// Totals at the end of a run (also written after Ctrl-C).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SummaryRecord {
    pub finished_at: String,
    pub duration_s: f64,
    pub targets_scheduled: usize,
    pub targets_measured: usize,
    /// True when the run was interrupted before every target was measured.
    pub interrupted: bool,
    pub skipped_inputs: usize,
    /// Targets per DNS verdict (every verdict listed, zero included).
    pub dns: BTreeMap<String, usize>,
    /// Targets per poisoning method (strongest method of each).
    pub dns_methods: BTreeMap<String, usize>,
    /// Targets per HTTP and TLS verdict (stages that ran).
    #[serde(default)]
    pub http: BTreeMap<String, usize>,
    #[serde(default)]
    pub tls: BTreeMap<String, usize>,
    /// Targets per `blocking` value (`false`, a layer, or `inconclusive` for null).
    #[serde(default)]
    pub blocking: BTreeMap<String, usize>,
    /// Domains blocked at some layer (`blocking` is a layer).
    pub censored: Vec<String>,
    /// What the DNS rate control did (back-offs when the resolver dropped queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_rate: Option<crate::dns::rate::DnsRateReport>,
    /// What the path guard learnt: every (server IP, port) that showed residual
    /// blocking, with its number of triggers and measured residual durations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residual_paths: Vec<crate::pathguard::PathResidual>,
}

/// Accumulates the summary as records stream past.
#[derive(Debug, Clone)]
pub struct SummaryBuilder {
    summary: SummaryRecord,
}

impl SummaryBuilder {
    pub fn new(targets_scheduled: usize, skipped_inputs: usize) -> Self {
        let dns = DnsVerdict::ALL
            .iter()
            .map(|v| (v.as_str().to_owned(), 0))
            .collect();
        SummaryBuilder {
            summary: SummaryRecord {
                targets_scheduled,
                skipped_inputs,
                dns,
                ..SummaryRecord::default()
            },
        }
    }

    pub fn add(&mut self, record: &TargetRecord) {
        self.summary.targets_measured += 1;
        if let Some(dns) = &record.dns {
            *self
                .summary
                .dns
                .entry(dns.assessment.verdict.as_str().to_owned())
                .or_default() += 1;
            if let Some(method) = dns.assessment.method {
                *self
                    .summary
                    .dns_methods
                    .entry(method.as_str().to_owned())
                    .or_default() += 1;
            }
        }
        if let Some(http) = &record.http {
            *self
                .summary
                .http
                .entry(http.verdict.as_str().to_owned())
                .or_default() += 1;
        }
        if let Some(tls) = &record.tls {
            *self
                .summary
                .tls
                .entry(tls.verdict.as_str().to_owned())
                .or_default() += 1;
        }
        if matches!(record.blocking, Blocking::At(_)) {
            self.summary.censored.push(record.domain.clone());
        }
        let blocking = SummaryBlockingKey::from(record.blocking).as_str();
        *self
            .summary
            .blocking
            .entry(blocking.to_owned())
            .or_default() += 1;
    }

    pub fn finish(mut self, duration_s: f64, interrupted: bool) -> SummaryRecord {
        self.summary.finished_at = now_rfc3339();
        self.summary.duration_s = duration_s;
        self.summary.interrupted = interrupted;
        self.summary.censored.sort();
        // With --repeat a domain is measured several times; list it once.
        self.summary.censored.dedup();
        self.summary
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The short human summary printed on stderr at the end of a run.
pub fn human_summary(summary: &SummaryRecord) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "censorprobe: {} of {} target(s) measured in {:.1} s{}",
        summary.targets_measured,
        summary.targets_scheduled,
        summary.duration_s,
        if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    if summary.skipped_inputs > 0 {
        let _ = writeln!(text, "  skipped input lines: {}", summary.skipped_inputs);
    }
    let counts: Vec<String> = summary
        .dns
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(v, n)| format!("{v} {n}"))
        .collect();
    let _ = writeln!(
        text,
        "  dns: {}",
        if counts.is_empty() {
            "-".to_owned()
        } else {
            counts.join(", ")
        }
    );
    for (stage, counts) in [
        ("http", &summary.http),
        ("tls", &summary.tls),
        ("blocking", &summary.blocking),
    ] {
        if !counts.is_empty() {
            let counts: Vec<String> = counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            let _ = writeln!(text, "  {stage}: {}", counts.join(", "));
        }
    }
    if !summary.dns_methods.is_empty() {
        let methods: Vec<String> = summary
            .dns_methods
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        let _ = writeln!(text, "  poisoning methods: {}", methods.join(", "));
    }
    if let Some(rate) = summary.dns_rate.as_ref().filter(|r| r.backoffs > 0) {
        let _ = writeln!(
            text,
            "  dns rate: the resolver dropped queries; backed off {} time(s) from {:.0} to {:.0} q/s (ended at {:.0}); {} of {} attempts lost",
            rate.backoffs,
            rate.max_qps,
            rate.lowest_qps,
            rate.final_qps,
            rate.attempts_lost,
            rate.attempts_lost + rate.attempts_answered
        );
    }
    if !summary.censored.is_empty() {
        const SHOWN: usize = 20;
        let mut shown: Vec<&str> = summary
            .censored
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        if summary.censored.len() > SHOWN {
            shown.push("…");
        }
        let _ = writeln!(
            text,
            "  censored ({}): {}",
            summary.censored.len(),
            shown.join(" ")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::BlockingLayer;

    #[test]
    fn summary_blocking_keys_are_the_schema_names() {
        let keys: Vec<&str> = [
            Blocking::No,
            Blocking::At(BlockingLayer::Dns),
            Blocking::At(BlockingLayer::TcpIp),
            Blocking::At(BlockingLayer::Http),
            Blocking::At(BlockingLayer::Tls),
            Blocking::Inconclusive,
        ]
        .into_iter()
        .map(|b| SummaryBlockingKey::from(b).as_str())
        .collect();
        assert_eq!(
            keys,
            ["false", "dns", "tcp_ip", "http", "tls", "inconclusive"]
        );
    }
}
