//! The web judge: HTTP and TLS verdicts from paired control/test/residual
//! observations, the per-target aggregation over addresses, and the target-level
//! `blocking` / `accessible` summary.
//!
//! Rules (the README documents them for users):
//! - Keyword blocking (`rst_injection`, `timeout`, `eof` at the `request`, `response`
//!   or `handshake` stage) is claimed only when the benign control on the same
//!   (ip, port), run just before, passed, and the test failed. When the control failed
//!   too, the path or server is broken: `inconclusive`.
//! - A TCP connect carries no name, so a connect failure is never keyword blocking:
//!   `refused` (an RST answered the SYN) or `timeout` at `connect`. When the control
//!   failed at connect too, it is IP-level blocking or a dead host; the evidence says
//!   which probe saw what. An RST to the connect is `rst_injection` only when packet
//!   capture says it was injected.
//! - `blockpage`: the response matches a documented block-page fingerprint.
//! - TLS `cert_invalid`: the handshake completed, the chain is not valid for the name
//!   (the reason is given); `tls_alert`: the server (or a box) ended the handshake
//!   with an alert. Neither is claimed as blocking.
//! - `residual` is the post-test control's result: `true` when it failed (the path
//!   was blocked after the test), `false` when it passed, absent when not run.

use std::fmt;

use super::blockpage::BlockpageSet;
use super::injectors::{InjectorSet, UNKNOWN_INJECTOR};
use super::packets::{PacketJudgement, judge_connection_with_reference};
use crate::observation::packets::{CaptureObservation, ConnectionPackets};
use crate::observation::web::{
    AttemptObservations, CertProblem, ConnectStatus, HttpExchangeEnd, HttpObservation, PathFacts,
    TlsHandshakeEnd, TlsObservation, TlsProgress,
};
use crate::record::assessment::{DnsAssessment, EvidenceKind};
use crate::vocab::{Blocking, Claim, HttpVerdict, TlsVerdict};
use crate::vocab::{DnsVerdict, Stage};

// The probes' outcome facts live with the observations; kept here at their old path.
use crate::observation::web::{AttemptOutcome, ProbeRole};
use crate::observation::web::{StageRun, WebObservations};
use crate::record::assessment::{
    ControlSummary, HttpAssessment, HttpIpResult, IpResult, TargetBlocking, Timings, TlsAssessment,
    TlsIpResult, WebAssessment, WebEvidence, WebEvidenceKind, WebStageResult,
};

/// Judge what the web stage observed for one target (`control_name`: the benign
/// Host/SNI its controls used). Response bodies kept for block-page matching are
/// dropped afterwards: the record keeps only their digest and length. Captured packets
/// are judged with the built-in injector fingerprints.
pub fn judge_web(
    observations: WebObservations,
    control_name: &str,
    blockpages: &BlockpageSet,
) -> WebStageResult {
    judge_web_with_injectors(
        observations,
        control_name,
        blockpages,
        InjectorSet::builtin_shared(),
    )
}

/// [`judge_web`] with the injector fingerprints of the scan (`--injectors`).
pub fn judge_web_with_injectors(
    observations: WebObservations,
    control_name: &str,
    blockpages: &BlockpageSet,
    injectors: &InjectorSet,
) -> WebStageResult {
    let name = observations.name;
    let http = observations.http.map(|run| match run {
        StageRun::Skipped(reason) => skipped_http(&name, &reason),
        StageRun::Probed(runs) => {
            let results = runs
                .into_iter()
                .map(|run| {
                    let mut result = classify_http_attempt_with_injectors(
                        run.observations,
                        run.path,
                        control_name,
                        blockpages,
                        injectors,
                    );
                    let obs = &mut result.observations;
                    for o in [
                        Some(&mut obs.control),
                        Some(&mut obs.test),
                        obs.residual.as_mut(),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        if let Some(r) = o.response.as_mut() {
                            r.body_prefix = Vec::new();
                        }
                    }
                    result
                })
                .collect();
            assess_http(&name, results)
        }
    });
    let tls = observations.tls.map(|run| match run {
        StageRun::Skipped(reason) => skipped_tls(&name, &reason),
        StageRun::Probed(runs) => {
            let results = runs
                .into_iter()
                .map(|run| {
                    classify_tls_attempt_with_injectors(
                        run.observations,
                        run.path,
                        control_name,
                        injectors,
                    )
                })
                .collect();
            assess_tls(&name, results)
        }
    });
    WebStageResult {
        addresses: observations.addresses,
        http,
        tls,
    }
}

/// [`judge_web_with_injectors`] with what the web control (`scan --web-control`) saw from
/// its uncensored vantage: decides `tcp_ip_blocking`, `down` and `http_diff`, and adds
/// the comparison to the evidence (rules: [`super::web_control`]). Without a web control
/// (`None`, or a helper that failed) the judgement is [`judge_web_with_injectors`]'s.
pub fn judge_web_with_control(
    observations: WebObservations,
    web_control: Option<&crate::observation::web_control::WebControlObservation>,
    control_name: &str,
    blockpages: &BlockpageSet,
    injectors: &InjectorSet,
) -> WebStageResult {
    let mut result = judge_web_with_injectors(observations, control_name, blockpages, injectors);
    let Some(helper) = web_control.and_then(|w| w.result()) else {
        return result;
    };
    // Each address is judged again with the helper's view, then the headline is chosen
    // again the same way. A skipped stage has no address: it stays as it is.
    if let Some(http) = result.http.take() {
        result.http = Some(if http.attempts.is_empty() {
            http
        } else {
            let attempts = http
                .attempts
                .into_iter()
                .map(|a| super::web_control::refine_http(a, helper))
                .collect();
            assess_http(&http.name, attempts)
        });
    }
    if let Some(tls) = result.tls.take() {
        result.tls = Some(if tls.attempts.is_empty() {
            tls
        } else {
            let attempts = tls
                .attempts
                .into_iter()
                .map(|a| super::web_control::refine_tls(a, helper))
                .collect();
            assess_tls(&tls.name, attempts)
        });
    }
    result
}

fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

fn errno_text(errno: Option<i32>, error: Option<&str>) -> String {
    // The OS's text already ends with "(os error N)"; say it once.
    let error = error.map(|e| {
        errno
            .and_then(|n| e.strip_suffix(&format!(" (os error {n})")))
            .unwrap_or(e)
    });
    match (errno, error) {
        (Some(n), Some(e)) => format!(" ({e}, errno {n})"),
        (None, Some(e)) => format!(" ({e})"),
        (Some(n), None) => format!(" (errno {n})"),
        (None, None) => String::new(),
    }
}

fn connect_detail(
    status: ConnectStatus,
    errno: Option<i32>,
    error: Option<&str>,
    after: f64,
) -> String {
    let what = match status {
        ConnectStatus::Ok => "connected",
        ConnectStatus::Refused => "connect refused: an RST answered the SYN",
        ConnectStatus::Timeout => "connect timed out: the SYN went unanswered",
        ConnectStatus::Reset => "connect reset",
        ConnectStatus::Error => "connect failed",
    };
    format!("{what}{} after {}", errno_text(errno, error), ms(after))
}

