//! One HTTP probe against a loopback server that floods it without ever completing a
//! response: an endless chunk-size line, endless `100 Continue`, endless header lines,
//! endless tiny chunks, each sent as fast as possible and as a slow drip of small
//! writes. Prints, per flood, how the exchange ended, the bytes read, the wall time and
//! the CPU time of the probe thread (the server runs on a thread of its own), then the
//! peak memory of the process. Asserts nothing.
//!
//! `cargo bench --bench http_flood -- [DEADLINE_SECS]` (default 10: the probe's
//! response deadline, which an unbounded parser runs into).

mod common;
use common::peak_rss_kib;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use censorprobe::probe::web::ConnectionBudget;
use censorprobe::probe::web::http::{HttpProbeConfig, HttpProber};
use nix::sys::resource::{UsageWho, getrusage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FLOODS: [(&str, &[u8], &[u8]); 4] = [
    (
        "chunk-size line",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=",
        b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ),
    ("100 Continue", b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
    (
        "header lines",
        b"HTTP/1.1 200 OK\r\n",
        b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    ),
    (
        "tiny chunks",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n",
    ),
];

/// Serves one connection: reads the request head, sends `prefix`, then `filler` until
/// the probe goes away, in writes of `write_size` bytes (with a pause between writes
/// when `drip`).
async fn flood_once(
    listener: tokio::net::TcpListener,
    prefix: &'static [u8],
    filler: &'static [u8],
    write_size: usize,
    drip: bool,
) {
    let Ok((mut stream, _)) = listener.accept().await else {
        return;
    };
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if stream.write_all(prefix).await.is_err() {
        return;
    }
    // One endless stream of fillers, cut into writes of `write_size` bytes.
    let mut endless = filler.iter().copied().cycle();
    loop {
        let block: Vec<u8> = endless.by_ref().take(write_size).collect();
        if stream.write_all(&block).await.is_err() {
            break;
        }
        if drip {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

fn thread_cpu_seconds() -> f64 {
    getrusage(UsageWho::RUSAGE_THREAD).map_or(0.0, |u| {
        let (user, system) = (u.user_time(), u.system_time());
        user.tv_sec() as f64
            + user.tv_usec() as f64 / 1e6
            + system.tv_sec() as f64
            + system.tv_usec() as f64 / 1e6
    })
}

fn main() {
    let deadline_secs: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flood-server")
        .enable_all()
        .build()
        .unwrap();
    let probe_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prober = HttpProber::new(
        HttpProbeConfig {
            response_timeout: Duration::from_secs(deadline_secs),
            ..HttpProbeConfig::default()
        },
        ConnectionBudget::new(16),
    );
    println!("response deadline {deadline_secs} s");
    println!(
        "{:<16} {:<6} {:<22} {:>12} {:>9} {:>9}",
        "flood", "pace", "end", "bytes read", "wall s", "cpu s"
    );
    for (name, prefix, filler) in FLOODS {
        for (pace, write_size, drip) in [("fast", 4096, false), ("drip", 16, true)] {
            let listener = server_runtime
                .block_on(tokio::net::TcpListener::bind(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    0,
                )))
                .unwrap();
            let addr = listener.local_addr().unwrap();
            server_runtime.spawn(flood_once(listener, prefix, filler, write_size, drip));
            let cpu_before = thread_cpu_seconds();
            let started = Instant::now();
            let obs = probe_runtime.block_on(prober.probe(addr.ip(), addr.port(), "flood.test"));
            let wall = started.elapsed().as_secs_f64();
            let cpu = thread_cpu_seconds() - cpu_before;
            let end = obs
                .exchange
                .map_or_else(|| "none".to_owned(), |e| format!("{e:?}"));
            println!(
                "{name:<16} {pace:<6} {end:<22} {:>12} {wall:>9.3} {cpu:>9.3}",
                obs.bytes_received
            );
        }
    }
    println!("peak memory {} KiB", peak_rss_kib());
}
