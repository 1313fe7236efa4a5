//! Judges the DNS stage of one target from its observations.
//!
//! Rules (the README's verdict table says the same):
//! - `dns_poisoning` when any poisoning method applies; all that apply are listed and
//!   the strongest (see [`PoisoningMethod`]'s order) becomes `method`:
//!   - `injection`: the sink answered, or replies to one query disagree (rcode or addresses);
//!   - `known_forged_ip`: an answer address is on the `--forged-ips` list;
//!   - `bogon`: an answer address lies in a bogon range that none of the control's do;
//!     without a control, that none of the resolver's addresses for the benign name do
//!     (a network whose normal names resolve there, like a lab, is not poisoned); when
//!     the benign name went unanswered too, the target is `inconclusive`, never `ok`;
//!   - `forged_nxdomain`: NXDOMAIN or no data while the control resolves the name;
//!   - `inconsistent`: the resolver's addresses share none with the control's.
//! - `timeout`: a question never got a reply from the resolver while the control answered it.
//!   A silent question is re-checked (`rechecks`): asked again with a benign query sent
//!   right beside it. When a re-check is answered, the queries were lost and the verdict
//!   rests on that answer. When, in at least [`SILENCE_ROUNDS_NEEDED`] re-checks, the
//!   benign query was answered and the name was not, and the control resolves it, the
//!   evidence says `selective_silence`: the name's queries are dropped, which is DNS
//!   blocking. When the benign queries went unanswered too, the resolver is down
//!   (`resolver_unresponsive`) or drops queries in general (`resolver_drops_queries`,
//!   e.g. a rate limit) and the silence proves nothing.
//! - A truncated reply (TC=1) is judged by the TCP retry's answer; when that failed, the
//!   question proves nothing (`tcp_retry_failed`).
//! - `error`: the resolver answered SERVFAIL, REFUSED or another error code.
//! - `nxdomain`: the resolver says NXDOMAIN and the control agrees.
//! - `ok`: answers consistent with the control (or no control configured, and nothing
//!   suspicious seen).
//! - `inconclusive`: anything else, e.g. the control failed so nothing can be compared.
//!
//! The "stub view" of a question is its first valid reply, which is what an ordinary
//! resolver library would have used.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::ipclass::{ForgedIpList, bogon_range};
use crate::observation::{
    ControlAnswer, ControlObservation, ControlOutcome, DnsQueryObservation, DnsReply,
    DnsServerRole, SilenceRecheck,
};

/// Re-checks in which the benign query beside a silent question must be answered (and
/// the question not) before the silence is called selective.
pub const SILENCE_ROUNDS_NEEDED: usize = 2;
/// Most re-checks of one silent question (re-checks where the benign query went
/// unanswered too do not count towards [`SILENCE_ROUNDS_NEEDED`]).
pub const SILENCE_ROUNDS_MAX: usize = 4;

fn name_silent(recheck: &SilenceRecheck) -> bool {
    recheck.query.valid_replies().next().is_none()
}

fn decisive(recheck: &SilenceRecheck) -> bool {
    name_silent(recheck) && recheck.benign.valid_replies().next().is_some()
}

/// Whether a resolver question should be asked again beside a benign query: it got no
/// valid reply, no re-check answered it, and the re-checks so far neither settle the
/// matter nor exhaust [`SILENCE_ROUNDS_MAX`].
pub fn silence_recheck_wanted(query: &DnsQueryObservation) -> bool {
    if query.role != DnsServerRole::Resolver
        || query.valid_replies().next().is_some()
        || query.rechecks.iter().any(|r| !name_silent(r))
    {
        return false;
    }
    let done = query.rechecks.len();
    let decisive = query.rechecks.iter().filter(|r| decisive(r)).count();
    decisive < SILENCE_ROUNDS_NEEDED
        && done < SILENCE_ROUNDS_MAX
        && decisive + (SILENCE_ROUNDS_MAX - done) >= SILENCE_ROUNDS_NEEDED
}
use crate::record::assessment::{DnsAssessment, Evidence, EvidenceKind, join_ips};
use crate::vocab::{DnsVerdict, PoisoningMethod};

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
    /// Without a control: the resolver's reply for the benign name. Its addresses tell
    /// which bogon ranges are this network's normal address space.
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
    /// Truncated over UDP and no usable answer over TCP.
    Truncated,
}

/// A resolver question's outcome, with what it is judged against.
struct JudgedQuestion<'a> {
    qtype: String,
    outcome: QuestionOutcome,
    control: Option<&'a ControlAnswer>,
    query: &'a DnsQueryObservation,
}

struct Judgement {
    methods: BTreeSet<PoisoningMethod>,
    evidence: Vec<Evidence>,
    forged: BTreeSet<IpAddr>,
    genuine: BTreeSet<IpAddr>,
    /// A bogon answer with no control and no benign answer to compare it with.
    unresolved_bogon: bool,
    /// Addresses the web control vouches for ([`reconsider_with_web_control`]).
    vouches: Vec<Vouch>,
}

impl Judgement {
    fn found(&mut self, method: PoisoningMethod, evidence: Evidence) {
        self.methods.insert(method);
        self.evidence.push(evidence);
    }
}

/// Judge a DNS section again with the web control's view of the name: a resolver answer
/// that shares no address with the control but shares addresses, a prefix or an AS with
/// the helper's answers, or that the helper's TLS handshake proved valid for the name, is
/// consistent (geo-DNS, not poisoning). The section's assessment is replaced when the
/// helper's evidence changes it; a failed helper changes nothing.
///
/// Only a `dns_poisoning` whose sole method is `inconsistent` is reconsidered (the other
/// methods stand on facts a second vantage cannot undo). Every inconsistent answer (one
/// per question type) must be vouched for, each by the first that applies of: an
/// address in common with the helper's lookups, the helper's TLS handshake to one of
/// its addresses valid for the name, one of its addresses in the same /24 (IPv4) or /48
/// (IPv6) as one of the helper's, the same AS (`asns`; AS 0, not routed, is no AS).
/// OONI's `dns_consistency` counts the same facts as consistent (ooni/spec
/// `ts-017-web-connectivity.md`, `dns_consistency`: same addresses, same ASN, TLS
/// handshakes for the domain). The section is then judged again from its observations
/// with those addresses genuine; otherwise it stays `dns_poisoning` and the evidence says
/// that the helper disagrees too.
pub fn reconsider_with_web_control(
    section: &mut crate::record::DnsSection,
    web_control: &crate::observation::web_control::WebControlObservation,
    asns: &crate::asn::AsnTable,
) {
    let Some(helper) = web_control.result() else {
        return;
    };
    let assessment = &section.assessment;
    if assessment.verdict != DnsVerdict::DnsPoisoning
        || assessment.methods != [PoisoningMethod::Inconsistent]
        || section.queries.is_empty()
    {
        return;
    }
    let mut vouches = Vec::new();
    let mut disagreements = Vec::new();
    for inconsistent in assessment
        .evidence
        .iter()
        .filter(|e| e.kind == EvidenceKind::NoCommonAddress)
    {
        match vouch(inconsistent, helper, asns) {
            Ok(vouch) => vouches.push(vouch),
            Err(disagrees) => disagreements.push(disagrees),
        }
    }
    if vouches.is_empty() || !disagreements.is_empty() {
        section.assessment.evidence.extend(disagreements);
        return;
    }
    let proven: Vec<IpAddr> = section
        .tls_proof
        .iter()
        .filter(|o| o.valid_for_name())
        .map(|o| o.ip)
        .collect();
    // No known-forged address was found with the scan's list (the only method was
    // `inconsistent`), so an empty list judges the same.
    let no_list = ForgedIpList::default();
    let inputs = DnsInputs {
        queries: &section.queries,
        control: section.control.as_ref(),
        forged_ips: &no_list,
        tls_proven: &proven,
        benign_query: section.benign_query.as_deref(),
    };
    let mut judged = classify_dns_vouched(&inputs, vouches);
    if judged.methods.contains(&PoisoningMethod::Inconsistent) {
        return;
    }
    // Facts the scan added after judging (addresses not contacted for TLS proof).
    judged.evidence.extend(
        section
            .assessment
            .evidence
            .iter()
            .filter(|e| e.kind == EvidenceKind::TlsProofSkipped)
            .cloned(),
    );
    section.assessment = judged;
}

