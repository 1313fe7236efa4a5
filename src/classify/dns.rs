//! Judges the DNS stage of one target from its observations.
//!
//! Rules (the README's verdict table says the same):
//! - `dns_poisoning` when any poisoning method applies; all that apply are listed and
//!   the strongest (see [`PoisoningMethod`]'s order) becomes `method`:
//!   - `injection`: the sink answered, or replies to one query disagree (rcode or addresses);
//!   - `known_forged_ip`: an answer address is on the `--forged-ips` list;
//!   - `bogon`: an answer address lies in a bogon range that none of the control's do;
//!   - `forged_nxdomain`: NXDOMAIN or no data while the control resolves the name;
//!   - `inconsistent`: the resolver's addresses share none with the control's.
//! - `timeout`: a question never got a reply from the resolver while the control answered it.
//!   When the resolver answers a benign query (`benign_query`) and the control resolves
//!   the silent question, the evidence says `selective_silence`: the name's queries are
//!   dropped, which is DNS blocking; when the benign query goes unanswered too, the
//!   resolver is down (`resolver_unresponsive`) and the silence proves nothing.
//! - `error`: the resolver answered SERVFAIL, REFUSED or another error code.
//! - `nxdomain`: the resolver says NXDOMAIN and the control agrees.
//! - `ok`: answers consistent with the control (or no control configured, and nothing
//!   suspicious seen).
//! - `inconclusive`: anything else, e.g. the control failed so nothing can be compared.
//!
//! The "stub view" of a question is its first valid reply, which is what an ordinary
//! resolver library would have used.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::ipclass::{ForgedIpList, bogon_range};
use crate::observation::{
    ControlAnswer, ControlObservation, ControlOutcome, DnsQueryObservation, DnsReply, DnsServerRole,
};
use crate::verdict::{DnsAssessment, DnsVerdict, Evidence, EvidenceKind, PoisoningMethod};

/// Everything the DNS judgement may rest on.
#[derive(Debug, Clone, Copy)]
pub struct DnsInputs<'a> {
    /// Queries to the resolver and to the sink, every qtype.
    pub queries: &'a [DnsQueryObservation],
    /// The control's resolution, when a control is configured.
    pub control: Option<&'a ControlObservation>,
    pub forged_ips: &'a ForgedIpList,
    /// Resolver answer addresses that served a certificate valid for the name (TLS as
    /// proof): such an address is genuine even when the control never saw it.
    pub tls_proven: &'a [IpAddr],
    /// A query for a benign name to the same resolver (the DNS analogue of the web
    /// stage's benign control): whether the resolver is alive at all.
    pub benign_query: Option<&'a DnsQueryObservation>,
}

/// How one resolver question came out, before the target-level verdict.
#[derive(Debug, Clone, PartialEq)]
enum QuestionOutcome {
    Addresses(Vec<IpAddr>),
    NoData,
    Nxdomain,
    ErrorCode(String),
    Silent,
}

struct Judgement {
    methods: BTreeSet<PoisoningMethod>,
    evidence: Vec<Evidence>,
    forged: BTreeSet<IpAddr>,
    genuine: BTreeSet<IpAddr>,
}

impl Judgement {
    fn found(&mut self, method: PoisoningMethod, evidence: Evidence) {
        self.methods.insert(method);
        self.evidence.push(evidence);
    }
}

