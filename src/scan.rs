//! A scan: targets → scheduler → probes → classifier → report.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::classify::blockpage::BlockpageSet;
use crate::classify::web::target_blocking;
use crate::ipclass::ForgedIpList;
use crate::observation::ControlObservation;
use crate::output::{OutputError, RecordSink};
use crate::pathguard::PathGuard;
use crate::probe::control::{ControlResolver, ControlSpec};
use crate::probe::dns::DnsEngine;
use crate::probe::dns_stage::{DnsStage, first_reply_ips};
use crate::probe::web::net::{ConnectionBudget, DEFAULT_FD_RESERVE};
use crate::probe::web::stage::WebStage;
use crate::record::assessment::WebStageResult;
use crate::record::{
    DnsSection, HeaderRecord, SummaryBuilder, SummaryRecord, TargetRecord, now_rfc3339,
};
use crate::scheduler::DispatchOutcome;
use crate::targets::Target;

mod address;
mod dns;
mod pipeline;

pub use address::plan_addresses;
pub use dns::{proof_skipped_evidence, wants_tls_proof};

mod config;
mod web_control;

pub use config::{
    DEFAULT_DNS_SOCKETS, ScanConfig, ScanConfigBuilder, ScanConfigError, ScanInputs, Stages,
    check_control_name, parse_qtypes,
};

mod error;
pub mod locate;
pub mod passes;
pub mod resume;

pub use error::ScanError;
pub use passes::{Attempt, Passes, ScanPlan};

/// What the probes of one target share.
struct ScanContext {
    dns: DnsStage,
    forged_ips: ForgedIpList,
    stages: Stages,
    web: Option<WebStage>,
    /// Block-page fingerprints for the web judge (present when the web stage runs).
    blockpages: Option<BlockpageSet>,
    /// With `--locate` (and a web stage): traces the censor of failed names.
    locator: Option<Arc<locate::Locator>>,
    /// Whether records written lean (entirely `ok`, `--observations default`) lose
    /// their captured packets, which only weigh for clean connections.
    lean_without_packets: bool,
    /// Injector fingerprints for the web judge's packet judgement.
    injectors: crate::classify::injectors::InjectorSet,
    /// With `--web-control`: the helper asked about every named target.
    web_control: Option<crate::probe::web_control::WebControlClient>,
    /// With `--asn-db`: the AS table the DNS judge consults with the helper's answers.
    asns: crate::asn::AsnTable,
}

/// Runs the `passes` of a scan to the end, or until `stop` resolves (Ctrl-C), and
/// emits its records into `sink`: the header, every target record as soon as it is
/// complete, and the summary either way (covering a resumed report's earlier records).
pub async fn run_scan(
    config: ScanConfig,
    mut passes: Passes,
    mut sink: Box<dyn RecordSink>,
    stop: impl Future<Output = ()>,
) -> Result<SummaryRecord, ScanError> {
    let started = Instant::now();
    let context = Arc::new(start_probes(&config).await?);
    let attempts_planned = passes.attempts();
    // With --resume the summary covers the earlier records too.
    let mut summary = SummaryBuilder::new(
        passes.prior.target_records + attempts_planned,
        passes.skipped_inputs.len() + passes.skipped_inputs_omitted,
    );
    passes.prior.replay(&mut summary)?;
    write_header(&config, &passes, sink.as_mut())?;

    let (tx, rx) = mpsc::channel::<Box<TargetRecord>>(1024);
    let writer = spawn_writer(sink, summary, rx);
    let outcome = dispatch_passes(&config, &context, &mut passes, tx, stop).await;
    let (mut sink, summary) = writer.await.map_err(ScanError::WriterStopped)??;

    let mut summary = summary.finish(started.elapsed().as_secs_f64(), outcome.interrupted);
    if config.stages.dns {
        summary.dns_rate = Some(context.dns.engine().rate_report());
    }
    if let Some(web) = &context.web {
        summary.residual_paths = web.guard().residual_report();
    }
    sink.finish(&summary)?;
    Ok(summary)
}

