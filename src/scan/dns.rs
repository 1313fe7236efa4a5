//! The adaptive part of a target's DNS stage: the scan judges what the stage observed
//! and, from the verdict, asks for more (silence re-checks, the benign query, TLS as
//! proof) and judges again. The order of these steps is part of the record.

use std::net::IpAddr;

use crate::classify::dns::{DnsInputs, classify_dns, silence_recheck_wanted};
use crate::ipclass::ForgedIpList;
use crate::observation::web::TlsObservation;
use crate::probe::dns_stage::{DnsObservations, DnsStage, any_bogon_answer, first_reply_ips};
use crate::probe::web::WebStage;
use crate::probe::web::proof::{MAX_PROOF_ADDRESSES, ProofPlan, plan_tls_proof};
use crate::record::DnsSection;
use crate::record::assessment::{DnsAssessment, Evidence, EvidenceKind};
use crate::vocab::{DnsVerdict, PoisoningMethod};

/// Most addresses listed in one `tls_proof_skipped` evidence item (the count is exact).
const LISTED_SKIPPED: usize = 16;

/// Observe and judge the DNS of `domain`. `tls_stage`: the web stage, when TLS runs,
/// to prove addresses that only disagree with the control.
pub(crate) async fn probe_dns(
    stage: &DnsStage,
    forged_ips: &ForgedIpList,
    tls_stage: Option<&WebStage>,
    domain: &str,
) -> DnsSection {
    match stage.observe(domain).await {
        Ok(observed) => judge_observed(stage, forged_ips, tls_stage, domain, observed).await,
        Err(reason) => unencodable_name(stage, domain, &reason),
    }
}

/// The verdict on what the stage observed, when it needs no further question: no
/// silence to re-check, no bogon to compare with a benign query not yet kept, no
/// address to prove with TLS. Otherwise the observations come back for [`judge_observed`], which asks
/// them. The two reach the same section whenever this one returns it: without any
/// further question, `judge_observed` judges the same inputs once.
pub(crate) fn judge_if_complete(
    stage: &DnsStage,
    forged_ips: &ForgedIpList,
    tls_stage: bool,
    observed: DnsObservations,
) -> Result<DnsSection, DnsObservations> {
    // The benign query is asked once per scan and kept: with it at hand, a bogon
    // answer is judged here like any other. (Without a control no verdict is `timeout`,
    // so asking for the benign query first changes no outcome below; it spares judging
    // twice, the first time with sentences that would be thrown away.)
    let benign_query = if !stage.has_control() && any_bogon_answer(&observed.queries) {
        let Some(benign) = stage.kept_benign_answer() else {
            return Err(observed);
        };
        Some(benign)
    } else {
        None
    };
    let assessment = classify_dns(&DnsInputs {
        queries: &observed.queries,
        control: observed.control.as_ref(),
        forged_ips,
        tls_proven: &[],
        benign_query: benign_query.as_deref(),
    });
    if assessment.verdict == DnsVerdict::Timeout {
        return Err(observed);
    }
    if tls_stage && wants_tls_proof(&assessment) {
        return Err(observed);
    }
    Ok(DnsSection {
        assessment,
        resolver: stage.resolver(),
        sink: stage.sink(),
        queries: observed.queries,
        control: observed.control,
        tls_proof: Vec::new(),
        benign_query,
    })
}

/// Judges what the stage observed, asking what the verdict calls for: the silent
/// questions again (with the benign question beside them), the benign query when a
/// bogon answer has no control to compare with, TLS as proof of addresses that only
/// disagree with the control.
pub(crate) async fn judge_observed(
    stage: &DnsStage,
    forged_ips: &ForgedIpList,
    tls_stage: Option<&WebStage>,
    domain: &str,
    mut observed: DnsObservations,
) -> DnsSection {
    if classify_dns(&DnsInputs {
        queries: &observed.queries,
        control: observed.control.as_ref(),
        forged_ips,
        tls_proven: &[],
        benign_query: None,
    })
    .verdict
        == DnsVerdict::Timeout
    {
        if observed.questions.len() != observed.queries.len() {
            // A group judged without its questions at hand (the scan's table keeps
            // none): they are the stage's questions for the name, in the same order.
            if let Ok(mut questions) = stage.questions(domain) {
                questions.truncate(observed.queries.len());
                observed.questions = questions;
            }
        }
        stage
            .recheck_silence(&mut observed, silence_recheck_wanted)
            .await;
    }
    let queries = observed.queries;
    let control = observed.control;
    let benign_query = if !stage.has_control() && any_bogon_answer(&queries) {
        Some(stage.benign_query().await)
    } else {
        None
    };
    let mut inputs = DnsInputs {
        queries: &queries,
        control: control.as_ref(),
        forged_ips,
        tls_proven: &[],
        benign_query: benign_query.as_deref(),
    };
    let mut assessment = classify_dns(&inputs);
    let mut tls_proof = Vec::new();
    let mut proof_skipped = Vec::new();
    if let Some(web) = tls_stage
        && wants_tls_proof(&assessment)
    {
        // The answer's addresses are the censor's choice: a few public ones at most.
        let plan = plan_tls_proof(&first_reply_ips(&queries), MAX_PROOF_ADDRESSES);
        proof_skipped = proof_skipped_evidence(&plan, MAX_PROOF_ADDRESSES);
        let proofs = futures::future::join_all(
            plan.probe
                .iter()
                .map(|ip| web.tls_prober().prove_address(domain, *ip)),
        )
        .await;
        tls_proof = proofs
            .into_iter()
            .filter_map(std::result::Result::ok)
            .collect::<Vec<TlsObservation>>();
        let proven: Vec<IpAddr> = tls_proof
            .iter()
            .filter(|o| o.valid_for_name())
            .map(|o| o.ip)
            .collect();
        if !proven.is_empty() {
            inputs.tls_proven = &proven;
            assessment = classify_dns(&inputs);
        }
    }
    assessment.evidence.extend(proof_skipped);
    DnsSection {
        assessment,
        resolver: stage.resolver(),
        sink: stage.sink(),
        queries,
        control,
        tls_proof,
        benign_query,
    }
}