/// One sentence about what an HTTP probe saw.
fn describe_http(obs: &HttpObservation) -> String {
    let target = format!("GET with Host {:?} to {}:{}", obs.host, obs.ip, obs.port);
    if !obs.connect.is_ok() {
        let c = &obs.connect;
        return format!(
            "{target}: {}",
            connect_detail(c.status, c.errno, c.error.as_deref(), c.connect_ms)
        );
    }
    let err = errno_text(obs.errno, obs.error.as_deref());
    let sent = format!(
        "{} of {} request bytes sent",
        obs.request_bytes_sent, obs.request_length
    );
    let what = match obs.exchange {
        Some(HttpExchangeEnd::Complete) => match &obs.response {
            Some(r) => format!(
                "HTTP {} {}, {} body bytes{}{}",
                r.status,
                r.reason,
                r.body_length,
                if r.body_capped { " (capped)" } else { "" },
                r.title
                    .as_ref()
                    .map(|t| format!(", title {t:?}"))
                    .unwrap_or_default()
            ),
            None => "complete".to_owned(),
        },
        Some(HttpExchangeEnd::ResetAfterRequest) => {
            format!("{sent}; reset before any response byte{err}")
        }
        Some(HttpExchangeEnd::EofWithoutResponse) => {
            format!("{sent}; closed (FIN) before any response byte")
        }
        Some(HttpExchangeEnd::TimeoutAfterRequest) => {
            format!("{sent}; no response byte before the deadline")
        }
        Some(HttpExchangeEnd::ResetDuringResponse) => {
            format!("reset after {} response bytes{err}", obs.bytes_received)
        }
        Some(HttpExchangeEnd::EofDuringResponse) => {
            format!(
                "closed after {} response bytes, response incomplete",
                obs.bytes_received
            )
        }
        Some(HttpExchangeEnd::TimeoutDuringResponse) => {
            format!(
                "deadline passed after {} response bytes",
                obs.bytes_received
            )
        }
        Some(HttpExchangeEnd::MalformedResponse) => format!("malformed response{err}"),
        Some(HttpExchangeEnd::RequestFailed) => format!("{sent}; writing the request failed{err}"),
        Some(HttpExchangeEnd::ReadFailed) => format!("reading the response failed{err}"),
        None => "no exchange".to_owned(),
    };
    format!("{target}: {what} ({} total)", ms(obs.total_ms))
}

/// One sentence about what a TLS probe saw.
fn describe_tls(obs: &TlsObservation) -> String {
    let sni = obs
        .sni
        .as_deref()
        .map_or_else(|| "no SNI".to_owned(), |s| format!("SNI {s:?}"));
    let target = format!("ClientHello with {sni} to {}:{}", obs.ip, obs.port);
    if !obs.connect.is_ok() {
        let c = &obs.connect;
        return format!(
            "{target}: {}",
            connect_detail(c.status, c.errno, c.error.as_deref(), c.connect_ms)
        );
    }
    let err = errno_text(obs.errno, obs.error.as_deref());
    let progress = match obs.progress {
        Some(TlsProgress::ClientHelloSent) | None => "ClientHello sent",
        Some(TlsProgress::ServerResponded) => "server responded",
        Some(TlsProgress::ServerHelloReceived) => "ServerHello received",
        Some(TlsProgress::Complete) => "complete",
    };
    let what = match obs.handshake {
        Some(TlsHandshakeEnd::Complete) => format!(
            "handshake completed ({}, {}{})",
            obs.version.as_deref().unwrap_or("?"),
            obs.cipher.as_deref().unwrap_or("?"),
            obs.alpn
                .as_deref()
                .map(|a| format!(", ALPN {a}"))
                .unwrap_or_default()
        ),
        Some(TlsHandshakeEnd::AlertReceived) => format!(
            "fatal alert {} received after {} server bytes",
            obs.alert.as_ref().map_or("?", |a| a.description.as_str()),
            obs.bytes_received
        ),
        Some(TlsHandshakeEnd::Reset) => format!(
            "reset during the handshake{err}, {} server bytes received (last milestone: {progress})",
            obs.bytes_received
        ),
        Some(TlsHandshakeEnd::Eof) => format!(
            "closed (FIN) during the handshake, {} server bytes received (last milestone: {progress})",
            obs.bytes_received
        ),
        Some(TlsHandshakeEnd::Timeout) => format!(
            "handshake did not complete before the deadline, {} server bytes received (last milestone: {progress})",
            obs.bytes_received
        ),
        Some(TlsHandshakeEnd::ProtocolError) => format!("TLS protocol error{err}"),
        Some(TlsHandshakeEnd::IoError) => format!("I/O error during the handshake{err}"),
        None => "no handshake".to_owned(),
    };
    format!("{target}: {what} ({} total)", ms(obs.total_ms))
}

fn outcome_kind(outcome: AttemptOutcome) -> WebEvidenceKind {
    match outcome {
        AttemptOutcome::Ok => WebEvidenceKind::ResponseReceived,
        AttemptOutcome::Alert => WebEvidenceKind::AlertReceived,
        AttemptOutcome::Refused
        | AttemptOutcome::ConnectTimeout
        | AttemptOutcome::ConnectReset
        | AttemptOutcome::ConnectError => WebEvidenceKind::ConnectFailed,
        AttemptOutcome::Reset => WebEvidenceKind::ConnectionReset,
        AttemptOutcome::Timeout => WebEvidenceKind::ConnectionTimeout,
        AttemptOutcome::Eof => WebEvidenceKind::ConnectionClosed,
        AttemptOutcome::MalformedResponse => WebEvidenceKind::MalformedResponse,
        AttemptOutcome::Error => WebEvidenceKind::ProbeError,
    }
}

/// The parts of the judgement shared by HTTP and TLS.
struct Judged {
    evidence: Vec<WebEvidence>,
    control: ControlSummary,
    residual: Option<bool>,
}

/// The capture's judgement of a connection, when a capture ran. `reference` is the
/// benign control's capture on the same address: its SYN-ACK is the baseline when the
/// test's connect got none.
fn packet_judgement(
    capture: Option<&CaptureObservation>,
    reference: Option<&CaptureObservation>,
    injectors: &InjectorSet,
) -> Option<PacketJudgement> {
    let packets = captured(capture)?;
    Some(judge_connection_with_reference(
        packets,
        captured(reference),
        injectors,
    ))
}

fn captured(capture: Option<&CaptureObservation>) -> Option<&ConnectionPackets> {
    match capture? {
        CaptureObservation::Captured(packets) => Some(packets),
        CaptureObservation::Unavailable { .. } => None,
    }
}

/// The injector of an injected connection, as evidence.
fn injector_evidence(judgement: Option<&PacketJudgement>) -> Option<WebEvidence> {
    let m = judgement.filter(|j| j.injected)?.injector.as_ref()?;
    let detail = if m.is_unknown() {
        format!(
            "the injected packets match no injector fingerprint ({UNKNOWN_INJECTOR}): {}",
            m.facts.join(", ")
        )
    } else {
        format!(
            "the injected packets match injector {}: {}",
            m.name,
            m.facts.join(", ")
        )
    };
    Some(WebEvidence::new(
        WebEvidenceKind::InjectorMatched,
        Some(ProbeRole::Test),
        detail,
    ))
}

