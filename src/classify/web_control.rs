//! Judging with a web control: what `censorprobe helper` saw from its uncensored vantage
//! decides what one vantage cannot.
//!
//! Rules (the README's verdict table says the same):
//! - `tcp_ip_blocking` (stage `connect`): our benign control and our test both failed at
//!   `connect` on an (ip, port) — timeout, refused, reset or another connect error — and
//!   the web control connected to that same (ip, port). The web control answered, so
//!   our own network reaches the Internet: the address is blocked for us. An RST at
//!   connect that packet capture proved injected stays `rst_injection` (more precise).
//! - `down` (stage `connect`): both of ours failed at connect and the web control's
//!   connect failed the same way (refused ↔ refused, timeout ↔ timeout, reset ↔ reset,
//!   error ↔ error): the server is down or the port closed, for everybody. OONI's
//!   classic analysis (probe-cli `webconnectivitylte/analysisclassic.go`, step 4.2:
//!   "both probe and control failed" → `setWebsiteDown`: `blocking: false`,
//!   `accessible: false`) takes any two failures; a different failure (we time out,
//!   the helper is refused) is left undecided here, as different failures may have
//!   different causes.
//! - `http_diff` (stage `response`): our test got a complete response that matches no
//!   block-page fingerprint, our benign control on the same (ip, port) passed, the web
//!   control got a complete response from the same (ip, port), and the two responses
//!   differ by OONI's `web_connectivity` rule ([`HttpComparison::http_diff`]). Unlike
//!   OONI, a web control response whose status is not 2xx and differs from ours decides
//!   nothing (OONI then has no `status_code_match` and calls it http-diff; but the
//!   helper did not get the page either).
//! - Nothing changes when the web control failed, refused to contact the address
//!   (bogon, allow-list), has no observation of that (ip, port), or when our own
//!   control failed after connecting.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::observation::web::{
    AttemptOutcome, ConnectObservation, ConnectStatus, HttpObservation, HttpResponse,
};
use crate::observation::web_control::WebControlResult;
use crate::record::assessment::{HttpIpResult, TlsIpResult, WebEvidence, WebEvidenceKind};
use crate::vocab::{HttpVerdict, Stage, TlsVerdict};

/// OONI's body proportion threshold: `body_length_match` when the smaller body is more
/// than this share of the larger (probe-cli `webconnectivitylte/analysishttpdiff.go`,
/// `bodyProportionFactor`).
pub const BODY_PROPORTION_FACTOR: f64 = 0.7;

/// Title words shorter than this (in bytes, as OONI counts them) are not compared
/// (probe-cli `minipipeline/httpdiff.go`, `minWordLength`).
pub const TITLE_MIN_WORD_LENGTH: usize = 5;

/// Header names too common to tell two servers apart (probe-cli
/// `minipipeline/httpdiff.go`, `httpDiffCommonHeaders`), lower case.
pub const COMMON_HEADERS: &[&str] = &[
    "date",
    "content-type",
    "server",
    "cache-control",
    "vary",
    "set-cookie",
    "location",
    "expires",
    "x-powered-by",
    "content-encoding",
    "last-modified",
    "accept-ranges",
    "pragma",
    "x-frame-options",
    "etag",
    "x-content-type-options",
    "age",
    "via",
    "p3p",
    "x-xss-protection",
    "content-language",
    "cf-ray",
    "strict-transport-security",
    "link",
    "x-varnish",
];

/// OONI `web_connectivity`'s comparison of the probe's response with the control's.
/// Each `None` is a comparison OONI does not make for these responses.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpComparison {
    /// Equal status codes; `None` when they differ and the control's is not 2xx (the
    /// control itself may have failed: `ComputeHTTPDiffStatusCodeMatch`).
    pub status_code_match: Option<bool>,
    /// The smaller body length over the larger; `None` when either body is empty or
    /// was cut at the read cap (`httpDiffBodyProportionFactor`).
    pub body_proportion: Option<f64>,
    /// `body_proportion` above [`BODY_PROPORTION_FACTOR`].
    pub body_length_match: Option<bool>,
    /// Some uncommon header name (not in [`COMMON_HEADERS`]) is in both responses.
    pub headers_match: Option<bool>,
    /// Every long title word (≥ [`TITLE_MIN_WORD_LENGTH`] bytes, case-insensitive, any
    /// order) of either title is in the other.
    pub title_match: Option<bool>,
    /// The uncommon header names both responses carry.
    pub common_uncommon_headers: Vec<String>,
    /// The long title words only one title has.
    pub title_words_differing: Vec<String>,
}