pub fn classify_dns(inputs: &DnsInputs<'_>) -> DnsAssessment {
    let mut j = Judgement {
        methods: BTreeSet::new(),
        evidence: Vec::new(),
        forged: BTreeSet::new(),
        genuine: BTreeSet::new(),
    };
    for query in inputs
        .queries
        .iter()
        .filter(|q| q.role == DnsServerRole::Sink)
    {
        judge_sink(query, &mut j);
    }

    let mut outcomes: Vec<(String, QuestionOutcome, Option<&ControlAnswer>)> = Vec::new();
    for query in inputs
        .queries
        .iter()
        .filter(|q| q.role == DnsServerRole::Resolver)
    {
        let control = inputs.control.and_then(|c| c.answer(&query.qtype));
        let outcome = judge_resolver_question(query, control, inputs, &mut j);
        outcomes.push((query.qtype.clone(), outcome, control));
    }

    if let Some(control) = inputs.control {
        for answer in &control.answers {
            j.evidence.push(control_evidence(answer));
            if let ControlOutcome::Resolved { ips, .. } = &answer.outcome {
                j.genuine.extend(ips.iter().copied());
            }
        }
    } else {
        j.evidence.push(Evidence::new(
            EvidenceKind::NoControl,
            None,
            "no control configured: answers were not compared with an uncensored path",
        ));
    }

    let (verdict, rcode) = if j.methods.is_empty() {
        overall_without_poisoning(&outcomes, inputs.control.is_some())
    } else {
        (DnsVerdict::DnsPoisoning, None)
    };
    if verdict == DnsVerdict::Timeout
        && let Some(benign) = inputs.benign_query
    {
        j.evidence.push(judge_silence(&outcomes, benign));
    }
    let methods: Vec<PoisoningMethod> = j.methods.iter().copied().collect();
    for ip in &j.forged {
        j.genuine.remove(ip);
    }
    DnsAssessment {
        verdict,
        method: methods.first().copied(),
        methods,
        rcode,
        forged_ips: j.forged.into_iter().collect(),
        genuine_ips: j.genuine.into_iter().collect(),
        evidence: j.evidence,
    }
}

fn judge_sink(query: &DnsQueryObservation, j: &mut Judgement) {
    for reply in &query.replies {
        let ips: Vec<IpAddr> = reply.ips().collect();
        j.forged.extend(ips.iter().copied());
        j.found(
            PoisoningMethod::Injection,
            Evidence::new(
                EvidenceKind::SinkReply,
                Some(&query.qtype),
                format!(
                    "the sink {} runs no DNS service, yet a reply came: {}",
                    query.server,
                    describe_reply(reply)
                ),
            )
            .with_ips(ips),
        );
    }
}

