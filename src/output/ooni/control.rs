//! The web control's part of an OONI measurement: `test_keys.control` in the shape of
//! OONI's web-connectivity test-helper answer (`dns`, `tcp_connect`, `http_request`:
//! ooni/spec `ts-017-web-connectivity.md`, "Example control request and response"),
//! `control_failure`, and the page comparison keys (`status_code_match`,
//! `body_length_match`, `body_proportion`, `headers_match`, `title_match`) computed by
//! the classifier's OONI rule ([`crate::classify::web_control::compare_http`]).

use std::collections::BTreeMap;

use super::types::{ComparisonKeys, ControlDns, ControlHttpRequest, ControlTcpConnect};
use super::web::{connect_failure, http_failure};
use crate::classify::web_control::compare_http;
use crate::observation::web::HttpObservation;
use crate::observation::web_control::{
    HelperLookupStatus, WebControlObservation, WebControlResult,
};
use crate::record::TargetRecord;
use crate::record::assessment::HttpAssessment;

/// `control_failure` for a web control that did not answer.
pub(super) fn web_control_failure(web_control: &WebControlObservation) -> Option<String> {
    match web_control {
        WebControlObservation::Answered { .. } => None,
        WebControlObservation::Failed { error, .. } => Some(format!("unknown_failure {error}")),
    }
}

/// `control.dns`: the helper's own resolver's lookup.
pub(super) fn helper_dns(helper: &WebControlResult) -> ControlDns {
    let lookup = &helper.dns.resolver;
    let failure = match lookup.status {
        HelperLookupStatus::Resolved => None,
        HelperLookupStatus::Nxdomain => Some("dns_nxdomain_error".to_owned()),
        HelperLookupStatus::NoData => Some("dns_no_answer".to_owned()),
        HelperLookupStatus::Failed => Some(format!(
            "unknown_failure {}",
            lookup.error.as_deref().unwrap_or("lookup failed")
        )),
    };
    ControlDns {
        addrs: lookup.addresses.clone(),
        failure,
    }
}

/// `control.tcp_connect`: every connect of the helper, by `ip:port`.
pub(super) fn helper_connects(helper: &WebControlResult) -> BTreeMap<String, ControlTcpConnect> {
    helper
        .connects
        .iter()
        .map(|c| {
            (
                c.address.to_string(),
                ControlTcpConnect {
                    failure: connect_failure(&c.connect),
                    status: c.connect.is_ok(),
                },
            )
        })
        .collect()
}

/// The helper's GET that the probe's headline compares with: the one to the headline
/// address, else its first complete one, else its first.
fn helper_get<'a>(
    helper: &'a WebControlResult,
    http: Option<&HttpAssessment>,
) -> Option<&'a HttpObservation> {
    http.and_then(|h| helper.http_of(h.ip?, h.port?))
        .or_else(|| helper.http.iter().find(|o| o.completed()))
        .or_else(|| helper.http.first())
}

/// `control.http_request`: the helper's GET (OONI writes `-1` for a failed one's
/// length and status).
pub(super) fn helper_http_request(
    helper: &WebControlResult,
    http: Option<&HttpAssessment>,
) -> Option<ControlHttpRequest> {
    let get = helper_get(helper, http)?;
    let response = get.response.as_ref().filter(|_| get.completed());
    Some(ControlHttpRequest {
        body_length: response.map_or(-1, |r| i64::try_from(r.body_length).unwrap_or(i64::MAX)),
        failure: http_failure(get),
        headers: response
            .map(|r| {
                let mut headers = BTreeMap::new();
                for h in &r.headers {
                    headers
                        .entry(h.name.clone())
                        .or_insert_with(|| h.value.clone());
                }
                headers
            })
            .unwrap_or_default(),
        status_code: response.map_or(-1, |r| i64::from(r.status)),
        title: response.and_then(|r| r.title.clone()).unwrap_or_default(),
    })
}

/// The comparison keys: our headline test's complete response against the helper's
/// complete response from the same address (all null otherwise, as OONI leaves them
/// when either side has no final response).
pub(super) fn comparison(record: &TargetRecord) -> ComparisonKeys {
    let Some(helper) = record.web_control.as_ref().and_then(|w| w.result()) else {
        return ComparisonKeys::default();
    };
    let Some(http) = record.http.as_ref() else {
        return ComparisonKeys::default();
    };
    let (Some(ip), Some(port)) = (http.ip, http.port) else {
        return ComparisonKeys::default();
    };
    let ours = http
        .attempts
        .iter()
        .find(|a| a.ip == ip && a.port == port)
        .map(|a| &a.observations.test)
        .filter(|o| o.completed())
        .and_then(|o| o.response.as_ref());
    let theirs = helper
        .http_of(ip, port)
        .filter(|o| o.completed())
        .and_then(|o| o.response.as_ref());
    let (Some(ours), Some(theirs)) = (ours, theirs) else {
        return ComparisonKeys::default();
    };
    let c = compare_http(ours, theirs);
    ComparisonKeys {
        body_length_match: c.body_length_match,
        body_proportion: c.body_proportion,
        headers_match: c.headers_match,
        status_code_match: c.status_code_match,
        title_match: c.title_match,
    }
}
