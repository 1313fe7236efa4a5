//! Live packet capture in the lab: the scan captures its own connections, records the
//! server's SYN-ACK and the censor's forged resets with their IP TTL and IP ID, and
//! without `CAP_NET_RAW` says so in every web observation while the scan still runs.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::{BIN, DaemonGuard, Report, assert_lab_gone, json, lab_command, lab_id, lossy};
use super::{may_clean_stale_labs, require_lab, topology};

/// The lab's forged resets carry this fingerprint, unlike any server's packets (the
/// test does not depend on hop counts: the lab topology may gain routers).
const HTTP_RST_TTL: u8 = 201;
const HTTP_RST_ID: u16 = 4242;
const TLS_RST_TTL: u8 = 177;
const TLS_RST_ID: u16 = 777;
/// The forged DNS answer's IP TTL and IP ID.
const DNS_FORGED_TTL: u8 = 150;
const DNS_FORGED_ID: u16 = 31337;

fn scenario() -> String {
    format!(
        r#"
[lab]
description = "capture test"

[pools]
bogon = ["10.10.34.34"]

[[dns_rules]]
pattern = "inject.lab.example"
action = "inject"
pool = "bogon"
ip_ttl = {DNS_FORGED_TTL}
ip_id = {DNS_FORGED_ID}

[[servers]]
id = "web"
ips = ["198.19.1.1"]
behaviour = "normal"

[[names]]
name = "open.lab.example"
server = "web"

[[names]]
name = "rst.lab.example"
server = "web"

[[names]]
name = "inject.lab.example"
server = "web"

[[names]]
name = "sni.lab.example"
server = "web"

[[http_rules]]
pattern = "rst.lab.example"
action = "rst"
ip_ttl = {HTTP_RST_TTL}
ip_id = {HTTP_RST_ID}

[[tls_rules]]
pattern = "sni.lab.example"
action = "rst_ack"
count = 2
ip_ttl = {TLS_RST_TTL}
ip_id = {TLS_RST_ID}
"#
    )
}

/// A daemonised lab, stopped when dropped.
struct CaptureLab {
    id: String,
    info: Value,
    _guard: DaemonGuard,
}

impl CaptureLab {
    fn up(dir: &Path) -> CaptureLab {
        let path = dir.join("capture.toml");
        std::fs::write(&path, scenario()).unwrap();
        let id = lab_id("itcap");
        let guard = DaemonGuard(id.clone());
        let up = {
            let _cleaning = may_clean_stale_labs();
            lab_command(&["up", path.to_str().unwrap(), "--id", &id])
        };
        assert!(up.status.success(), "{}", lossy(&up.stderr));
        let status = lab_command(&["status", "--id", &id, "--json"]);
        assert!(status.status.success(), "{}", lossy(&status.stderr));
        let statuses: Value = serde_json::from_slice(&status.stdout).unwrap();
        let info = statuses[0]["info"].clone();
        CaptureLab {
            id,
            info,
            _guard: guard,
        }
    }

    /// `censorprobe scan` in the vantage namespace, through `wrapper` (e.g. setpriv).
    fn scan(&self, wrapper: &[&str], extra: &[&str], names: &[&str]) -> Output {
        let info = &self.info;
        let vantage = topology::Namespaces::for_id(&self.id).vantage;
        let control = format!(
            "dot:{}#{}",
            info["dot"].as_str().unwrap(),
            info["dot_name"].as_str().unwrap()
        );
        Command::new("ip")
            .args(["netns", "exec", &vantage])
            .args(wrapper)
            .args([BIN, "scan"])
            .args(["--resolver", info["resolver"].as_str().unwrap()])
            .args(["--control", &control])
            .args(["--ca", info["ca_cert"].as_str().unwrap()])
            .args(["--control-name", info["control_name"].as_str().unwrap()])
            .args(["--qtype", "A", "--dns-timeout", "1s", "--dns-wait", "300ms"])
            .args(["--connect-timeout", "2s", "--web-timeout", "3s"])
            .args(["--residual-wait", "1s"])
            .args(extra)
            .args(names)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn down(self) {
        let down = lab_command(&["down", "--id", &self.id]);
        assert!(down.status.success(), "{}", lossy(&down.stderr));
        assert_lab_gone(&self.id);
    }
}

/// Without `CAP_NET_RAW` (everything else kept): setpriv drops it from the bounding set,
/// so the scan binary it executes never holds it, root or not.
const WITHOUT_NET_RAW: [&str; 4] = [
    "setpriv",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-net_raw",
];

/// Every web observation of a target record (control, test, residual; HTTP and TLS).
fn web_observations(target: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for stage in ["http", "tls"] {
        for attempt in target[stage]["attempts"].as_array().into_iter().flatten() {
            let observations = &attempt["observations"];
            for role in ["control", "test", "residual"] {
                if !observations[role].is_null() {
                    out.push(&observations[role]);
                }
            }
        }
    }
    out
}

/// The packets of the test connection of `stage`.
fn test_packets<'a>(target: &'a Value, stage: &str) -> &'a Vec<Value> {
    let capture = &target[stage]["attempts"][0]["observations"]["test"]["capture"];
    assert_eq!(capture["status"], "captured", "{capture:#}");
    capture["packets"].as_array().unwrap()
}