/// Only inconsistency with the control stands against the answer: a certificate valid
/// for the name at those addresses would show a CDN or geo-DNS answer, not a forgery.
/// Whether a verdict calls for TLS as proof: only inconsistency with the control stands
/// against the answer (a CDN or geo-DNS answer would prove itself with a valid certificate).
pub fn wants_tls_proof(assessment: &DnsAssessment) -> bool {
    assessment.methods == [PoisoningMethod::Inconsistent]
}

/// The DNS section of a target whose name cannot be put in a query: an inconclusive
/// verdict that says why, and no query (never another name, such as the root, instead).
pub(crate) fn unencodable_name(stage: &DnsStage, domain: &str, reason: &str) -> DnsSection {
    DnsSection {
        assessment: DnsAssessment {
            verdict: DnsVerdict::Inconclusive,
            method: None,
            methods: Vec::new(),
            rcode: None,
            forged_ips: Vec::new(),
            genuine_ips: Vec::new(),
            evidence: vec![Evidence::new(
                EvidenceKind::InvalidName,
                None,
                format!("{domain:?} cannot be encoded as a DNS name ({reason}); not queried"),
            )],
        },
        resolver: stage.resolver(),
        sink: stage.sink(),
        queries: Vec::new(),
        control: None,
        tls_proof: Vec::new(),
        benign_query: None,
    }
}

/// One `tls_proof_skipped` evidence item per reason that left addresses of the answer
/// out of TLS as proof.
pub fn proof_skipped_evidence(plan: &ProofPlan, cap: usize) -> Vec<Evidence> {
    let mut evidence = Vec::new();
    if !plan.not_public.is_empty() {
        evidence.push(skipped_item(
            &plan.not_public,
            format!(
                "{} address(es) of the answer not contacted for TLS as proof: bogon, \
                 private, loopback or reserved (198.18.0.0/15, the lab's range, included)",
                plan.not_public.len()
            ),
        ));
    }
    if !plan.over_cap.is_empty() {
        evidence.push(skipped_item(
            &plan.over_cap,
            format!(
                "{} address(es) of the answer not contacted for TLS as proof: at most {cap} \
                 per name are, so that an answer cannot make this machine contact \
                 addresses of its choosing",
                plan.over_cap.len()
            ),
        ));
    }
    evidence
}

fn skipped_item(ips: &[IpAddr], detail: String) -> Evidence {
    let listed = &ips[..ips.len().min(LISTED_SKIPPED)];
    let detail = if listed.len() < ips.len() {
        format!("{detail}; the first {} are listed", listed.len())
    } else {
        detail
    };
    Evidence::new(EvidenceKind::TlsProofSkipped, None, detail).with_ips(listed.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn skipped_addresses_are_evidence_per_reason_with_a_capped_list() {
        let mut answer: Vec<IpAddr> = (0..2000u32)
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(0x0B00_0000 + i)))
            .collect();
        answer.insert(0, ip("127.0.0.1"));
        answer.insert(3, ip("198.18.0.7"));
        let plan = plan_tls_proof(&answer, MAX_PROOF_ADDRESSES);
        let evidence = proof_skipped_evidence(&plan, MAX_PROOF_ADDRESSES);
        assert_eq!(evidence.len(), 2);
        assert!(
            evidence
                .iter()
                .all(|e| e.kind == EvidenceKind::TlsProofSkipped)
        );
        assert!(evidence[0].detail.starts_with("2 address(es)"));
        assert!(evidence[0].detail.contains("bogon"));
        assert_eq!(evidence[0].ips, plan.not_public);
        assert!(evidence[1].detail.starts_with("1996 address(es)"));
        assert!(evidence[1].detail.contains("at most 4"));
        assert_eq!(evidence[1].ips.len(), LISTED_SKIPPED);
    }

    #[test]
    fn nothing_skipped_means_no_evidence() {
        let plan = plan_tls_proof(&[ip("11.0.0.1"), ip("11.0.0.2")], MAX_PROOF_ADDRESSES);
        assert_eq!(plan.probe.len(), 2);
        assert!(proof_skipped_evidence(&plan, MAX_PROOF_ADDRESSES).is_empty());
    }
}
