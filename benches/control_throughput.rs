//! Encrypted control throughput: `ControlResolver` against the project's own `DoT` and `DoH`
//! servers on loopback (test CA made at run time), with many lookups in flight at once, as a
//! large scan makes them. Prints lookups/s and how many lookups failed; asserts nothing.
//!
//! `cargo bench --bench control_throughput -- [LOOKUPS] [IN_FLIGHT] [TIMEOUT_MS]`
//! (defaults: 20000 lookups, 2000 in flight, 5000 ms control timeout).

mod common;
use common::peak_rss_kib;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use censorprobe::observation::ControlOutcome;
use censorprobe::probe::control::{ControlResolver, ControlSpec};
use censorprobe::servers::ca::LabCa;
use censorprobe::servers::dns::{AuthoritativeDns, DOH_PATH, RunningDns, TlsEndpoint, ZoneSpec};
use futures::StreamExt;
use hickory_proto::rr::RecordType;

const SERVER_NAME: &str = "dns.lab.example";
/// Names of the zone that exist (`n0` .. `n{PRESENT-1}`); every other `n{i}` is NXDOMAIN.
const PRESENT: usize = 1000;

/// The server's address list and the lab CA; the server runs on a runtime of its own
/// (two threads), as a separate resolver process would.
fn start_server(ca: &LabCa) -> (SocketAddr, SocketAddr) {
    let names = [SERVER_NAME];
    let ips = [IpAddr::from([127, 0, 0, 1])];
    let dot = TlsEndpoint::new(
        "127.0.0.1:0".parse().unwrap(),
        ca.issue(&names, &ips).unwrap(),
    );
    let doh = TlsEndpoint::new(
        "127.0.0.1:0".parse().unwrap(),
        ca.issue(&names, &ips).unwrap(),
    );
    let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut zone = ZoneSpec::new("lab.example");
            for i in 0..PRESENT {
                zone.add_address(
                    &format!("n{i}.lab.example"),
                    IpAddr::from([198, 18, (i / 256) as u8, (i % 256) as u8]),
                );
            }
            let dns: RunningDns = AuthoritativeDns::new(zone)
                .dot(dot)
                .doh(doh, DOH_PATH)
                .serve()
                .unwrap();
            addrs_tx
                .send((dns.dot_addr().unwrap(), dns.doh_addr().unwrap()))
                .unwrap();
            std::future::pending::<()>().await;
        });
    });
    addrs_rx.recv().unwrap()
}

struct Figures {
    resolved: usize,
    nxdomain: usize,
    wrong: usize,
    failures: usize,
    first_failure: Option<String>,
    elapsed: Duration,
}

async fn run(control: &ControlResolver, lookups: usize, in_flight: usize) -> Figures {
    control.check_reachable().await.unwrap();
    let start = Instant::now();
    let outcomes: Vec<(usize, ControlOutcome)> = futures::stream::iter(0..lookups)
        .map(|i| async move {
            let name = format!("n{}.lab.example", i % (2 * PRESENT));
            let mut obs = control.resolve(&name, &[RecordType::A]).await;
            (i, obs.answers.remove(0).outcome)
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let mut figures = Figures {
        resolved: 0,
        nxdomain: 0,
        wrong: 0,
        failures: 0,
        first_failure: None,
        elapsed,
    };
    for (i, outcome) in outcomes {
        let present = i % (2 * PRESENT) < PRESENT;
        match outcome {
            ControlOutcome::Resolved { .. } if present => figures.resolved += 1,
            ControlOutcome::Nxdomain if !present => figures.nxdomain += 1,
            ControlOutcome::Error { message } => {
                figures.failures += 1;
                figures.first_failure.get_or_insert(message);
            }
            _ => figures.wrong += 1,
        }
    }
    figures
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let lookups: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let in_flight: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let timeout_ms: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let timeout = Duration::from_millis(timeout_ms);

    let ca = LabCa::new("censorprobe control bench CA").unwrap();
    let (tls_server, https_server) = start_server(&ca);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let specs = [
        format!("dot:{tls_server}#{SERVER_NAME}"),
        format!("doh:https://{https_server}{DOH_PATH}"),
    ];
    println!(
        "control throughput: {lookups} lookups (A), {in_flight} in flight, timeout {timeout_ms} ms"
    );
    for spec in specs {
        let spec: ControlSpec = spec.parse().unwrap();
        let control = ControlResolver::new(&spec, &[ca.cert_der()], timeout)
            .unwrap()
            .unwrap();
        let figures = runtime.block_on(run(&control, lookups, in_flight));
        let seconds = figures.elapsed.as_secs_f64();
        println!(
            "{:<4} {:>9.0} lookups/s  {:>6.2} s  resolved {} nxdomain {} wrong {} failures {}{}",
            spec.to_string().split(':').next().unwrap_or(""),
            lookups as f64 / seconds,
            seconds,
            figures.resolved,
            figures.nxdomain,
            figures.wrong,
            figures.failures,
            figures
                .first_failure
                .map(|m| format!(" (first: {m})"))
                .unwrap_or_default(),
        );
    }
    println!("peak RSS {} MiB", peak_rss_kib() / 1024);
}
