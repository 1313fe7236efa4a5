//! Measuring one name from the helper's vantage: its own DNS lookups (resolver and,
//! when configured, `DoH`), then the TCP connect, TLS handshake and HTTP GET to every
//! address (the probe's and its own, bounded), with the probe's own [`HttpProber`] and
//! [`TlsProber`] so that both sides' observations have the same types and meaning.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::future::join_all;
use hickory_proto::rr::RecordType;

use crate::observation::web::{HttpObservation, TlsObservation};
use crate::observation::web_control::{
    HelperConnect, HelperDns, HelperLookup, HelperLookupStatus, RefusedAddress, WebControlQuery,
    WebControlResult,
};
use crate::observation::{ControlObservation, ControlOutcome};
use crate::probe::control::ControlResolver;
use crate::probe::web::http::{HttpProber, valid_host_header};
use crate::probe::web::tls::{TlsProber, server_name};

use super::policy::AddressPolicy;

/// The helper's measuring tools and bounds.
#[derive(Debug)]
pub struct Measurer {
    /// The helper's own resolver and its label (`system` or `udp:IP:PORT`).
    pub resolver: ControlResolver,
    pub resolver_label: String,
    pub doh: Option<ControlResolver>,
    pub http: HttpProber,
    pub tls: TlsProber,
    pub policy: AddressPolicy,
    /// Addresses probed per name at most (the probe's first, then the helper's own).
    pub max_addresses: usize,
    /// The whole measurement of one name at most.
    pub name_timeout: Duration,
}

/// What a lookup's answers (A and AAAA) amount to.
fn lookup_of(label: &str, observation: &ControlObservation) -> HelperLookup {
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut errors = Vec::new();
    let (mut nxdomain, mut nodata) = (false, false);
    let mut ms: f64 = 0.0;
    for answer in &observation.answers {
        ms = ms.max(answer.elapsed_ms);
        match &answer.outcome {
            ControlOutcome::Resolved { ips, .. } => {
                for ip in ips {
                    if !addresses.contains(ip) {
                        addresses.push(*ip);
                    }
                }
                nodata |= ips.is_empty();
            }
            ControlOutcome::NoData => nodata = true,
            ControlOutcome::Nxdomain => nxdomain = true,
            ControlOutcome::Error { message } => {
                errors.push(format!("{}: {message}", answer.qtype));
            }
        }
    }
    let status = if !addresses.is_empty() {
        HelperLookupStatus::Resolved
    } else if nxdomain {
        HelperLookupStatus::Nxdomain
    } else if !errors.is_empty() {
        HelperLookupStatus::Failed
    } else if nodata {
        HelperLookupStatus::NoData
    } else {
        HelperLookupStatus::Failed
    };
    HelperLookup {
        resolver: label.to_owned(),
        status,
        addresses,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
        ms,
    }
}

fn failed_lookup(label: &str, error: String) -> HelperLookup {
    HelperLookup {
        resolver: label.to_owned(),
        status: HelperLookupStatus::Failed,
        addresses: Vec::new(),
        error: Some(error),
        ms: 0.0,
    }
}