/// Checks the control and the DNS sink, and starts the DNS engine and the web stage.
async fn start_probes(config: &ScanConfig) -> Result<ScanContext, ScanError> {
    if let ControlSpec::Udp { addr } = &config.control
        && addr.is_ipv4() != config.resolver.is_ipv4()
    {
        // A UDP control's questions go through the engine's sockets, which are of the
        // resolver's address family.
        return Err(ScanError::BadOption {
            option: "--control",
            reason: format!(
                "the UDP control {addr} and the resolver {} must be of one address family",
                config.resolver
            ),
        });
    }
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
        return Err(ScanError::BadOption {
            option: "--dns-sink",
            reason: format!(
                "the sink {sink} and the resolver {} must be of one address family",
                config.resolver
            ),
        });
    }
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
        let capture = crate::capture::ProbeCapture::start(config.options.capture)?;
        let web = WebStage::new(
            web_config,
            Arc::new(crate::trust::root_store(&config.extra_roots)),
            PathGuard::new(config.residual.clone()),
            fd_budget.clone(),
        )?
        .with_capture(capture);
        (Some(web), Some(blockpages))
    } else {
        (None, None)
    };
    let injectors = match &config.injectors {
        Some(path) => crate::classify::injectors::InjectorSet::load(path)?,
        None => crate::classify::injectors::InjectorSet::builtin(),
    };
    let web_control = config
        .web_control
        .as_ref()
        .map(crate::probe::web_control::WebControlClient::start)
        .transpose()?;
    let asns = match &config.asn_db {
        Some(path) => crate::asn::AsnTable::load(path)?,
        None => crate::asn::AsnTable::empty(),
    };
    Ok(ScanContext {
        web_control,
        asns,
        dns: DnsStage::new(
            engine,
            &config.control,
            control,
            config.resolver,
            config.sink,
            config.qtypes.clone(),
            &config.web.control_name,
        )?,
        forged_ips: config.forged_ips.clone(),
        stages: config.stages,
        locator: (config.options.locate && web.is_some())
            .then(|| locate::Locator::new(&config.web.control_name)),
        web,
        blockpages,
        lean_without_packets: config.options.observations == crate::record::Observations::Default,
        injectors,
    })
}

/// The header: the run, its effective options (with the repeat and resume of `passes`).
fn write_header(
    config: &ScanConfig,
    passes: &Passes,
    sink: &mut dyn RecordSink,
) -> Result<(), ScanError> {
    let mut options = Box::new(config.options.clone());
    if passes.plan.repeat > 1 {
        options.repeat = Some(passes.plan.repeat);
        options.repeat_interval_ms = Some(passes.plan.repeat_interval.as_millis() as u64);
    }
    if passes.prior.is_resuming() {
        options.resume = Some(passes.prior.header_info());
    }
    sink.header(&HeaderRecord {
        tool: env!("CARGO_PKG_NAME").to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version: crate::record::SCHEMA_VERSION,
        started_at: now_rfc3339(),
        vantage: config.vantage.clone(),
        resolver: config.resolver,
        control: config.control.to_string(),
        sink: config.sink,
        options,
        targets_loaded: passes.targets_loaded,
        targets_scheduled: passes.targets_scheduled,
        skipped_inputs: passes.skipped_inputs.clone(),
        skipped_inputs_omitted: passes.skipped_inputs_omitted,
    })?;
    Ok(())
}

type WriterResult = Result<(Box<dyn RecordSink>, SummaryBuilder), OutputError>;

/// The writer runs on its own thread: report I/O never blocks the probes. It flushes
/// at most [`crate::output::FLUSH_INTERVAL`] after a record arrives (the report buffers
/// the rest), so a killed run loses at most that last interval; a stopped one loses
/// nothing (the channel is drained, and `finish` flushes).
/// How long the writer pauses when it has caught up with a busy scan (see
/// `spawn_writer`): short beside the flush interval, long beside a record's time.
const WRITER_PAUSE: Duration = Duration::from_millis(1);

