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
//!   differ by OONI's `web_connectivity` rule ([`HttpComparison::http_diff`]).
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
                format!(", words in one only: {}", self.title_words_differing.join(", "))
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
            WebEvidenceKind::WebControlNoResponse,
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
