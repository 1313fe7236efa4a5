//! The target record: everything measured for one target.
//!
//! A record is written in one of two forms. The full form carries every observation
//! (each DNS reply, the control's records, TLS proof handshakes) and every evidence
//! sentence. The lean form, written by default for a target whose outcome is entirely
//! `ok` ([`TargetRecord::is_entirely_ok`]), keeps the verdicts and the evidence as
//! structured kinds with their values, and leaves out the raw observations of the DNS
//! stage, the resolver and sink addresses (the header has them) and the null fields.
//! Both forms read back into the same type; a lean record reads with empty
//! observations and writes back to the same bytes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use super::assessment::{DnsAssessment, HttpAssessment, TlsAssessment, round_tenth};
use crate::observation::web::{AddressPlan, TlsObservation};
use crate::observation::{ControlObservation, DnsQueryObservation};
use crate::targets::TargetSource;
use crate::vocab::{Blocking, DnsVerdict, HttpVerdict, TlsVerdict};

/// The DNS stage of one target: verdict and evidence, plus every observation behind it.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "DnsSectionWire")]
pub struct DnsSection {
    /// Written flattened: its fields are the section's first.
    pub assessment: DnsAssessment,
    /// Absent from lean records (the header names the resolver): read as `0.0.0.0:0`.
    pub resolver: SocketAddr,
    pub sink: Option<SocketAddr>,
    /// Every question sent and every reply; empty in a lean record.
    pub queries: Vec<DnsQueryObservation>,
    pub control: Option<ControlObservation>,
    /// TLS handshakes to the resolver's addresses when only inconsistency with the
    /// control stood against them ("TLS as proof").
    pub tls_proof: Vec<TlsObservation>,
    /// Without a control, when an answer carried a bogon address: the resolver's reply
    /// for the benign name, whose addresses tell which bogon ranges are normal on this
    /// network. (Silent questions carry their own benign queries, in `rechecks`.)
    /// Shared: every such name of a scan carries the same one.
    pub benign_query: Option<Arc<DnsQueryObservation>>,
}

/// A DNS section as read, before the addresses a lean record leaves implied are restored.
#[derive(Deserialize)]
struct DnsSectionWire {
    #[serde(flatten)]
    assessment: DnsAssessment,
    #[serde(default = "unrecorded_server")]
    resolver: SocketAddr,
    #[serde(default)]
    sink: Option<SocketAddr>,
    #[serde(default)]
    queries: Vec<DnsQueryObservation>,
    #[serde(default)]
    control: Option<ControlObservation>,
    #[serde(default)]
    tls_proof: Vec<TlsObservation>,
    #[serde(default)]
    benign_query: Option<Arc<DnsQueryObservation>>,
}

impl From<DnsSectionWire> for DnsSection {
    fn from(wire: DnsSectionWire) -> Self {
        let DnsSectionWire {
            assessment,
            resolver,
            sink,
            queries,
            control,
            tls_proof,
            benign_query,
        } = wire;
        let mut section = DnsSection {
            assessment,
            resolver,
            sink,
            queries,
            control,
            tls_proof,
            benign_query,
        };
        if section.is_lean() {
            let assessment = &mut section.assessment;
            for evidence in &mut assessment.evidence {
                evidence.restore_lean_ips(&assessment.genuine_ips);
            }
        }
        section
    }
}

fn unrecorded_server() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
}

impl DnsSection {
    /// Whether this section was read from a lean record: an `ok` verdict always rests
    /// on a resolver's reply, so an `ok` section without queries had them left out.
    pub fn is_lean(&self) -> bool {
        self.assessment.verdict == DnsVerdict::Ok
            && self.queries.is_empty()
            && self.control.is_none()
    }

    fn view(&self, lean: bool) -> DnsView<'_> {
        DnsView {
            section: self,
            lean,
        }
    }
}

impl Serialize for DnsSection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.view(self.is_lean()).serialize(serializer)
    }
}

/// A DNS section in the full or the lean form (field order is the wire order).
struct DnsView<'a> {
    section: &'a DnsSection,
    lean: bool,
}

