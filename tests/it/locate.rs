//! Locating a censor by TTL-limited probing, end to end in the lab: the trace of a blocked
//! name finds the injection at the censor's hop, the trace of a benign name none.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use censorprobe::classify::location::judge_trace;
use censorprobe::lab::{Lab, Scenario, netns, plan};
use censorprobe::probe::locate::{TraceConfig, Tracer};
use censorprobe::record::location::{
    CensorPlacement, LocationSection, TraceProtocol, TraceRecord, TriggerOutcome,
};

use crate::support::{BIN, Report, start_lab_with};

/// Where the lab puts things, as a trace sees them: the first TTL at which the censor's
/// injection appears, the server's hop distance, and what that makes of the censor.
/// THE ONE PLACE to switch when the lab gains routers (censor at a known hop, e.g. 3,
/// servers further, e.g. 5, `OnPath`).
///
/// The lab's path (`lab::plan`): two routers, the censor at hop 3 (it inspects a trigger
/// that expires at it and answers with a time-exceeded, like a router), one more router,
/// the servers at hop 5. So the injection first appears at the censor's hop, before the
/// server's: on-path.
const LAB_HOPS: ExpectedHops = ExpectedHops {
    injection_hop: plan::CENSOR_HOP,
    server_hop: plan::SERVER_HOP,
    placement: CensorPlacement::OnPath,
    first_router: plan::HOP_ADDRESSES[0],
};

struct ExpectedHops {
    injection_hop: u8,
    server_hop: u8,
    placement: CensorPlacement,
    /// The router that expires a TTL-1 trigger.
    first_router: Ipv4Addr,
}

const SCENARIO: &str = r#"
[lab]
description = "locate test"

[[servers]]
id = "web"
ips = ["198.19.1.1"]
behaviour = "normal"

[[servers]]
id = "residual"
ips = ["198.19.1.3"]
behaviour = "normal"

[[names]]
name = "open.lab.example"
server = "web"

[[names]]
name = "rst.lab.example"
server = "web"

[[names]]
name = "sni.lab.example"
server = "web"

[[names]]
name = "sticky.lab.example"
server = "residual"

[[http_rules]]
pattern = "rst.lab.example"
action = "rst"

[[http_rules]]
pattern = "sticky.lab.example"
action = "rst"
residual = { action = "reset", secs = 60 }

[[tls_rules]]
pattern = "sni.lab.example"
action = "rst_ack"
count = 2
"#;

/// The lab tests need root and network namespaces: fail loudly without them.
fn require_lab() {
    assert!(
        netns::is_root(),
        "the locate lab tests need root (network namespaces, nftables, raw ICMP socket)"
    );
}

fn start_lab() -> Lab {
    let file = Path::new("it-locate.toml");
    start_lab_with(Scenario::parse(SCENARIO, file).unwrap(), file, "it")
}

fn quick_config(control: &str) -> TraceConfig {
    TraceConfig {
        max_ttl: 8,
        window: Duration::from_millis(800),
        pause: Duration::from_millis(50),
        control_name: Some(control.to_owned()),
        ..TraceConfig::default()
    }
}

fn web(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(198, 19, 1, 1), port))
}

fn assert_located_at_the_censor(trace: &TraceRecord) {
    let location = &trace.location;
    assert_eq!(location.placement, LAB_HOPS.placement, "{trace:#?}");
    assert_eq!(
        location.injection_hop,
        Some(LAB_HOPS.injection_hop),
        "{trace:#?}"
    );
    assert_eq!(location.server_hop, Some(LAB_HOPS.server_hop), "{trace:#?}");
    assert_eq!(location.residual, None, "{trace:#?}");
    assert_eq!(
        trace.trace.hops[0].router,
        Some(IpAddr::V4(LAB_HOPS.first_router)),
        "{trace:#?}"
    );
    // Before the injection hop: silence on the connection, a router's time-exceeded.
    for hop in &trace.trace.hops[..usize::from(LAB_HOPS.injection_hop - 1)] {
        assert_eq!(hop.outcome, TriggerOutcome::Silence, "{trace:#?}");
        assert!(hop.router.is_some(), "{trace:#?}");
    }
}