fn toward_client<'a>(packets: &'a [Value], flags: &str) -> Vec<&'a Value> {
    packets
        .iter()
        .filter(|p| p["direction"] == "to_client" && p["flags"] == flags)
        .collect()
}

fn ttl_and_id(packet: &Value) -> (u64, u64) {
    (
        packet["ip"]["ttl"].as_u64().unwrap(),
        packet["ip"]["ip_id"].as_u64().unwrap(),
    )
}

#[test]
fn a_scan_captures_the_handshake_and_the_injected_resets_or_says_why_not() {
    require_lab();
    let dir = tempfile::tempdir().unwrap();
    let lab = CaptureLab::up(dir.path());
    let names = [
        "open.lab.example",
        "rst.lab.example",
        "sni.lab.example",
        "inject.lab.example",
    ];

    // As root: captured, everything kept (`--observations full`).
    let scan = lab.scan(&[], &["--observations", "full"], &names);
    assert!(scan.status.success(), "{}", lossy(&scan.stderr));
    let report = Report::parse(&lossy(&scan.stdout));

    let rst = &json(report.target("rst.lab.example"));
    assert_eq!(rst["http"]["verdict"], "rst_injection", "{rst:#}");
    let packets = test_packets(rst, "http");
    let syn_acks = toward_client(packets, "SYN+ACK");
    assert_eq!(syn_acks.len(), 1, "the server's SYN-ACK: {packets:#?}");
    let (server_ttl, _) = ttl_and_id(syn_acks[0]);
    assert_ne!(
        server_ttl,
        u64::from(HTTP_RST_TTL),
        "the baseline is the server's"
    );
    let resets: Vec<_> = packets
        .iter()
        .filter(|p| p["direction"] == "to_client" && p["flags"].as_str().unwrap().contains("RST"))
        .collect();
    assert!(!resets.is_empty(), "{packets:#?}");
    for reset in &resets {
        assert_eq!(
            ttl_and_id(reset),
            (u64::from(HTTP_RST_TTL), u64::from(HTTP_RST_ID)),
            "{reset:#}"
        );
    }
    let trigger = rst["http"]["attempts"][0]["observations"]["test"]["capture"]["trigger"]
        .as_u64()
        .expect("the request was seen going out") as usize;
    let request = &packets[trigger];
    assert_eq!(request["direction"], "to_server");
    assert!(
        request["payload_hex"]
            .as_str()
            .unwrap()
            .starts_with(&hex_of("GET / HTTP/1.1"))
    );
    assert!(
        resets
            .iter()
            .all(|r| r["at_us"].as_u64() >= request["at_us"].as_u64()),
        "the resets follow the trigger"
    );

    let sni = &json(report.target("sni.lab.example"));
    assert_eq!(sni["tls"]["verdict"], "rst_injection", "{sni:#}");
    let packets = test_packets(sni, "tls");
    assert_eq!(toward_client(packets, "SYN+ACK").len(), 1, "{packets:#?}");
    let resets = toward_client(packets, "RST+ACK");
    assert_eq!(resets.len(), 2, "the rule's burst of two: {packets:#?}");
    for reset in resets {
        assert_eq!(
            ttl_and_id(reset),
            (u64::from(TLS_RST_TTL), u64::from(TLS_RST_ID))
        );
    }

    // DNS: the capture adds each reply's IP ID and DF; the forged one carries the
    // injector's IP ID, the genuine one the resolver's own.
    let inject = &json(report.target("inject.lab.example"));
    assert_eq!(inject["dns"]["verdict"], "dns_poisoning", "{inject:#}");
    let replies: Vec<&Value> = inject["dns"]["queries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["role"] == "resolver")
        .flat_map(|q| q["replies"].as_array().unwrap())
        .collect();
    let forged: Vec<&&Value> = replies
        .iter()
        .filter(|r| r["ip_ttl"] == u64::from(DNS_FORGED_TTL))
        .collect();
    assert_eq!(forged.len(), 1, "{replies:#?}");
    assert_eq!(forged[0]["ip_id"], u64::from(DNS_FORGED_ID), "{replies:#?}");
    assert!(forged[0]["df"].is_boolean(), "{replies:#?}");
    let genuine: Vec<&&Value> = replies
        .iter()
        .filter(|r| r["ip_ttl"] != u64::from(DNS_FORGED_TTL))
        .collect();
    assert!(!genuine.is_empty(), "{replies:#?}");
    for reply in genuine {
        assert!(reply["ip_id"].is_u64(), "{reply:#}");
        assert_ne!(reply["ip_id"], u64::from(DNS_FORGED_ID), "{reply:#}");
        assert!(reply["df"].is_boolean(), "{reply:#}");
    }

    // A clean name: the whole handshake both ways, and no reset toward the client.
    let open = &json(report.target("open.lab.example"));
    assert_eq!(open["http"]["verdict"], "ok", "{open:#}");
    for stage in ["http", "tls"] {
        let packets = test_packets(open, stage);
        let flags: Vec<(&str, &str)> = packets
            .iter()
            .map(|p| {
                (
                    p["direction"].as_str().unwrap(),
                    p["flags"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(flags[0], ("to_server", "SYN"), "{flags:?}");
        assert_eq!(flags[1], ("to_client", "SYN+ACK"), "{flags:?}");
        assert_eq!(flags[2], ("to_server", "ACK"), "{flags:?}");
        assert!(
            !flags
                .iter()
                .any(|(d, f)| *d == "to_client" && f.contains("RST")),
            "{flags:?}"
        );
        let local = &open[stage]["attempts"][0]["observations"]["test"]["connect"]["local_addr"];
        let client =
            &open[stage]["attempts"][0]["observations"]["test"]["capture"]["flow"]["client"];
        assert_eq!(local, client, "the capture's flow is the connection's");
    }

    // Default observations: the clean target's record stays lean (no packets); the
    // blocked ones keep theirs.
    let scan = lab.scan(&[], &[], &["open.lab.example", "rst.lab.example"]);
    assert!(scan.status.success(), "{}", lossy(&scan.stderr));
    let report = Report::parse(&lossy(&scan.stdout));
    let open = &json(report.target("open.lab.example"));
    assert_eq!(open["blocking"], false, "{open:#}");
    let observations = web_observations(open);
    assert!(!observations.is_empty());
    assert!(
        observations.iter().all(|o| o.get("capture").is_none()),
        "{open:#}"
    );
    let rst = &json(report.target("rst.lab.example"));
    assert!(!test_packets(rst, "http").is_empty());

    // Without CAP_NET_RAW: the scan completes and every web observation says why there
    // is no capture.
    let scan = lab.scan(&WITHOUT_NET_RAW, &["--observations", "full"], &names);
    assert!(scan.status.success(), "{}", lossy(&scan.stderr));
    let report = Report::parse(&lossy(&scan.stdout));
    let rst = &json(report.target("rst.lab.example"));
    assert_eq!(rst["http"]["verdict"], "rst_injection", "{rst:#}");
    for name in names {
        let target = &json(report.target(name));
        let observations = web_observations(target);
        assert!(observations.len() >= 4, "{target:#}");
        for observation in observations {
            let capture = &observation["capture"];
            assert_eq!(capture["status"], "unavailable", "{capture:#}");
            let reason = capture["reason"].as_str().unwrap();
            assert!(reason.contains("CAP_NET_RAW"), "{reason}");
        }
        // DNS replies keep what the socket gives (the TTL), nothing from a capture.
        for query in target["dns"]["queries"].as_array().unwrap() {
            for reply in query["replies"].as_array().unwrap() {
                assert!(reply["ip_ttl"].is_u64(), "{reply:#}");
                assert!(reply.get("ip_id").is_none(), "{reply:#}");
            }
        }
    }

    // `--capture require` without the right: an error before any probe.
    let scan = lab.scan(
        &WITHOUT_NET_RAW,
        &["--capture", "require"],
        &["open.lab.example"],
    );
    assert!(!scan.status.success(), "{}", lossy(&scan.stdout));
    let stderr = lossy(&scan.stderr);
    assert!(stderr.contains("CAP_NET_RAW"), "{stderr}");
    assert!(
        lossy(&scan.stdout)
            .lines()
            .all(|l| !l.contains("\"record\":\"target\""))
    );

    // `--capture off`: no capture field at all.
    let scan = lab.scan(
        &[],
        &["--capture", "off", "--observations", "full"],
        &["open.lab.example"],
    );
    assert!(scan.status.success(), "{}", lossy(&scan.stderr));
    let report = Report::parse(&lossy(&scan.stdout));
    let open = &json(report.target("open.lab.example"));
    assert!(
        web_observations(open)
            .iter()
            .all(|o| o.get("capture").is_none())
    );
    lab.down();
}

fn hex_of(text: &str) -> String {
    hex::encode(text)
}