fn judge_resolver_question(
    query: &DnsQueryObservation,
    control: Option<&ControlAnswer>,
    inputs: &DnsInputs<'_>,
    j: &mut Judgement,
) -> QuestionOutcome {
    let qtype = query.qtype.as_str();
    let mut valid: Vec<&DnsReply> = Vec::new();
    for reply in &query.replies {
        if reply.from == query.server && reply.question_matches && reply.flags.qr {
            valid.push(reply);
        } else {
            j.evidence.push(Evidence::new(
                EvidenceKind::MismatchedReply,
                Some(qtype),
                format!(
                    "reply not counted (source, question or QR bit differs from the query): {}",
                    describe_reply(reply)
                ),
            ));
        }
    }
    let Some(first) = valid.first().copied() else {
        j.evidence.push(Evidence::new(
            EvidenceKind::ResolverSilent,
            Some(qtype),
            format!(
                "no reply from {} to {} attempt(s){}",
                query.server,
                query.attempts,
                query
                    .send_error
                    .as_ref()
                    .map(|e| format!(" (send error: {e})"))
                    .unwrap_or_default()
            ),
        ));
        return QuestionOutcome::Silent;
    };

    let control_ips: Vec<IpAddr> = match control.map(|c| &c.outcome) {
        Some(ControlOutcome::Resolved { ips, .. }) => ips.clone(),
        _ => Vec::new(),
    };
    let control_resolves = !control_ips.is_empty();

    judge_disagreement(qtype, &valid, &control_ips, inputs.tls_proven, j);

    // Known-forged and bogon addresses count in any reply, not just the first.
    for reply in &valid {
        let known: Vec<IpAddr> = reply
            .ips()
            .filter(|ip| inputs.forged_ips.contains(*ip))
            .collect();
        if !known.is_empty() {
            j.forged.extend(known.iter().copied());
            j.found(
                PoisoningMethod::KnownForgedIp,
                Evidence::new(
                    EvidenceKind::KnownForgedIp,
                    Some(qtype),
                    format!(
                        "answer carries address(es) from the forged-IP list: {}",
                        describe_reply(reply)
                    ),
                )
                .with_ips(known),
            );
        }
        let bogons: Vec<IpAddr> = reply
            .ips()
            .filter(|ip| {
                bogon_range(*ip).is_some_and(|range| !control_ips.iter().any(|c| range.contains(c)))
            })
            .collect();
        if !bogons.is_empty() {
            let evidence = Evidence::new(
                EvidenceKind::BogonAnswer,
                Some(qtype),
                format!(
                    "answer carries bogon address(es): {}",
                    describe_reply(reply)
                ),
            )
            .with_ips(bogons.iter().copied());
            if control.is_some_and(|c| !matches!(c.outcome, ControlOutcome::Error { .. })) {
                // The control answered and none of its addresses is in that range.
                j.forged.extend(bogons.iter().copied());
                j.found(PoisoningMethod::Bogon, evidence);
            } else {
                j.evidence.push(evidence);
            }
        }
    }

    let first_ips: Vec<IpAddr> = first.ips().collect();
    if first.is_nxdomain() || (first.is_noerror() && first_ips.is_empty()) {
        let (kind, label) = if first.is_nxdomain() {
            (EvidenceKind::ResolverNxdomain, "NXDOMAIN")
        } else {
            (EvidenceKind::ResolverNoData, "no data")
        };
        j.evidence.push(Evidence::new(
            kind,
            Some(qtype),
            format!("the resolver answered {label}: {}", describe_reply(first)),
        ));
        let control_says_exists = control_resolves
            || (first.is_nxdomain()
                && control.is_some_and(|c| matches!(c.outcome, ControlOutcome::NoData)));
        if control_says_exists {
            j.methods.insert(PoisoningMethod::ForgedNxdomain);
            j.evidence.push(
                Evidence::new(
                    EvidenceKind::ControlResolved,
                    Some(qtype),
                    format!("the control says the name exists, yet the resolver answered {label}"),
                )
                .with_ips(control_ips.iter().copied()),
            );
        }
        return if first.is_nxdomain() {
            QuestionOutcome::Nxdomain
        } else {
            QuestionOutcome::NoData
        };
    }
    if !first.is_noerror() {
        j.evidence.push(Evidence::new(
            EvidenceKind::ResolverError,
            Some(qtype),
            format!(
                "the resolver answered {}: {}",
                first.rcode,
                describe_reply(first)
            ),
        ));
        return QuestionOutcome::ErrorCode(first.rcode.clone());
    }

    // Addresses in the stub view: compare with the control.
    if let Some(control) = control {
        match &control.outcome {
            ControlOutcome::Error { .. } => {}
            ControlOutcome::Resolved { .. } | ControlOutcome::NoData | ControlOutcome::Nxdomain => {
                let common: Vec<IpAddr> = first_ips
                    .iter()
                    .copied()
                    .filter(|ip| control_ips.contains(ip))
                    .collect();
                let proven: Vec<IpAddr> = first_ips
                    .iter()
                    .copied()
                    .filter(|ip| inputs.tls_proven.contains(ip))
                    .collect();
                if !common.is_empty() {
                    j.genuine.extend(first_ips.iter().copied());
                    j.evidence.push(
                        Evidence::new(
                            EvidenceKind::CommonAddress,
                            Some(qtype),
                            format!(
                                "the resolver's addresses share {} with the control's",
                                join_ips(&common)
                            ),
                        )
                        .with_ips(common),
                    );
                } else if !proven.is_empty() {
                    j.genuine.extend(proven.iter().copied());
                    j.evidence.push(
                        Evidence::new(
                            EvidenceKind::TlsProof,
                            Some(qtype),
                            format!(
                                "no address in common with the control, but {} served a certificate valid for the name: consistent (CDN or geo-DNS)",
                                join_ips(&proven)
                            ),
                        )
                        .with_ips(proven),
                    );
                } else {
                    j.forged.extend(first_ips.iter().copied());
                    j.found(
                        PoisoningMethod::Inconsistent,
                        Evidence::new(
                            EvidenceKind::NoCommonAddress,
                            Some(qtype),
                            format!(
                                "the resolver's addresses {} share none with the control's ({})",
                                join_ips(&first_ips),
                                if control_ips.is_empty() {
                                    "none".to_owned()
                                } else {
                                    join_ips(&control_ips)
                                }
                            ),
                        )
                        .with_ips(first_ips.iter().copied()),
                    );
                }
            }
        }
    }
    QuestionOutcome::Addresses(first_ips)
}

