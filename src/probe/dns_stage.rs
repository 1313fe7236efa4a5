//! The DNS stage of one target: the questions to the resolver under test (and the
//! sink), the control resolution beside them, the silence re-checks and the benign
//! query. It observes only; the scan judges and decides from the verdict whether to
//! ask more.
//!
//! All questions of one name (resolver, sink, and a plain-UDP control) go to the DNS
//! engine as one group: they share its socket pool, and the sink's window closes a late-
//! reply window after the resolver's first reply. An encrypted control (`DoT`, `DoH`)
//! is asked beside the group through its own connection pool.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use hickory_proto::rr::{Name, RecordType};
use tokio::sync::Mutex;

use super::ProbeError;
use super::control::ControlResolver;
use super::control::ControlSpec;
use super::dns::{DnsEngine, DnsQuestion, GroupDone};
use crate::ipclass::is_bogon;
use crate::observation::{
    ControlAnswer, ControlObservation, ControlOutcome, DnsQueryObservation, DnsServerRole,
    SilenceRecheck,
};

/// What the DNS stage saw for one name, before judgement.
#[derive(Debug, Clone)]
pub struct DnsObservations {
    /// The questions asked, in the order of `queries`.
    pub questions: Vec<DnsQuestion>,
    pub queries: Vec<DnsQueryObservation>,
    /// The control resolution (absent without a control).
    pub control: Option<ControlObservation>,
}

/// Where the control's lookups go.
enum ControlPath {
    /// No control.
    None,
    /// A plain-UDP control, asked through the engine's sockets in each name's group.
    Udp { server: SocketAddr, label: String },
    /// An encrypted control, asked through its own connection pool.
    Encrypted(Box<ControlResolver>),
}

/// Runs the DNS stage for targets; share one per scan, it is `Sync`.
pub struct DnsStage {
    engine: DnsEngine,
    control: ControlPath,
    resolver: SocketAddr,
    sink: Option<SocketAddr>,
    qtypes: Vec<RecordType>,
    /// The benign question: asked beside every re-check of a silent question, and
    /// (without a control) once for the network's normal address ranges.
    benign_question: DnsQuestion,
    /// The resolver's answer for the benign name, kept once answered, and read without a
    /// lock: behind one, a name that found it held was judged again in a task of its
    /// own, and in a fast scan that was almost every name.
    benign_answer: OnceLock<Arc<DnsQueryObservation>>,
    /// Held while the benign question is asked, so that it is asked once at a time.
    benign_asking: Mutex<()>,
}

impl DnsStage {
    /// `control_name` is the benign name (`--control-name`); it must be a DNS name.
    /// `control` is the resolver made for `control_spec`: a UDP control's lookups go
    /// through `engine` instead (the resolver then serves only the reachability check).
    pub fn new(
        engine: DnsEngine,
        control_spec: &ControlSpec,
        control: Option<ControlResolver>,
        resolver: SocketAddr,
        sink: Option<SocketAddr>,
        qtypes: Vec<RecordType>,
        control_name: &str,
    ) -> Result<Self, ProbeError> {
        let benign_question =
            DnsQuestion {
                qname: Arc::new(Name::from_ascii(format!("{control_name}.")).map_err(
                    |source| ProbeError::ControlNameNotDns {
                        name: control_name.to_owned(),
                        source,
                    },
                )?),
                qtype: qtypes.first().copied().unwrap_or(RecordType::A),
                server: resolver,
                role: DnsServerRole::Resolver,
            };
        let control = match (control_spec, control) {
            (ControlSpec::Udp { addr }, _) => ControlPath::Udp {
                server: *addr,
                label: control_spec.to_string(),
            },
            (_, Some(resolver)) => ControlPath::Encrypted(Box::new(resolver)),
            (_, None) => ControlPath::None,
        };
        Ok(DnsStage {
            engine,
            control,
            resolver,
            sink,
            qtypes,
            benign_question,
            benign_answer: OnceLock::new(),
            benign_asking: Mutex::new(()),
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
        !matches!(self.control, ControlPath::None)
    }

    /// The encrypted control, when the control is one: its lookups run beside the
    /// engine's group of each name.
    pub fn encrypted_control(&self) -> Option<&ControlResolver> {
        match &self.control {
            ControlPath::Encrypted(resolver) => Some(resolver),
            _ => None,
        }
    }

    /// The questions of one name, in the order of their observations: per query type
    /// the resolver's and the sink's, then the UDP control's.
    pub fn questions(&self, domain: &str) -> std::result::Result<Vec<DnsQuestion>, String> {
        // Exactly the loaded name: `from_ascii` neither maps nor drops anything. (Made
        // fully qualified after parsing, rather than parsing a copy with a dot added.)
        let mut qname = Name::from_ascii(domain).map_err(|e| e.to_string())?;
        qname.set_fqdn(true);
        let qname = Arc::new(qname);
        let mut questions: Vec<DnsQuestion> = Vec::with_capacity(self.qtypes.len() * 3);
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
        if let ControlPath::Udp { server, .. } = &self.control {
            questions.extend(self.control_questions(&qname, *server));
        }
        Ok(questions)
    }

    /// A UDP control's question for every query type.
    fn control_questions<'a>(
        &'a self,
        qname: &'a Arc<Name>,
        server: SocketAddr,
    ) -> impl Iterator<Item = DnsQuestion> + 'a {
        self.qtypes.iter().map(move |qtype| DnsQuestion {
            qname: qname.clone(),
            qtype: *qtype,
            server,
            role: DnsServerRole::Control,
        })
    }