/// Evidence about the control, the residual control, capture facts and the path.
fn common_evidence(
    control: ControlSummary,
    control_text: String,
    test_outcome: AttemptOutcome,
    residual: Option<(bool, String)>,
    residual_after_ms: Option<f64>,
    capture: Option<&PacketJudgement>,
    path: &PathFacts,
) -> Judged {
    let mut evidence = Vec::new();
    let kind = if control.passed {
        WebEvidenceKind::ControlPassed
    } else {
        WebEvidenceKind::ControlFailed
    };
    evidence.push(WebEvidence::new(
        kind,
        Some(ProbeRole::Control),
        control_text,
    ));
    if !control.passed && control.outcome.at_connect() && test_outcome.at_connect() {
        evidence.push(WebEvidence::new(
            WebEvidenceKind::BothFailedAtConnect,
            None,
            format!(
                "the control ({}) and the test both failed at connect (control: {}, test: {}): \
                 IP-level blocking or a dead host; a TCP handshake carries no name",
                control.name,
                control.outcome.as_str(),
                test_outcome.as_str()
            ),
        ));
    }
    if let Some(capture) = capture {
        let kind = if capture.injected {
            WebEvidenceKind::CaptureInjectedRst
        } else {
            WebEvidenceKind::CaptureNoInjection
        };
        evidence.push(WebEvidence::new(
            kind,
            Some(ProbeRole::Test),
            capture.describe(),
        ));
        evidence.extend(injector_evidence(Some(capture)));
    }
    let residual_flag = residual.map(|(passed, text)| {
        let after = residual_after_ms
            .map(|m| format!(" (started {} after the test ended)", ms(m)))
            .unwrap_or_default();
        let (kind, what) = if passed {
            (WebEvidenceKind::NoResidualBlocking, "passed")
        } else {
            (
                WebEvidenceKind::ResidualBlocking,
                "failed: the path was blocked after the test",
            )
        };
        evidence.push(WebEvidence::new(
            kind,
            Some(ProbeRole::Residual),
            format!("post-test control{after} {what}; {text}"),
        ));
        !passed
    });
    if path.waited_ms > 0.5 {
        evidence.push(WebEvidence::new(
            WebEvidenceKind::PathWaited,
            None,
            format!("waited {} for the path before probing", ms(path.waited_ms)),
        ));
    }
    if path.requeues > 0 {
        evidence.push(WebEvidence::new(
            WebEvidenceKind::Requeued,
            None,
            format!(
                "re-run {} time(s) alone on the path: an earlier run's failure could not be attributed \
                 (another test on the path was disturbed meanwhile, or the path was penalised)",
                path.requeues
            ),
        ));
    }
    if let Some(rule) = path.attribution {
        evidence.push(WebEvidence::new(
            WebEvidenceKind::Attribution,
            None,
            format!("{} ({})", rule.explain(), rule.as_str()),
        ));
    }
    if path.penalty_outlived {
        evidence.push(WebEvidence::new(
            WebEvidenceKind::PenaltyOutlived,
            None,
            "the path stayed blocked for the whole residual wait: failures may still be residual blocking",
        ));
    }
    Judged {
        evidence,
        control,
        residual: residual_flag,
    }
}

/// The verdict for a test that failed after connecting, given the control.
fn after_connect_verdict(
    outcome: AttemptOutcome,
    control_passed: bool,
    injected: bool,
) -> KeywordVerdict {
    // Packets proven injected need no control: the path forged them.
    if injected {
        match outcome {
            AttemptOutcome::Reset => return KeywordVerdict::Rst,
            AttemptOutcome::Eof => return KeywordVerdict::Eof,
            _ => {}
        }
    }
    if !control_passed {
        return KeywordVerdict::Inconclusive;
    }
    match outcome {
        AttemptOutcome::Reset => KeywordVerdict::Rst,
        AttemptOutcome::Timeout => KeywordVerdict::Timeout,
        AttemptOutcome::Eof => KeywordVerdict::Eof,
        _ => KeywordVerdict::Error,
    }
}

enum KeywordVerdict {
    Rst,
    Timeout,
    Eof,
    Error,
    Inconclusive,
}

/// Judge one address's HTTP probes (captured packets judged with the built-in
/// injector fingerprints).
pub fn classify_http_attempt(
    observations: AttemptObservations<HttpObservation>,
    path: PathFacts,
    control_name: &str,
    blockpages: &BlockpageSet,
) -> HttpIpResult {
    classify_http_attempt_with_injectors(
        observations,
        path,
        control_name,
        blockpages,
        InjectorSet::builtin_shared(),
    )
}

/// Judge one address's HTTP probes.
pub fn classify_http_attempt_with_injectors(
    observations: AttemptObservations<HttpObservation>,
    path: PathFacts,
    control_name: &str,
    blockpages: &BlockpageSet,
    injectors: &InjectorSet,
) -> HttpIpResult {
    let test = &observations.test;
    let control_outcome = observations.control.outcome();
    let control = ControlSummary {
        name: control_name.to_owned(),
        outcome: control_outcome,
        passed: control_outcome == AttemptOutcome::Ok,
    };
    let test_outcome = test.outcome();
    let judgement = packet_judgement(
        test.capture.as_ref(),
        observations.control.capture.as_ref(),
        injectors,
    );
    let injected = judgement.as_ref().is_some_and(|j| j.injected);
    let mut judged = common_evidence(
        control,
        describe_http(&observations.control),
        test_outcome,
        observations
            .residual
            .as_ref()
            .map(|r| (r.control_passed(), describe_http(r))),
        observations.residual_after_ms,
        judgement.as_ref(),
        &path,
    );
    judged.evidence.insert(
        1,
        WebEvidence::new(
            outcome_kind(test_outcome),
            Some(ProbeRole::Test),
            describe_http(test),
        ),
    );
    let (verdict, stage) = match test_outcome {
        AttemptOutcome::Ok => {
            let fingerprint = test.response.as_ref().and_then(|r| blockpages.find(r));
            if let Some(fp) = fingerprint {
                let control_too = observations
                    .control
                    .response
                    .as_ref()
                    .is_some_and(|r| fp.matches(r));
                judged.evidence.push(WebEvidence::new(
                    WebEvidenceKind::BlockpageMatch,
                    Some(ProbeRole::Test),
                    format!(
                        "the response matches block-page fingerprint {} ({}; {}){}",
                        fp.name,
                        fp.description,
                        fp.conditions(),
                        if control_too {
                            "; the control's response matches it too: the whole address is blocked"
                        } else {
                            ""
                        }
                    ),
                ));
                (HttpVerdict::Blockpage, Some(Stage::Response))
            } else {
                (HttpVerdict::Ok, None)
            }
        }
        AttemptOutcome::Refused | AttemptOutcome::ConnectReset if injected => {
            (HttpVerdict::RstInjection, Some(Stage::Connect))
        }
        AttemptOutcome::Refused | AttemptOutcome::ConnectReset => {
            (HttpVerdict::Refused, Some(Stage::Connect))
        }
        AttemptOutcome::ConnectTimeout => (HttpVerdict::Timeout, Some(Stage::Connect)),
        AttemptOutcome::ConnectError => (HttpVerdict::Error, Some(Stage::Connect)),
        // The server (or a box) answered, just not with a well-formed response within
        // the bounds: whatever the control did, that is no evidence of blocking.
        AttemptOutcome::MalformedResponse => {
            (HttpVerdict::MalformedResponse, Some(Stage::Response))
        }
        outcome => {
            let stage = test.failed_at.or(Some(Stage::Request));
            let verdict = match after_connect_verdict(outcome, judged.control.passed, injected) {
                KeywordVerdict::Rst => HttpVerdict::RstInjection,
                KeywordVerdict::Timeout => HttpVerdict::Timeout,
                KeywordVerdict::Eof => HttpVerdict::Eof,
                KeywordVerdict::Error => HttpVerdict::Error,
                KeywordVerdict::Inconclusive => HttpVerdict::Inconclusive,
            };
            (verdict, stage)
        }
    };
    if test_outcome.at_connect() && judged.control.passed {
        judged.evidence.push(WebEvidence::new(
            WebEvidenceKind::ConnectFailed,
            None,
            "the control connected but the test's connect failed: a connect carries no name, so \
             this is not keyword blocking (a transient failure or residual blocking)",
        ));
    }
    if verdict == HttpVerdict::Inconclusive {
        judged.evidence.push(WebEvidence::new(
            WebEvidenceKind::ControlFailed,
            None,
            "the test failed but so did the benign control on the same address and port: the \
             server or path is broken, not evidently the name",
        ));
    }
    let injector = judgement.filter(|j| j.injected).and_then(|j| j.injector);
    IpResult {
        ip: test.ip,
        port: test.port,
        verdict,
        stage,
        injector,
        control: judged.control,
        residual: judged.residual,
        evidence: judged.evidence,
        path,
        observations,
    }
}

