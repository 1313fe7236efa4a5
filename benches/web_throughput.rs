//! HTTP and TLS stage throughput: the real `WebStage` (benign control, test, residual
//! check under the path guard, classifier) against loopback lab servers spread over
//! several 127.0.0.x addresses, so that targets use distinct paths. Two HTTP-only runs
//! (the small lab page, and a page of `PAGE_BYTES` as pages in the wild are) and one
//! TLS-only run; prints targets/s, connections/s, CPU per target, verdicts, connect
//! errors and peak memory. Asserts nothing (timing goals live here, not in tests).
//!
//! The servers run in the same process on their own runtime, so on a small machine
//! they take a share of the CPU the probes would otherwise have.
//!
//! `cargo bench --bench web_throughput -- [HTTP_TARGETS] [TLS_TARGETS] [CONCURRENCY] [ADDRESSES] [PAGE_BYTES]`

mod common;
use common::peak_rss_kib;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use censorprobe::classify::blockpage::BlockpageSet;
use censorprobe::observation::web::ConnectObservation;
use censorprobe::observation::web::{AddressPlan, AddressSource};
use censorprobe::pathguard::{PathGuard, PathGuardConfig};
use censorprobe::probe::web::net::fd_soft_limit;
use censorprobe::probe::web::{ConnectionBudget, WebStage, WebStageConfig};
use censorprobe::record::assessment::WebAssessment;
use censorprobe::servers::ca::LabCa;
use censorprobe::servers::web::{
    HttpBehaviour, HttpLabConfig, LabServer, TlsIdentity, TlsLabConfig,
};
use rustls::RootCertStore;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Descriptors kept for everything but probe sockets and the servers' accepted ones.
const FD_RESERVE: usize = 512;

/// CPU seconds (user + system) used so far by this process's threads, by thread name
/// (`probe`, `lab-server`, ...): the machine is shared, so CPU per target says more
/// about the probes' cost than wall-clock rates alone.
fn cpu_by_thread_name() -> BTreeMap<String, f64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let mut cpu = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ... utime stime: fields 14 and 15, counted after `)`.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let used: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
        });
        *cpu.entry(name).or_default() += used / ticks;
    }
    cpu
}

/// HTTP and TLS servers on `count` loopback addresses; each kind listens on one port
/// at every address (the web stage probes one port per protocol).
struct Servers {
    ips: Vec<IpAddr>,
    http_port: u16,
    /// HTTP servers whose pages are `PAGE_BYTES` long.
    http_large_port: u16,
    tls_port: u16,
    /// Kept alive for the run (a `LabServer` stops when dropped).
    _running: Vec<LabServer>,
}

fn bench_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 101 + index as u8))
}

/// Binds `spawn` on the same port at every address, picking a port free on all.
async fn same_port_everywhere<F, Fut>(ips: &[IpAddr], spawn: F) -> (u16, Vec<LabServer>)
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<LabServer>>,
{
    'pick: for _ in 0..50 {
        let first = spawn(SocketAddr::new(ips[0], 0)).await.unwrap();
        let port = first.local_addr().port();
        let mut servers = vec![first];
        for ip in &ips[1..] {
            match spawn(SocketAddr::new(*ip, port)).await {
                Ok(server) => servers.push(server),
                Err(_) => continue 'pick,
            }
        }
        return (port, servers);
    }
    panic!("no port free on every bench address");
}

async fn start_servers(ca: &LabCa, count: usize, page_bytes: usize) -> Servers {
    let ips: Vec<IpAddr> = (0..count).map(bench_ip).collect();
    let (http_port, mut servers) = same_port_everywhere(&ips, |addr| {
        LabServer::spawn_http(addr, HttpLabConfig::default())
    })
    .await;
    let (http_large_port, large_servers) = same_port_everywhere(&ips, |addr| {
        LabServer::spawn_http(
            addr,
            HttpLabConfig::default().otherwise(HttpBehaviour::ServeLarge(page_bytes)),
        )
    })
    .await;
    servers.extend(large_servers);
    let (chain, key) = ca.issue(&["example.com", "*.bench.test"], &[]).unwrap();
    let identity = TlsIdentity { chain, key };
    let (tls_port, tls_servers) = same_port_everywhere(&ips, |addr| {
        LabServer::spawn_tls(addr, TlsLabConfig::new(identity.clone()))
    })
    .await;
    servers.extend(tls_servers);
    Servers {
        ips,
        http_port,
        http_large_port,
        tls_port,
        _running: servers,
    }
}