impl HttpComparison {
    /// OONI's http-diff (probe-cli `webconnectivitylte/analysishttpdiff.go`,
    /// `analysisHTTPDiffAlgorithm`): no diff only when the status codes match and the
    /// body lengths, the uncommon headers or the titles match; a diff otherwise.
    pub fn http_diff(&self) -> bool {
        let status = self.status_code_match == Some(true);
        let alike = self.body_length_match == Some(true)
            || self.headers_match == Some(true)
            || self.title_match == Some(true);
        !(status && alike)
    }

    /// The facts, in one sentence.
    pub fn describe(&self, ours: &HttpResponse, control: &HttpResponse) -> String {
        let flag = |v: Option<bool>| match v {
            Some(true) => "match",
            Some(false) => "differ",
            None => "not compared",
        };
        format!(
            "status {} vs {} ({}); body {} vs {} bytes ({}{}); uncommon headers in common: {} ({}); \
             titles {:?} vs {:?} ({}{})",
            ours.status,
            control.status,
            flag(self.status_code_match),
            ours.body_length,
            control.body_length,
            flag(self.body_length_match),
            self.body_proportion
                .map(|p| format!(", proportion {p:.2}"))
                .unwrap_or_default(),
            if self.common_uncommon_headers.is_empty() {
                "none".to_owned()
            } else {
                self.common_uncommon_headers.join(", ")
            },
            flag(self.headers_match),
            ours.title.as_deref().unwrap_or(""),
            control.title.as_deref().unwrap_or(""),
            flag(self.title_match),
            if self.title_words_differing.is_empty() {
                String::new()
            } else {
                format!(
                    ", words in one only: {}",
                    self.title_words_differing.join(", ")
                )
            },
        )
    }
}

/// Compare our response with the web control's as OONI's `web_connectivity` does
/// (probe-cli `minipipeline/analysis.go`, `httpHandleFinalResponse` and the
/// `httpDiff*` functions it calls).
pub fn compare_http(ours: &HttpResponse, control: &HttpResponse) -> HttpComparison {
    let status_code_match = if ours.status == control.status {
        Some(true)
    } else if control.status / 100 != 2 {
        None
    } else {
        Some(false)
    };
    let body_proportion = (ours.body_length > 0
        && control.body_length > 0
        && !ours.body_capped
        && !control.body_capped)
        .then(|| {
            let (small, large) = if ours.body_length >= control.body_length {
                (control.body_length, ours.body_length)
            } else {
                (ours.body_length, control.body_length)
            };
            #[allow(clippy::cast_precision_loss)] // a ratio: precision to spare
            let proportion = small as f64 / large as f64;
            proportion
        });
    let uncommon = |r: &HttpResponse| -> BTreeSet<String> {
        r.headers
            .iter()
            .map(|h| h.name.to_ascii_lowercase())
            .filter(|n| !COMMON_HEADERS.contains(&n.as_str()))
            .collect()
    };
    let common_uncommon_headers: Vec<String> = uncommon(ours)
        .intersection(&uncommon(control))
        .cloned()
        .collect();
    let words = |r: &HttpResponse| -> BTreeSet<String> {
        r.title
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|w| w.len() >= TITLE_MIN_WORD_LENGTH)
            .map(str::to_lowercase)
            .collect()
    };
    let title_words_differing: Vec<String> = words(ours)
        .symmetric_difference(&words(control))
        .cloned()
        .collect();
    HttpComparison {
        status_code_match,
        body_proportion,
        body_length_match: body_proportion.map(|p| p > BODY_PROPORTION_FACTOR),
        headers_match: Some(!common_uncommon_headers.is_empty()),
        title_match: Some(title_words_differing.is_empty()),
        common_uncommon_headers,
        title_words_differing,
    }
}

/// What the web control's connect says about ours.
enum ConnectDecision {
    /// The web control connected: the address is blocked for us.
    Blocked,
    /// The web control failed the same way: the server is down.
    Down,
    /// Nothing decided (the evidence says why).
    Undecided,
}

fn connect_text(connect: &ConnectObservation) -> String {
    let what = match connect.status {
        ConnectStatus::Ok => "connected",
        ConnectStatus::Refused => "refused (an RST answered the SYN)",
        ConnectStatus::Timeout => "timed out",
        ConnectStatus::Reset => "reset",
        ConnectStatus::Error => "failed",
    };
    let error = connect
        .error
        .as_deref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    format!("{what}{error} after {:.1} ms", connect.connect_ms)
}