/// Several valid replies to one question that disagree: the on-path injection signature.
/// The reply consistent with the control (or the last one) is taken as the genuine one.
fn judge_disagreement(
    qtype: &str,
    valid: &[&DnsReply],
    control_ips: &[IpAddr],
    tls_proven: &[IpAddr],
    j: &mut Judgement,
) {
    if valid.len() < 2 {
        return;
    }
    let signature = |r: &DnsReply| {
        let mut ips: Vec<IpAddr> = r.ips().collect();
        ips.sort();
        ips.dedup();
        (r.rcode.clone(), ips)
    };
    let signatures: Vec<_> = valid.iter().map(|r| signature(r)).collect();
    let distinct: HashSet<_> = signatures.iter().collect();
    if distinct.len() < 2 {
        return;
    }
    let genuine_index = valid
        .iter()
        .position(|r| {
            r.ips()
                .any(|ip| control_ips.contains(&ip) || tls_proven.contains(&ip))
        })
        .unwrap_or(valid.len() - 1);
    let genuine_signature = &signatures[genuine_index];
    let mut detail = format!("{} replies to one {qtype} query disagree:", valid.len());
    let mut forged_here = Vec::new();
    for (index, reply) in valid.iter().enumerate() {
        let is_genuine = &signatures[index] == genuine_signature;
        let _ = write!(
            detail,
            " [{}{}] {};",
            index + 1,
            if is_genuine { " genuine" } else { " forged" },
            describe_reply(reply)
        );
        if !is_genuine {
            forged_here.extend(reply.ips());
        }
    }
    j.forged.extend(forged_here.iter().copied());
    j.found(
        PoisoningMethod::Injection,
        Evidence::new(EvidenceKind::DisagreeingReplies, Some(qtype), detail).with_ips(forged_here),
    );
    let ttls: BTreeSet<u8> = valid.iter().filter_map(|r| r.ip_ttl).collect();
    if ttls.len() > 1 {
        j.evidence.push(Evidence::new(
            EvidenceKind::TtlMismatch,
            Some(qtype),
            format!(
                "the replies arrived with different IP TTLs ({}): they did not travel the same path",
                ttls.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
}

/// Whether the resolver's silence is selective: it answered the benign query, and the
/// control resolves a question it never answered.
fn judge_silence(
    outcomes: &[(String, QuestionOutcome, Option<&ControlAnswer>)],
    benign: &DnsQueryObservation,
) -> Evidence {
    let benign_reply = benign
        .replies
        .iter()
        .find(|r| r.from == benign.server && r.question_matches && r.flags.qr);
    let Some(reply) = benign_reply else {
        return Evidence::new(
            EvidenceKind::ResolverUnresponsive,
            None,
            format!(
                "the resolver {} did not answer a benign query ({} {}, {} attempt(s)) either: \
                 it is down or unreachable, so its silence says nothing about this name",
                benign.server, benign.qname, benign.qtype, benign.attempts
            ),
        );
    };
    let resolved: Vec<(&str, &[IpAddr])> = outcomes
        .iter()
        .filter(|(_, outcome, _)| *outcome == QuestionOutcome::Silent)
        .filter_map(|(qtype, _, control)| match control.map(|c| &c.outcome) {
            Some(ControlOutcome::Resolved { ips, .. }) if !ips.is_empty() => {
                Some((qtype.as_str(), ips.as_slice()))
            }
            _ => None,
        })
        .collect();
    let Some((qtype, ips)) = resolved.first() else {
        return Evidence::new(
            EvidenceKind::ResolverSilent,
            None,
            "the resolver answers a benign query, but the control resolves none of the \
             questions it left unanswered: nothing is kept from the user",
        );
    };
    Evidence::new(
        EvidenceKind::SelectiveSilence,
        Some(qtype),
        format!(
            "the resolver answers a benign query ({} {}: {}), yet never answered this name's {qtype} \
             query, which the control resolves to {}: the name's queries are dropped",
            benign.qname,
            benign.qtype,
            describe_reply(reply),
            join_ips(ips)
        ),
    )
    .with_ips(ips.iter().copied())
}

fn overall_without_poisoning(
    outcomes: &[(String, QuestionOutcome, Option<&ControlAnswer>)],
    has_control: bool,
) -> (DnsVerdict, Option<String>) {
    if outcomes.is_empty() {
        return (DnsVerdict::Inconclusive, None);
    }
    if let Some((_, QuestionOutcome::ErrorCode(rcode), _)) = outcomes
        .iter()
        .find(|(_, o, _)| matches!(o, QuestionOutcome::ErrorCode(_)))
    {
        return (DnsVerdict::Error, Some(rcode.clone()));
    }
    let control_answered = |c: Option<&ControlAnswer>| {
        c.is_some_and(|c| !matches!(c.outcome, ControlOutcome::Error { .. }))
    };
    let silent: Vec<_> = outcomes
        .iter()
        .filter(|(_, o, _)| *o == QuestionOutcome::Silent)
        .collect();
    if !silent.is_empty() {
        return if silent.iter().any(|(_, _, c)| control_answered(*c)) {
            (DnsVerdict::Timeout, None)
        } else {
            (DnsVerdict::Inconclusive, None)
        };
    }
    if !has_control {
        let all_nx = outcomes
            .iter()
            .all(|(_, o, _)| *o == QuestionOutcome::Nxdomain);
        // A genuine NXDOMAIN needs the control's word; addresses with nothing suspicious
        // about them are accepted as they are when the user chose to run without a control.
        return if all_nx {
            (DnsVerdict::Inconclusive, None)
        } else {
            (DnsVerdict::Ok, None)
        };
    }
    if outcomes.iter().any(|(_, _, c)| !control_answered(*c)) {
        return (DnsVerdict::Inconclusive, None);
    }
    if outcomes
        .iter()
        .all(|(_, o, _)| *o == QuestionOutcome::Nxdomain)
    {
        let control_agrees = outcomes
            .iter()
            .all(|(_, _, c)| c.is_some_and(|c| matches!(c.outcome, ControlOutcome::Nxdomain)));
        return if control_agrees {
            (DnsVerdict::Nxdomain, None)
        } else {
            (DnsVerdict::Inconclusive, None)
        };
    }
    (DnsVerdict::Ok, None)
}

fn control_evidence(answer: &ControlAnswer) -> Evidence {
    let qtype = Some(answer.qtype.as_str());
    match &answer.outcome {
        ControlOutcome::Resolved { ips, .. } => Evidence::new(
            EvidenceKind::ControlResolved,
            qtype,
            format!(
                "the control resolved the name to {} in {:.1} ms",
                join_ips(ips),
                answer.elapsed_ms
            ),
        )
        .with_ips(ips.iter().copied()),
        ControlOutcome::NoData => Evidence::new(
            EvidenceKind::ControlNoData,
            qtype,
            "the control found no data of this type",
        ),
        ControlOutcome::Nxdomain => Evidence::new(
            EvidenceKind::ControlNxdomain,
            qtype,
            "the control says the name does not exist",
        ),
        ControlOutcome::Error { message } => Evidence::new(
            EvidenceKind::ControlFailed,
            qtype,
            format!("the control failed: {message}"),
        ),
    }
}

fn join_ips(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        return "nothing".to_owned();
    }
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line describing a reply: who, when, TTL, rcode, addresses.
fn describe_reply(reply: &DnsReply) -> String {
    let ips: Vec<IpAddr> = reply.ips().collect();
    format!(
        "from {} after {:.1} ms, IP TTL {}, id {}, {}, answers: {}",
        reply.from,
        reply.elapsed_ms,
        reply
            .ip_ttl
            .map_or_else(|| "unknown".to_owned(), |t| t.to_string()),
        reply.id,
        reply.rcode,
        if ips.is_empty() {
            format!("{} record(s), no address", reply.answers.len())
        } else {
            join_ips(&ips)
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{DnsFlags, DnsRecord};
    use std::net::SocketAddr;

    const RESOLVER: &str = "198.18.0.53:53";

    fn reply(from: &str, elapsed_ms: f64, rcode: &str, ips: &[&str]) -> DnsReply {
        DnsReply {
            from: from.parse().unwrap(),
            elapsed_ms,
            attempt: 1,
            ip_ttl: Some(60),
            size: 60,
            id: 1,
            flags: DnsFlags {
                qr: true,
                ..DnsFlags::default()
            },
            rcode: rcode.to_owned(),
            question_matches: true,
            answers: ips
                .iter()
                .map(|ip| DnsRecord {
                    name: "x.test".into(),
                    rtype: "A".into(),
                    ttl: 60,
                    data: (*ip).to_owned(),
                })
                .collect(),
            authorities: Vec::new(),
            malformed: None,
        }
    }

    fn query(replies: Vec<DnsReply>) -> DnsQueryObservation {
        DnsQueryObservation {
            role: DnsServerRole::Resolver,
            server: RESOLVER.parse::<SocketAddr>().unwrap(),
            qname: "x.test".into(),
            qtype: "A".into(),
            source_port: 40000,
            ids: vec![1],
            attempts: 1,
            replies,
            listened_ms: 1000.0,
            send_error: None,
        }
    }

    fn control(outcome: ControlOutcome) -> ControlObservation {
        ControlObservation {
            control: "udp:198.18.0.54:53".into(),
            answers: vec![ControlAnswer {
                qtype: "A".into(),
                outcome,
                elapsed_ms: 5.0,
            }],
        }
    }

    fn resolved(ips: &[&str]) -> ControlOutcome {
        ControlOutcome::Resolved {
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            records: Vec::new(),
        }
    }

    fn judge(
        queries: &[DnsQueryObservation],
        control: Option<&ControlObservation>,
        proven: &[IpAddr],
    ) -> DnsAssessment {
        classify_dns(&DnsInputs {
            queries,
            control,
            forged_ips: &ForgedIpList::default(),
            tls_proven: proven,
            benign_query: None,
        })
    }

    #[test]
    fn identical_duplicate_replies_are_not_injection() {
        let q = query(vec![
            reply(RESOLVER, 5.0, "NoError", &["198.18.1.1"]),
            reply(RESOLVER, 6.0, "NoError", &["198.18.1.1"]),
        ]);
        let c = control(resolved(&["198.18.1.1"]));
        let a = judge(&[q], Some(&c), &[]);
        assert_eq!(a.verdict, DnsVerdict::Ok);
        assert!(a.methods.is_empty());
    }

    #[test]
    fn a_reply_from_elsewhere_is_recorded_but_not_counted() {
        let q = query(vec![
            reply("198.18.9.9:53", 2.0, "NoError", &["10.0.0.1"]),
            reply(RESOLVER, 5.0, "NoError", &["198.18.1.1"]),
        ]);
        let c = control(resolved(&["198.18.1.1"]));
        let a = judge(&[q], Some(&c), &[]);
        assert_eq!(a.verdict, DnsVerdict::Ok, "{a:#?}");
        assert!(
            a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::MismatchedReply)
        );
    }

    #[test]
    fn tls_proof_makes_a_different_address_consistent() {
        let q = query(vec![reply(RESOLVER, 5.0, "NoError", &["198.18.7.7"])]);
        let c = control(resolved(&["198.18.1.1"]));
        let proven: Vec<IpAddr> = vec!["198.18.7.7".parse().unwrap()];
        let a = judge(std::slice::from_ref(&q), Some(&c), &proven);
        assert_eq!(a.verdict, DnsVerdict::Ok, "{a:#?}");
        assert!(a.evidence.iter().any(|e| e.kind == EvidenceKind::TlsProof));
        let a = judge(&[q], Some(&c), &[]);
        assert_eq!(a.method, Some(PoisoningMethod::Inconsistent));
    }

    #[test]
    fn failed_control_leaves_addresses_inconclusive() {
        let q = query(vec![reply(RESOLVER, 5.0, "NoError", &["198.18.7.7"])]);
        let c = control(ControlOutcome::Error {
            message: "timed out".into(),
        });
        let a = judge(&[q], Some(&c), &[]);
        assert_eq!(a.verdict, DnsVerdict::Inconclusive);
        assert!(
            a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::ControlFailed)
        );
    }

    #[test]
    fn bogon_in_the_controls_own_range_is_not_poisoning() {
        // The control itself resolves the name into 198.18.0.0/15: that range is normal here.
        let q = query(vec![reply(RESOLVER, 5.0, "NoError", &["198.18.1.1"])]);
        let c = control(resolved(&["198.18.1.1"]));
        assert_eq!(judge(&[q], Some(&c), &[]).verdict, DnsVerdict::Ok);
    }

    #[test]
    fn no_data_while_control_resolves_is_forged_nxdomain() {
        let q = query(vec![reply(RESOLVER, 5.0, "NoError", &[])]);
        let c = control(resolved(&["198.18.1.1"]));
        let a = judge(&[q], Some(&c), &[]);
        assert_eq!(a.method, Some(PoisoningMethod::ForgedNxdomain));
        assert!(
            a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::ResolverNoData)
        );
    }

    #[test]
    fn silence_is_dns_blocking_only_when_the_resolver_answers_a_benign_name() {
        use crate::classify::web::{Blocking, BlockingLayer, target_blocking};
        let silent = query(Vec::new());
        let c = control(resolved(&["198.18.1.1"]));
        let mut alive = query(vec![reply(RESOLVER, 3.0, "NXDomain", &[])]);
        alive.qname = "control.test".into();
        let mut dead = query(Vec::new());
        dead.attempts = 2;
        let judge_with = |benign: &DnsQueryObservation| {
            classify_dns(&DnsInputs {
                queries: std::slice::from_ref(&silent),
                control: Some(&c),
                forged_ips: &ForgedIpList::default(),
                tls_proven: &[],
                benign_query: Some(benign),
            })
        };
        let dropped = judge_with(&alive);
        assert_eq!(dropped.verdict, DnsVerdict::Timeout);
        let selective = dropped
            .evidence
            .iter()
            .find(|e| e.kind == EvidenceKind::SelectiveSilence)
            .expect("selective silence");
        assert_eq!(selective.ips, vec!["198.18.1.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            target_blocking(Some(&dropped), None, None).blocking,
            Blocking::At(BlockingLayer::Dns)
        );

        let down = judge_with(&dead);
        assert_eq!(down.verdict, DnsVerdict::Timeout);
        assert!(
            down.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::ResolverUnresponsive)
        );
        assert_eq!(
            target_blocking(Some(&down), None, None).blocking,
            Blocking::Inconclusive,
            "a resolver that answers nothing says nothing about the name"
        );
        // Without the benign query, silence stays unclear as before.
        let unknown = judge(std::slice::from_ref(&silent), Some(&c), &[]);
        assert_eq!(
            target_blocking(Some(&unknown), None, None).blocking,
            Blocking::Inconclusive
        );
    }
}