/// Judge one address's TLS probes (captured packets judged with the built-in
/// injector fingerprints).
pub fn classify_tls_attempt(
    observations: AttemptObservations<TlsObservation>,
    path: PathFacts,
    control_name: &str,
) -> TlsIpResult {
    classify_tls_attempt_with_injectors(
        observations,
        path,
        control_name,
        InjectorSet::builtin_shared(),
    )
}

/// Judge one address's TLS probes.
pub fn classify_tls_attempt_with_injectors(
    observations: AttemptObservations<TlsObservation>,
    path: PathFacts,
    control_name: &str,
    injectors: &InjectorSet,
) -> TlsIpResult {
    let test = &observations.test;
    let control_outcome = observations.control.outcome();
    let control = ControlSummary {
        name: control_name.to_owned(),
        outcome: control_outcome,
        passed: observations.control.control_passed(),
    };
    let test_outcome = test.outcome();
    let judgement = packet_judgement(
        test.capture.as_ref(),
        observations.control.capture.as_ref(),
        injectors,
    );
    let injected = judgement.as_ref().is_some_and(|j| j.injected);
    let mut judged = common_evidence(
        control,
        describe_tls(&observations.control),
        test_outcome,
        observations
            .residual
            .as_ref()
            .map(|r| (r.control_passed(), describe_tls(r))),
        observations.residual_after_ms,
        judgement.as_ref(),
        &path,
    );
    let test_kind = if test_outcome == AttemptOutcome::Ok {
        WebEvidenceKind::HandshakeCompleted
    } else {
        outcome_kind(test_outcome)
    };
    judged.evidence.insert(
        1,
        WebEvidence::new(test_kind, Some(ProbeRole::Test), describe_tls(test)),
    );
    let (verdict, stage) = match test_outcome {
        AttemptOutcome::Ok => {
            let validity = test.validity.as_ref();
            let leaf = test.chain.first().map(|c| {
                format!(
                    "leaf subject {:?}, issuer {:?}, names {:?}, valid {} to {}, sha256 {}",
                    c.subject, c.issuer, c.san_dns, c.not_before, c.not_after, c.sha256
                )
            });
            if validity.is_some_and(|v| v.valid) {
                judged.evidence.push(WebEvidence::new(
                    WebEvidenceKind::CertificateValid,
                    Some(ProbeRole::Test),
                    format!(
                        "the chain is valid for {:?}; {}",
                        test.name,
                        leaf.unwrap_or_default()
                    ),
                ));
                (TlsVerdict::Ok, None)
            } else {
                let problem = validity
                    .and_then(|v| v.problem)
                    .map_or("unknown", cert_problem_text);
                let error = validity.and_then(|v| v.error.clone()).unwrap_or_default();
                judged.evidence.push(WebEvidence::new(
                    WebEvidenceKind::CertificateInvalid,
                    Some(ProbeRole::Test),
                    format!(
                        "the chain is not valid for {:?}: {problem}: {error}; {}",
                        test.name,
                        leaf.unwrap_or_else(|| "no certificate".to_owned())
                    ),
                ));
                (TlsVerdict::CertInvalid, Some(Stage::Handshake))
            }
        }
        AttemptOutcome::Alert => (TlsVerdict::TlsAlert, Some(Stage::Handshake)),
        AttemptOutcome::Refused | AttemptOutcome::ConnectReset if injected => {
            (TlsVerdict::RstInjection, Some(Stage::Connect))
        }
        AttemptOutcome::Refused | AttemptOutcome::ConnectReset => {
            (TlsVerdict::Refused, Some(Stage::Connect))
        }
        AttemptOutcome::ConnectTimeout => (TlsVerdict::Timeout, Some(Stage::Connect)),
        AttemptOutcome::ConnectError => (TlsVerdict::Error, Some(Stage::Connect)),
        outcome => {
            let verdict = match after_connect_verdict(outcome, judged.control.passed, injected) {
                KeywordVerdict::Rst => TlsVerdict::RstInjection,
                KeywordVerdict::Timeout => TlsVerdict::Timeout,
                KeywordVerdict::Eof => TlsVerdict::Eof,
                KeywordVerdict::Error => TlsVerdict::Error,
                KeywordVerdict::Inconclusive => TlsVerdict::Inconclusive,
            };
            (verdict, Some(Stage::Handshake))
        }
    };
    if test_outcome.at_connect() && judged.control.passed {
        judged.evidence.push(WebEvidence::new(
            WebEvidenceKind::ConnectFailed,
            None,
            "the control connected but the test's connect failed: a connect carries no name, so \
             this is not keyword blocking (a transient failure or residual blocking)",
        ));
    }
    if verdict == TlsVerdict::Inconclusive {
        judged.evidence.push(WebEvidence::new(
            WebEvidenceKind::ControlFailed,
            None,
            "the test failed but so did the benign control on the same address and port: the \
             server or path is broken, not evidently the name",
        ));
    }
    let injector = judgement.filter(|j| j.injected).and_then(|j| j.injector);
    IpResult {
        ip: test.ip,
        port: test.port,
        verdict,
        stage,
        injector,
        control: judged.control,
        residual: judged.residual,
        evidence: judged.evidence,
        path,
        observations,
    }
}

/// Rank for choosing the headline address: blocking first, then success, then
/// honest failures, then the rest.
fn rank(claim: Claim, is_ok: bool) -> u8 {
    match claim {
        Claim::Blocked(_) => 0,
        Claim::Clean if is_ok => 1,
        Claim::Clean => 2,
        Claim::Unclear => 3,
        Claim::NotRun => 4,
    }
}

