//! A scan: targets → scheduler → probes → classifier → report.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::classify::blockpage::BlockpageSet;
use crate::classify::web::{judge_web, target_blocking};
use crate::error::{Error, Result};
use crate::ipclass::ForgedIpList;
use crate::pathguard::PathGuard;
use crate::probe::control::ControlResolver;
use crate::probe::dns::DnsEngine;
use crate::probe::dns_stage::{DnsStage, first_reply_ips};
use crate::probe::web::net::{ConnectionBudget, DEFAULT_FD_RESERVE};
use crate::probe::web::stage::WebStage;
use crate::report::{HeaderRecord, SummaryBuilder, SummaryRecord, TargetRecord, now_rfc3339};
use crate::scheduler::{dispatch, order};
use crate::targets::{Target, TargetList};

mod address;
mod dns;

pub use address::plan_addresses;
pub use dns::proof_skipped_evidence;

mod config;

pub use config::{
    DEFAULT_DNS_SOCKETS, ScanConfig, ScanConfigBuilder, ScanConfigError, ScanInputs, Stages,
    check_control_name, parse_qtypes,
};

use crate::workflows::output::ScanOutput;
use crate::workflows::plan::{Attempt, ScanPlan};

/// What the probes of one target share.
struct ScanContext {
    dns: DnsStage,
    forged_ips: ForgedIpList,
    stages: Stages,
    web: Option<WebStage>,
    /// Block-page fingerprints for the web judge (present when the web stage runs).
    blockpages: Option<BlockpageSet>,
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
    let (web, blockpages) = if config.stages.web() {
        let blockpages = match &config.blockpages {
            Some(path) => BlockpageSet::from_file(path)?,
            None => BlockpageSet::builtin(),
        };
        let mut web_config = config.web.clone();
        web_config.run_http = config.stages.http;
        web_config.run_tls = config.stages.tls;
        let web = WebStage::new(
            web_config,
            Arc::new(crate::trust::root_store(&config.extra_roots)),
            PathGuard::new(config.residual.clone()),
            fd_budget.clone(),
        )?;
        (Some(web), Some(blockpages))
    } else {
        (None, None)
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
        dns: DnsStage::new(
            engine,
            control,
            config.resolver,
            config.sink,
            config.qtypes.clone(),
            &config.web.control_name,
        )?,
        forged_ips: config.forged_ips.clone(),
        stages: config.stages,
        web,
        blockpages,
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
        summary.dns_rate = Some(context.dns.engine().rate_report());
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
        let tls_proof = context.web.as_ref().filter(|_| context.stages.tls);
        let dns =
            dns::probe_dns(&context.dns, &context.forged_ips, tls_proof, &target.domain).await;
        let control = dns.control.clone();
        (Some(dns), control)
    } else if needs_name_lookup {
        // No DNS stage, but the web probes need addresses: ask the control only.
        (None, context.dns.lookup_control(&target.domain).await)
    } else {
        (None, None)
    };

    let mut web_result = None;
    if let Some(web) = &context.web {
        let resolver_ips = dns
            .as_ref()
            .map(|d| first_reply_ips(&d.queries))
            .unwrap_or_default();
        let (genuine, forged) = dns.as_ref().map_or((&[][..], &[][..]), |d| {
            (
                d.assessment.genuine_ips.as_slice(),
                d.assessment.forged_ips.as_slice(),
            )
        });
        let plan = plan_addresses(
            &target,
            control.as_ref(),
            genuine,
            forged,
            &resolver_ips,
            // All of them: the stage probes `max_ips`, preferring clean paths.
            usize::MAX,
        );
        let observations = web.observe_target(&target.domain, plan).await;
        let blockpages = context
            .blockpages
            .as_ref()
            .expect("the block pages are loaded with the web stage");
        web_result = Some(judge_web(
            observations,
            &web.config().control_name,
            blockpages,
        ));
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
