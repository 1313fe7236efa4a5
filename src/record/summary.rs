//! The summary record: totals at the end of a run, built as records stream past.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{TargetRecord, now_rfc3339};
use crate::vocab::{Blocking, DnsVerdict, SummaryBlockingKey};

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
    /// Targets per injector the packet capture named (HTTP or TLS verdict).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub injectors: BTreeMap<String, usize>,
    /// What the DNS rate control did (back-offs when the resolver dropped queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_rate: Option<crate::observation::DnsRateReport>,
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
        // Per target: an injector named by both web stages counts once.
        let named = [
            record.http.as_ref().and_then(|h| h.injector.as_ref()),
            record.tls.as_ref().and_then(|t| t.injector.as_ref()),
        ];
        let mut counted: Vec<&str> = Vec::new();
        for m in named.into_iter().flatten() {
            if !counted.contains(&m.name.as_str()) {
                counted.push(m.name.as_str());
                *self.summary.injectors.entry(m.name.clone()).or_default() += 1;
            }
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