fn assess<V, O>(
    name: &str,
    attempts: Vec<IpResult<V, O>>,
    claim: impl Fn(&IpResult<V, O>) -> Claim,
    is_ok: impl Fn(&IpResult<V, O>) -> bool,
    timings: impl Fn(&O) -> Timings,
    no_attempt: V,
) -> WebAssessment<V, O>
where
    V: Copy + fmt::Display,
{
    let Some(best) = attempts
        .iter()
        .enumerate()
        .min_by_key(|(i, a)| (rank(claim(a), is_ok(a)), *i))
        .map(|(i, _)| i)
    else {
        return WebAssessment {
            verdict: no_attempt,
            stage: None,
            ip: None,
            port: None,
            name: name.to_owned(),
            control: None,
            residual: None,
            reason: Some("no address was probed".to_owned()),
            injector: None,
            evidence: Vec::new(),
            timings: None,
            attempts,
        };
    };
    let head = &attempts[best];
    let mut evidence = head.evidence.clone();
    if attempts.len() > 1 {
        let others: Vec<String> = attempts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != best)
            .map(|(_, a)| {
                let stage = a
                    .stage
                    .map(|s| format!(" at {}", s.as_str()))
                    .unwrap_or_default();
                format!("{}:{} {}{stage}", a.ip, a.port, a.verdict)
            })
            .collect();
        evidence.push(WebEvidence::new(
            WebEvidenceKind::OtherAddresses,
            None,
            format!("other addresses: {}", others.join("; ")),
        ));
    }
    WebAssessment {
        verdict: head.verdict,
        stage: head.stage,
        ip: Some(head.ip),
        port: Some(head.port),
        name: name.to_owned(),
        control: Some(head.control.clone()),
        residual: head.residual,
        reason: None,
        injector: head.injector.clone(),
        evidence,
        timings: Some(timings(&head.observations.test)),
        attempts,
    }
}

/// The HTTP verdict for a target from its addresses' results.
pub fn assess_http(name: &str, attempts: Vec<HttpIpResult>) -> HttpAssessment {
    assess(
        name,
        attempts,
        |a| a.verdict.claim(a.stage),
        |a| a.verdict == HttpVerdict::Ok,
        |o: &HttpObservation| Timings {
            connect_ms: o.connect.connect_ms,
            first_byte_ms: o.first_byte_ms,
            handshake_ms: None,
            total_ms: o.total_ms,
        },
        HttpVerdict::Skipped,
    )
}

/// The TLS verdict for a target from its addresses' results.
pub fn assess_tls(name: &str, attempts: Vec<TlsIpResult>) -> TlsAssessment {
    assess(
        name,
        attempts,
        |a| a.verdict.claim(a.stage),
        |a| a.verdict == TlsVerdict::Ok,
        |o: &TlsObservation| Timings {
            connect_ms: o.connect.connect_ms,
            first_byte_ms: o.first_byte_ms,
            handshake_ms: o.handshake_ms,
            total_ms: o.total_ms,
        },
        TlsVerdict::Skipped,
    )
}

fn skipped<V, O>(name: &str, verdict: V, reason: &str) -> WebAssessment<V, O> {
    WebAssessment {
        verdict,
        stage: None,
        ip: None,
        port: None,
        name: name.to_owned(),
        control: None,
        residual: None,
        reason: Some(reason.to_owned()),
        injector: None,
        evidence: vec![WebEvidence::new(
            WebEvidenceKind::NoTrustedAddress,
            None,
            reason,
        )],
        timings: None,
        attempts: Vec::new(),
    }
}

pub fn skipped_http(name: &str, reason: &str) -> HttpAssessment {
    skipped(name, HttpVerdict::Skipped, reason)
}

pub fn skipped_tls(name: &str, reason: &str) -> TlsAssessment {
    skipped(name, TlsVerdict::Skipped, reason)
}

/// What the DNS stage says about blocking.
fn dns_claim(dns: &DnsAssessment) -> Claim {
    let selective_silence = dns
        .evidence
        .iter()
        .any(|e| e.kind == EvidenceKind::SelectiveSilence);
    dns.verdict.claim(selective_silence)
}

/// `blocking` and `accessible` for a target from its stage verdicts (absent stages
/// were not run). Blocking is the first layer, in the order a user meets them (DNS,
/// TCP/IP, HTTP, TLS), with a censorship claim; `false` when every stage that ran is
/// clean; `null` when some stage is unclear and none claims blocking.
pub fn target_blocking(
    dns: Option<&DnsAssessment>,
    http: Option<&HttpAssessment>,
    tls: Option<&TlsAssessment>,
) -> TargetBlocking {
    let claims: Vec<Claim> = [
        dns.map(dns_claim),
        http.map(HttpAssessment::claim),
        tls.map(TlsAssessment::claim),
    ]
    .into_iter()
    .flatten()
    .collect();
    let blocking = Blocking::from_claims(&claims);
    let web_ok = http.is_some_and(|h| h.verdict == HttpVerdict::Ok)
        || tls.is_some_and(|t| matches!(t.verdict, TlsVerdict::Ok | TlsVerdict::CertInvalid));
    let web_ran = http.is_some_and(|h| h.verdict != HttpVerdict::Skipped)
        || tls.is_some_and(|t| t.verdict != TlsVerdict::Skipped);
    let accessible = if matches!(blocking, Blocking::At(_))
        || dns.is_some_and(|d| d.verdict == DnsVerdict::Nxdomain)
    {
        Some(false)
    } else if web_ok {
        Some(true)
    } else if web_ran {
        Some(false)
    } else {
        None
    };
    TargetBlocking {
        blocking,
        accessible,
    }
}

