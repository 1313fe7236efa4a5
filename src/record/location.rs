//! Locating a censor by TTL-limited probing (Censored Planet's `CenTrace` method): what
//! came back for each TTL, and where the trace puts the censor. Written by `censorprobe
//! trace` and, as the `location` object of a target record, by `scan --locate`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What the connection itself showed after the TTL-limited trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerOutcome {
    /// The full-TTL handshake never completed, so no trigger was sent: after an earlier
    /// injection this is residual censorship (the censor resets or drops every new
    /// connection to the same server and port for a while), otherwise IP blocking or a
    /// server that is down.
    HandshakeFailed { reason: String },
    /// The connection was reset (a RST, injected or from the server).
    Reset,
    /// The connection was closed (a FIN) before any data.
    Closed,
    /// Data from the server: the trigger reached it.
    ServerData { bytes: usize },
    /// Nothing on the connection within the window.
    Silence,
    /// Another error on the connection (not a reset: e.g. host unreachable).
    Failed { reason: String },
}

impl TriggerOutcome {
    /// A reset or a close without data: what an injector sends.
    pub fn is_interference(&self) -> bool {
        matches!(self, TriggerOutcome::Reset | TriggerOutcome::Closed)
    }
}

/// One TTL of a trace: a fresh connection (new source port), the handshake at full TTL,
/// the trigger sent with IP TTL (IPv6 hop limit) `ttl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlObservation {
    pub ttl: u8,
    /// The router that answered with an ICMP time-exceeded quoting our trigger segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<IpAddr>,
    pub outcome: TriggerOutcome,
    /// Milliseconds from the trigger to the outcome (absent for silence and failed
    /// handshakes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_ms: Option<u64>,
}

/// Where a trace puts the censor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CensorPlacement {
    /// The interference appears at a hop before the server's: a censor on the path.
    OnPath,
    /// The interference appears only from the server's hop on: the endpoint (or a
    /// device right next to it) interferes.
    Endpoint,
    /// No interference at any TTL.
    None,
    /// The trace cannot tell (no server hop known, or blocked before any trigger).
    Inconclusive,
}

impl CensorPlacement {
    /// In words, for the text outputs.
    pub fn describe(self) -> &'static str {
        match self {
            CensorPlacement::OnPath => "on-path censor",
            CensorPlacement::Endpoint => "interference at the endpoint",
            CensorPlacement::None => "no interference",
            CensorPlacement::Inconclusive => "inconclusive",
        }
    }
}

/// Residual censorship seen during the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidualFacts {
    /// The first TTL whose handshake failed after an injection.
    pub from_ttl: u8,
    pub reason: String,
}

/// The conclusion of a trace (pure function of its [`TtlObservation`]s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CensorLocation {
    pub placement: CensorPlacement,
    /// The first TTL at which the interference (reset or close) appeared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_hop: Option<u8>,
    /// What the interference was at that hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<TriggerOutcome>,
    /// The router that expired the trigger at the injection hop, when one answered (with
    /// a censor on a link, the router right behind it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_router: Option<IpAddr>,
    /// The server's hop distance: the first TTL at which the server answered (from the
    /// benign control trace when there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_hop: Option<u8>,
    /// Residual censorship that cut the trace short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<ResidualFacts>,
    /// Why the trace is inconclusive (only with [`CensorPlacement::Inconclusive`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One trace as observed: the name, the server, and what each TTL showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceObservation {
    pub server: IpAddr,
    pub port: u16,
    pub protocol: TraceProtocol,
    /// The Host header or SNI of the trigger.
    pub name: String,
    /// The benign control trace (same server, benign name), run first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlTrace>,
    pub hops: Vec<TtlObservation>,
}

/// One trace and where it puts the censor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    #[serde(flatten)]
    pub trace: TraceObservation,
    pub location: CensorLocation,
}

/// The first TTL at which the server answered with data.
pub fn server_hop(hops: &[TtlObservation]) -> Option<u8> {
    hops.iter()
        .find(|hop| matches!(hop.outcome, TriggerOutcome::ServerData { .. }))
        .map(|hop| hop.ttl)
}

/// The benign control's trace: it finds the server's hop distance before the test name
/// can set off residual censorship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlTrace {
    pub name: String,
    pub hops: Vec<TtlObservation>,
}

/// Which trigger a trace sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceProtocol {
    /// An HTTP GET with the name as Host.
    Http,
    /// A TLS `ClientHello` with the name as SNI.
    Tls,
}

/// The `location` object of a target record (`scan --locate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LocationSection {
    /// One trace per failed protocol (and why a failed protocol was not traced).
    Traced {
        traces: Vec<TraceRecord>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skipped: Vec<SkippedTrace>,
    },
    /// No trace ran: why (no raw socket, nothing failed in a way injection explains...).
    Unavailable { reason: String },
}

/// A failed protocol that `--locate` did not trace, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedTrace {
    pub protocol: TraceProtocol,
    pub reason: String,
}

/// Per-TTL observations for the tests of the location judgement and the tracer.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::net::{IpAddr, Ipv4Addr};

    use super::{TriggerOutcome, TtlObservation};

    #[allow(clippy::unnecessary_wraps)] // the value of an observation's `router` field
    pub(crate) fn router(n: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(198, 18, n, 1)))
    }

    pub(crate) fn hop(ttl: u8, router: Option<IpAddr>, outcome: TriggerOutcome) -> TtlObservation {
        TtlObservation {
            ttl,
            router,
            outcome,
            after_ms: None,
        }
    }

    pub(crate) fn data() -> TriggerOutcome {
        TriggerOutcome::ServerData { bytes: 100 }
    }

    pub(crate) fn refused() -> TriggerOutcome {
        TriggerOutcome::HandshakeFailed {
            reason: "connection refused".to_owned(),
        }
    }
}