    /// What a finished group observed, as the stage's observations: the UDP control's
    /// questions become the control resolution; an encrypted control's resolution
    /// (asked beside the group) is `control`.
    pub fn observations_of(
        &self,
        mut questions: Vec<DnsQuestion>,
        mut queries: Vec<DnsQueryObservation>,
        control: Option<ControlObservation>,
    ) -> DnsObservations {
        let control = match &self.control {
            ControlPath::Udp { label, .. } => {
                let first_control = queries
                    .iter()
                    .position(|q| q.role == DnsServerRole::Control)
                    .unwrap_or(queries.len());
                let answers = queries.split_off(first_control);
                questions.truncate(first_control);
                Some(ControlObservation {
                    control: label.clone(),
                    answers: answers.iter().map(control_answer).collect(),
                })
            }
            _ => control,
        };
        DnsObservations {
            questions,
            queries,
            control,
        }
    }

    /// Ask the resolver (and the sink) every question type for `domain`, and the
    /// control beside them. `Err` carries the reason when the name cannot be put in a
    /// query (then nothing is asked: never another name, such as the root, instead).
    pub async fn observe(&self, domain: &str) -> std::result::Result<DnsObservations, String> {
        let questions = self.questions(domain)?;
        let (done, mut finished) = tokio::sync::mpsc::unbounded_channel();
        let group = async {
            self.engine.submit_group(questions.clone(), 0, done).await;
            finished.recv().await.map(GroupDone::into_observations)
        };
        let control = async {
            match self.encrypted_control() {
                Some(control) => Some(control.resolve(domain, &self.qtypes).await),
                None => None,
            }
        };
        let (queries, control) = tokio::join!(group, control);
        let queries = queries.ok_or_else(|| "the DNS engine stopped".to_owned())?;
        Ok(self.observations_of(questions, queries, control))
    }

    /// The control resolution alone (no DNS stage, but the web probes need addresses).
    pub async fn lookup_control(&self, domain: &str) -> Option<ControlObservation> {
        match &self.control {
            ControlPath::None => None,
            ControlPath::Encrypted(control) => Some(control.resolve(domain, &self.qtypes).await),
            ControlPath::Udp { server, label } => {
                let answers = match Name::from_ascii(format!("{domain}.")) {
                    Ok(qname) => {
                        let questions = self.control_questions(&Arc::new(qname), *server).collect();
                        let queries = self.engine.query_together(questions).await;
                        queries.iter().map(control_answer).collect()
                    }
                    Err(e) => self
                        .qtypes
                        .iter()
                        .map(|qtype| ControlAnswer {
                            qtype: qtype.to_string(),
                            outcome: ControlOutcome::Error {
                                message: format!("invalid domain name {domain:?}: {e}"),
                            },
                            elapsed_ms: 0.0,
                        })
                        .collect(),
                };
                Some(ControlObservation {
                    control: label.clone(),
                    answers,
                })
            }
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

    /// The resolver's reply for the benign name when it is kept already (never waits
    /// and never asks).
    pub fn kept_benign_answer(&self) -> Option<Arc<DnsQueryObservation>> {
        self.benign_answer.get().cloned()
    }

    /// The resolver's reply for the benign name, asked the first time it is needed and
    /// kept once answered (an unanswered one is asked again next time: one lost query
    /// must not decide every later target).
    pub async fn benign_query(&self) -> Arc<DnsQueryObservation> {
        if let Some(answer) = self.benign_answer.get() {
            return Arc::clone(answer);
        }
        let _asking = self.benign_asking.lock().await;
        // Another name may have had it answered while this one waited.
        if let Some(answer) = self.benign_answer.get() {
            return Arc::clone(answer);
        }
        let answer = Arc::new(self.engine.query(self.benign_question.clone()).await);
        if answer.valid_replies().next().is_some() {
            let _ = self.benign_answer.set(Arc::clone(&answer));
        }
        answer
    }
}

/// The control's answer from a UDP control question: its first valid reply decides,
/// as a stub resolver's would (the control is trusted; nothing listens for more).
fn control_answer(query: &DnsQueryObservation) -> ControlAnswer {
    // A truncated reply was asked again over TCP: that exchange's reply is the answer.
    let reply = query
        .tcp
        .as_ref()
        .and_then(|tcp| tcp.reply.as_ref())
        .or_else(|| query.valid_replies().next());
    let outcome = match reply {
        Some(reply) if reply.flags.tc => ControlOutcome::Error {
            message: "the reply was truncated and the TCP retry failed".to_owned(),
        },
        Some(reply) if reply.is_noerror() && reply.answers.is_empty() => ControlOutcome::NoData,
        Some(reply) if reply.is_noerror() => ControlOutcome::Resolved {
            ips: reply.ips().collect(),
            records: reply.answers.clone(),
        },
        Some(reply) if reply.is_nxdomain() => ControlOutcome::Nxdomain,
        Some(reply) => ControlOutcome::Error {
            message: format!("no records, response code {}", reply.rcode),
        },
        None => ControlOutcome::Error {
            message: match &query.send_error {
                Some(error) => format!("send failed: {error}"),
                None => format!(
                    "no answer in {} attempt(s) over {:.0} ms",
                    query.attempts, query.listened_ms
                ),
            },
        },
    };
    ControlAnswer {
        qtype: query.qtype.clone(),
        outcome,
        elapsed_ms: reply.map_or(query.listened_ms, |r| r.elapsed_ms),
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