#[test]
fn trace_locates_the_censor_of_blocked_names_and_nothing_for_a_benign_one() {
    require_lab();
    let lab = start_lab();
    let outcome = lab.in_vantage(|| {
        let tracer = Tracer::new(web(80).ip(), quick_config("open.lab.example")).unwrap();
        let http = tracer
            .trace(web(80), TraceProtocol::Http, "rst.lab.example")
            .map(judge_trace)
            .unwrap();
        let tls = tracer
            .trace(web(443), TraceProtocol::Tls, "sni.lab.example")
            .map(judge_trace)
            .unwrap();
        let benign = tracer
            .trace(web(80), TraceProtocol::Http, "example.com")
            .map(judge_trace)
            .unwrap();
        // Residual censorship: after the injection, the next connection to the same
        // server and port is reset at its SYN; reported, the injection hop unchanged.
        let residual_server = SocketAddr::from((Ipv4Addr::new(198, 19, 1, 3), 80));
        let sticky = tracer
            .trace(residual_server, TraceProtocol::Http, "sticky.lab.example")
            .map(judge_trace)
            .unwrap();
        (http, tls, benign, sticky)
    });
    // The subcommand: the same trace as one JSON object, and as text.
    let vantage = lab.info().namespaces.vantage.clone();
    let trace_command = |extra: &[&str]| {
        let mut args = vec![
            "netns",
            "exec",
            &vantage,
            BIN,
            "trace",
            "--server",
            "198.19.1.1",
            "--control",
            "open.lab.example",
            "--max-ttl",
            "6",
            "--window-ms",
            "800",
            "--pause-ms",
            "50",
        ];
        args.extend_from_slice(extra);
        std::process::Command::new("ip")
            .args(&args)
            .output()
            .unwrap()
    };
    let json_run = trace_command(&["--json", "rst.lab.example"]);
    let text_run = trace_command(&["--protocol", "tls", "sni.lab.example"]);
    lab.stop().unwrap();
    let (http, tls, benign, sticky) = outcome.unwrap();

    assert!(json_run.status.success(), "{json_run:?}");
    let from_binary: TraceRecord = serde_json::from_slice(&json_run.stdout).unwrap();
    assert_eq!(from_binary.trace.name, "rst.lab.example");
    assert_eq!(from_binary.trace.port, 80);
    assert_eq!(from_binary.location, http.location);
    let value: serde_json::Value = serde_json::from_slice(&json_run.stdout).unwrap();
    assert_eq!(value["protocol"], "http");
    assert_eq!(value["location"]["injection_hop"], LAB_HOPS.injection_hop);
    assert_eq!(value["hops"][0]["outcome"]["kind"], "silence");
    assert!(text_run.status.success(), "{text_run:?}");
    let text = String::from_utf8(text_run.stdout).unwrap();
    assert!(
        text.contains("trace sni.lab.example to 198.19.1.1:443"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "injection hop {}; server hop {}",
            LAB_HOPS.injection_hop, LAB_HOPS.server_hop
        )),
        "{text}"
    );

    assert_located_at_the_censor(&http);
    assert_eq!(http.location.injection, Some(TriggerOutcome::Reset));
    assert_located_at_the_censor(&tls);

    assert_eq!(
        benign.location.placement,
        CensorPlacement::None,
        "{benign:#?}"
    );
    assert_eq!(benign.location.injection_hop, None, "{benign:#?}");
    assert_eq!(benign.location.server_hop, Some(LAB_HOPS.server_hop));
    assert!(
        benign
            .trace
            .hops
            .iter()
            .all(|hop| !hop.outcome.is_interference()),
        "{benign:#?}"
    );

    assert_eq!(
        sticky.location.injection_hop,
        Some(LAB_HOPS.injection_hop),
        "{sticky:#?}"
    );
    let residual = sticky
        .location
        .residual
        .as_ref()
        .expect("residual reported");
    assert_eq!(residual.from_ttl, LAB_HOPS.injection_hop + 1, "{sticky:#?}");
}

/// Without `CAP_NET_RAW` (no raw ICMP socket) `trace` fails with a clear error before
/// sending anything (no lab needed: nothing leaves the host).
#[test]
fn trace_without_a_raw_socket_is_a_clear_error() {
    require_lab();
    let output = std::process::Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-net_raw",
            BIN,
            "trace",
            "--server",
            "198.19.1.1",
            "rst.lab.example",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CAP_NET_RAW"), "{stderr}");
    assert!(output.stdout.is_empty(), "{output:?}");
}

/// `scan --locate` in the lab: a `location` on the records whose HTTP or TLS test failed
/// after the trigger, none on a clean one; without `CAP_NET_RAW` the same scan runs and
/// says why no trace ran.
#[test]
fn scan_locate_records_where_the_censor_sits() {
    require_lab();
    let lab = start_lab();
    let info = lab.info().clone();
    let scan = |unprivileged: bool| {
        let mut command = std::process::Command::new("ip");
        command.args(["netns", "exec", &info.namespaces.vantage]);
        if unprivileged {
            command.args(["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw"]);
        }
        let output = command
            .args([BIN, "scan", "--locate"])
            .args(["--resolver", &info.resolver.to_string()])
            .args(["--dns-sink", &info.sink.to_string()])
            .args(["--control", &format!("dot:{}#{}", info.dot, info.dot_name)])
            .args(["--ca", &info.ca_cert.to_string_lossy()])
            .args(["--control-name", &info.control_name])
            .args(["--qtype", "A", "--dns-timeout", "1s", "--dns-wait", "300ms"])
            .args(["--connect-timeout", "2s", "--web-timeout", "3s"])
            .args(["open.lab.example", "rst.lab.example", "sni.lab.example"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Report::parse(&String::from_utf8_lossy(&output.stdout))
    };
    let privileged = scan(false);
    let unprivileged = scan(true);
    lab.stop().unwrap();

    assert!(privileged.header.options.locate);
    let open = privileged.target("open.lab.example");
    assert_eq!(open.location, None, "{open:#?}");
    for (domain, protocol) in [
        ("rst.lab.example", TraceProtocol::Http),
        ("sni.lab.example", TraceProtocol::Tls),
    ] {
        let record = privileged.target(domain);
        let Some(LocationSection::Traced { traces, skipped }) = &record.location else {
            panic!("{domain}: {record:#?}");
        };
        assert!(skipped.is_empty(), "{skipped:#?}");
        let [trace] = traces.as_slice() else {
            panic!("{domain}: one trace: {traces:#?}");
        };
        assert_eq!(trace.trace.protocol, protocol);
        assert_eq!(trace.trace.name, domain);
        assert_eq!(
            trace.trace.control.as_ref().map(|c| c.name.as_str()),
            Some(info.control_name.as_str())
        );
        assert_located_at_the_censor(trace);
    }
    for domain in ["rst.lab.example", "sni.lab.example"] {
        let record = unprivileged.target(domain);
        let Some(LocationSection::Unavailable { reason }) = &record.location else {
            panic!("{domain}: {record:#?}");
        };
        assert!(reason.contains("CAP_NET_RAW"), "{reason}");
    }
    assert_eq!(unprivileged.target("open.lab.example").location, None);
}
