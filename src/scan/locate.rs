//! `scan --locate`: after a target's web stage, trace where the censor sits for each
//! protocol whose test failed in a way injection explains. Polite and bounded: only
//! failed names, one trace at a time for the whole scan, a budget of traces per scan.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::classify::location::judge_trace;
use crate::probe::locate::{LocateError, TraceConfig, Tracer};
use crate::record::assessment::{HttpAssessment, TlsAssessment};
use crate::record::location::{LocationSection, SkippedTrace, TraceProtocol};
use crate::vocab::{HttpVerdict, Stage, TlsVerdict};

/// The most traces one scan runs (each is a few dozen connections at most).
pub const MAX_TRACES_PER_SCAN: usize = 100;

/// A failed trigger worth tracing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatableFailure {
    pub protocol: TraceProtocol,
    pub server: SocketAddr,
    pub name: String,
    /// The web stage saw residual censorship right after the test.
    pub residual_seen: bool,
}

/// The stages whose headline verdict injection could explain: a reset, a close or
/// silence after the trigger (the request / `ClientHello`) went out.
pub fn locatable_failures(
    http: Option<&HttpAssessment>,
    tls: Option<&TlsAssessment>,
) -> Vec<LocatableFailure> {
    let mut failures = Vec::new();
    if let Some(http) = http
        && matches!(
            http.verdict,
            HttpVerdict::RstInjection | HttpVerdict::Eof | HttpVerdict::Timeout
        )
        && http.stage == Some(Stage::Request)
        && let (Some(ip), Some(port)) = (http.ip, http.port)
    {
        failures.push(LocatableFailure {
            protocol: TraceProtocol::Http,
            server: SocketAddr::new(ip, port),
            name: http.name.clone(),
            residual_seen: http.residual == Some(true),
        });
    }
    if let Some(tls) = tls
        && matches!(
            tls.verdict,
            TlsVerdict::RstInjection | TlsVerdict::Eof | TlsVerdict::Timeout
        )
        && tls.stage == Some(Stage::Handshake)
        && let (Some(ip), Some(port)) = (tls.ip, tls.port)
    {
        failures.push(LocatableFailure {
            protocol: TraceProtocol::Tls,
            server: SocketAddr::new(ip, port),
            name: tls.name.clone(),
            residual_seen: tls.residual == Some(true),
        });
    }
    failures
}

/// Runs the traces of a scan.
#[derive(Debug)]
pub struct Locator {
    config: TraceConfig,
    /// Why no trace can run (no raw ICMP socket), checked once at the start.
    unavailable: Option<String>,
    one_at_a_time: Semaphore,
    traces_run: AtomicUsize,
}

impl Locator {
    /// `control_name`: the scan's benign control, traced first on the same server.
    pub fn new(control_name: &str) -> Arc<Locator> {
        let config = TraceConfig {
            control_name: Some(control_name.to_owned()),
            ..TraceConfig::default()
        };
        let unavailable = Tracer::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.clone())
            .err()
            .map(|error| error.to_string());
        Arc::new(Locator {
            config,
            unavailable,
            one_at_a_time: Semaphore::new(1),
            traces_run: AtomicUsize::new(0),
        })
    }

    /// The `location` of a target: `None` when no stage failed in a locatable way.
    pub async fn locate(
        &self,
        http: Option<&HttpAssessment>,
        tls: Option<&TlsAssessment>,
    ) -> Option<LocationSection> {
        let failures = locatable_failures(http, tls);
        if failures.is_empty() {
            return None;
        }
        if let Some(reason) = &self.unavailable {
            return Some(LocationSection::Unavailable {
                reason: reason.clone(),
            });
        }
        let Ok(_permit) = self.one_at_a_time.acquire().await else {
            return Some(LocationSection::Unavailable {
                reason: "the scan is stopping".to_owned(),
            });
        };
        let mut traces = Vec::new();
        let mut skipped = Vec::new();
        for failure in failures {
            if failure.residual_seen {
                // Every handshake would meet the residual block: the trace would say
                // nothing about where the censor is.
                skipped.push(SkippedTrace {
                    protocol: failure.protocol,
                    reason: "residual censorship was seen right after the test: a trace now \
                             would only meet it; run `censorprobe trace` once it has expired"
                        .to_owned(),
                });
                continue;
            }
            if self.traces_run.fetch_add(1, Ordering::Relaxed) >= MAX_TRACES_PER_SCAN {
                skipped.push(SkippedTrace {
                    protocol: failure.protocol,
                    reason: format!("the scan's budget of {MAX_TRACES_PER_SCAN} traces is spent"),
                });
                continue;
            }
            let config = self.config.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                Tracer::new(failure.server.ip(), config)?.trace(
                    failure.server,
                    failure.protocol,
                    &failure.name,
                )
            })
            .await;
            match outcome {
                Ok(Ok(trace)) => traces.push(judge_trace(trace)),
                Ok(Err(error)) => skipped.push(SkippedTrace {
                    protocol: failure.protocol,
                    reason: error.to_string(),
                }),
                Err(join) => skipped.push(SkippedTrace {
                    protocol: failure.protocol,
                    reason: format!("the trace did not finish: {join}"),
                }),
            }
        }
        if traces.is_empty()
            && let [only] = skipped.as_slice()
        {
            return Some(LocationSection::Unavailable {
                reason: only.reason.clone(),
            });
        }
        Some(LocationSection::Traced { traces, skipped })
    }
}

impl From<LocateError> for LocationSection {
    fn from(error: LocateError) -> Self {
        LocationSection::Unavailable {
            reason: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn http(verdict: &str, stage: &str, residual: bool) -> HttpAssessment {
        serde_json::from_value(json!({
            "verdict": verdict, "stage": stage, "ip": "198.19.1.1", "port": 80,
            "name": "blocked.example", "residual": residual, "evidence": [],
        }))
        .unwrap()
    }

    fn tls(verdict: &str, stage: &str) -> TlsAssessment {
        serde_json::from_value(json!({
            "verdict": verdict, "stage": stage, "ip": "198.19.1.1", "port": 443,
            "name": "blocked.example", "evidence": [],
        }))
        .unwrap()
    }

    #[test]
    fn only_failures_after_the_trigger_are_traced() {
        let reset = http("rst_injection", "request", false);
        let failures = locatable_failures(Some(&reset), None);
        assert_eq!(
            failures,
            vec![LocatableFailure {
                protocol: TraceProtocol::Http,
                server: "198.19.1.1:80".parse().unwrap(),
                name: "blocked.example".to_owned(),
                residual_seen: false,
            }]
        );
        for (verdict, stage) in [("timeout", "request"), ("eof", "request")] {
            assert_eq!(
                locatable_failures(Some(&http(verdict, stage, false)), None).len(),
                1
            );
        }
        // Before the trigger (at connect) or a refused SYN: no trigger to locate.
        for (verdict, stage) in [("timeout", "connect"), ("refused", "connect")] {
            assert!(locatable_failures(Some(&http(verdict, stage, false)), None).is_empty());
        }
        assert!(locatable_failures(Some(&http("blockpage", "response", false)), None).is_empty());
        let handshake = tls("rst_injection", "handshake");
        let both = locatable_failures(Some(&reset), Some(&handshake));
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].protocol, TraceProtocol::Tls);
        assert_eq!(both[1].server.port(), 443);
        assert!(locatable_failures(None, Some(&tls("rst_injection", "connect"))).is_empty());
        assert!(
            locatable_failures(Some(&http("rst_injection", "request", true)), None)[0]
                .residual_seen
        );
    }
}
