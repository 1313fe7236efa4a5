//! A scan: targets → scheduler → probes → classifier → report.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use hickory_proto::rr::{Name, RecordType};
use tokio::sync::mpsc;

use crate::classify::blockpage::BlockpageSet;
use crate::classify::dns::{DnsInputs, classify_dns, silence_recheck_wanted};
use crate::classify::web::target_blocking;
use crate::control::ControlResolver;
use crate::dns::{DnsEngine, DnsQuestion};
use crate::error::{Error, Result};
use crate::ipclass::ForgedIpList;
use crate::ipclass::is_bogon;
use crate::observation::{ControlObservation, DnsQueryObservation, DnsServerRole, SilenceRecheck};
use crate::pathguard::PathGuard;
use crate::report::{
    DnsSection, HeaderRecord, SummaryBuilder, SummaryRecord, TargetRecord, now_rfc3339,
};
use crate::scheduler::{dispatch, order};
use crate::targets::{Target, TargetList};
use crate::verdict::{DnsAssessment, DnsVerdict, Evidence, EvidenceKind, PoisoningMethod};
use crate::web::net::{ConnectionBudget, DEFAULT_FD_RESERVE};
use crate::web::observation::TlsObservation;
use crate::web::proof::{MAX_PROOF_ADDRESSES, plan_tls_proof};
use crate::web::stage::{WebStage, plan_addresses};

mod config;

pub use config::{
    DEFAULT_DNS_SOCKETS, ScanConfig, ScanConfigBuilder, ScanInputs, Stages, check_control_name,
    parse_qtypes,
};

use crate::workflows::output::ScanOutput;
use crate::workflows::plan::{Attempt, ScanPlan};

/// What the probes of one target share.
struct ScanContext {
    engine: DnsEngine,
    control: Option<ControlResolver>,
    resolver: SocketAddr,
    sink: Option<SocketAddr>,
    qtypes: Vec<RecordType>,
    forged_ips: ForgedIpList,
    stages: Stages,
    web: Option<WebStage>,
    /// The benign question: asked beside every re-check of a silent question, and
    /// (without a control) once for the network's normal address ranges.
    benign_question: DnsQuestion,
    /// The resolver's answer for the benign name, kept once answered.
    benign_answer: tokio::sync::Mutex<Option<DnsQueryObservation>>,
}