impl Serialize for DnsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Destructured whole: a new field fails to compile here until it is written.
        let DnsSection {
            assessment,
            resolver,
            sink,
            queries,
            control,
            tls_proof,
            benign_query,
        } = self.section;
        let DnsAssessment {
            verdict,
            method,
            methods,
            rcode,
            forged_ips,
            genuine_ips,
            evidence,
        } = assessment;
        let mut out = serializer.serialize_struct("DnsSection", 13)?;
        out.serialize_field("verdict", verdict)?;
        if let Some(method) = method {
            out.serialize_field("method", method)?;
        }
        if !methods.is_empty() {
            out.serialize_field("methods", methods)?;
        }
        if let Some(rcode) = rcode {
            out.serialize_field("rcode", rcode)?;
        }
        if !forged_ips.is_empty() {
            out.serialize_field("forged_ips", forged_ips)?;
        }
        if !genuine_ips.is_empty() {
            out.serialize_field("genuine_ips", genuine_ips)?;
        }
        if self.lean {
            out.serialize_field("evidence", &LeanList(evidence, genuine_ips))?;
            return out.end();
        }
        out.serialize_field("evidence", evidence)?;
        out.serialize_field("resolver", resolver)?;
        if let Some(sink) = sink {
            out.serialize_field("sink", sink)?;
        }
        out.serialize_field("queries", queries)?;
        if let Some(control) = control {
            out.serialize_field("control", control)?;
        }
        if !tls_proof.is_empty() {
            out.serialize_field("tls_proof", tls_proof)?;
        }
        if let Some(benign_query) = benign_query {
            out.serialize_field("benign_query", benign_query)?;
        }
        out.end()
    }
}

/// A lean record's sources: an input written exactly as the domain is left out (a
/// reader takes the domain for it; see [`TargetSource::input_or`]).
struct LeanSources<'a>(&'a [TargetSource], &'a str);

impl Serialize for LeanSources<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|source| LeanSource(source, self.1)))
    }
}

struct LeanSource<'a>(&'a TargetSource, &'a str);

impl Serialize for LeanSource<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let TargetSource {
            source,
            line,
            input,
            category_code,
        } = self.0;
        let mut out = serializer.serialize_struct("TargetSource", 4)?;
        out.serialize_field("source", source)?;
        if let Some(line) = line {
            out.serialize_field("line", line)?;
        }
        // Read back, a left-out input is empty: both mean "as the domain".
        if !input.is_empty() && input != self.1 {
            out.serialize_field("input", input)?;
        }
        if let Some(category_code) = category_code {
            out.serialize_field("category_code", category_code)?;
        }
        out.end()
    }
}

/// Evidence items in their lean form.
struct LeanList<'a>(&'a [super::assessment::Evidence], &'a [IpAddr]);

impl Serialize for LeanList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|e| e.lean(self.1)))
    }
}

/// Everything measured for one target.
#[derive(Debug, Clone, Deserialize)]
pub struct TargetRecord {
    pub domain: String,
    /// Set when the target is an address literal (no DNS stage).
    #[serde(default)]
    pub address: Option<IpAddr>,
    #[serde(default)]
    pub pinned_ips: Vec<IpAddr>,
    pub sources: Vec<TargetSource>,
    /// Further input lines that named the target (see [`crate::targets::Target`]).
    #[serde(default)]
    pub sources_omitted: usize,
    /// Distinct Citizen Lab category codes from the sources.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Which attempt this is (1-based), with `--repeat`.
    #[serde(default)]
    pub attempt: Option<u32>,
    pub started_at: String,
    pub duration_ms: f64,
    /// The DNS stage; null for address literals and when the stage is off.
    pub dns: Option<DnsSection>,
    /// Where the HTTP and TLS probes went, and why there.
    #[serde(default)]
    pub addresses: Option<AddressPlan>,
    /// The HTTP stage (null when off; absent from a lean record).
    #[serde(default)]
    pub http: Option<HttpAssessment>,
    /// The TLS stage (null when off; absent from a lean record).
    #[serde(default)]
    pub tls: Option<TlsAssessment>,
    /// `false`, the blocked layer (`dns`, `tcp_ip`, `http`, `tls`), or null (inconclusive).
    pub blocking: Blocking,
    /// Whether the site was reachable from this vantage point (null: nothing says;
    /// absent from a lean record when null).
    #[serde(default)]
    pub accessible: Option<bool>,
    /// With `scan --locate`: where TTL-limited traces put the censor of a failed stage
    /// (absent otherwise).
    #[serde(default)]
    pub location: Option<super::location::LocationSection>,
    /// With `scan --web-control`: what the helper saw from its uncensored vantage, or
    /// why it said nothing (absent otherwise).
    #[serde(default)]
    pub web_control: Option<crate::observation::web_control::WebControlObservation>,
}