fn spawn_writer(
    mut sink: Box<dyn RecordSink>,
    mut summary: SummaryBuilder,
    mut rx: mpsc::Receiver<Box<TargetRecord>>,
) -> tokio::task::JoinHandle<WriterResult> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // When the oldest record not yet flushed arrived.
        let mut unflushed_since: Option<Instant> = None;
        // Whether records came since the writer last waited.
        let mut busy = false;
        loop {
            let received = match (rx.try_recv(), unflushed_since) {
                (Ok(record), _) => {
                    busy = true;
                    Some(record)
                }
                (Err(mpsc::error::TryRecvError::Disconnected), _) => None,
                // Caught up in a busy scan: pause, and take what came meanwhile in one
                // go. Waiting on the channel instead would have every record wake this
                // thread, at a futex call on each side, tens of thousands a second.
                (Err(mpsc::error::TryRecvError::Empty), _) if busy => {
                    busy = false;
                    std::thread::sleep(WRITER_PAUSE);
                    continue;
                }
                (Err(mpsc::error::TryRecvError::Empty), None) => rx.blocking_recv(),
                // Caught up with records unflushed: wait for more until they are due.
                (Err(mpsc::error::TryRecvError::Empty), Some(since)) => {
                    let deadline =
                        tokio::time::Instant::from_std(since + crate::output::FLUSH_INTERVAL);
                    match runtime.block_on(tokio::time::timeout_at(deadline, rx.recv())) {
                        Ok(received) => received,
                        Err(_elapsed) => {
                            sink.flush()?;
                            unflushed_since = None;
                            continue;
                        }
                    }
                }
            };
            let Some(record) = received else { break };
            summary.add(&record);
            sink.target(&record)?;
            if unflushed_since.get_or_insert_with(Instant::now).elapsed()
                >= crate::output::FLUSH_INTERVAL
            {
                sink.flush()?;
                unflushed_since = None;
            }
        }
        Ok((sink, summary))
    })
}

/// One dispatch per pass (`--repeat`), the attempts numbered; every record goes to `tx`.
async fn dispatch_passes(
    config: &ScanConfig,
    context: &Arc<ScanContext>,
    passes: &mut Passes,
    tx: mpsc::Sender<Box<TargetRecord>>,
    stop: impl Future<Output = ()>,
) -> DispatchOutcome {
    let dns_per_target =
        u32::try_from(config.qtypes.len() * if config.sink.is_some() { 2 } else { 1 })
            .unwrap_or(u32::MAX);
    let in_flight = names_in_flight(config, dns_per_target);
    let repeated = passes.plan.repeat > 1;
    let stop = stop.shared();
    let work = std::mem::take(&mut passes.passes);
    passes
        .plan
        .run_passes(work, stop.clone(), |pass| {
            // One future per pass: boxed, it does not weigh on the scan's own.
            Box::pin(pipeline::dispatch_pass(
                context,
                pass,
                pipeline::PassSettings {
                    concurrency: in_flight,
                    rate: config.rate,
                    cost: dns_per_target,
                    repeated,
                    ramp: config.dns.wait_after_first,
                },
                tx.clone(),
                stop.clone(),
            ))
        })
        .await
}

/// How many targets may be in flight: `--concurrency`, or in a DNS-only scan at least
/// what `--rate` needs. Each name stays in flight for the late-reply window after its
/// first reply, and up to the timeout when the resolver is silent; a paced scan must be
/// able to hold that many names, or the rate it asked for is never reached. (With the
/// web stages, `--concurrency` alone bounds the connections they open.)
fn names_in_flight(config: &ScanConfig, dns_per_target: u32) -> usize {
    if config.stages.web() || config.rate <= 0.0 || dns_per_target == 0 {
        return config.concurrency;
    }
    let names_per_second = config.rate / f64::from(dns_per_target);
    let held = config.dns.wait_after_first + config.dns.timeout;
    let needed = (names_per_second * held.as_secs_f64()).ceil() as usize;
    config.concurrency.max(needed.min(MAX_NAMES_IN_FLIGHT))
}