/// Resolver addresses the web control vouches for, with the evidence saying how.
#[derive(Debug, Clone)]
struct Vouch {
    qtype: Option<String>,
    ips: Vec<IpAddr>,
    evidence: Evidence,
}

/// The network prefix OONI-style consistency compares: /24 for IPv4, /48 for IPv6.
fn same_prefix(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..6] == b.octets()[..6],
        _ => false,
    }
}

/// Whether the web control vouches for an inconsistent answer (`no_common_address`
/// evidence, its addresses in `ips`); `Err` is the evidence that it does not.
fn vouch(
    inconsistent: &Evidence,
    helper: &crate::observation::web_control::WebControlResult,
    asns: &crate::asn::AsnTable,
) -> Result<Vouch, Evidence> {
    let qtype = inconsistent.qtype.as_deref();
    let ours = &inconsistent.ips;
    let theirs: Vec<IpAddr> = {
        let mut ips: Vec<IpAddr> = helper.resolved_addresses().collect();
        ips.sort();
        ips.dedup();
        ips
    };
    let made = |kind, ips: Vec<IpAddr>, detail: String| {
        Ok(Vouch {
            qtype: qtype.map(str::to_owned),
            evidence: Evidence::new(kind, qtype, detail).with_ips(ips.iter().copied()),
            ips,
        })
    };
    let common: Vec<IpAddr> = ours
        .iter()
        .copied()
        .filter(|ip| theirs.contains(ip))
        .collect();
    if !common.is_empty() {
        let detail = format!(
            "no address in common with the control, but the web control's own lookups returned {} too: consistent (an answer for another region)",
            join_ips(&common)
        );
        return made(EvidenceKind::WebControlCommonAddress, common, detail);
    }
    let proven: Vec<IpAddr> = ours
        .iter()
        .copied()
        .filter(|ip| {
            helper.tls.iter().any(|o| {
                o.ip == *ip && o.name.eq_ignore_ascii_case(&helper.name) && o.valid_for_name()
            })
        })
        .collect();
    if !proven.is_empty() {
        let detail = format!(
            "no address in common with the control, but the web control's TLS handshake to {} with SNI {:?} gave a chain valid for the name: consistent (CDN or geo-DNS)",
            join_ips(&proven),
            helper.name
        );
        return made(EvidenceKind::WebControlTlsProof, proven, detail);
    }
    let near: Vec<(IpAddr, IpAddr)> = ours
        .iter()
        .filter_map(|ip| {
            theirs
                .iter()
                .find(|t| same_prefix(*ip, **t))
                .map(|t| (*ip, *t))
        })
        .collect();
    if !near.is_empty() {
        let detail = format!(
            "no address in common with the control, but in the same /24 (IPv4) or /48 (IPv6) as the web control's answer: {}: consistent (geo-DNS)",
            near.iter()
                .map(|(o, t)| format!("{o} near {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return made(
            EvidenceKind::WebControlSamePrefix,
            near.into_iter().map(|(o, _)| o).collect(),
            detail,
        );
    }
    let their_asns: Vec<(IpAddr, crate::asn::AsnEntry)> = theirs
        .iter()
        .filter_map(|t| asns.lookup(*t).map(|e| (*t, e)))
        .collect();
    let same_as: Vec<(IpAddr, IpAddr, crate::asn::AsnEntry)> = ours
        .iter()
        .filter_map(|ip| {
            let mine = asns.lookup(*ip)?;
            their_asns
                .iter()
                .find(|(_, e)| e.asn == mine.asn)
                .map(|(t, _)| (*ip, *t, mine))
        })
        .collect();
    if !same_as.is_empty() {
        let detail = format!(
            "no address in common with the control, but in the same AS as the web control's answer: {}: consistent (geo-DNS)",
            same_as
                .iter()
                .map(|(o, t, e)| format!("{o} and {t} in AS{} {}", e.asn, e.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return made(
            EvidenceKind::WebControlSameAs,
            same_as.into_iter().map(|(o, _, _)| o).collect(),
            detail,
        );
    }
    Err(Evidence::new(
        EvidenceKind::WebControlDisagrees,
        qtype,
        format!(
            "the web control does not vouch for {} either: its lookups returned {} (no common address, /24 or /48, or AS{}), and no handshake of its to these addresses was valid for the name",
            join_ips(ours),
            join_ips(&theirs),
            if asns.is_empty() { ", no AS table given" } else { "" }
        ),
    )
    .with_ips(ours.iter().copied()))
}

pub fn classify_dns(inputs: &DnsInputs<'_>) -> DnsAssessment {
    classify_dns_vouched(inputs, Vec::new())
}

/// [`classify_dns`] with addresses the web control vouches for: genuine when the
/// control disagrees, stated by the web control's evidence.
fn classify_dns_vouched(inputs: &DnsInputs<'_>, vouches: Vec<Vouch>) -> DnsAssessment {
    let mut j = Judgement {
        methods: BTreeSet::new(),
        evidence: Vec::new(),
        forged: BTreeSet::new(),
        genuine: BTreeSet::new(),
        unresolved_bogon: false,
        vouches,
    };
    for query in inputs
        .queries
        .iter()
        .filter(|q| q.role == DnsServerRole::Sink)
    {
        judge_sink(query, &mut j);
    }

    let mut outcomes: Vec<JudgedQuestion<'_>> = Vec::new();
    for query in inputs
        .queries
        .iter()
        .filter(|q| q.role == DnsServerRole::Resolver)
    {
        let control = inputs.control.and_then(|c| c.answer(&query.qtype));
        let outcome = judge_resolver_question(query, control, inputs, &mut j);
        outcomes.push(JudgedQuestion {
            qtype: query.qtype.clone(),
            outcome,
            control,
            query,
        });
    }

    if let Some(control) = inputs.control {
        for answer in &control.answers {
            j.evidence.push(control_evidence(answer));
            if let ControlOutcome::Resolved { ips, .. } = &answer.outcome {
                j.genuine.extend(ips.iter().copied());
            }
        }
    } else {
        j.evidence
            .push(Evidence::structured(EvidenceKind::NoControl, None));
    }

    let (verdict, rcode) = if j.methods.is_empty() {
        overall_without_poisoning(&outcomes, inputs.control.is_some(), j.unresolved_bogon)
    } else {
        (DnsVerdict::DnsPoisoning, None)
    };
    if verdict == DnsVerdict::Timeout {
        for outcome in outcomes
            .iter()
            .filter(|o| o.outcome == QuestionOutcome::Silent)
        {
            if let Some(evidence) = judge_silence(outcome) {
                j.evidence.push(evidence);
            }
        }
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
    if query.valid_replies().next().is_none()
        && let Some(answered) = query.rechecks.iter().find(|r| !name_silent(r))
    {
        j.evidence.push(Evidence::new(
            EvidenceKind::AnsweredOnRecheck,
            Some(qtype),
            format!(
                "no reply to the first {} attempt(s), but a re-check was answered: the queries \
                 were lost, not blocked; the verdict rests on the re-check's answer",
                query.attempts
            ),
        ));
        return judge_resolver_question(&answered.query, control, inputs, j);
    }
    let valid = match usable_replies(query, qtype, j) {
        Ok(valid) => valid,
        Err(outcome) => return outcome,
    };
    let first = valid[0];
    let control_ips: Vec<IpAddr> = match control.map(|c| &c.outcome) {
        Some(ControlOutcome::Resolved { ips, .. }) => ips.clone(),
        _ => Vec::new(),
    };

    judge_disagreement(qtype, &valid, &control_ips, inputs.tls_proven, j);

    judge_listed_and_bogon_addresses(qtype, &valid, control, &control_ips, inputs, j);
    let first_ips: Vec<IpAddr> = first.ips().collect();
    if let Some(outcome) = judge_answer_without_addresses(qtype, first, control, &control_ips, j) {
        return outcome;
    }
    if let Some(control) = control {
        judge_against_control(
            qtype,
            (&first_ips, first.elapsed_ms),
            control,
            &control_ips,
            inputs.tls_proven,
            j,
        );
    }
    QuestionOutcome::Addresses(first_ips)
}

/// The replies that answer the question from the server asked (mismatched ones become
/// evidence), with a truncated reply replaced by its TCP retry. `Err` when nothing usable
/// arrived: a truncated reply without a working retry, or silence.
fn usable_replies<'q>(
    query: &'q DnsQueryObservation,
    qtype: &str,
    j: &mut Judgement,
) -> Result<Vec<&'q DnsReply>, QuestionOutcome> {
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
    judge_duplicates(query, j);
    if valid.first().is_some_and(|r| r.flags.tc) {
        let truncated = valid[0];
        let tcp_reply = query.tcp.as_ref().and_then(|tcp| {
            tcp.reply
                .as_ref()
                .filter(|r| tcp.error.is_none() && r.question_matches && r.flags.qr)
        });
        let Some(tcp_reply) = tcp_reply else {
            let why = match &query.tcp {
                Some(tcp) => tcp
                    .error
                    .clone()
                    .unwrap_or_else(|| "the reply does not answer the question".to_owned()),
                None => "no TCP retry was made".to_owned(),
            };
            j.evidence.push(Evidence::new(
                EvidenceKind::TcpRetryFailed,
                Some(qtype),
                format!(
                    "the reply was truncated (TC=1, {}), and the TCP retry failed ({why}): \
                     a truncated reply is no answer, so this proves nothing",
                    describe_reply(truncated)
                ),
            ));
            return Err(QuestionOutcome::Truncated);
        };
        j.evidence.push(Evidence::new(
            EvidenceKind::TruncatedReply,
            Some(qtype),
            format!(
                "the reply was truncated (TC=1, {}); asked again over TCP: {}",
                describe_reply(truncated),
                describe_reply(tcp_reply)
            ),
        ));
        valid = std::iter::once(tcp_reply)
            .chain(valid.into_iter().filter(|r| !r.flags.tc))
            .collect();
    } else {
        // A truncated reply after a complete one carries no answer to compare.
        valid.retain(|r| !r.flags.tc);
    }
    if valid.is_empty() {
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
        return Err(QuestionOutcome::Silent);
    }
    Ok(valid)
}

/// Known-forged and bogon addresses count in any reply, not just the first.
fn judge_listed_and_bogon_addresses(
    qtype: &str,
    valid: &[&DnsReply],
    control: Option<&ControlAnswer>,
    control_ips: &[IpAddr],
    inputs: &DnsInputs<'_>,
    j: &mut Judgement,
) {
    for reply in valid {
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
            // Formatted only when kept: on a network whose normal answers lie in a bogon
            // range (a lab, 198.18.0.0/15) every `ok` name passes here.
            let evidence = |ips: &[IpAddr]| {
                Evidence::new(
                    EvidenceKind::BogonAnswer,
                    Some(qtype),
                    format!(
                        "answer carries bogon address(es): {}",
                        describe_reply(reply)
                    ),
                )
                .with_ips(ips.iter().copied())
            };
            if control.is_some_and(|c| !matches!(c.outcome, ControlOutcome::Error { .. })) {
                // The control answered and none of its addresses is in that range.
                j.forged.extend(bogons.iter().copied());
                j.found(PoisoningMethod::Bogon, evidence(&bogons));
            } else if inputs.control.is_none() {
                judge_bogons_without_control(qtype, &bogons, evidence, inputs.benign_query, j);
            } else {
                j.evidence.push(evidence(&bogons));
            }
        }
    }
}

/// NXDOMAIN, an empty NOERROR or an error code from the resolver: the question's outcome,
/// with a forged NXDOMAIN claimed when the control says the name exists. `None` when the
/// first reply carries addresses.
fn judge_answer_without_addresses(
    qtype: &str,
    first: &DnsReply,
    control: Option<&ControlAnswer>,
    control_ips: &[IpAddr],
    j: &mut Judgement,
) -> Option<QuestionOutcome> {
    let first_ips: Vec<IpAddr> = first.ips().collect();
    if first.is_nxdomain() || (first.is_noerror() && first_ips.is_empty()) {
        let (kind, label) = if first.is_nxdomain() {
            (EvidenceKind::ResolverNxdomain, "NXDOMAIN")
        } else {
            (EvidenceKind::ResolverNoData, "no data")
        };
        // The sentence describes the reply for a full record; `ms` states it in a lean one.
        j.evidence.push(
            Evidence::new(
                kind,
                Some(qtype),
                format!("the resolver answered {label}: {}", describe_reply(first)),
            )
            .with_ms(first.elapsed_ms),
        );
        let control_says_exists = !control_ips.is_empty()
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
        return Some(if first.is_nxdomain() {
            QuestionOutcome::Nxdomain
        } else {
            QuestionOutcome::NoData
        });
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
        return Some(QuestionOutcome::ErrorCode(first.rcode.clone()));
    }
    None
}

/// Addresses in the stub view, compared with the control's: a common address or a TLS
/// proof makes them genuine; otherwise they are inconsistent.
fn judge_against_control(
    qtype: &str,
    (first_ips, first_ms): (&[IpAddr], f64),
    control: &ControlAnswer,
    control_ips: &[IpAddr],
    tls_proven: &[IpAddr],
    j: &mut Judgement,
) {
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
                .filter(|ip| tls_proven.contains(ip))
                .collect();
            if !common.is_empty() {
                j.genuine.extend(first_ips.iter().copied());
                // Structured: the sentence is formatted only if something shows it.
                j.evidence.push(
                    Evidence::structured(EvidenceKind::CommonAddress, Some(qtype))
                        .with_ips(common)
                        .with_ms(first_ms),
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
            } else if let Some(vouch) = j.vouches.iter().find(|v| {
                v.qtype.as_deref() == Some(qtype) && v.ips.iter().any(|ip| first_ips.contains(ip))
            }) {
                let (ips, evidence) = (vouch.ips.clone(), vouch.evidence.clone());
                j.genuine.extend(ips);
                j.evidence.push(evidence);
            } else {
                j.forged.extend(first_ips.iter().copied());
                j.found(
                    PoisoningMethod::Inconsistent,
                    Evidence::new(
                        EvidenceKind::NoCommonAddress,
                        Some(qtype),
                        format!(
                            "the resolver's addresses {} share none with the control's ({})",
                            join_ips(first_ips),
                            if control_ips.is_empty() {
                                "none".to_owned()
                            } else {
                                join_ips(control_ips)
                            }
                        ),
                    )
                    .with_ips(first_ips.iter().copied()),
                );
            }
        }
    }
}

/// Several valid replies to one attempt of a question that disagree: the on-path
/// injection signature (the forged reply races the genuine one to the same query id).
/// Replies to different attempts are not compared that way: a late reply to the first
/// attempt and the retry's reply may carry different answers from a load-balanced
/// resolver or a CDN, and that is recorded as such, not as an injection.
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
    let mut by_attempt: BTreeMap<u32, Vec<&DnsReply>> = BTreeMap::new();
    for reply in valid {
        by_attempt.entry(reply.attempt).or_default().push(reply);
    }
    let disagrees = |replies: &[&DnsReply]| {
        replies
            .iter()
            .map(|r| signature(r))
            .collect::<HashSet<_>>()
            .len()
            > 1
    };
    // The replies of the attempts whose replies disagree among themselves.
    let contested: Vec<&DnsReply> = by_attempt
        .values()
        .filter(|replies| disagrees(replies))
        .flatten()
        .copied()
        .collect();
    if contested.is_empty() {
        if disagrees(valid) {
            let mut detail = format!(
                "replies to {} attempts of one {qtype} query disagree, each attempt's replies agree:",
                by_attempt.len()
            );
            for reply in valid {
                let _ = write!(
                    detail,
                    " [attempt {}] {};",
                    reply.attempt,
                    describe_reply(reply)
                );
            }
            j.evidence.push(Evidence::new(
                EvidenceKind::AnswerChangedBetweenAttempts,
                Some(qtype),
                detail,
            ));
        }
        return;
    }
    let signatures: Vec<_> = contested.iter().map(|r| signature(r)).collect();
    let genuine_index = contested
        .iter()
        .position(|r| {
            r.ips()
                .any(|ip| control_ips.contains(&ip) || tls_proven.contains(&ip))
        })
        .unwrap_or(contested.len() - 1);
    let genuine_signature = &signatures[genuine_index];
    let mut detail = format!("{} replies to one {qtype} query disagree:", contested.len());
    let mut forged_here = Vec::new();
    for (index, reply) in contested.iter().enumerate() {
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
    let ttls: BTreeSet<u8> = contested.iter().filter_map(|r| r.ip_ttl).collect();
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

/// Without a control, the resolver's own addresses for the benign name stand in for
/// the control's: a bogon range they use is this network's normal address space.
fn judge_bogons_without_control(
    qtype: &str,
    bogons: &[IpAddr],
    evidence: impl Fn(&[IpAddr]) -> Evidence,
    benign: Option<&DnsQueryObservation>,
    j: &mut Judgement,
) {
    let Some(benign_reply) = benign.and_then(|b| b.valid_replies().next()) else {
        j.evidence.push(evidence(bogons));
        j.unresolved_bogon = true;
        j.evidence.push(Evidence::new(
            EvidenceKind::NoControl,
            Some(qtype),
            "bogon answer, no control, and no answer for the benign name to tell whether \
             this range is normal here: inconclusive, not ok",
        ));
        return;
    };
    let benign_ips: Vec<IpAddr> = benign_reply.ips().collect();
    let (in_use, forged): (Vec<IpAddr>, Vec<IpAddr>) = bogons.iter().partition(|ip| {
        bogon_range(**ip).is_some_and(|range| benign_ips.iter().any(|b| range.contains(b)))
    });
    if !forged.is_empty() {
        j.forged.extend(forged.iter().copied());
        let mut evidence = evidence(&forged);
        let _ = write!(
            evidence.detail,
            "; no control, and the resolver's answer for the benign name ({}) lies in no such range",
            join_ips(&benign_ips)
        );
        j.found(PoisoningMethod::Bogon, evidence);
    }
    if !in_use.is_empty() {
        // Structured: an `ok` name in a network that answers from a bogon range carries
        // this fact, and its sentence is produced only when a full record or a text
        // output asks (the benign name's answer is in the observations).
        j.evidence.push(
            Evidence::structured(EvidenceKind::BogonRangeInUse, Some(qtype)).with_ips(in_use),
        );
    }
}

/// More replies than attempts: record the duplicates (count, timing, what was omitted).
fn judge_duplicates(query: &DnsQueryObservation, j: &mut Judgement) {
    let total = query.reply_count();
    let attempts = usize::try_from(query.attempts).unwrap_or(usize::MAX);
    if total <= attempts.max(1) {
        return;
    }
    let Some(first) = query.replies.first() else {
        return;
    };
    let same = |r: &DnsReply| {
        r.from == first.from
            && r.id == first.id
            && r.rcode == first.rcode
            && r.flags == first.flags
            && r.answers == first.answers
    };
    let identical_kept = query.replies.iter().skip(1).filter(|r| same(r)).count();
    let mut last_ms = query.replies.last().map_or(0.0, |r| r.elapsed_ms);
    let mut detail = format!(
        "{total} replies to {} attempt(s), from {:.1} ms",
        query.attempts, first.elapsed_ms
    );
    let mut identical = identical_kept;
    if let Some(omitted) = &query.omitted_replies {
        identical += omitted.identical_to_first;
        last_ms = last_ms.max(omitted.last_ms as f64);
    }
    let _ = write!(
        detail,
        " to {last_ms:.1} ms; {identical} repeat(s) of the first; {} kept in full",
        query.replies.len()
    );
    if let Some(omitted) = &query.omitted_replies {
        let _ = write!(
            detail,
            ", {} more counted but not kept ({} bytes, SHA-256 {})",
            omitted.count, omitted.bytes, omitted.sha256
        );
    }
    j.evidence.push(Evidence::new(
        EvidenceKind::DuplicateReplies,
        Some(&query.qtype),
        detail,
    ));
}

/// Whether a silent question's silence is selective: in enough re-checks the benign
/// query sent beside it was answered while it was not, and the control resolves it.
fn judge_silence(outcome: &JudgedQuestion<'_>) -> Option<Evidence> {
    let query = outcome.query;
    let qtype = outcome.qtype.as_str();
    if query.rechecks.is_empty() {
        return None;
    }
    let control_ips = match outcome.control.map(|c| &c.outcome) {
        Some(ControlOutcome::Resolved { ips, .. }) if !ips.is_empty() => ips.as_slice(),
        _ => return None,
    };
    let rounds = query.rechecks.len();
    let decisive: Vec<&SilenceRecheck> = query.rechecks.iter().filter(|r| decisive(r)).collect();
    let benign = &query.rechecks[0].benign;
    if decisive.len() >= SILENCE_ROUNDS_NEEDED {
        let reply = decisive[0]
            .benign
            .valid_replies()
            .next()
            .map(describe_reply)
            .unwrap_or_default();
        return Some(
            Evidence::new(
                EvidenceKind::SelectiveSilence,
                Some(qtype),
                format!(
                    "the resolver never answered this name's {qtype} query, in {} attempt(s) and \
                     {rounds} re-check(s), while it answered the benign query sent beside it in \
                     {} of them ({} {}: {reply}); the control resolves the name to {}: the name's \
                     queries are dropped",
                    query.attempts,
                    decisive.len(),
                    benign.qname,
                    benign.qtype,
                    join_ips(control_ips)
                ),
            )
            .with_ips(control_ips.iter().copied()),
        );
    }
    if decisive.is_empty() {
        return Some(Evidence::new(
            EvidenceKind::ResolverUnresponsive,
            Some(qtype),
            format!(
                "the resolver {} did not answer the benign query ({} {}) sent beside this \
                 name's in any of {rounds} re-check(s) either: it is down, unreachable or \
                 dropping queries, so its silence says nothing about this name",
                query.server, benign.qname, benign.qtype
            ),
        ));
    }
    Some(Evidence::new(
        EvidenceKind::ResolverDropsQueries,
        Some(qtype),
        format!(
            "in {rounds} re-check(s) the benign query ({} {}) sent beside this name's was \
             answered only {} time(s): the resolver drops queries in general (rate limit or \
             loss), so this name's silence is not shown to be selective",
            benign.qname,
            benign.qtype,
            decisive.len()
        ),
    ))
}

fn overall_without_poisoning(
    outcomes: &[JudgedQuestion<'_>],
    has_control: bool,
    unresolved_bogon: bool,
) -> (DnsVerdict, Option<String>) {
    if outcomes.is_empty() {
        return (DnsVerdict::Inconclusive, None);
    }
    if let Some(QuestionOutcome::ErrorCode(rcode)) = outcomes
        .iter()
        .map(|o| &o.outcome)
        .find(|o| matches!(o, QuestionOutcome::ErrorCode(_)))
    {
        return (DnsVerdict::Error, Some(rcode.clone()));
    }
    let control_answered = |c: Option<&ControlAnswer>| {
        c.is_some_and(|c| !matches!(c.outcome, ControlOutcome::Error { .. }))
    };
    let silent: Vec<_> = outcomes
        .iter()
        .filter(|o| o.outcome == QuestionOutcome::Silent)
        .collect();
    if !silent.is_empty() {
        return if silent.iter().any(|o| control_answered(o.control)) {
            (DnsVerdict::Timeout, None)
        } else {
            (DnsVerdict::Inconclusive, None)
        };
    }
    if outcomes
        .iter()
        .any(|o| o.outcome == QuestionOutcome::Truncated)
    {
        return (DnsVerdict::Inconclusive, None);
    }
    if !has_control {
        let all_nx = outcomes
            .iter()
            .all(|o| o.outcome == QuestionOutcome::Nxdomain);
        // A genuine NXDOMAIN needs the control's word; addresses with nothing suspicious
        // about them are accepted as they are when the user chose to run without a control.
        // A bogon answer is suspicious: with nothing to compare it with, it stays open.
        return if all_nx || unresolved_bogon {
            (DnsVerdict::Inconclusive, None)
        } else {
            (DnsVerdict::Ok, None)
        };
    }
    if outcomes.iter().any(|o| !control_answered(o.control)) {
        return (DnsVerdict::Inconclusive, None);
    }
    if outcomes
        .iter()
        .all(|o| o.outcome == QuestionOutcome::Nxdomain)
    {
        let control_agrees = outcomes.iter().all(|o| {
            o.control
                .is_some_and(|c| matches!(c.outcome, ControlOutcome::Nxdomain))
        });
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
        // Structured (the `ok` path): the sentence is formatted only if something shows it.
        ControlOutcome::Resolved { ips, .. } => {
            Evidence::structured(EvidenceKind::ControlResolved, qtype)
                .with_ips(ips.iter().copied())
                .with_ms(answer.elapsed_ms)
        }
        ControlOutcome::NoData => Evidence::structured(EvidenceKind::ControlNoData, qtype),
        ControlOutcome::Nxdomain => Evidence::structured(EvidenceKind::ControlNxdomain, qtype),
        ControlOutcome::Error { message } => Evidence::new(
            EvidenceKind::ControlFailed,
            qtype,
            format!("the control failed: {message}"),
        ),
    }
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
            ip_id: None,
            df: None,
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
                .map(|ip| DnsRecord::new("x.test".into(), "A".into(), 60, (*ip).to_owned()))
                .collect(),
            authorities: Vec::new(),
            malformed: None,
            records_omitted: 0,
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
            omitted_replies: None,
            tcp: None,
            rechecks: Vec::new(),
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

    /// The `ok` path formats no sentence: its facts are structured, and the sentences
    /// a full record shows are produced from them, in the words they always had.
    #[test]
    fn an_ok_judgement_formats_no_evidence_sentence() {
        let q = query(vec![reply(RESOLVER, 5.0, "NoError", &["198.18.1.1"])]);
        let c = control(resolved(&["198.18.1.1"]));
        let a = judge(&[q], Some(&c), &[]);
        assert_eq!(a.verdict, DnsVerdict::Ok);
        assert!(a.evidence.iter().all(Evidence::is_structured), "{a:#?}");
        let sentences: Vec<String> = a.evidence.iter().map(|e| e.describe().into()).collect();
        assert_eq!(
            sentences,
            [
                "the resolver's addresses share 198.18.1.1 with the control's",
                "the control resolved the name to 198.18.1.1 in 5.0 ms",
            ]
        );
        assert_eq!(
            Evidence::structured(EvidenceKind::NoControl, None).describe(),
            "no control configured: answers were not compared with an uncensored path"
        );
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

    /// A late reply to the first attempt and the retry's reply may carry different
    /// answers (a load-balanced resolver, a CDN): recorded, not taken for an injection.
    /// The same two replies to one attempt are the injection signature.
    #[test]
    fn replies_to_different_attempts_that_disagree_are_no_injection() {
        let late_first = reply(RESOLVER, 2300.0, "NoError", &["198.18.1.1"]);
        let mut retry = reply(RESOLVER, 2010.0, "NoError", &["198.18.1.2"]);
        retry.attempt = 2;
        let mut q = query(vec![retry.clone(), late_first.clone()]);
        q.attempts = 2;
        q.ids = vec![1, 2];
        let c = control(resolved(&["198.18.1.2"]));
        let a = judge(std::slice::from_ref(&q), Some(&c), &[]);
        assert_eq!(a.verdict, DnsVerdict::Ok, "{a:#?}");
        assert!(a.methods.is_empty(), "{a:#?}");
        let changed: Vec<&Evidence> = a
            .evidence
            .iter()
            .filter(|e| e.kind == EvidenceKind::AnswerChangedBetweenAttempts)
            .collect();
        assert_eq!(changed.len(), 1, "{a:#?}");
        assert!(changed[0].detail.contains("[attempt 2]"), "{a:#?}");
        assert!(changed[0].detail.contains("[attempt 1]"), "{a:#?}");
        assert!(
            !a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::DisagreeingReplies)
        );

        // Both replies to the retry: an injection, judged as before.
        let mut forged = late_first;
        forged.attempt = 2;
        let mut q = query(vec![forged, retry]);
        q.attempts = 2;
        q.ids = vec![1, 2];
        let a = judge(&[q], Some(&c), &[]);
        assert_eq!(a.verdict, DnsVerdict::DnsPoisoning, "{a:#?}");
        assert!(a.methods.contains(&PoisoningMethod::Injection), "{a:#?}");
        assert!(
            !a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::AnswerChangedBetweenAttempts)
        );
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

    fn benign(replies: Vec<DnsReply>) -> DnsQueryObservation {
        let mut q = query(replies);
        q.qname = "control.test".into();
        q
    }

    fn recheck(name_answer: Option<DnsReply>, benign_answered: bool) -> SilenceRecheck {
        SilenceRecheck {
            query: query(name_answer.into_iter().collect()),
            benign: benign(if benign_answered {
                vec![reply(RESOLVER, 3.0, "NXDomain", &[])]
            } else {
                Vec::new()
            }),
        }
    }

    fn silent_with(rechecks: Vec<SilenceRecheck>) -> DnsQueryObservation {
        let mut silent = query(Vec::new());
        silent.attempts = 2;
        silent.rechecks = rechecks;
        silent
    }

    #[test]
    fn silence_is_dns_blocking_only_when_benign_queries_beside_it_are_answered() {
        use crate::classify::web::target_blocking;
        use crate::vocab::{Blocking, BlockingLayer};
        let c = control(resolved(&["198.18.1.1"]));
        let blocking = |q: &DnsQueryObservation| {
            let a = judge(std::slice::from_ref(q), Some(&c), &[]);
            (a.clone(), target_blocking(Some(&a), None, None).blocking)
        };

        // Dropped every time while the benign query beside it is answered: blocking.
        let dropped = silent_with(vec![recheck(None, true), recheck(None, true)]);
        assert!(!silence_recheck_wanted(&dropped));
        let (a, b) = blocking(&dropped);
        assert_eq!(a.verdict, DnsVerdict::Timeout);
        let selective = a
            .evidence
            .iter()
            .find(|e| e.kind == EvidenceKind::SelectiveSilence)
            .expect("selective silence");
        assert_eq!(selective.ips, vec!["198.18.1.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(b, Blocking::At(BlockingLayer::Dns));

        // One decisive round is not enough: more are wanted, and meanwhile no claim.
        let once = silent_with(vec![recheck(None, true)]);
        assert!(silence_recheck_wanted(&once));
        assert_eq!(blocking(&once).1, Blocking::Inconclusive);

        // The benign query beside it went unanswered too, sometimes: a resolver that
        // drops queries in general (a rate limit), not a blocked name.
        let lossy = silent_with(vec![
            recheck(None, false),
            recheck(None, true),
            recheck(None, false),
            recheck(None, false),
        ]);
        assert!(!silence_recheck_wanted(&lossy), "rounds exhausted");
        let (a, b) = blocking(&lossy);
        assert!(
            a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::ResolverDropsQueries)
        );
        assert_eq!(b, Blocking::Inconclusive);

        // Never any benign answer: down.
        let down = silent_with(vec![recheck(None, false); 3]);
        assert!(
            !silence_recheck_wanted(&down),
            "two decisive rounds are out of reach"
        );
        let (a, b) = blocking(&down);
        assert!(
            a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::ResolverUnresponsive)
        );
        assert_eq!(b, Blocking::Inconclusive);

        // A re-check that is answered: the queries were lost; judged on that answer.
        let lost = silent_with(vec![recheck(
            Some(reply(RESOLVER, 4.0, "NoError", &["198.18.1.1"])),
            true,
        )]);
        assert!(!silence_recheck_wanted(&lost));
        let (a, b) = blocking(&lost);
        assert_eq!(a.verdict, DnsVerdict::Ok, "{a:#?}");
        assert!(
            a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::AnsweredOnRecheck)
        );
        assert_eq!(b, Blocking::No);

        // No re-check at all: silence stays unclear as before.
        let (_, b) = blocking(&silent_with(Vec::new()));
        assert_eq!(b, Blocking::Inconclusive);
    }

    #[test]
    fn truncated_reply_is_judged_by_the_tcp_answer() {
        use crate::observation::DnsTcpExchange;
        let c = control(resolved(&["198.18.1.1"]));
        let mut slip = reply(RESOLVER, 2.0, "NoError", &[]);
        slip.flags.tc = true;
        let mut q = query(vec![slip]);
        q.tcp = Some(Box::new(DnsTcpExchange {
            elapsed_ms: 3.0,
            reply: Some(reply(RESOLVER, 3.0, "NoError", &["198.18.1.1"])),
            error: None,
        }));
        let a = judge(std::slice::from_ref(&q), Some(&c), &[]);
        assert_eq!(a.verdict, DnsVerdict::Ok, "{a:#?}");
        assert!(
            a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::TruncatedReply)
        );

        // The TCP answer itself can be poisoned: judged like any answer.
        q.tcp.as_mut().unwrap().reply = Some(reply(RESOLVER, 3.0, "NoError", &["10.10.34.34"]));
        let a = judge(std::slice::from_ref(&q), Some(&c), &[]);
        assert_eq!(a.method, Some(PoisoningMethod::Bogon), "{a:#?}");

        // TCP failed: not forged_nxdomain, nothing to judge on.
        q.tcp = Some(Box::new(DnsTcpExchange {
            elapsed_ms: 1.0,
            reply: None,
            error: Some("connect: refused".into()),
        }));
        let a = judge(std::slice::from_ref(&q), Some(&c), &[]);
        assert_eq!(a.verdict, DnsVerdict::Inconclusive, "{a:#?}");
        assert!(a.methods.is_empty());
        assert!(
            a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::TcpRetryFailed)
        );
    }

    #[test]
    fn bogon_without_control_is_poisoning_unless_the_benign_name_uses_that_range() {
        let q = query(vec![reply(RESOLVER, 5.0, "NoError", &["10.10.34.34"])]);
        let judge_with = |benign: Option<&DnsQueryObservation>| {
            classify_dns(&DnsInputs {
                queries: std::slice::from_ref(&q),
                control: None,
                forged_ips: &ForgedIpList::default(),
                tls_proven: &[],
                benign_query: benign,
            })
        };
        // The benign name resolves elsewhere (or not at all): the bogon is forged.
        let public = benign(vec![reply(RESOLVER, 2.0, "NXDomain", &[])]);
        let a = judge_with(Some(&public));
        assert_eq!(a.verdict, DnsVerdict::DnsPoisoning, "{a:#?}");
        assert_eq!(a.method, Some(PoisoningMethod::Bogon));
        assert_eq!(a.forged_ips, vec!["10.10.34.34".parse::<IpAddr>().unwrap()]);
        // A network where names normally resolve into 10/8: not a forgery.
        let private = benign(vec![reply(RESOLVER, 2.0, "NoError", &["10.0.0.7"])]);
        let a = judge_with(Some(&private));
        assert_eq!(a.verdict, DnsVerdict::Ok, "{a:#?}");
        let in_use = a
            .evidence
            .iter()
            .find(|e| e.kind == EvidenceKind::BogonRangeInUse)
            .expect("the range in use is stated");
        // A structured fact: the address is a field, the sentence is produced on demand.
        assert_eq!(in_use.ips, vec!["10.10.34.34".parse::<IpAddr>().unwrap()]);
        assert!(in_use.detail.is_empty(), "{in_use:?}");
        assert!(
            in_use
                .describe()
                .starts_with("10.10.34.34 lie(s) in a bogon range"),
            "{}",
            in_use.describe()
        );
        // Nothing to compare with: never ok.
        for unknown in [None, Some(&benign(Vec::new()))] {
            let a = judge_with(unknown);
            assert_eq!(a.verdict, DnsVerdict::Inconclusive, "{a:#?}");
            assert!(
                a.evidence
                    .iter()
                    .any(|e| e.kind == EvidenceKind::BogonAnswer)
            );
        }
    }

    #[test]
    fn duplicate_replies_are_evidence_with_count_and_timing() {
        use crate::observation::OmittedReplies;
        let mut q = query(
            (0..16)
                .map(|i| reply(RESOLVER, 5.0 + f64::from(i), "NoError", &["198.18.1.1"]))
                .collect(),
        );
        q.omitted_replies = Some(OmittedReplies {
            count: 9984,
            bytes: 9984 * 60,
            first_ms: 21,
            last_ms: 900,
            identical_to_first: 9984,
            sha256: "ab".into(),
        });
        let c = control(resolved(&["198.18.1.1"]));
        let a = judge(&[q], Some(&c), &[]);
        assert_eq!(a.verdict, DnsVerdict::Ok);
        let duplicates = a
            .evidence
            .iter()
            .find(|e| e.kind == EvidenceKind::DuplicateReplies)
            .expect("duplicates recorded");
        assert!(
            duplicates
                .detail
                .starts_with("10000 replies to 1 attempt(s)"),
            "{}",
            duplicates.detail
        );
        assert!(
            duplicates.detail.contains("9999 repeat(s)"),
            "{}",
            duplicates.detail
        );
        assert!(
            duplicates.detail.contains("900.0 ms"),
            "{}",
            duplicates.detail
        );
        // One reply per attempt is no duplicate.
        let single = query(vec![reply(RESOLVER, 5.0, "NoError", &["198.18.1.1"])]);
        let a = judge(&[single], Some(&c), &[]);
        assert!(
            !a.evidence
                .iter()
                .any(|e| e.kind == EvidenceKind::DuplicateReplies)
        );
    }

    // ---- Reconsidering with a web control (geo-DNS).

    use crate::asn::AsnTable;
    use crate::observation::web_control::{
        HelperDns, HelperLookup, HelperLookupStatus, WebControlObservation, WebControlResult,
    };
    use crate::record::DnsSection;

    /// A section whose resolver answered `answer` while the control resolved
    /// 198.18.1.1: `dns_poisoning` by `inconsistent` alone.
    fn inconsistent_section(answer: &[&str]) -> DnsSection {
        let queries = vec![query(vec![reply(RESOLVER, 5.0, "NoError", answer)])];
        let c = control(resolved(&["198.18.1.1"]));
        let assessment = judge(&queries, Some(&c), &[]);
        DnsSection {
            assessment,
            resolver: RESOLVER.parse().unwrap(),
            sink: None,
            queries,
            control: Some(c),
            tls_proof: Vec::new(),
            benign_query: None,
        }
    }

    fn helper_saw(addresses: &[&str]) -> WebControlResult {
        WebControlResult {
            name: "x.test".into(),
            dns: HelperDns {
                resolver: HelperLookup {
                    resolver: "system".into(),
                    status: HelperLookupStatus::Resolved,
                    addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                    error: None,
                    ms: 2.0,
                },
                doh: None,
            },
            connects: Vec::new(),
            http: Vec::new(),
            tls: Vec::new(),
            refused: Vec::new(),
            ms: 20.0,
        }
    }

    fn answered(result: WebControlResult) -> WebControlObservation {
        WebControlObservation::Answered {
            helper: "https://198.19.0.2:8443".into(),
            software: "censorprobe test".into(),
            ms: 30.0,
            result: Box::new(result),
        }
    }

    /// The section after reconsidering: its verdict and evidence kinds.
    fn reconsidered(
        mut section: DnsSection,
        helper: &WebControlObservation,
        asns: &AsnTable,
    ) -> DnsAssessment {
        assert_eq!(section.assessment.methods, [PoisoningMethod::Inconsistent]);
        reconsider_with_web_control(&mut section, helper, asns);
        section.assessment
    }

    fn has(a: &DnsAssessment, kind: EvidenceKind) -> bool {
        a.evidence.iter().any(|e| e.kind == kind)
    }

    #[test]
    fn an_answer_the_web_control_shares_is_consistent() {
        let a = reconsidered(
            inconsistent_section(&["198.18.7.7"]),
            &answered(helper_saw(&["198.18.7.7", "198.18.9.9"])),
            &AsnTable::empty(),
        );
        assert_eq!((a.verdict, a.method), (DnsVerdict::Ok, None), "{a:#?}");
        assert!(has(&a, EvidenceKind::WebControlCommonAddress));
        assert!(!has(&a, EvidenceKind::NoCommonAddress));
        assert!(a.forged_ips.is_empty());
        assert!(a.genuine_ips.contains(&"198.18.7.7".parse().unwrap()));
    }

    #[test]
    fn an_answer_in_the_web_controls_24_or_48_is_consistent() {
        let a = reconsidered(
            inconsistent_section(&["198.18.7.7"]),
            &answered(helper_saw(&["198.18.7.200"])),
            &AsnTable::empty(),
        );
        assert_eq!(a.verdict, DnsVerdict::Ok, "{a:#?}");
        assert!(has(&a, EvidenceKind::WebControlSamePrefix));
        assert!(same_prefix(
            "2001:db8:1:2::1".parse().unwrap(),
            "2001:db8:1:ffff::9".parse().unwrap()
        ));
        assert!(!same_prefix(
            "2001:db8:1::1".parse().unwrap(),
            "2001:db8:2::1".parse().unwrap()
        ));
        assert!(!same_prefix(
            "198.18.7.1".parse().unwrap(),
            "198.18.8.1".parse().unwrap()
        ));
        assert!(!same_prefix(
            "198.18.7.1".parse().unwrap(),
            "::ffff:198.18.7.1".parse().unwrap()
        ));
    }

    #[test]
    fn an_answer_in_the_web_controls_as_is_consistent_only_with_a_table() {
        // A tiny table: the resolver's and the helper's addresses in one AS.
        let table = AsnTable::parse(
            "198.18.6.0\t198.18.9.255\t64500\tZZ\tGEO-CDN\n\
             198.18.10.0\t198.18.10.255\t64501\tZZ\tOTHER\n",
        )
        .unwrap();
        let helper = answered(helper_saw(&["198.18.9.9"]));
        let a = reconsidered(inconsistent_section(&["198.18.7.7"]), &helper, &table);
        assert_eq!(a.verdict, DnsVerdict::Ok, "{a:#?}");
        let same = a
            .evidence
            .iter()
            .find(|e| e.kind == EvidenceKind::WebControlSameAs)
            .unwrap();
        assert!(same.detail.contains("AS64500 GEO-CDN"), "{}", same.detail);
        // Without the table nothing vouches: still poisoning, and the evidence says so.
        let a = reconsidered(
            inconsistent_section(&["198.18.7.7"]),
            &helper,
            &AsnTable::empty(),
        );
        assert_eq!(a.verdict, DnsVerdict::DnsPoisoning);
        assert_eq!(a.methods, [PoisoningMethod::Inconsistent]);
        assert!(has(&a, EvidenceKind::WebControlDisagrees));
        // Another AS: poisoning.
        let helper = answered(helper_saw(&["198.18.10.9"]));
        let a = reconsidered(inconsistent_section(&["198.18.7.7"]), &helper, &table);
        assert_eq!(a.verdict, DnsVerdict::DnsPoisoning);
    }

    #[test]
    fn an_answer_the_web_control_proved_with_tls_is_consistent() {
        use crate::classify::web::tests::tls;
        use crate::observation::web::{ConnectStatus, TlsHandshakeEnd};
        let mut helper = helper_saw(&["198.18.200.1"]);
        let handshake = |name: &str, valid| {
            let mut o = tls(
                name,
                ConnectStatus::Ok,
                Some(TlsHandshakeEnd::Complete),
                Some(valid),
            );
            o.ip = "198.18.7.7".parse().unwrap();
            o
        };
        // An invalid chain, or a valid one for another name, proves nothing.
        helper.tls = vec![handshake("x.test", false), handshake("other.test", true)];
        let a = reconsidered(
            inconsistent_section(&["198.18.7.7"]),
            &answered(helper.clone()),
            &AsnTable::empty(),
        );
        assert_eq!(a.verdict, DnsVerdict::DnsPoisoning, "{a:#?}");
        helper.tls.push(handshake("x.test", true));
        let a = reconsidered(
            inconsistent_section(&["198.18.7.7"]),
            &answered(helper),
            &AsnTable::empty(),
        );
        assert_eq!(a.verdict, DnsVerdict::Ok, "{a:#?}");
        assert!(has(&a, EvidenceKind::WebControlTlsProof));
    }

    #[test]
    fn a_failed_web_control_or_other_methods_change_nothing() {
        let section = inconsistent_section(&["198.18.7.7"]);
        let before = section.assessment.clone();
        let mut failed = section.clone();
        reconsider_with_web_control(
            &mut failed,
            &WebControlObservation::Failed {
                helper: "https://198.19.0.2:8443".into(),
                error: "connection refused".into(),
                ms: 1.0,
            },
            &AsnTable::empty(),
        );
        assert_eq!(failed.assessment, before);
        // A bogon answer is poisoning by `bogon` too: the helper cannot undo that,
        // even when its own lookup returns the same bogon.
        let mut bogon = inconsistent_section(&["10.10.34.34"]);
        assert!(bogon.assessment.methods.contains(&PoisoningMethod::Bogon));
        let before = bogon.assessment.clone();
        reconsider_with_web_control(
            &mut bogon,
            &answered(helper_saw(&["10.10.34.34"])),
            &AsnTable::empty(),
        );
        assert_eq!(bogon.assessment, before);
        // An `ok` section stays as it is.
        let mut ok = inconsistent_section(&["198.18.1.1"]);
        assert_eq!(ok.assessment.verdict, DnsVerdict::Ok);
        let before = ok.assessment.clone();
        reconsider_with_web_control(
            &mut ok,
            &answered(helper_saw(&["198.18.5.5"])),
            &AsnTable::empty(),
        );
        assert_eq!(ok.assessment, before);
    }

    #[test]
    fn a_reconsidered_section_is_what_a_stored_one_gives_again() {
        // Read back from its JSON (the report), the section is judged the same way.
        let helper = answered(helper_saw(&["198.18.7.9"]));
        let mut live = inconsistent_section(&["198.18.7.7"]);
        let mut stored: DnsSection =
            serde_json::from_str(&serde_json::to_string(&live).unwrap()).unwrap();
        reconsider_with_web_control(&mut live, &helper, &AsnTable::empty());
        reconsider_with_web_control(&mut stored, &helper, &AsnTable::empty());
        assert_eq!(stored.assessment, live.assessment);
        assert_eq!(live.assessment.verdict, DnsVerdict::Ok);
    }
}
