//! The DNS stage of one target: the questions to the resolver under test (and the
//! sink), the control resolution beside them, the silence re-checks and the benign
//! query. It observes only; the scan judges and decides from the verdict whether to
//! ask more.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::{Name, RecordType};
use tokio::sync::Mutex;

use super::ProbeError;
use super::control::ControlResolver;
use super::dns::{DnsEngine, DnsQuestion};
use crate::ipclass::is_bogon;
use crate::observation::{ControlObservation, DnsQueryObservation, DnsServerRole, SilenceRecheck};

/// What the DNS stage saw for one name, before judgement.
#[derive(Debug, Clone)]
pub struct DnsObservations {
    /// The questions asked, in the order of `queries`.
    pub questions: Vec<DnsQuestion>,
    pub queries: Vec<DnsQueryObservation>,
    /// The control resolution (absent without a control).
    pub control: Option<ControlObservation>,
}

/// Runs the DNS stage for targets; share one per scan, it is `Sync`.
pub struct DnsStage {
    engine: DnsEngine,
    control: Option<ControlResolver>,
    resolver: SocketAddr,
    sink: Option<SocketAddr>,
    qtypes: Vec<RecordType>,
    /// The benign question: asked beside every re-check of a silent question, and
    /// (without a control) once for the network's normal address ranges.
    benign_question: DnsQuestion,
    /// The resolver's answer for the benign name, kept once answered.
    benign_answer: Mutex<Option<DnsQueryObservation>>,
}

impl DnsStage {
    /// `control_name` is the benign name (`--control-name`); it must be a DNS name.
    pub fn new(
        engine: DnsEngine,
        control: Option<ControlResolver>,
        resolver: SocketAddr,
        sink: Option<SocketAddr>,
        qtypes: Vec<RecordType>,
        control_name: &str,
    ) -> Result<Self, ProbeError> {
        let benign_question = DnsQuestion {
            qname: Name::from_ascii(format!("{control_name}.")).map_err(|source| {
                ProbeError::ControlNameNotDns {
                    name: control_name.to_owned(),
                    source,
                }
            })?,
            qtype: qtypes.first().copied().unwrap_or(RecordType::A),
            server: resolver,
            role: DnsServerRole::Resolver,
        };
        Ok(DnsStage {
            engine,
            control,
            resolver,
            sink,
            qtypes,
            benign_question,
            benign_answer: Mutex::new(None),
        })
    }

    pub fn engine(&self) -> &DnsEngine {
        &self.engine
    }

    pub fn resolver(&self) -> SocketAddr {
        self.resolver
    }

    pub fn sink(&self) -> Option<SocketAddr> {
        self.sink
    }

    pub fn has_control(&self) -> bool {
        self.control.is_some()
    }

    /// Ask the resolver (and the sink) every question type for `domain`, and the
    /// control beside them. `Err` carries the reason when the name cannot be put in a
    /// query (then nothing is asked: never another name, such as the root, instead).
    pub async fn observe(&self, domain: &str) -> std::result::Result<DnsObservations, String> {
        // Exactly the loaded name: `from_ascii` neither maps nor drops anything.
        let qname = Name::from_ascii(format!("{domain}.")).map_err(|e| e.to_string())?;
        let mut questions: Vec<DnsQuestion> = Vec::new();
        for qtype in &self.qtypes {
            questions.push(DnsQuestion {
                qname: qname.clone(),
                qtype: *qtype,
                server: self.resolver,
                role: DnsServerRole::Resolver,
            });
            if let Some(sink) = self.sink {
                questions.push(DnsQuestion {
                    qname: qname.clone(),
                    qtype: *qtype,
                    server: sink,
                    role: DnsServerRole::Sink,
                });
            }
        }
        let queries =
            futures::future::join_all(questions.iter().cloned().map(|q| self.engine.query(q)));
        let control = self.lookup_control(domain);
        let (queries, control) = tokio::join!(queries, control);
        Ok(DnsObservations {
            questions,
            queries,
            control,
        })
    }

    /// The control resolution alone (no DNS stage, but the web probes need addresses).
    pub async fn lookup_control(&self, domain: &str) -> Option<ControlObservation> {
        match &self.control {
            Some(control) => Some(control.resolve(domain, &self.qtypes).await),
            None => None,
        }
    }

    /// Asks each silent resolver question again, with the benign question sent right
    /// after it from the same socket (no pacing gap): a resolver that refuses the name
    /// for its rate refuses the benign query too, one that drops only the name answers
    /// it. Rounds go on while `wanted` (the classifier's need) picks a query.
    pub async fn recheck_silence(
        &self,
        observations: &mut DnsObservations,
        wanted: impl Fn(&DnsQueryObservation) -> bool,
    ) {
        let questions = &observations.questions;
        let queries = &mut observations.queries;
        loop {
            let picked: Vec<usize> = (0..queries.len())
                .filter(|&i| wanted(&queries[i]))
                .collect();
            if picked.is_empty() {
                return;
            }
            let rounds = futures::future::join_all(picked.iter().map(|&i| {
                let benign = DnsQuestion {
                    qtype: questions[i].qtype,
                    ..self.benign_question.clone()
                };
                self.engine
                    .query_together(vec![questions[i].clone(), benign])
            }))
            .await;
            for (i, mut pair) in picked.into_iter().zip(rounds) {
                let (Some(benign), Some(query)) = (pair.pop(), pair.pop()) else {
                    return;
                };
                queries[i].rechecks.push(SilenceRecheck { query, benign });
            }
        }
    }

    /// The resolver's reply for the benign name, asked the first time it is needed and
    /// kept once answered (an unanswered one is asked again next time: one lost query
    /// must not decide every later target).
    pub async fn benign_query(&self) -> DnsQueryObservation {
        let mut kept = self.benign_answer.lock().await;
        if let Some(answer) = kept.as_ref() {
            return answer.clone();
        }
        let answer = self.engine.query(self.benign_question.clone()).await;
        if answer.valid_replies().next().is_some() {
            *kept = Some(answer.clone());
        }
        answer
    }
}

/// Addresses in the first valid reply of each resolver question (the stub view).
pub fn first_reply_ips(queries: &[DnsQueryObservation]) -> Vec<IpAddr> {
    queries
        .iter()
        .filter(|q| q.role == DnsServerRole::Resolver)
        .filter_map(|q| {
            q.replies
                .iter()
                .find(|r| r.from == q.server && r.question_matches)
        })
        .flat_map(|r| r.ips().collect::<Vec<_>>())
        .collect()
}

/// Whether a resolver reply (UDP or TCP) carries a bogon address.
pub fn any_bogon_answer(queries: &[DnsQueryObservation]) -> bool {
    queries
        .iter()
        .filter(|q| q.role == DnsServerRole::Resolver)
        .flat_map(|q| {
            q.replies
                .iter()
                .chain(q.tcp.iter().filter_map(|t| t.reply.as_ref()))
                .chain(q.rechecks.iter().flat_map(|r| r.query.replies.iter()))
        })
        .any(|r| r.ips().any(is_bogon))
}