/// What one run saw.
#[derive(Default)]
struct Tally {
    targets: usize,
    connections: usize,
    requeues: u64,
    verdicts: BTreeMap<String, usize>,
    /// Failed connects by OS error text (or status).
    connect_errors: BTreeMap<String, usize>,
    /// Test connection durations (ms), for percentiles.
    test_ms: Vec<f64>,
}

impl Tally {
    fn add<V: std::fmt::Display, O>(
        &mut self,
        assessment: &WebAssessment<V, O>,
        connect: impl Fn(&O) -> &ConnectObservation,
        total_ms: impl Fn(&O) -> f64,
    ) {
        self.targets += 1;
        *self
            .verdicts
            .entry(assessment.verdict.to_string())
            .or_default() += 1;
        for attempt in &assessment.attempts {
            self.requeues += u64::from(attempt.path.requeues);
            let obs = &attempt.observations;
            self.test_ms.push(total_ms(&obs.test));
            for o in [Some(&obs.control), Some(&obs.test), obs.residual.as_ref()]
                .into_iter()
                .flatten()
            {
                self.connections += 1;
                let c = connect(o);
                if !c.is_ok() {
                    let what = c.error.clone().unwrap_or_else(|| format!("{:?}", c.status));
                    *self.connect_errors.entry(what).or_default() += 1;
                }
            }
        }
    }