/// Why a chain is invalid, in words, for summaries.
pub fn cert_problem_text(problem: CertProblem) -> &'static str {
    match problem {
        CertProblem::NoCertificate => "no certificate",
        CertProblem::UnknownIssuer => "unknown issuer (untrusted or self-signed)",
        CertProblem::NameMismatch => "certificate not valid for the name",
        CertProblem::Expired => "expired",
        CertProblem::NotYetValid => "not yet valid",
        CertProblem::Revoked => "revoked",
        CertProblem::BadSignature => "bad signature",
        CertProblem::BadEncoding => "bad encoding",
        CertProblem::InvalidPurpose => "not for TLS servers",
        CertProblem::NoTrustAnchors => "no trust anchors configured",
        CertProblem::Other => "other",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::observation::web::{
        CertValidity, ConnectObservation, HttpHeader, HttpResponse, TlsAlert,
    };
    use crate::pathguard::AccessMode;
    use crate::vocab::BlockingLayer;
    use std::net::IpAddr;
    use std::net::Ipv4Addr;

    pub(crate) const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));

    pub(crate) fn connect(status: ConnectStatus) -> ConnectObservation {
        ConnectObservation {
            status,
            errno: None,
            error: None,
            connect_ms: 1.0,
            local_addr: None,
        }
    }

    pub(crate) fn http(
        host: &str,
        status: ConnectStatus,
        end: Option<HttpExchangeEnd>,
        body: Option<(u16, &str)>,
    ) -> HttpObservation {
        let failed_at = match (status, end) {
            (ConnectStatus::Ok, Some(HttpExchangeEnd::Complete)) => None,
            (ConnectStatus::Ok, _) => Some(Stage::Request),
            _ => Some(Stage::Connect),
        };
        HttpObservation {
            ip: IP,
            port: 80,
            host: host.into(),
            connect: connect(status),
            request_length: 90,
            request_bytes_sent: 90,
            exchange: end,
            failed_at,
            bytes_received: 0,
            response: body.map(|(code, text)| HttpResponse {
                version: "HTTP/1.1".into(),
                status: code,
                reason: String::new(),
                headers: vec![HttpHeader {
                    name: "Server".into(),
                    value: "lab".into(),
                }],
                header_bytes: 40,
                content_length: None,
                chunked: false,
                body_length: text.len() as u64,
                body_capped: false,
                body_sha256: String::new(),
                title: crate::probe::web::http::extract_title(text.as_bytes()),
                body_prefix: text.as_bytes().to_vec(),
            }),
            error: None,
            errno: None,
            first_byte_ms: None,
            total_ms: 2.0,
            capture: None,
        }
    }

    pub(crate) fn ok_http(host: &str) -> HttpObservation {
        http(
            host,
            ConnectStatus::Ok,
            Some(HttpExchangeEnd::Complete),
            Some((200, "<title>fine</title>")),
        )
    }

    pub(crate) fn tls(
        name: &str,
        status: ConnectStatus,
        end: Option<TlsHandshakeEnd>,
        valid: Option<bool>,
    ) -> TlsObservation {
        TlsObservation {
            ip: IP,
            port: 443,
            name: name.into(),
            sni: Some(name.into()),
            connect: connect(status),
            handshake: end,
            progress: None,
            failed_at: match end {
                Some(TlsHandshakeEnd::Complete) => None,
                Some(_) => Some(Stage::Handshake),
                None => Some(Stage::Connect),
            },
            client_hello_bytes: 300,
            bytes_sent: 300,
            bytes_received: 0,
            version: None,
            cipher: None,
            alpn: None,
            alert: (end == Some(TlsHandshakeEnd::AlertReceived)).then(|| TlsAlert {
                description: "handshake_failure".into(),
                code: 40,
            }),
            error: None,
            errno: None,
            chain: Vec::new(),
            validity: valid.map(|v| CertValidity {
                valid: v,
                checked_name: name.into(),
                problem: (!v).then_some(CertProblem::UnknownIssuer),
                error: (!v).then(|| "invalid peer certificate: UnknownIssuer".to_owned()),
            }),
            first_byte_ms: None,
            handshake_ms: None,
            total_ms: 2.0,
            capture: None,
        }
    }

    pub(crate) fn path() -> PathFacts {
        PathFacts {
            mode: AccessMode::Shared,
            requeues: 0,
            waited_ms: 0.0,
            penalty_outlived: false,
            attribution: None,
        }
    }

    pub(crate) fn judge_http(
        control: HttpObservation,
        test: HttpObservation,
        residual: Option<HttpObservation>,
    ) -> HttpIpResult {
        let obs = AttemptObservations {
            control,
            test,
            residual,
            residual_after_ms: Some(0.1),
        };
        classify_http_attempt(obs, path(), "example.com", &BlockpageSet::builtin())
    }

    pub(crate) fn judge_tls(
        control: TlsObservation,
        test: TlsObservation,
        residual: Option<TlsObservation>,
    ) -> TlsIpResult {
        let obs = AttemptObservations {
            control,
            test,
            residual,
            residual_after_ms: Some(0.1),
        };
        classify_tls_attempt(obs, path(), "example.com")
    }

    pub(crate) fn kinds<V, O>(r: &IpResult<V, O>) -> Vec<WebEvidenceKind> {
        r.evidence.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn keyword_reset_with_passing_control_is_rst_injection_with_residual() {
        let reset = http(
            "blocked.test",
            ConnectStatus::Ok,
            Some(HttpExchangeEnd::ResetAfterRequest),
            None,
        );
        let residual = http(
            "example.com",
            ConnectStatus::Ok,
            Some(HttpExchangeEnd::ResetAfterRequest),
            None,
        );
        let r = judge_http(ok_http("example.com"), reset, Some(residual));
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::RstInjection, Some(Stage::Request))
        );
        assert_eq!(r.residual, Some(true));
        assert!(r.control.passed);
        assert_eq!(
            r.verdict.claim(r.stage),
            Claim::Blocked(BlockingLayer::Http)
        );
        let k = kinds(&r);
        assert!(k.contains(&WebEvidenceKind::ControlPassed));
        assert!(k.contains(&WebEvidenceKind::ConnectionReset));
        assert!(k.contains(&WebEvidenceKind::ResidualBlocking));
    }

    #[test]
    fn failure_with_failing_control_is_inconclusive() {
        let timeout = |h| {
            http(
                h,
                ConnectStatus::Ok,
                Some(HttpExchangeEnd::TimeoutAfterRequest),
                None,
            )
        };
        let r = judge_http(timeout("example.com"), timeout("blocked.test"), None);
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::Inconclusive, Some(Stage::Request))
        );
        assert_eq!(r.verdict.claim(r.stage), Claim::Unclear);
        assert!(!r.control.passed);
    }

    #[test]
    fn timeout_and_eof_with_passing_control_are_keyword_blocking() {
        let test = http(
            "a.test",
            ConnectStatus::Ok,
            Some(HttpExchangeEnd::TimeoutAfterRequest),
            None,
        );
        let r = judge_http(ok_http("example.com"), test, None);
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::Timeout, Some(Stage::Request))
        );
        let test = http(
            "a.test",
            ConnectStatus::Ok,
            Some(HttpExchangeEnd::EofWithoutResponse),
            None,
        );
        let r = judge_http(ok_http("example.com"), test, None);
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::Eof, Some(Stage::Request))
        );
        assert_eq!(
            r.verdict.claim(r.stage),
            Claim::Blocked(BlockingLayer::Http)
        );
    }

    #[test]
    fn malformed_response_is_its_own_verdict_and_never_a_claim() {
        let malformed = |h| {
            let mut obs = http(
                h,
                ConnectStatus::Ok,
                Some(HttpExchangeEnd::MalformedResponse),
                None,
            );
            obs.failed_at = Some(Stage::Response);
            obs.bytes_received = 4147;
            obs.error = Some("chunk-size line exceeds 4096 bytes without ending".into());
            obs
        };
        // Whether the control passed or got the same garbage.
        for control in [ok_http("example.com"), malformed("example.com")] {
            let r = judge_http(control, malformed("a.test"), None);
            assert_eq!(
                (r.verdict, r.stage),
                (HttpVerdict::MalformedResponse, Some(Stage::Response))
            );
            assert_eq!(r.verdict.claim(r.stage), Claim::Unclear);
            assert_eq!(r.verdict.as_str(), "malformed_response");
            let test_evidence = &r.evidence[1];
            assert_eq!(test_evidence.kind, WebEvidenceKind::MalformedResponse);
            assert!(test_evidence.detail.contains("chunk-size line"));
        }
        let control = malformed("example.com");
        assert_eq!(control.outcome(), AttemptOutcome::MalformedResponse);
        assert!(!control.control_passed());
        assert!(
            !control.transport_failure(),
            "no residual check after garbage"
        );
    }

    #[test]
    fn both_refused_at_connect_is_refused_and_not_a_claim() {
        let refused = |h| http(h, ConnectStatus::Refused, None, None);
        let r = judge_http(refused("example.com"), refused("a.test"), None);
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::Refused, Some(Stage::Connect))
        );
        assert_eq!(r.verdict.claim(r.stage), Claim::Unclear);
        assert!(kinds(&r).contains(&WebEvidenceKind::BothFailedAtConnect));
        let timeouts = |h| http(h, ConnectStatus::Timeout, None, None);
        let r = judge_http(timeouts("example.com"), timeouts("a.test"), None);
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::Timeout, Some(Stage::Connect))
        );
        assert_eq!(r.verdict.claim(r.stage), Claim::Unclear);
    }

    fn capture_of(
        packets: Vec<crate::observation::packets::PacketFacts>,
        trigger: Option<usize>,
    ) -> CaptureObservation {
        CaptureObservation::Captured(ConnectionPackets {
            flow: crate::classify::packets::tests::flow(),
            trigger,
            packets,
            dropped: 0,
        })
    }

    #[test]
    fn captured_injection_turns_a_refused_connect_into_tcp_ip_blocking() {
        use crate::classify::packets::tests::{CLIENT_ISN, tcp};
        use crate::observation::packets::PacketDirection::{ToClient, ToServer};
        let syn = tcp(0, ToServer, (64, 7, true), "SYN", (CLIENT_ISN, 0), &[]);
        let rst = |at| {
            tcp(
                at,
                ToClient,
                (45, 0x3a2b, true),
                "RST+ACK",
                (0, CLIENT_ISN + 1),
                &[],
            )
        };
        // Three identical RST+ACK answer the SYN within a millisecond: a type II burst.
        let mut test = http("a.test", ConnectStatus::Refused, None, None);
        test.capture = Some(capture_of(
            vec![syn.clone(), rst(2_000), rst(2_100), rst(2_200)],
            None,
        ));
        let without = http("a.test", ConnectStatus::Refused, None, None);
        let r = judge_http(
            http("example.com", ConnectStatus::Refused, None, None),
            test,
            None,
        );
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::RstInjection, Some(Stage::Connect))
        );
        assert_eq!(
            r.verdict.claim(r.stage),
            Claim::Blocked(BlockingLayer::TcpIp)
        );
        assert!(kinds(&r).contains(&WebEvidenceKind::CaptureInjectedRst));
        assert!(kinds(&r).contains(&WebEvidenceKind::InjectorMatched));
        assert_eq!(r.injector.as_ref().unwrap().name, "gfw_type_ii");
        let a = assess_http("a.test", vec![r]);
        assert_eq!(a.injector.as_ref().unwrap().name, "gfw_type_ii");
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["injector"]["name"], "gfw_type_ii");
        assert!(json["injector"]["facts"].as_array().unwrap().len() >= 3);

        // Verdicts keep working without capture: a refused connect stays `refused`.
        let r = judge_http(
            http("example.com", ConnectStatus::Refused, None, None),
            without,
            None,
        );
        assert_eq!(
            (r.verdict, r.stage, r.injector),
            (HttpVerdict::Refused, Some(Stage::Connect), None)
        );
    }

    #[test]
    fn a_genuine_refusal_stays_refused_with_the_controls_syn_ack_as_baseline() {
        use crate::classify::packets::tests::{CLIENT_ISN, connection, tcp};
        use crate::observation::packets::PacketDirection::{ToClient, ToServer};
        let mut control = ok_http("example.com");
        control.capture = Some(CaptureObservation::Captured(connection(Vec::new())));
        let mut test = http("a.test", ConnectStatus::Refused, None, None);
        let refusal = |ttl| {
            capture_of(
                vec![
                    tcp(0, ToServer, (64, 7, true), "SYN", (CLIENT_ISN, 0), &[]),
                    tcp(
                        20_000,
                        ToClient,
                        (ttl, 0, true),
                        "RST+ACK",
                        (0, CLIENT_ISN + 1),
                        &[],
                    ),
                ],
                None,
            )
        };
        test.capture = Some(refusal(52));
        let r = judge_http(control.clone(), test.clone(), None);
        assert_eq!(r.verdict, HttpVerdict::Refused);
        assert!(kinds(&r).contains(&WebEvidenceKind::CaptureNoInjection));
        // The same RST with a TTL unlike the control's SYN-ACK was injected.
        test.capture = Some(refusal(40));
        let r = judge_http(control, test, None);
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::RstInjection, Some(Stage::Connect))
        );
        assert_eq!(r.injector.as_ref().unwrap().name, UNKNOWN_INJECTOR);
    }

    #[test]
    fn injected_packets_after_the_trigger_name_the_injector_even_when_the_control_failed() {
        use crate::classify::packets::tests::{connection, reply};
        let reset = |h| tls(h, ConnectStatus::Ok, Some(TlsHandshakeEnd::Reset), None);
        let mut test = reset("a.test");
        test.capture = Some(CaptureObservation::Captured(connection(vec![reply(
            8_000,
            (58, 1, false),
            "RST+ACK",
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
        )])));
        let r = judge_tls(reset("example.com"), test, None);
        assert_eq!(
            (r.verdict, r.stage),
            (TlsVerdict::RstInjection, Some(Stage::Handshake))
        );
        assert_eq!(r.injector.as_ref().unwrap().name, "henan");
        // An injected FIN: `eof`, not inconclusive.
        let eof = |h| tls(h, ConnectStatus::Ok, Some(TlsHandshakeEnd::Eof), None);
        let mut test = eof("a.test");
        test.capture = Some(CaptureObservation::Captured(connection(vec![reply(
            12_000,
            (40, 0x4444, false),
            "FIN+ACK",
            &[],
        )])));
        let r = judge_tls(eof("example.com"), test, None);
        assert_eq!(r.verdict, TlsVerdict::Eof);
        assert_eq!(r.injector.as_ref().unwrap().name, UNKNOWN_INJECTOR);
        // Without capture the failing control keeps it inconclusive.
        let r = judge_tls(eof("example.com"), eof("a.test"), None);
        assert_eq!((r.verdict, r.injector), (TlsVerdict::Inconclusive, None));
    }

    #[test]
    fn blockpage_is_matched() {
        let raw = String::from_utf8(crate::servers::web::lab_blockpage()).unwrap();
        let body = raw.split_once("\r\n\r\n").unwrap().1.to_owned();
        let test = http(
            "a.test",
            ConnectStatus::Ok,
            Some(HttpExchangeEnd::Complete),
            Some((403, &body)),
        );
        let r = judge_http(ok_http("example.com"), test, None);
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::Blockpage, Some(Stage::Response))
        );
        assert!(kinds(&r).contains(&WebEvidenceKind::BlockpageMatch));
        let r = judge_http(ok_http("example.com"), ok_http("a.test"), None);
        assert_eq!((r.verdict, r.stage), (HttpVerdict::Ok, None));
    }

    #[test]
    fn judge_web_matches_block_pages_then_drops_the_kept_bodies() {
        let raw = String::from_utf8(crate::servers::web::lab_blockpage()).unwrap();
        let body = raw.split_once("\r\n\r\n").unwrap().1.to_owned();
        let test = http(
            "a.test",
            ConnectStatus::Ok,
            Some(HttpExchangeEnd::Complete),
            Some((403, &body)),
        );
        let observations = WebObservations {
            name: "a.test".into(),
            addresses: None,
            http: Some(StageRun::Probed(vec![crate::observation::web::PathRun {
                observations: AttemptObservations {
                    control: ok_http("example.com"),
                    test,
                    residual: None,
                    residual_after_ms: None,
                },
                path: path(),
            }])),
            tls: Some(StageRun::Skipped("no address".into())),
        };
        let result = judge_web(observations, "example.com", &BlockpageSet::builtin());
        let http = result.http.unwrap();
        assert_eq!(http.verdict, HttpVerdict::Blockpage);
        let kept = &http.attempts[0].observations;
        for o in [&kept.control, &kept.test] {
            assert!(o.response.as_ref().unwrap().body_prefix.is_empty());
        }
        assert_eq!(result.tls.unwrap().verdict, TlsVerdict::Skipped);
    }

    #[test]
    fn tls_verdicts() {
        let done = |n, valid| {
            tls(
                n,
                ConnectStatus::Ok,
                Some(TlsHandshakeEnd::Complete),
                Some(valid),
            )
        };
        let r = judge_tls(done("example.com", false), done("a.test", true), None);
        assert_eq!((r.verdict, r.stage), (TlsVerdict::Ok, None));
        let r = judge_tls(done("example.com", false), done("a.test", false), None);
        assert_eq!(
            (r.verdict, r.stage),
            (TlsVerdict::CertInvalid, Some(Stage::Handshake))
        );
        assert_eq!(r.verdict.claim(r.stage), Claim::Clean);
        assert!(kinds(&r).contains(&WebEvidenceKind::CertificateInvalid));
        // An alert to the control still proves the path: the server speaks TLS.
        let alert = |n| {
            tls(
                n,
                ConnectStatus::Ok,
                Some(TlsHandshakeEnd::AlertReceived),
                None,
            )
        };
        let reset = |n| tls(n, ConnectStatus::Ok, Some(TlsHandshakeEnd::Reset), None);
        let r = judge_tls(
            alert("example.com"),
            reset("a.test"),
            Some(done("example.com", false)),
        );
        assert_eq!(
            (r.verdict, r.stage),
            (TlsVerdict::RstInjection, Some(Stage::Handshake))
        );
        assert_eq!(r.residual, Some(false));
        assert_eq!(r.verdict.claim(r.stage), Claim::Blocked(BlockingLayer::Tls));
        let r = judge_tls(done("example.com", true), alert("a.test"), None);
        assert_eq!(
            (r.verdict, r.stage),
            (TlsVerdict::TlsAlert, Some(Stage::Handshake))
        );
        assert_eq!(r.verdict.claim(r.stage), Claim::Unclear);
        let r = judge_tls(reset("example.com"), reset("a.test"), None);
        assert_eq!(r.verdict, TlsVerdict::Inconclusive);
    }

    #[test]
    fn headline_prefers_blocking_then_ok_and_lists_other_addresses() {
        let ok = judge_http(ok_http("example.com"), ok_http("a.test"), None);
        let mut blocked = judge_http(
            ok_http("example.com"),
            http(
                "a.test",
                ConnectStatus::Ok,
                Some(HttpExchangeEnd::ResetAfterRequest),
                None,
            ),
            None,
        );
        blocked.ip = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let refused = judge_http(
            http("example.com", ConnectStatus::Refused, None, None),
            http("a.test", ConnectStatus::Refused, None, None),
            None,
        );
        let a = assess_http("a.test", vec![ok.clone(), blocked]);
        assert_eq!(a.verdict, HttpVerdict::RstInjection);
        assert_eq!(a.ip, Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2))));
        assert!(
            a.evidence
                .iter()
                .any(|e| e.kind == WebEvidenceKind::OtherAddresses)
        );
        let a = assess_http("a.test", vec![refused, ok]);
        assert_eq!(a.verdict, HttpVerdict::Ok);
        assert!(a.timings.is_some());
    }

    fn dns_assessment(verdict: DnsVerdict) -> DnsAssessment {
        DnsAssessment {
            verdict,
            method: None,
            methods: Vec::new(),
            rcode: None,
            forged_ips: Vec::new(),
            genuine_ips: Vec::new(),
            evidence: Vec::new(),
        }
    }

    #[test]
    fn target_blocking_rules() {
        let http_ok = assess_http(
            "a",
            vec![judge_http(ok_http("example.com"), ok_http("a"), None)],
        );
        let http_rst = assess_http(
            "a",
            vec![judge_http(
                ok_http("example.com"),
                http(
                    "a",
                    ConnectStatus::Ok,
                    Some(HttpExchangeEnd::ResetAfterRequest),
                    None,
                ),
                None,
            )],
        );
        let http_refused = assess_http(
            "a",
            vec![judge_http(
                http("example.com", ConnectStatus::Refused, None, None),
                http("a", ConnectStatus::Refused, None, None),
                None,
            )],
        );
        let done = |n, valid| {
            tls(
                n,
                ConnectStatus::Ok,
                Some(TlsHandshakeEnd::Complete),
                Some(valid),
            )
        };
        let tls_ok = assess_tls(
            "a",
            vec![judge_tls(done("example.com", false), done("a", true), None)],
        );
        let tls_rst = assess_tls(
            "a",
            vec![judge_tls(
                done("example.com", true),
                tls("a", ConnectStatus::Ok, Some(TlsHandshakeEnd::Reset), None),
                None,
            )],
        );
        let dns_ok = dns_assessment(DnsVerdict::Ok);
        let poisoned = dns_assessment(DnsVerdict::DnsPoisoning);
        let nx = dns_assessment(DnsVerdict::Nxdomain);

        let b = target_blocking(Some(&dns_ok), Some(&http_ok), Some(&tls_ok));
        assert_eq!((b.blocking, b.accessible), (Blocking::No, Some(true)));
        let b = target_blocking(Some(&poisoned), Some(&http_ok), Some(&tls_rst));
        assert_eq!(
            (b.blocking, b.accessible),
            (Blocking::At(BlockingLayer::Dns), Some(false))
        );
        let b = target_blocking(Some(&dns_ok), Some(&http_rst), Some(&tls_rst));
        assert_eq!(b.blocking, Blocking::At(BlockingLayer::Http));
        let b = target_blocking(Some(&dns_ok), Some(&http_ok), Some(&tls_rst));
        assert_eq!(
            (b.blocking, b.accessible),
            (Blocking::At(BlockingLayer::Tls), Some(false))
        );
        let b = target_blocking(Some(&dns_ok), Some(&http_refused), None);
        assert_eq!(
            (b.blocking, b.accessible),
            (Blocking::Inconclusive, Some(false))
        );
        let skipped = skipped_http("gone", "no address");
        let b = target_blocking(Some(&nx), Some(&skipped), None);
        assert_eq!((b.blocking, b.accessible), (Blocking::No, Some(false)));
        let b = target_blocking(Some(&dns_ok), None, None);
        assert_eq!((b.blocking, b.accessible), (Blocking::No, None));
    }

    #[test]
    fn blocking_serialises_as_false_layer_or_null() {
        let json = |b| {
            serde_json::to_string(&TargetBlocking {
                blocking: b,
                accessible: Some(false),
            })
            .unwrap()
        };
        assert_eq!(
            json(Blocking::No),
            r#"{"blocking":false,"accessible":false}"#
        );
        assert_eq!(
            json(Blocking::At(BlockingLayer::TcpIp)),
            r#"{"blocking":"tcp_ip","accessible":false}"#
        );
        assert_eq!(
            json(Blocking::Inconclusive),
            r#"{"blocking":null,"accessible":false}"#
        );
        for b in [
            Blocking::No,
            Blocking::Inconclusive,
            Blocking::At(BlockingLayer::Dns),
            Blocking::At(BlockingLayer::Http),
            Blocking::At(BlockingLayer::Tls),
        ] {
            let back: TargetBlocking = serde_json::from_str(&json(b)).unwrap();
            assert_eq!(back.blocking, b);
        }
        assert!(
            serde_json::from_str::<TargetBlocking>(r#"{"blocking":true,"accessible":null}"#)
                .is_err()
        );
    }

    #[test]
    fn verdict_strings_match_serde() {
        for v in HttpVerdict::ALL {
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.as_str())
            );
        }
        for v in TlsVerdict::ALL {
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.as_str())
            );
        }
    }
}
