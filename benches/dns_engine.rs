//! The DNS engine alone (no scan, no classifier, no report) against a fast loopback
//! responder: queries a second and CPU microseconds per query of the engine, through
//! `query()` with a task per name in flight (the old way) and through `submit_group`
//! (one table entry per name in flight). Prints figures; asserts nothing.
//!
//! `cargo bench --bench dns_engine -- [NAMES] [DNS_WAIT_MS] [NAMES_IN_FLIGHT] [MODE]`
//! MODE: `query`, `group` or `both` (default). With a late-reply window, the rate is
//! bounded by names in flight / window (60,000 in flight and 1 s: 60,000 a second).

use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use censorprobe::observation::DnsServerRole;
use censorprobe::probe::dns::{DnsEngine, DnsProbeConfig, DnsQuestion, GroupDone};
use hickory_proto::rr::{Name, RecordType};
use nix::sys::resource::{UsageWho, getrusage};

/// CPU seconds (user + system) of `who`.
fn cpu_seconds(who: UsageWho) -> f64 {
    let usage = getrusage(who).expect("getrusage");
    let user = usage.user_time();
    let system = usage.system_time();
    (user.tv_sec() + system.tv_sec()) as f64
        + (user.tv_usec() + system.tv_usec()) as f64 / 1_000_000.0
}

/// The question section's end in a query (12-byte header, then labels, type, class).
fn question_end(query: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        at += len;
    }
    Some(at + 4).filter(|end| *end <= query.len())
}

/// A responder thread that answers every query with one A record, built by copying
/// the question (no parsing library: the responder must cost far less than the
/// engine). Returns its address, the stop flag, and its own CPU seconds when stopped.
fn responder() -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<f64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(16 << 20)
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let mut reply = Vec::with_capacity(512);
        while !stopped.load(Ordering::Relaxed) {
            let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let Some(end) = question_end(&buf[..len]) else {
                continue;
            };
            reply.clear();
            reply.extend_from_slice(&buf[..end]);
            reply[2] |= 0x80; // QR
            reply[3] = 0x80; // RA, NOERROR
            reply[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]); // one answer
            reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 1]);
            let _ = socket.send_to(&reply, peer);
        }
        cpu_seconds(UsageWho::RUSAGE_THREAD)
    });
    (addr, stop, thread)
}

fn question(i: usize, server: SocketAddr) -> DnsQuestion {
    DnsQuestion {
        qname: Name::from_str(&format!("n{i}.bench.test.")).unwrap().into(),
        qtype: RecordType::A,
        server,
        role: DnsServerRole::Resolver,
    }
}

/// Old way: a task per name in flight, each awaiting `query()`.
async fn run_query(
    engine: &DnsEngine,
    server: SocketAddr,
    names: usize,
    in_flight: usize,
) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let engine = engine.clone();
        let next = Arc::clone(&next);
        let answered = Arc::clone(&answered);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= names {
                    return;
                }
                let observation = engine.query(question(i, server)).await;
                if observation.valid_replies().next().is_some() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    answered.load(Ordering::Relaxed)
}

/// New way: one submitting loop, names in flight bounded by counting `GroupDone`s.
async fn run_group(
    engine: &DnsEngine,
    server: SocketAddr,
    names: usize,
    in_flight: usize,
) -> usize {
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<GroupDone>();
    let mut answered = 0;
    let mut finished = 0;
    let mut submitted = 0;
    while finished < names {
        while submitted < names && submitted - finished < in_flight {
            engine
                .submit_group(
                    vec![question(submitted, server)],
                    submitted as u64,
                    done_tx.clone(),
                )
                .await;
            submitted += 1;
            // Collect what is done without waiting, so the bound follows the engine.
            while let Ok(done) = done_rx.try_recv() {
                finished += 1;
                answered +=
                    usize::from(done.into_observations()[0].valid_replies().next().is_some());
            }
        }
        let Some(done) = done_rx.recv().await else {
            break;
        };
        finished += 1;
        answered += usize::from(done.into_observations()[0].valid_replies().next().is_some());
    }
    answered
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let names: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let wait_ms: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let in_flight: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let mode = args.get(3).map_or("both", String::as_str).to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for run in ["query", "group"] {
        if mode != "both" && mode != run {
            continue;
        }
        let (server, stop, thread) = responder();
        let cpu_before = cpu_seconds(UsageWho::RUSAGE_SELF);
        let started = Instant::now();
        let (answered, report) = runtime.block_on(async {
            let config = DnsProbeConfig {
                timeout: Duration::from_secs(2),
                retries: 0,
                wait_after_first: Duration::from_millis(wait_ms),
                ..DnsProbeConfig::default()
            };
            let engine = DnsEngine::start(config, server.ip()).await.unwrap();
            let answered = if run == "query" {
                run_query(&engine, server, names, in_flight).await
            } else {
                run_group(&engine, server, names, in_flight).await
            };
            (answered, engine.rate_report())
        });
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let cpu_responder = thread.join().unwrap();
        // The responder's thread is in this process: its CPU is not the engine's.
        let cpu_engine = cpu_seconds(UsageWho::RUSAGE_SELF) - cpu_before - cpu_responder;
        println!(
            "dns_engine {run}: {names} names, wait {wait_ms} ms, {in_flight} in flight: \
             {:.0} queries/s, {:.1} µs CPU per query (engine), {answered} answered, \
             responder {:.1} µs CPU per query; sent {} retries {} loss {:.4} achieved {:.0} q/s, \
             max names in flight {}",
            names as f64 / elapsed,
            cpu_engine * 1e6 / names as f64,
            cpu_responder * 1e6 / names as f64,
            report.queries_sent,
            report.retries,
            report.loss_rate,
            report.achieved_qps,
            report.max_names_in_flight,
        );
    }
}