/// The most names a rate may put in flight (a `--concurrency` above it is kept).
const MAX_NAMES_IN_FLIGHT: usize = 500_000;

/// One target, measured in a task of its own: targets the DNS pipeline does not take
/// (address targets, scans without the DNS stage) and library callers.
async fn probe_target(context: Arc<ScanContext>, target: Target) -> TargetRecord {
    let started_at = now_rfc3339();
    let started = Instant::now();
    let needs_name_lookup =
        target.address.is_none() && (context.stages.dns || target.pinned_ips.is_empty());
    let (dns, control) = if target.address.is_some() {
        (None, None)
    } else if context.stages.dns {
        let tls_proof = context.web.as_ref().filter(|_| context.stages.tls);
        let dns =
            dns::probe_dns(&context.dns, &context.forged_ips, tls_proof, &target.domain).await;
        (Some(dns), None)
    } else if needs_name_lookup {
        // No DNS stage, but the web probes need addresses: ask the control only.
        (None, context.dns.lookup_control(&target.domain).await)
    } else {
        (None, None)
    };
    complete_target(&context, target, started_at, started, dns, control).await
}

/// The rest of a target once its DNS stage is judged: the web stages (when they run)
/// and the web control (when asked), both at once, then the record. `control`: the
/// control's resolution when there is no DNS section.
async fn complete_target(
    context: &ScanContext,
    target: Target,
    started_at: String,
    started: Instant,
    mut dns: Option<DnsSection>,
    control: Option<ControlObservation>,
) -> TargetRecord {
    let control = dns.as_ref().map_or(control, |d| d.control.clone());
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
    let helper_query = context.web_control.as_ref().and_then(|client| {
        web_control::query(
            context.web.as_ref().map(WebStage::config),
            &target,
            plan.as_ref().ok(),
            &resolver_ips,
            control.as_ref(),
        )
        .map(|query| (client, query))
    });
    let observe = async {
        match &context.web {
            Some(web) => Some(web.observe_target(&target.domain, plan).await),
            None => None,
        }
    };
    let ask = async {
        match helper_query {
            Some((client, query)) => Some(client.ask(query).await),
            None => None,
        }
    };
    let (observations, helper) = tokio::join!(observe, ask);
    if let (Some(helper), Some(dns)) = (&helper, &mut dns) {
        crate::classify::dns::reconsider_with_web_control(dns, helper, &context.asns);
    }
    let web_result = observations.map(|observations| {
        let blockpages = context
            .blockpages
            .as_ref()
            .expect("the block pages are loaded with the web stage");
        let web = context.web.as_ref().expect("observed by the web stage");
        crate::classify::web::judge_web_with_control(
            observations,
            helper.as_ref(),
            &web.config().control_name,
            blockpages,
            &context.injectors,
        )
    });
    let mut record = target_record(target, started_at, started, dns, web_result);
    record.web_control = helper;
    if let Some(locator) = &context.locator {
        record.location = locator
            .locate(record.http.as_ref(), record.tls.as_ref())
            .await;
    }
    if context.lean_without_packets && record.is_entirely_ok() {
        crate::capture::drop_packets(&mut record);
    }
    record
}

/// The record of a target from its judged stages.
fn target_record(
    target: Target,
    started_at: String,
    started: Instant,
    dns: Option<DnsSection>,
    web_result: Option<WebStageResult>,
) -> TargetRecord {
    let mut categories: Vec<String> = target
        .sources
        .iter()
        .filter_map(|s| s.category_code.clone())
        .collect();
    categories.sort();
    categories.dedup();
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
        location: None,
        web_control: None,
    }
}