/// Compare a connect failure of ours (control and test) with the web control's connect
/// to the same address: the decision and the evidence it rests on.
fn judge_connect(
    address: SocketAddr,
    ours: &ConnectObservation,
    helper: &WebControlResult,
    helper_connect: Option<&ConnectObservation>,
) -> (ConnectDecision, WebEvidence) {
    if let Some(refused) = helper.refused.iter().find(|r| r.ip == address.ip()) {
        return (
            ConnectDecision::Undecided,
            WebEvidence::new(
                WebEvidenceKind::WebControlRefusedAddress,
                None,
                format!(
                    "the web control would not contact {} ({}): it says nothing about this address",
                    refused.ip, refused.reason
                ),
            ),
        );
    }
    let Some(theirs) = helper_connect else {
        return (
            ConnectDecision::Undecided,
            WebEvidence::new(
                WebEvidenceKind::WebControlNotTested,
                None,
                format!("the web control has no connect to {address}: undecided"),
            ),
        );
    };
    if theirs.is_ok() {
        return (
            ConnectDecision::Blocked,
            WebEvidence::new(
                WebEvidenceKind::WebControlConnected,
                None,
                format!(
                    "the web control connected to {address} ({}) from its vantage, while both \
                     our benign control and our test failed at connect (test: {}): the address \
                     is blocked for this vantage (the web control answered, so our network works)",
                    connect_text(theirs),
                    connect_text(ours)
                ),
            ),
        );
    }
    if theirs.status == ours.status {
        return (
            ConnectDecision::Down,
            WebEvidence::new(
                WebEvidenceKind::WebControlConnectFailed,
                None,
                format!(
                    "the web control's connect to {address} failed the same way ({}; ours: {}): \
                     the server is down or the port closed, for everybody",
                    connect_text(theirs),
                    connect_text(ours)
                ),
            ),
        );
    }
    (
        ConnectDecision::Undecided,
        WebEvidence::new(
            WebEvidenceKind::WebControlConnectFailed,
            None,
            format!(
                "the web control's connect to {address} failed another way ({}; ours: {}): \
                 the server does not answer it either, and different failures may have \
                 different causes: undecided",
                connect_text(theirs),
                connect_text(ours)
            ),
        ),
    )
}

/// Whether a result's benign control and test both failed at connect.
fn both_failed_at_connect(control: AttemptOutcome, test: AttemptOutcome) -> bool {
    control.at_connect() && test.at_connect()
}

/// One address's HTTP judgement, refined with the web control's observations.
pub fn refine_http(mut result: HttpIpResult, helper: &WebControlResult) -> HttpIpResult {
    let address = SocketAddr::new(result.ip, result.port);
    let test = &result.observations.test;
    if both_failed_at_connect(result.control.outcome, test.outcome()) {
        let helper_connect = helper
            .connect_to(address)
            .or_else(|| helper.http_of(result.ip, result.port).map(|o| &o.connect));
        let (decision, evidence) = judge_connect(address, &test.connect, helper, helper_connect);
        result.evidence.push(evidence);
        // Injection proven by capture names the mechanism: it stays.
        if result.verdict != HttpVerdict::RstInjection {
            match decision {
                ConnectDecision::Blocked => {
                    result.verdict = HttpVerdict::TcpIpBlocking;
                    result.stage = Some(Stage::Connect);
                }
                ConnectDecision::Down => {
                    result.verdict = HttpVerdict::Down;
                    result.stage = Some(Stage::Connect);
                }
                ConnectDecision::Undecided => {}
            }
        }
        return result;
    }
    if result.verdict == HttpVerdict::Ok && result.control.passed {
        let evidence = compare_pages(test, helper, &mut result.verdict, &mut result.stage);
        result.evidence.push(evidence);
    }
    result
}

