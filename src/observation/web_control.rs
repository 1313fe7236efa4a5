//! What a web control (`censorprobe helper`, run from an uncensored vantage) saw for a
//! target, and the wire form the probe and the helper exchange. No judgement here: the
//! classifier compares these with the probe's own observations.
//!
//! The protocol is JSON over HTTPS: the probe `POST`s a [`WebControlRequest`] (a batch of
//! names, each with the addresses and ports it will test) to `/v1/web-control` with a
//! bearer token, and the helper answers a [`WebControlReply`] with one
//! [`WebControlResult`] per name, in the request's order. The helper measures with the
//! probe's own HTTP and TLS probes, so both sides' observations have the same types.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::web::{ConnectObservation, HttpObservation, TlsObservation};

/// The path of the helper's measuring endpoint.
pub const WEB_CONTROL_PATH: &str = "/v1/web-control";

/// Protocol version, sent and checked both ways.
pub const WEB_CONTROL_VERSION: u32 = 1;

/// A batch of names to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebControlRequest {
    pub version: u32,
    pub targets: Vec<WebControlQuery>,
}

/// One name: what the probe will test, so that the helper tests the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebControlQuery {
    /// The domain (Host header and SNI).
    pub name: String,
    /// Addresses the probe tests or saw in its DNS answers (the helper adds its own).
    pub addresses: Vec<IpAddr>,
    /// The HTTP port, when the HTTP stage runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    /// The TLS port, when the TLS stage runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
}

/// The helper's answer to a [`WebControlRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebControlReply {
    pub version: u32,
    /// What the helper runs (`censorprobe x.y.z`), for the report.
    pub software: String,
    /// One per requested name, in the request's order.
    pub results: Vec<WebControlResult>,
}

/// How a helper lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelperLookupStatus {
    /// Addresses came back.
    Resolved,
    /// The name does not exist.
    Nxdomain,
    /// The name exists but has no A/AAAA record.
    NoData,
    /// The lookup failed (timeout, SERVFAIL, unreachable resolver...): see `error`.
    Failed,
}

/// One DNS lookup (A and AAAA) the helper made from its vantage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelperLookup {
    /// Which resolver: `system`, a `udp:IP:PORT`, or a DoH URL.
    pub resolver: String,
    pub status: HelperLookupStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: f64,
}

/// The helper's DNS view of a name: its own resolver, and DoH when configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelperDns {
    pub resolver: HelperLookup,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doh: Option<HelperLookup>,
}

/// An address the helper would not contact, and why (bogon, not in its allow-list...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedAddress {
    pub ip: IpAddr,
    pub reason: String,
}

/// One TCP connect the helper made (to every address × port it tested).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelperConnect {
    pub address: SocketAddr,
    pub connect: ConnectObservation,
}

/// Everything the helper saw for one name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebControlResult {
    pub name: String,
    pub dns: HelperDns,
    /// TCP connects, one per address and port tested.
    #[serde(default)]
    pub connects: Vec<HelperConnect>,
    /// The HTTP GET with the name as Host, per address (when the HTTP port was given).
    #[serde(default)]
    pub http: Vec<HttpObservation>,
    /// The TLS handshake with the name as SNI, per address (when the TLS port was given).
    #[serde(default)]
    pub tls: Vec<TlsObservation>,
    /// Addresses not contacted, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedAddress>,
    /// The helper's time for this name.
    pub ms: f64,
}

impl WebControlResult {
    /// The helper's connect to this address and port, if it made one.
    pub fn connect_to(&self, address: SocketAddr) -> Option<&ConnectObservation> {
        self.connects
            .iter()
            .find(|c| c.address == address)
            .map(|c| &c.connect)
    }

    /// The helper's HTTP observation of this address and port, if any.
    pub fn http_of(&self, ip: IpAddr, port: u16) -> Option<&HttpObservation> {
        self.http.iter().find(|o| o.ip == ip && o.port == port)
    }

    /// The helper's TLS observation of this address and port, if any.
    pub fn tls_of(&self, ip: IpAddr, port: u16) -> Option<&TlsObservation> {
        self.tls.iter().find(|o| o.ip == ip && o.port == port)
    }

    /// Every address the helper's own lookups returned.
    pub fn resolved_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        std::iter::once(&self.dns.resolver)
            .chain(self.dns.doh.as_ref())
            .flat_map(|l| l.addresses.iter().copied())
    }
}

/// What the scan records of its web control for one target: the helper's result, or
/// why there is none. A failed helper never costs the probe's own observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum WebControlObservation {
    Answered {
        /// The helper's URL.
        helper: String,
        /// What the helper runs.
        software: String,
        /// Round trip of the batch that carried this name, as the probe measured it.
        ms: f64,
        result: Box<WebControlResult>,
    },
    Failed {
        helper: String,
        /// Why: unreachable, timeout, refused token, bad reply... (one line).
        error: String,
        ms: f64,
    },
}

impl WebControlObservation {
    /// The helper's result, when it answered.
    pub fn result(&self) -> Option<&WebControlResult> {
        match self {
            WebControlObservation::Answered { result, .. } => Some(result),
            WebControlObservation::Failed { .. } => None,
        }
    }
}