    fn percentile(&mut self, p: f64) -> f64 {
        if self.test_ms.is_empty() {
            return 0.0;
        }
        self.test_ms.sort_by(f64::total_cmp);
        let index = ((self.test_ms.len() - 1) as f64 * p).round() as usize;
        self.test_ms[index]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    /// HTTP to the servers with large pages.
    HttpLarge,
    Tls,
}

async fn run(
    protocol: Protocol,
    targets: usize,
    concurrency: usize,
    servers: &Servers,
    roots: &Arc<RootCertStore>,
    budget: &ConnectionBudget,
) -> (Tally, f64) {
    let config = WebStageConfig {
        run_http: protocol != Protocol::Tls,
        run_tls: protocol == Protocol::Tls,
        http_port: if protocol == Protocol::HttpLarge {
            servers.http_large_port
        } else {
            servers.http_port
        },
        tls_port: servers.tls_port,
        max_ips: 1,
        ..WebStageConfig::default()
    };
    let stage = Arc::new(
        WebStage::new(
            config,
            Arc::clone(roots),
            PathGuard::new(PathGuardConfig::default()),
            budget.clone(),
        )
        .unwrap(),
    );
    let blockpages = Arc::new(BlockpageSet::builtin());
    let in_flight = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut tally = Tally::default();
    let tally_result =
        |tally: &mut Tally, result: censorprobe::record::assessment::WebStageResult| {
            if let Some(http) = &result.http {
                tally.add(http, |o| &o.connect, |o| o.total_ms);
            }
            if let Some(tls) = &result.tls {
                tally.add(tls, |o| &o.connect, |o| o.total_ms);
            }
        };
    let started = Instant::now();
    for i in 0..targets {
        let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
        let stage = Arc::clone(&stage);
        let blockpages = Arc::clone(&blockpages);
        let ip = servers.ips[i % servers.ips.len()];
        tasks.spawn(async move {
            let plan = Ok(AddressPlan {
                source: AddressSource::Pinned,
                ips: vec![ip],
            });
            // What a scan does per target: observe, then judge.
            let observations = stage
                .observe_target(&format!("t{i}.bench.test"), plan)
                .await;
            let result = censorprobe::classify::web::judge_web(
                observations,
                &stage.config().control_name,
                &blockpages,
            );
            drop(permit);
            result
        });
        while let Some(done) = tasks.try_join_next() {
            tally_result(&mut tally, done.unwrap());
        }
    }
    while let Some(done) = tasks.join_next().await {
        tally_result(&mut tally, done.unwrap());
    }
    (tally, started.elapsed().as_secs_f64())
}

/// CPU seconds spent between two snapshots by the probe threads and the server threads.
fn cpu_split(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> (f64, f64) {
    let spent = |name: &str| {
        after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    (spent("probe"), spent("lab-server"))
}

fn report(name: &str, mut tally: Tally, elapsed: f64, (probe_cpu, server_cpu): (f64, f64)) {
    println!(
        "  {name}: {} targets in {elapsed:.2} s: {:.0} targets/s, {:.0} connections/s ({} connections: control + test + residual)",
        tally.targets,
        tally.targets as f64 / elapsed,
        tally.connections as f64 / elapsed,
        tally.connections,
    );
    println!(
        "    CPU: probes {probe_cpu:.2} s ({:.0} µs per target, {:.0} targets per probe-CPU-second), servers {server_cpu:.2} s",
        probe_cpu * 1e6 / tally.targets.max(1) as f64,
        tally.targets as f64 / probe_cpu.max(1e-9),
    );
    let p50 = tally.percentile(0.5);
    let p99 = tally.percentile(0.99);
    println!("    test connection: p50 {p50:.1} ms, p99 {p99:.1} ms");
    println!("    verdicts: {:?}", tally.verdicts);
    let errors = tally.targets - tally.verdicts.get("ok").copied().unwrap_or(0);
    println!(
        "    errors (targets not ok): {errors}; connect errors: {:?}; requeues: {}",
        tally.connect_errors, tally.requeues
    );
    println!("    peak RSS so far: {} MiB", peak_rss_kib() / 1024);
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse().ok())
        .collect();
    let http_targets = args.first().copied().unwrap_or(50_000);
    let tls_targets = args.get(1).copied().unwrap_or(10_000);
    let concurrency = args.get(2).copied().unwrap_or(1_000);
    let addresses = args.get(3).copied().unwrap_or(16).clamp(1, 100);
    let page_bytes = args.get(4).copied().unwrap_or(32 * 1024);

    // The servers' accepted sockets count against the same descriptor limit.
    let fd_limit = fd_soft_limit().unwrap_or(1024);
    let budget = ConnectionBudget::new(fd_limit.saturating_sub(FD_RESERVE) / 2);

    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("lab-server")
        .enable_all()
        .build()
        .unwrap();
    let ca = LabCa::new("censorprobe bench CA").unwrap();
    let servers = server_runtime.block_on(start_servers(&ca, addresses, page_bytes));
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let roots = Arc::new(roots);

    let probe_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("probe")
        .enable_all()
        .build()
        .unwrap();
    println!(
        "web_throughput: {addresses} server addresses, concurrency {concurrency} targets, socket budget {} (fd limit {fd_limit}), controls on",
        budget.capacity()
    );
    let rss_start = peak_rss_kib();
    let large = format!("HTTP, {page_bytes}-byte page");
    for (name, protocol, targets) in [
        ("HTTP, lab page", Protocol::Http, http_targets),
        (large.as_str(), Protocol::HttpLarge, http_targets),
        ("TLS", Protocol::Tls, tls_targets),
    ] {
        if targets == 0 {
            continue;
        }
        let cpu_before = cpu_by_thread_name();
        let (tally, elapsed) = probe_runtime.block_on(run(
            protocol,
            targets,
            concurrency,
            &servers,
            &roots,
            &budget,
        ));
        let cpu = cpu_split(&cpu_before, &cpu_by_thread_name());
        report(name, tally, elapsed, cpu);
    }
    println!(
        "  peak RSS: {} MiB (probes and servers; at start: {} MiB)",
        peak_rss_kib() / 1024,
        rss_start / 1024
    );
    // Let the servers' last connections go before the runtimes are dropped.
    drop(probe_runtime);
    server_runtime.shutdown_timeout(Duration::from_secs(1));
}
