//! The target record: everything measured for one target.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::assessment::{DnsAssessment, HttpAssessment, TlsAssessment};
use crate::observation::web::{AddressPlan, TlsObservation};
use crate::observation::{ControlObservation, DnsQueryObservation};
use crate::targets::TargetSource;
use crate::vocab::{Blocking, DnsVerdict};

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