/// Compare our complete response with the web control's from the same address; a
/// diff turns `ok` into `http_diff`.
fn compare_pages(
    test: &HttpObservation,
    helper: &WebControlResult,
    verdict: &mut HttpVerdict,
    stage: &mut Option<Stage>,
) -> WebEvidence {
    if let Some(refused) = helper.refused.iter().find(|r| r.ip == test.ip) {
        return WebEvidence::new(
            WebEvidenceKind::WebControlRefusedAddress,
            None,
            format!(
                "the web control would not contact {} ({}): the pages are not compared",
                refused.ip, refused.reason
            ),
        );
    }
    let theirs = helper.http_of(test.ip, test.port);
    let (Some(ours), Some(their_response)) = (
        test.response.as_ref(),
        theirs
            .filter(|o| o.completed())
            .and_then(|o| o.response.as_ref()),
    ) else {
        return WebEvidence::new(
            WebEvidenceKind::WebControlNotComparable,
            None,
            format!(
                "the web control got no complete response from {}:{} ({}): the pages are not \
                 compared",
                test.ip,
                test.port,
                theirs.map_or_else(
                    || "not tested".to_owned(),
                    |o| o.outcome().as_str().to_owned()
                )
            ),
        );
    };
    let comparison = compare_http(ours, their_response);
    let facts = comparison.describe(ours, their_response);
    if comparison.status_code_match.is_none() {
        // OONI counts this as http-diff, but the helper's own request went wrong (a
        // server error, a redirect): no evidence that our page was tampered with.
        return WebEvidence::new(
            WebEvidenceKind::WebControlNotComparable,
            None,
            format!(
                "the web control's response has status {} (not 2xx) and ours {}: its request \
                 did not get the page either, so the pages are not compared ({facts})",
                their_response.status, ours.status
            ),
        );
    }
    if comparison.http_diff() {
        *verdict = HttpVerdict::HttpDiff;
        *stage = Some(Stage::Response);
        WebEvidence::new(
            WebEvidenceKind::WebControlPageDiffers,
            Some(crate::observation::web::ProbeRole::Test),
            format!(
                "our page differs from the one the web control got from the same address, by \
                 OONI web_connectivity's rule (status codes must match, and the body lengths, \
                 the uncommon headers or the titles): {facts}"
            ),
        )
    } else {
        WebEvidence::new(
            WebEvidenceKind::WebControlPageMatches,
            Some(crate::observation::web::ProbeRole::Test),
            format!(
                "our page is alike the one the web control got from the same address, by OONI \
                 web_connectivity's rule: {facts}"
            ),
        )
    }
}