impl TargetRecord {
    pub fn dns_verdict(&self) -> Option<DnsVerdict> {
        self.dns.as_ref().map(|d| d.assessment.verdict)
    }

    /// Whether the target's outcome is entirely `ok`: not blocked, and every stage that
    /// ran says `ok`. Such a record is written lean by default (`--observations`).
    pub fn is_entirely_ok(&self) -> bool {
        self.blocking == Blocking::No
            && self
                .dns
                .as_ref()
                .is_none_or(|d| d.assessment.verdict == DnsVerdict::Ok)
            && self
                .http
                .as_ref()
                .is_none_or(|h| h.verdict == HttpVerdict::Ok)
            && self
                .tls
                .as_ref()
                .is_none_or(|t| t.verdict == TlsVerdict::Ok)
    }

    /// The record in the lean form (see the module documentation); a record without a
    /// DNS section has no lean form and is written whole.
    pub fn lean_view(&self) -> TargetView<'_> {
        TargetView {
            record: self,
            lean: self.dns.is_some(),
        }
    }

    /// The record in the full form (a lean record read back stays lean).
    pub fn view(&self) -> TargetView<'_> {
        TargetView {
            record: self,
            lean: self.dns.as_ref().is_some_and(DnsSection::is_lean),
        }
    }
}

impl Serialize for TargetRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(serializer)
    }
}

/// A target record in the full or the lean form (field order is the wire order).
#[derive(Debug, Clone, Copy)]
pub struct TargetView<'a> {
    record: &'a TargetRecord,
    lean: bool,
}

impl Serialize for TargetView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Destructured whole: a new field fails to compile here until it is written.
        let TargetRecord {
            domain,
            address,
            pinned_ips,
            sources,
            sources_omitted,
            categories,
            attempt,
            started_at,
            duration_ms,
            dns,
            addresses,
            http,
            tls,
            blocking,
            accessible,
            location,
            web_control,
        } = self.record;
        let lean = self.lean;
        let mut out = serializer.serialize_struct("TargetRecord", 17)?;
        out.serialize_field("domain", domain)?;
        if let Some(address) = address {
            out.serialize_field("address", address)?;
        }
        if !pinned_ips.is_empty() {
            out.serialize_field("pinned_ips", pinned_ips)?;
        }
        if lean {
            out.serialize_field("sources", &LeanSources(sources, domain))?;
        } else {
            out.serialize_field("sources", sources)?;
        }
        if *sources_omitted != 0 {
            out.serialize_field("sources_omitted", sources_omitted)?;
        }
        if !categories.is_empty() {
            out.serialize_field("categories", categories)?;
        }
        if let Some(attempt) = attempt {
            out.serialize_field("attempt", attempt)?;
        }
        out.serialize_field("started_at", started_at)?;
        if lean {
            out.serialize_field("duration_ms", &round_tenth(*duration_ms))?;
        } else {
            out.serialize_field("duration_ms", duration_ms)?;
        }
        out.serialize_field("dns", &dns.as_ref().map(|d| d.view(lean)))?;
        if let Some(addresses) = addresses {
            out.serialize_field("addresses", addresses)?;
        }
        if !lean || http.is_some() {
            out.serialize_field("http", http)?;
        }
        if !lean || tls.is_some() {
            out.serialize_field("tls", tls)?;
        }
        out.serialize_field("blocking", blocking)?;
        if !lean || accessible.is_some() {
            out.serialize_field("accessible", accessible)?;
        }
        if let Some(location) = location {
            out.serialize_field("location", location)?;
        }
        if let Some(web_control) = web_control {
            out.serialize_field("web_control", web_control)?;
        }
        out.end()
    }
}