impl ScanContext {
    /// The resolver's reply for the benign name, asked the first time a bogon answer
    /// needs comparing without a control and kept once answered (an unanswered one is
    /// asked again next time: one lost query must not decide every later target).
    async fn benign_answer(&self) -> DnsQueryObservation {
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

/// Runs a scan to the end, or until `stop` resolves (Ctrl-C). Every target record is
/// written as soon as it is complete; the summary is written either way.
pub async fn run_scan(
    config: ScanConfig,
    list: TargetList,
    stop: impl Future<Output = ()>,
) -> Result<SummaryRecord> {
    run_scan_with(config, list, &ScanPlan::default(), stop).await
}

/// [`run_scan`] with the researcher workflows of `plan` (src/workflows): resuming a
/// report, repeated passes with consensus records, OONI output, progress.
pub async fn run_scan_with(
    config: ScanConfig,
    list: TargetList,
    plan: &ScanPlan,
    stop: impl Future<Output = ()>,
) -> Result<SummaryRecord> {
    let started = Instant::now();
    // One socket budget for the web probes and the control's lookups.
    let fd_budget = ConnectionBudget::from_fd_limit(DEFAULT_FD_RESERVE);
    let mut control =
        ControlResolver::new(&config.control, &config.extra_roots, config.control_timeout)?;
    if let Some(control) = &mut control {
        control.share_fd_budget(fd_budget.clone());
    }
    if let Some(control) = &control {
        control.check_reachable().await?;
    }
    if let Some(sink) = config.sink
        && sink.is_ipv4() != config.resolver.is_ipv4()
    {
        return Err(Error::BadOption {
            option: "--dns-sink",
            reason: format!(
                "the sink {sink} and the resolver {} must be of one address family",
                config.resolver
            ),
        });
    }
    // --- workflows: what a resumed report holds, and the passes still to run ---
    let prior = plan.load_prior(config.out.as_deref())?;
    let mut dns_config = config.dns.clone();
    dns_config.max_rate = config.rate;
    let engine = DnsEngine::start(dns_config, config.resolver.ip()).await?;
    let web = if config.stages.web() {
        let blockpages = match &config.blockpages {
            Some(path) => BlockpageSet::from_file(path)?,
            None => BlockpageSet::builtin(),
        };
        let mut web_config = config.web.clone();
        web_config.run_http = config.stages.http;
        web_config.run_tls = config.stages.tls;
        Some(WebStage::new(
            web_config,
            Arc::new(crate::trust::root_store(&config.extra_roots)),
            PathGuard::new(config.residual.clone()),
            fd_budget.clone(),
            Arc::new(blockpages),
        )?)
    } else {
        None
    };

    let targets_loaded = list.targets.len();
    let scheduled = order(list.targets, config.seed, config.shard);
    let passes = plan.passes(&scheduled, &prior);
    let attempts_planned: usize = passes.iter().map(Vec::len).sum();
    // With --resume the summary covers the earlier records too.
    let mut summary = SummaryBuilder::new(
        prior.target_records + attempts_planned,
        list.skipped.len() + list.skipped_omitted,
    );
    prior.replay(&mut summary)?;
    let mut writer = ScanOutput::open(
        config.out.as_deref(),
        plan.format,
        &prior,
        plan.repeat,
        plan.progress,
        attempts_planned as u64,
    )?;
    let mut options = Box::new(config.options.clone());
    if plan.repeat > 1 {
        options.repeat = Some(plan.repeat);
        options.repeat_interval_ms = Some(plan.repeat_interval.as_millis() as u64);
    }
    if prior.is_resuming() {
        options.resume = Some(prior.header_info());
    }
    // --- end workflows ---
    writer.header(HeaderRecord {
        tool: env!("CARGO_PKG_NAME").to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version: crate::report::SCHEMA_VERSION,
        started_at: now_rfc3339(),
        vantage: config.vantage.clone(),
        resolver: config.resolver,
        control: config.control.to_string(),
        sink: config.sink,
        options,
        targets_loaded,
        targets_scheduled: scheduled.len(),
        skipped_inputs: list.skipped.clone(),
        skipped_inputs_omitted: list.skipped_omitted,
    })?;
    writer.settle_prior(&prior, plan.repeat)?;

    let context = Arc::new(ScanContext {
        engine,
        control,
        resolver: config.resolver,
        sink: config.sink,
        qtypes: config.qtypes.clone(),
        forged_ips: config.forged_ips.clone(),
        stages: config.stages,
        web,
        benign_question: DnsQuestion {
            qname: Name::from_ascii(format!("{}.", config.web.control_name)).map_err(|e| {
                Error::BadOption {
                    option: "--control-name",
                    reason: format!("{:?} is not a DNS name: {e}", config.web.control_name),
                }
            })?,
            qtype: config.qtypes.first().copied().unwrap_or(RecordType::A),
            server: config.resolver,
            role: DnsServerRole::Resolver,
        },
        benign_answer: tokio::sync::Mutex::new(None),
    });
    let (tx, mut rx) = mpsc::channel::<TargetRecord>(1024);
    // The writer runs on its own thread: report I/O never blocks the probes, and it
    // flushes whenever it has caught up, so an interrupted run loses nothing measured.
    let writer_thread =
        tokio::task::spawn_blocking(move || -> Result<(ScanOutput, SummaryBuilder)> {
            while let Some(record) = rx.blocking_recv() {
                summary.add(&record);
                writer.target(record)?;
                while let Ok(record) = rx.try_recv() {
                    summary.add(&record);
                    writer.target(record)?;
                }
                writer.flush()?;
            }
            Ok((writer, summary))
        });

    let dns_per_target =
        u32::try_from(config.qtypes.len() * if config.sink.is_some() { 2 } else { 1 })
            .unwrap_or(u32::MAX);
    let probe = {
        let context = Arc::clone(&context);
        move |target: Target| probe_target(Arc::clone(&context), target)
    };
    let cost = move |target: &Target| {
        if target.address.is_some() {
            0
        } else {
            dns_per_target
        }
    };
    // --- workflows: one dispatch per pass (--repeat); attempts are numbered ---
    let numbered = |(target, attempt): Attempt| {
        let record = probe(target);
        let repeated = plan.repeat > 1;
        async move {
            let mut record = record.await;
            record.attempt = repeated.then_some(attempt);
            record
        }
    };
    let numbered_cost = |(target, _): &Attempt| cost(target);
    let stop = stop.shared();
    let outcome = plan
        .run_passes(passes, stop.clone(), |pass| {
            dispatch(
                pass,
                config.concurrency,
                config.rate,
                &numbered_cost,
                &numbered,
                tx.clone(),
                stop.clone(),
            )
        })
        .await;
    drop(tx);
    // --- end workflows ---
    let (mut writer, summary) = writer_thread.await.map_err(|e| Error::ReportWrite {
        path: config.out.clone().unwrap_or_else(|| PathBuf::from("-")),
        source: std::io::Error::other(e),
    })??;
    let mut summary = summary.finish(started.elapsed().as_secs_f64(), outcome.interrupted);
    if config.stages.dns {
        summary.dns_rate = Some(context.engine.rate_report());
    }
    if let Some(web) = &context.web {
        summary.residual_paths = web.guard().residual_report();
    }
    writer.summary(&summary)?;
    Ok(summary)
}

async fn probe_target(context: Arc<ScanContext>, target: Target) -> TargetRecord {
    let started_at = now_rfc3339();
    let started = Instant::now();
    let mut categories: Vec<String> = target
        .sources
        .iter()
        .filter_map(|s| s.category_code.clone())
        .collect();
    categories.sort();
    categories.dedup();

    let needs_name_lookup =
        target.address.is_none() && (context.stages.dns || target.pinned_ips.is_empty());
    let (dns, control) = if target.address.is_some() {
        (None, None)
    } else if context.stages.dns {
        let dns = probe_dns(&context, &target.domain).await;
        let control = dns.control.clone();
        (Some(dns), control)
    } else if needs_name_lookup {
        // No DNS stage, but the web probes need addresses: ask the control only.
        (None, lookup_control(&context, &target.domain).await)
    } else {
        (None, None)
    };

    let mut web_result = None;
    if let Some(web) = &context.web {
        let resolver_ips = dns
            .as_ref()
            .map(|d| first_reply_ips(&d.queries))
            .unwrap_or_default();
        let plan = plan_addresses(
            &target,
            control.as_ref(),
            dns.as_ref().map(|d| &d.assessment),
            &resolver_ips,
            // All of them: the stage probes `max_ips`, preferring clean paths.
            usize::MAX,
        );
        web_result = Some(web.probe_target(&target.domain, plan).await);
    }
    let (addresses, http, tls) = match web_result {
        Some(result) => (result.addresses, result.http, result.tls),
        None => (None, None, None),
    };
    let blocking = target_blocking(
        dns.as_ref().map(|d| &d.assessment),
        http.as_ref(),
        tls.as_ref(),
    );
    TargetRecord {
        domain: target.domain,
        address: target.address,
        pinned_ips: target.pinned_ips,
        sources: target.sources,
        sources_omitted: target.sources_omitted,
        categories,
        attempt: None,
        started_at,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        dns,
        addresses,
        http,
        tls,
        blocking: blocking.blocking,
        accessible: blocking.accessible,
    }
}

async fn lookup_control(context: &ScanContext, domain: &str) -> Option<ControlObservation> {
    match &context.control {
        Some(control) => Some(control.resolve(domain, &context.qtypes).await),
        None => None,
    }
}

/// Addresses in the first valid reply of each resolver question (the stub view).
fn first_reply_ips(queries: &[DnsQueryObservation]) -> Vec<std::net::IpAddr> {
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

/// Only inconsistency with the control stands against the answer: a certificate valid
/// for the name at those addresses would show a CDN or geo-DNS answer, not a forgery.
fn wants_tls_proof(assessment: &DnsAssessment) -> bool {
    assessment.methods == [PoisoningMethod::Inconsistent]
}

/// The DNS section of a target whose name cannot be put in a query: an inconclusive
/// verdict that says why, and no query (never another name, such as the root, instead).
fn unencodable_name(context: &ScanContext, domain: &str, reason: &str) -> DnsSection {
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
        resolver: context.resolver,
        sink: context.sink,
        queries: Vec::new(),
        control: None,
        tls_proof: Vec::new(),
        benign_query: None,
    }
}

async fn probe_dns(context: &ScanContext, domain: &str) -> DnsSection {
    // Exactly the loaded name: `from_ascii` neither maps nor drops anything.
    let qname = match Name::from_ascii(format!("{domain}.")) {
        Ok(name) => name,
        Err(e) => return unencodable_name(context, domain, &e.to_string()),
    };
    let mut questions: Vec<DnsQuestion> = Vec::new();
    for qtype in &context.qtypes {
        questions.push(DnsQuestion {
            qname: qname.clone(),
            qtype: *qtype,
            server: context.resolver,
            role: DnsServerRole::Resolver,
        });
        if let Some(sink) = context.sink {
            questions.push(DnsQuestion {
                qname: qname.clone(),
                qtype: *qtype,
                server: sink,
                role: DnsServerRole::Sink,
            });
        }
    }
    let queries =
        futures::future::join_all(questions.iter().cloned().map(|q| context.engine.query(q)));
    let control = async {
        match &context.control {
            Some(control) => Some(control.resolve(domain, &context.qtypes).await),
            None => None,
        }
    };
    let (mut queries, control) = tokio::join!(queries, control);
    if classify_dns(&DnsInputs {
        queries: &queries,
        control: control.as_ref(),
        forged_ips: &context.forged_ips,
        tls_proven: &[],
        benign_query: None,
    })
    .verdict
        == DnsVerdict::Timeout
    {
        recheck_silence(context, &questions, &mut queries).await;
    }
    let benign_query = if context.control.is_none() && any_bogon_answer(&queries) {
        Some(context.benign_answer().await)
    } else {
        None
    };
    let mut inputs = DnsInputs {
        queries: &queries,
        control: control.as_ref(),
        forged_ips: &context.forged_ips,
        tls_proven: &[],
        benign_query: benign_query.as_ref(),
    };
    let mut assessment = classify_dns(&inputs);
    let mut tls_proof = Vec::new();
    let mut proof_skipped = Vec::new();
    if let Some(web) = context.web.as_ref().filter(|_| context.stages.tls)
        && wants_tls_proof(&assessment)
    {
        // The answer's addresses are the censor's choice: a few public ones at most.
        let plan = plan_tls_proof(&first_reply_ips(&queries), MAX_PROOF_ADDRESSES);
        proof_skipped = plan.skipped_evidence(MAX_PROOF_ADDRESSES);
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
        let proven: Vec<std::net::IpAddr> = tls_proof
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
        resolver: context.resolver,
        sink: context.sink,
        queries,
        control,
        tls_proof,
        benign_query,
    }
}

/// Asks each silent resolver question again, with the benign question sent right after
/// it from the same socket (no pacing gap): a resolver that refuses the name for its
/// rate refuses the benign query too, one that drops only the name answers it. Rounds
/// go on until the classifier has what it needs (`silence_recheck_wanted`).
async fn recheck_silence(
    context: &ScanContext,
    questions: &[DnsQuestion],
    queries: &mut [DnsQueryObservation],
) {
    loop {
        let wanted: Vec<usize> = (0..queries.len())
            .filter(|&i| silence_recheck_wanted(&queries[i]))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let rounds = futures::future::join_all(wanted.iter().map(|&i| {
            let benign = DnsQuestion {
                qtype: questions[i].qtype,
                ..context.benign_question.clone()
            };
            context
                .engine
                .query_together(vec![questions[i].clone(), benign])
        }))
        .await;
        for (i, mut pair) in wanted.into_iter().zip(rounds) {
            let (Some(benign), Some(query)) = (pair.pop(), pair.pop()) else {
                return;
            };
            queries[i].rechecks.push(SilenceRecheck { query, benign });
        }
    }
}

/// Whether a resolver reply (UDP or TCP) carries a bogon address.
fn any_bogon_answer(queries: &[DnsQueryObservation]) -> bool {
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
