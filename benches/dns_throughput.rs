//! DNS stage throughput: the full scan pipeline (targets, scheduler, DNS engine,
//! classifier, JSONL writer) against a fast loopback responder, with the
//! wait-for-late-replies window on. Prints names/s and peak memory; asserts nothing.
//!
//! `cargo bench --bench dns_throughput -- [NAMES] [DNS_WAIT_MS] [CONCURRENCY]`

mod common;
use common::peak_rss_kib;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use censorprobe::output::JsonlSink;
use censorprobe::scan::{Passes, ScanConfig, run_scan};
use censorprobe::targets::TargetLoader;
use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

/// A responder on its own threads: answers every A query with one address.
fn responder(threads: usize) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(16 << 20)
        .unwrap();
    for _ in 0..threads {
        let socket = socket.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let mut reply =
                    Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                let question = query.queries[0].clone();
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A::new(198, 18, 0, 1)),
                ));
                reply.add_query(question);
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer);
            }
        });
    }
    addr
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let names: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let wait_ms: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(60_000);
    let resolver = responder(1);

    let mut loader = TargetLoader::new(false);
    let mut list_text = String::with_capacity(names * 20);
    for i in 0..names {
        use std::fmt::Write as _;
        let _ = writeln!(list_text, "n{i}.bench.test");
    }
    loader.add_reader("bench", list_text.as_bytes()).unwrap();
    let list = loader.finish();
    let rss_list = peak_rss_kib();
    let out = std::env::temp_dir().join(format!("censorprobe-bench-{}.jsonl", std::process::id()));
    let mut config = ScanConfig::builder(resolver)
        .qtypes(&[RecordType::A])
        .tests(&["dns"])
        .concurrency(concurrency)
        .rate(0.0)
        .seed(1)
        .out(out.clone())
        .options(|options| {
            options.dns_timeout = Duration::from_secs(2);
            options.retries = 1;
            options.dns_wait = Duration::from_millis(wait_ms);
            options.control_timeout = Duration::from_secs(1);
        })
        .build()
        .unwrap();
    config.dns.max_in_flight_per_socket = 32_768;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let passes = Passes::once(list, config.seed, config.shard);
    let sink = Box::new(JsonlSink::create(Some(&out)));
    let started = Instant::now();
    let summary = runtime
        .block_on(run_scan(config, passes, sink, std::future::pending()))
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&out);
    println!("dns_throughput: {names} names, dns-wait {wait_ms} ms, concurrency {concurrency}");
    println!(
        "  measured {} in {elapsed:.2} s: {:.0} names/s",
        summary.targets_measured,
        summary.targets_measured as f64 / elapsed
    );
    println!(
        "  verdicts: {:?}",
        summary
            .dns
            .iter()
            .filter(|(_, n)| **n > 0)
            .collect::<Vec<_>>()
    );
    println!(
        "  peak RSS: {} MiB (after loading the list: {} MiB); report {} MiB",
        peak_rss_kib() / 1024,
        rss_list / 1024,
        bytes >> 20
    );
}
