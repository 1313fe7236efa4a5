//! Record types copied into a measurement under `x_` keys. Every object of the OONI
//! output is written with its keys sorted (as it always was), while the record types
//! declare their fields in the report's order; so each is written through a borrowed
//! view whose fields are declared in key order. Borrowed: nothing is copied or built.

use std::net::IpAddr;

use serde::Serialize;

use crate::observation::web::ProbeRole;
use crate::observation::web::{CertProblem, CertValidity, CertificateInfo, PathFacts, TlsAlert};
use crate::pathguard::{AccessMode, AttributionRule};
use crate::record::assessment::{Evidence, EvidenceKind, WebEvidence, WebEvidenceKind};

/// A TLS alert (`x_alert`).
#[derive(Debug, Clone, Serialize)]
pub struct AlertView<'a> {
    code: u8,
    description: &'a str,
}

impl<'a> From<&'a TlsAlert> for AlertView<'a> {
    fn from(alert: &'a TlsAlert) -> Self {
        AlertView {
            code: alert.code,
            description: &alert.description,
        }
    }
}

/// One certificate of the presented chain (`x_peer_certificates`).
#[derive(Debug, Clone, Serialize)]
pub struct CertificateView<'a> {
    is_ca: bool,
    issuer: &'a str,
    not_after: &'a str,
    not_before: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parse_error: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    san_dns: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    san_ips: &'a [IpAddr],
    serial: &'a str,
    sha256: &'a str,
    subject: &'a str,
}

impl<'a> From<&'a CertificateInfo> for CertificateView<'a> {
    fn from(cert: &'a CertificateInfo) -> Self {
        CertificateView {
            is_ca: cert.is_ca,
            issuer: &cert.issuer,
            not_after: &cert.not_after,
            not_before: &cert.not_before,
            parse_error: cert.parse_error.as_deref(),
            san_dns: &cert.san_dns,
            san_ips: &cert.san_ips,
            serial: &cert.serial,
            sha256: &cert.sha256,
            subject: &cert.subject,
        }
    }
}

/// The chain's validity for the name (`x_validity`).
#[derive(Debug, Clone, Serialize)]
pub struct ValidityView<'a> {
    checked_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<CertProblem>,
    valid: bool,
}

impl<'a> From<&'a CertValidity> for ValidityView<'a> {
    fn from(validity: &'a CertValidity) -> Self {
        ValidityView {
            checked_name: &validity.checked_name,
            error: validity.error.as_deref(),
            problem: validity.problem,
            valid: validity.valid,
        }
    }
}

/// The path facts of one attempt (`path`).
#[derive(Debug, Clone, Serialize)]
pub struct PathView {
    #[serde(skip_serializing_if = "Option::is_none")]
    attribution: Option<AttributionRule>,
    mode: AccessMode,
    penalty_outlived: bool,
    requeues: u32,
    waited_ms: f64,
}

impl From<&PathFacts> for PathView {
    fn from(path: &PathFacts) -> Self {
        PathView {
            attribution: path.attribution,
            mode: path.mode,
            penalty_outlived: path.penalty_outlived,
            requeues: path.requeues,
            waited_ms: path.waited_ms,
        }
    }
}

/// One DNS evidence item.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceView<'a> {
    /// Stored, or produced from a structured fact's kind and fields.
    detail: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ips: &'a [IpAddr],
    kind: EvidenceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    qtype: Option<&'a str>,
}

impl<'a> From<&'a Evidence> for EvidenceView<'a> {
    fn from(evidence: &'a Evidence) -> Self {
        EvidenceView {
            detail: evidence.describe(),
            ips: &evidence.ips,
            kind: evidence.kind,
            qtype: evidence.qtype.as_deref(),
        }
    }
}

/// One web evidence item.
#[derive(Debug, Clone, Serialize)]
pub struct WebEvidenceView<'a> {
    detail: &'a str,
    kind: WebEvidenceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<ProbeRole>,
}

impl<'a> From<&'a WebEvidence> for WebEvidenceView<'a> {
    fn from(evidence: &'a WebEvidence) -> Self {
        WebEvidenceView {
            detail: &evidence.detail,
            kind: evidence.kind,
            role: evidence.role,
        }
    }
}

/// Views of every item of a list, in order.
pub(crate) fn views<'a, T, V: From<&'a T>>(items: &'a [T]) -> Vec<V> {
    items.iter().map(V::from).collect()
}