/// A result with no measurement, for a name the helper cannot or did not measure.
fn unmeasured(measurer: &Measurer, name: &str, error: String, start: Instant) -> WebControlResult {
    WebControlResult {
        name: name.to_owned(),
        dns: HelperDns {
            resolver: failed_lookup(&measurer.resolver_label, error),
            doh: None,
        },
        connects: Vec::new(),
        http: Vec::new(),
        tls: Vec::new(),
        refused: Vec::new(),
        ms: start.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Addresses in order of first appearance, without repeats.
fn merge_addresses(lists: &[&[IpAddr]]) -> Vec<IpAddr> {
    let mut merged: Vec<IpAddr> = Vec::new();
    for ip in lists.iter().flat_map(|list| list.iter()) {
        if !merged.contains(ip) {
            merged.push(*ip);
        }
    }
    merged
}

impl Measurer {
    /// Measures one name. Never fails: what went wrong is in the result (a name that
    /// cannot be measured, or that ran past the per-name timeout, gets a failed lookup
    /// saying why and no connection observations).
    pub async fn measure(&self, query: &WebControlQuery) -> WebControlResult {
        let start = Instant::now();
        match tokio::time::timeout(self.name_timeout, self.measure_name(query, start)).await {
            Ok(result) => result,
            Err(_elapsed) => unmeasured(
                self,
                &query.name,
                format!(
                    "the helper's per-name timeout ({} ms) elapsed before the measurement ended",
                    self.name_timeout.as_millis()
                ),
                start,
            ),
        }
    }

    async fn measure_name(&self, query: &WebControlQuery, start: Instant) -> WebControlResult {
        let name = query.name.as_str();
        // Names only: an address literal has nothing to resolve, and the Host header
        // and SNI must be the name itself.
        let tls_name = match server_name(name) {
            Ok(tls_name)
                if valid_host_header(name)
                    && name.parse::<IpAddr>().is_err()
                    && !name.starts_with('[') =>
            {
                tls_name
            }
            _ => {
                return unmeasured(
                    self,
                    name,
                    format!("{name:?} is not a domain name the helper can measure"),
                    start,
                );
            }
        };
        let qtypes = [RecordType::A, RecordType::AAAA];
        let own = async {
            lookup_of(
                &self.resolver_label,
                &self.resolver.resolve(name, &qtypes).await,
            )
        };
        let doh = async {
            match &self.doh {
                Some(doh) => Some(lookup_of(doh.label(), &doh.resolve(name, &qtypes).await)),
                None => None,
            }
        };
        let (resolver, doh) = tokio::join!(own, doh);
        let no_addresses: &[IpAddr] = &[];
        let candidates = merge_addresses(&[
            &query.addresses,
            &resolver.addresses,
            doh.as_ref().map_or(no_addresses, |l| &l.addresses),
        ]);

        let mut refused = Vec::new();
        let mut targets = Vec::new();
        for ip in candidates {
            if let Err(reason) = self.policy.check(ip) {
                refused.push(RefusedAddress { ip, reason });
            } else if targets.len() >= self.max_addresses {
                refused.push(RefusedAddress {
                    ip,
                    reason: format!(
                        "over the helper's limit of {} addresses per name",
                        self.max_addresses
                    ),
                });
            } else {
                targets.push(ip);
            }
        }

        let http_runs = async {
            match query.http_port {
                Some(port) => {
                    join_all(targets.iter().map(|&ip| self.http.probe(ip, port, name))).await
                }
                None => Vec::new(),
            }
        };
        let tls_runs = async {
            match query.tls_port {
                Some(port) => {
                    join_all(
                        targets
                            .iter()
                            .map(|&ip| self.tls.probe_as(ip, port, name, &tls_name)),
                    )
                    .await
                }
                None => Vec::new(),
            }
        };
        let (http, tls): (Vec<HttpObservation>, Vec<TlsObservation>) =
            tokio::join!(http_runs, tls_runs);
        WebControlResult {
            name: name.to_owned(),
            connects: connects_of(&http, &tls),
            dns: HelperDns { resolver, doh },
            http,
            tls,
            refused,
            ms: start.elapsed().as_secs_f64() * 1000.0,
        }
    }
}

/// One connect per address and port: the HTTP and TLS probes each open their connection
/// with the probe's connect, so their connect observations are the helper's connects
/// (no third connection to the target is needed).
fn connects_of(http: &[HttpObservation], tls: &[TlsObservation]) -> Vec<HelperConnect> {
    let mut connects: Vec<HelperConnect> = Vec::new();
    let all = http
        .iter()
        .map(|o| (SocketAddr::new(o.ip, o.port), &o.connect))
        .chain(
            tls.iter()
                .map(|o| (SocketAddr::new(o.ip, o.port), &o.connect)),
        );
    for (address, connect) in all {
        if !connects.iter().any(|c| c.address == address) {
            connects.push(HelperConnect {
                address,
                connect: connect.clone(),
            });
        }
    }
    connects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::ControlAnswer;

    fn answer(qtype: &str, outcome: ControlOutcome) -> ControlAnswer {
        ControlAnswer {
            qtype: qtype.to_owned(),
            outcome,
            elapsed_ms: 3.0,
        }
    }

    #[test]
    fn lookups_sum_up_their_answers() {
        let resolved = ControlObservation {
            control: "udp:192.0.2.53:53".to_owned(),
            answers: vec![
                answer(
                    "A",
                    ControlOutcome::Resolved {
                        ips: vec!["1.2.3.4".parse().unwrap()],
                        records: Vec::new(),
                    },
                ),
                answer("AAAA", ControlOutcome::NoData),
            ],
        };
        let lookup = lookup_of("system", &resolved);
        assert_eq!(lookup.status, HelperLookupStatus::Resolved);
        assert_eq!(lookup.addresses, vec!["1.2.3.4".parse::<IpAddr>().unwrap()]);
        assert_eq!(lookup.resolver, "system");

        let nx = ControlObservation {
            control: String::new(),
            answers: vec![
                answer("A", ControlOutcome::Nxdomain),
                answer("AAAA", ControlOutcome::Nxdomain),
            ],
        };
        assert_eq!(lookup_of("x", &nx).status, HelperLookupStatus::Nxdomain);

        let failed = ControlObservation {
            control: String::new(),
            answers: vec![
                answer("A", ControlOutcome::NoData),
                answer(
                    "AAAA",
                    ControlOutcome::Error {
                        message: "timeout".to_owned(),
                    },
                ),
            ],
        };
        let lookup = lookup_of("x", &failed);
        assert_eq!(lookup.status, HelperLookupStatus::Failed);
        assert_eq!(lookup.error.as_deref(), Some("AAAA: timeout"));

        let nodata = ControlObservation {
            control: String::new(),
            answers: vec![
                answer("A", ControlOutcome::NoData),
                answer("AAAA", ControlOutcome::NoData),
            ],
        };
        assert_eq!(lookup_of("x", &nodata).status, HelperLookupStatus::NoData);
    }

    #[test]
    fn addresses_merge_in_order_without_repeats() {
        let a: IpAddr = "1.1.1.1".parse().unwrap();
        let b: IpAddr = "2.2.2.2".parse().unwrap();
        let c: IpAddr = "3.3.3.3".parse().unwrap();
        assert_eq!(merge_addresses(&[&[a, b], &[b, c], &[a]]), vec![a, b, c]);
    }
}