/// One address's TLS judgement, refined with the web control's observations (only the
/// connect: a handshake's outcome is judged with our own benign control).
pub fn refine_tls(mut result: TlsIpResult, helper: &WebControlResult) -> TlsIpResult {
    let address = SocketAddr::new(result.ip, result.port);
    let test = &result.observations.test;
    if !both_failed_at_connect(result.control.outcome, test.outcome()) {
        return result;
    }
    let helper_connect = helper
        .connect_to(address)
        .or_else(|| helper.tls_of(result.ip, result.port).map(|o| &o.connect));
    let (decision, evidence) = judge_connect(address, &test.connect, helper, helper_connect);
    result.evidence.push(evidence);
    if result.verdict != TlsVerdict::RstInjection {
        match decision {
            ConnectDecision::Blocked => {
                result.verdict = TlsVerdict::TcpIpBlocking;
                result.stage = Some(Stage::Connect);
            }
            ConnectDecision::Down => {
                result.verdict = TlsVerdict::Down;
                result.stage = Some(Stage::Connect);
            }
            ConnectDecision::Undecided => {}
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::blockpage::BlockpageSet;
    use crate::classify::injectors::InjectorSet;
    use crate::classify::web::tests::{
        IP, connect, http, judge_http, judge_tls, kinds, ok_http, path, tls,
    };
    use crate::classify::web::{judge_web_with_control, judge_web_with_injectors, target_blocking};
    use crate::observation::web::{
        AttemptObservations, HttpExchangeEnd, HttpHeader, PathRun, StageRun, TlsHandshakeEnd,
        WebObservations,
    };
    use crate::observation::web_control::{
        HelperConnect, HelperDns, HelperLookup, RefusedAddress, WebControlObservation,
    };
    use crate::vocab::{Blocking, BlockingLayer, Claim};

    /// What the helper saw of `a.test`: its lookup resolved to [`IP`], its connects
    /// to [`IP`] on the given ports, its GETs and handshakes.
    fn helper(
        connects: &[(u16, ConnectStatus)],
        gets: Vec<HttpObservation>,
        refused: bool,
    ) -> WebControlResult {
        WebControlResult {
            name: "a.test".into(),
            dns: HelperDns {
                resolver: HelperLookup {
                    resolver: "system".into(),
                    status: HelperLookupStatus::Resolved,
                    addresses: vec![IP],
                    error: None,
                    ms: 3.0,
                },
                doh: None,
            },
            connects: connects
                .iter()
                .map(|(port, status)| HelperConnect {
                    address: SocketAddr::new(IP, *port),
                    connect: connect(*status),
                })
                .collect(),
            http: gets,
            tls: Vec::new(),
            refused: if refused {
                vec![RefusedAddress {
                    ip: IP,
                    reason: "benchmarking range, not in the allow-list".into(),
                }]
            } else {
                Vec::new()
            },
            ms: 40.0,
        }
    }

    use crate::observation::web_control::HelperLookupStatus;

    fn failed_connect(host: &str, status: ConnectStatus) -> HttpObservation {
        http(host, status, None, None)
    }

    fn page(host: &str, status: u16, body: &str, headers: &[&str]) -> HttpObservation {
        let mut o = http(
            host,
            ConnectStatus::Ok,
            Some(HttpExchangeEnd::Complete),
            Some((status, body)),
        );
        let response = o.response.as_mut().unwrap();
        response.headers = headers
            .iter()
            .map(|name| HttpHeader {
                name: (*name).into(),
                value: "x".into(),
            })
            .collect();
        o
    }

    const STORE: &str = "<html><title>Welcome to the Example Store</title>\
        <body>Lots of products, prices, offers and pictures, on a long page.</body></html>";
    const DENIED: &str = "<title>Access denied</title>";

    #[test]
    fn connects_failing_for_us_but_not_for_the_web_control_are_tcp_ip_blocking() {
        for status in [
            ConnectStatus::Timeout,
            ConnectStatus::Refused,
            ConnectStatus::Reset,
        ] {
            let ours = judge_http(
                failed_connect("example.com", status),
                failed_connect("a.test", status),
                None,
            );
            let before = ours.verdict;
            let r = refine_http(ours, &helper(&[(80, ConnectStatus::Ok)], Vec::new(), false));
            assert_ne!(before, HttpVerdict::TcpIpBlocking);
            assert_eq!(
                (r.verdict, r.stage),
                (HttpVerdict::TcpIpBlocking, Some(Stage::Connect)),
                "{status:?}"
            );
            assert_eq!(
                r.verdict.claim(r.stage),
                Claim::Blocked(BlockingLayer::TcpIp)
            );
            assert!(kinds(&r).contains(&WebEvidenceKind::WebControlConnected));
            assert!(kinds(&r).contains(&WebEvidenceKind::BothFailedAtConnect));
        }
        // TLS: the same, from the helper's handshake connect when it listed no connect.
        let timeout = |n| tls(n, ConnectStatus::Timeout, None, None);
        let mut theirs = helper(&[], Vec::new(), false);
        theirs.tls = vec![tls(
            "a.test",
            ConnectStatus::Ok,
            Some(TlsHandshakeEnd::Complete),
            Some(true),
        )];
        let r = refine_tls(
            judge_tls(timeout("example.com"), timeout("a.test"), None),
            &theirs,
        );
        assert_eq!(
            (r.verdict, r.stage),
            (TlsVerdict::TcpIpBlocking, Some(Stage::Connect))
        );
        assert_eq!(
            r.verdict.claim(r.stage),
            Claim::Blocked(BlockingLayer::TcpIp)
        );
    }

    #[test]
    fn the_same_connect_failure_at_the_web_control_is_down_and_not_blocking() {
        for status in [ConnectStatus::Refused, ConnectStatus::Timeout] {
            let ours = judge_http(
                failed_connect("example.com", status),
                failed_connect("a.test", status),
                None,
            );
            let r = refine_http(ours, &helper(&[(80, status)], Vec::new(), false));
            assert_eq!(
                (r.verdict, r.stage),
                (HttpVerdict::Down, Some(Stage::Connect)),
                "{status:?}"
            );
            assert_eq!(r.verdict.claim(r.stage), Claim::Clean);
            assert!(kinds(&r).contains(&WebEvidenceKind::WebControlConnectFailed));
            let refused = |n| tls(n, ConnectStatus::Refused, None, None);
            let t = refine_tls(
                judge_tls(refused("example.com"), refused("a.test"), None),
                &helper(&[(443, ConnectStatus::Refused)], Vec::new(), false),
            );
            assert_eq!(t.verdict, TlsVerdict::Down);
            let a = crate::classify::web::assess_http("a.test", vec![r]);
            let t = crate::classify::web::assess_tls("a.test", vec![t]);
            // OONI: both failed → website down: blocking false, accessible false.
            let b = target_blocking(None, Some(&a), Some(&t));
            assert_eq!((b.blocking, b.accessible), (Blocking::No, Some(false)));
        }
    }

    #[test]
    fn connect_failures_stay_undecided_without_a_comparable_web_control_connect() {
        let refused_ours = || {
            judge_http(
                failed_connect("example.com", ConnectStatus::Timeout),
                failed_connect("a.test", ConnectStatus::Timeout),
                None,
            )
        };
        let undecided = |theirs: &WebControlResult, kind| {
            let r = refine_http(refused_ours(), theirs);
            assert_eq!(
                (r.verdict, r.stage),
                (HttpVerdict::Timeout, Some(Stage::Connect)),
                "{kind:?}"
            );
            assert!(kinds(&r).contains(&kind), "{:#?}", r.evidence);
        };
        // The helper refused to contact the address (no SSRF): it says nothing.
        undecided(
            &helper(&[(80, ConnectStatus::Ok)], Vec::new(), true),
            WebEvidenceKind::WebControlRefusedAddress,
        );
        // The helper failed at connect another way: undecided.
        undecided(
            &helper(&[(80, ConnectStatus::Refused)], Vec::new(), false),
            WebEvidenceKind::WebControlConnectFailed,
        );
        // The helper did not test this port.
        undecided(
            &helper(&[(8080, ConnectStatus::Ok)], Vec::new(), false),
            WebEvidenceKind::WebControlNotTested,
        );
        // Our benign control got further than connect: the helper is not asked.
        let ours = judge_http(
            http(
                "example.com",
                ConnectStatus::Ok,
                Some(HttpExchangeEnd::ResetAfterRequest),
                None,
            ),
            failed_connect("a.test", ConnectStatus::Timeout),
            None,
        );
        let before = ours.clone();
        let r = refine_http(ours, &helper(&[(80, ConnectStatus::Ok)], Vec::new(), false));
        assert_eq!(r, before);
    }

    #[test]
    fn an_injection_proven_by_capture_stays_rst_injection() {
        let mut ours = judge_http(
            failed_connect("example.com", ConnectStatus::Refused),
            failed_connect("a.test", ConnectStatus::Refused),
            None,
        );
        ours.verdict = HttpVerdict::RstInjection;
        let r = refine_http(ours, &helper(&[(80, ConnectStatus::Ok)], Vec::new(), false));
        assert_eq!(r.verdict, HttpVerdict::RstInjection);
        assert!(kinds(&r).contains(&WebEvidenceKind::WebControlConnected));
    }

    #[test]
    fn a_page_unlike_the_web_controls_is_http_diff() {
        let ours = judge_http(
            ok_http("example.com"),
            page("a.test", 200, DENIED, &["Server"]),
            None,
        );
        assert_eq!(ours.verdict, HttpVerdict::Ok, "no fingerprint matches");
        let theirs = helper(
            &[(80, ConnectStatus::Ok)],
            vec![page("a.test", 200, STORE, &["Server"])],
            false,
        );
        let r = refine_http(ours, &theirs);
        assert_eq!(
            (r.verdict, r.stage),
            (HttpVerdict::HttpDiff, Some(Stage::Response))
        );
        assert_eq!(
            r.verdict.claim(r.stage),
            Claim::Blocked(BlockingLayer::Http)
        );
        let differs = r
            .evidence
            .iter()
            .find(|e| e.kind == WebEvidenceKind::WebControlPageDiffers)
            .unwrap();
        assert!(
            differs.detail.contains("status 200 vs 200 (match)"),
            "{}",
            differs.detail
        );
        // A different status code alone is a diff too.
        let ours = judge_http(
            ok_http("example.com"),
            page("a.test", 403, STORE, &["Server"]),
            None,
        );
        assert_eq!(refine_http(ours, &theirs).verdict, HttpVerdict::HttpDiff);
        let a = crate::classify::web::assess_http(
            "a.test",
            vec![refine_http(
                judge_http(
                    ok_http("example.com"),
                    page("a.test", 200, DENIED, &[]),
                    None,
                ),
                &theirs,
            )],
        );
        let b = target_blocking(None, Some(&a), None);
        assert_eq!(
            (b.blocking, b.accessible),
            (Blocking::At(BlockingLayer::Http), Some(false))
        );
    }

    #[test]
    fn a_page_alike_the_web_controls_stays_ok() {
        // Same status and title; the body length differs (dynamic page) and no uncommon
        // header: OONI's rule needs only one of body, headers or title to match.
        let longer = format!("{STORE}<!-- {} -->", "x".repeat(200));
        let ours = judge_http(
            ok_http("example.com"),
            page("a.test", 200, STORE, &["Server"]),
            None,
        );
        let theirs = helper(
            &[(80, ConnectStatus::Ok)],
            vec![page("a.test", 200, &longer, &["Server"])],
            false,
        );
        let r = refine_http(ours, &theirs);
        assert_eq!(r.verdict, HttpVerdict::Ok);
        assert!(kinds(&r).contains(&WebEvidenceKind::WebControlPageMatches));
    }

    #[test]
    fn pages_are_not_compared_without_a_basis() {
        let ours = || {
            judge_http(
                ok_http("example.com"),
                page("a.test", 200, DENIED, &[]),
                None,
            )
        };
        let not_compared = |theirs: &WebControlResult, kind| {
            let r = refine_http(ours(), theirs);
            assert_eq!(r.verdict, HttpVerdict::Ok, "{kind:?}");
            assert!(kinds(&r).contains(&kind), "{:#?}", r.evidence);
        };
        // The helper's own GET was reset: no complete response.
        let reset = http(
            "a.test",
            ConnectStatus::Ok,
            Some(HttpExchangeEnd::ResetAfterRequest),
            None,
        );
        not_compared(
            &helper(&[(80, ConnectStatus::Ok)], vec![reset], false),
            WebEvidenceKind::WebControlNotComparable,
        );
        // The helper got a server error: OONI makes no status comparison.
        not_compared(
            &helper(
                &[(80, ConnectStatus::Ok)],
                vec![page("a.test", 503, STORE, &[])],
                false,
            ),
            WebEvidenceKind::WebControlNotComparable,
        );
        // The helper refused the address.
        not_compared(
            &helper(&[], vec![page("a.test", 200, STORE, &[])], true),
            WebEvidenceKind::WebControlRefusedAddress,
        );
        // Our benign control failed after connecting: no http_diff, nothing added.
        let mut control = ok_http("example.com");
        control.exchange = Some(HttpExchangeEnd::TimeoutAfterRequest);
        control.response = None;
        let ours = judge_http(control, page("a.test", 200, DENIED, &[]), None);
        let before = ours.clone();
        let theirs = helper(&[], vec![page("a.test", 200, STORE, &[])], false);
        assert_eq!(refine_http(ours, &theirs), before);
    }

    #[test]
    fn a_matched_block_page_stays_blockpage() {
        let raw = String::from_utf8(crate::servers::web::lab_blockpage()).unwrap();
        let body = raw.split_once("\r\n\r\n").unwrap().1.to_owned();
        let ours = judge_http(
            ok_http("example.com"),
            page("a.test", 403, &body, &[]),
            None,
        );
        assert_eq!(ours.verdict, HttpVerdict::Blockpage);
        let before = ours.clone();
        let theirs = helper(&[], vec![page("a.test", 200, STORE, &[])], false);
        assert_eq!(refine_http(ours, &theirs), before);
    }

    #[test]
    fn compare_http_follows_ooni() {
        let response = |status, body: &str, headers: &[&str]| {
            page("a.test", status, body, headers).response.unwrap()
        };
        // Body proportion: the smaller over the larger; > 0.7 matches.
        let c = compare_http(
            &response(200, &"a".repeat(80), &[]),
            &response(200, &"a".repeat(100), &[]),
        );
        assert_eq!(c.body_proportion, Some(0.8));
        assert_eq!(c.body_length_match, Some(true));
        let c = compare_http(
            &response(200, &"a".repeat(100), &[]),
            &response(200, &"a".repeat(70), &[]),
        );
        assert_eq!(c.body_length_match, Some(false), "0.7 is not above 0.7");
        // An empty or capped body is not compared.
        assert_eq!(
            compare_http(&response(200, "", &[]), &response(200, "x", &[])).body_proportion,
            None
        );
        let mut capped = response(200, "xx", &[]);
        capped.body_capped = true;
        assert_eq!(
            compare_http(&capped, &response(200, "xx", &[])).body_length_match,
            None
        );
        // Headers: some uncommon name in both, case-insensitive; common ones do not count.
        let c = compare_http(
            &response(200, "x", &["Server", "X-Shop-Id", "Date"]),
            &response(200, "x", &["x-shop-id", "Server"]),
        );
        assert_eq!(
            (c.headers_match, c.common_uncommon_headers.as_slice()),
            (Some(true), &["x-shop-id".to_owned()][..])
        );
        let c = compare_http(
            &response(200, "x", &["Server", "Date"]),
            &response(200, "x", &["Server"]),
        );
        assert_eq!(c.headers_match, Some(false));
        // Titles: words of 5+ bytes, any order, any case; shorter words are ignored.
        let c = compare_http(
            &response(200, "<title>Example Store: the best</title>", &[]),
            &response(200, "<title>the Shop EXAMPLE</title>", &[]),
        );
        assert_eq!(c.title_match, Some(false), "{c:?}");
        assert_eq!(
            c.title_words_differing,
            ["store:"],
            "'best' and 'shop' are short"
        );
        let c = compare_http(
            &response(200, "<title>Example Store</title>", &[]),
            &response(200, "<title>store example a</title>", &[]),
        );
        assert_eq!(c.title_match, Some(true), "{c:?}");
        // Status: 5xx (any non-2xx) at the control with a different code is not compared.
        assert_eq!(
            compare_http(&response(200, "x", &[]), &response(503, "x", &[])).status_code_match,
            None
        );
        assert_eq!(
            compare_http(&response(404, "x", &[]), &response(404, "x", &[])).status_code_match,
            Some(true)
        );
        assert_eq!(
            compare_http(&response(302, "x", &[]), &response(200, "x", &[])).status_code_match,
            Some(false)
        );
        // The algorithm: status must match, then any of body, headers, title.
        let mut c = compare_http(&response(200, "x", &[]), &response(200, "x", &[]));
        assert!(!c.http_diff(), "same body length");
        c.body_length_match = Some(false);
        c.title_match = Some(false);
        assert!(c.http_diff());
        c.headers_match = Some(true);
        assert!(!c.http_diff());
        c.status_code_match = None;
        assert!(c.http_diff(), "OONI: no status match is a diff");
    }

    fn observations(test_status: ConnectStatus) -> WebObservations {
        let failed = |n| failed_connect(n, test_status);
        let failed_tls = |n| tls(n, test_status, None, None);
        WebObservations {
            name: "a.test".into(),
            addresses: None,
            http: Some(StageRun::Probed(vec![PathRun {
                observations: AttemptObservations {
                    control: failed("example.com"),
                    test: failed("a.test"),
                    residual: None,
                    residual_after_ms: None,
                },
                path: path(),
            }])),
            tls: Some(StageRun::Probed(vec![PathRun {
                observations: AttemptObservations {
                    control: failed_tls("example.com"),
                    test: failed_tls("a.test"),
                    residual: None,
                    residual_after_ms: None,
                },
                path: path(),
            }])),
        }
    }

    fn answered(result: WebControlResult) -> WebControlObservation {
        WebControlObservation::Answered {
            helper: "https://198.19.0.2:8443".into(),
            software: "censorprobe test".into(),
            ms: 50.0,
            result: Box::new(result),
        }
    }

    #[test]
    fn judge_web_with_control_decides_both_stages_and_a_failed_helper_changes_nothing() {
        let judge = |web_control: Option<&WebControlObservation>| {
            judge_web_with_control(
                observations(ConnectStatus::Timeout),
                web_control,
                "example.com",
                &BlockpageSet::builtin(),
                InjectorSet::builtin_shared(),
            )
        };
        let theirs = answered(helper(
            &[(80, ConnectStatus::Ok), (443, ConnectStatus::Ok)],
            Vec::new(),
            false,
        ));
        let result = judge(Some(&theirs));
        let (h, t) = (result.http.unwrap(), result.tls.unwrap());
        assert_eq!(h.verdict, HttpVerdict::TcpIpBlocking);
        assert_eq!(t.verdict, TlsVerdict::TcpIpBlocking);
        assert!(
            h.evidence
                .iter()
                .any(|e| e.kind == WebEvidenceKind::WebControlConnected)
        );
        let b = target_blocking(None, Some(&h), Some(&t));
        assert_eq!(
            (b.blocking, b.accessible),
            (Blocking::At(BlockingLayer::TcpIp), Some(false))
        );
        // Without a helper, or with one that failed, the judgement is the plain one.
        let plain = judge_web_with_injectors(
            observations(ConnectStatus::Timeout),
            "example.com",
            &BlockpageSet::builtin(),
            InjectorSet::builtin_shared(),
        );
        let failed = WebControlObservation::Failed {
            helper: "https://198.19.0.2:8443".into(),
            error: "timed out after 10 s".into(),
            ms: 10_000.0,
        };
        assert_eq!(judge(Some(&failed)), plain);
        assert_eq!(judge(None), plain);
        assert_eq!(plain.http.unwrap().verdict, HttpVerdict::Timeout);
    }

    #[test]
    fn a_stored_record_is_judged_again_the_same_way() {
        // The web control's observation round-trips through the record's JSON, and
        // judging the stored observations again gives the same verdicts.
        let theirs = answered(helper(
            &[(80, ConnectStatus::Refused), (443, ConnectStatus::Refused)],
            Vec::new(),
            false,
        ));
        let stored: WebControlObservation =
            serde_json::from_str(&serde_json::to_string(&theirs).unwrap()).unwrap();
        assert_eq!(stored, theirs);
        let stored_observations: WebObservations = serde_json::from_str(
            &serde_json::to_string(&observations(ConnectStatus::Refused)).unwrap(),
        )
        .unwrap();
        let judge = |o, w: &WebControlObservation| {
            judge_web_with_control(
                o,
                Some(w),
                "example.com",
                &BlockpageSet::builtin(),
                InjectorSet::builtin_shared(),
            )
        };
        let first = judge(observations(ConnectStatus::Refused), &theirs);
        let again = judge(stored_observations, &stored);
        assert_eq!(first, again);
        assert_eq!(again.http.unwrap().verdict, HttpVerdict::Down);
        assert_eq!(again.tls.unwrap().verdict, TlsVerdict::Down);
    }
}
