//! The censor lab end to end: a lab up from a small scenario, traffic from inside the
//! vantage point's namespace, and a teardown that leaves nothing behind.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use censorprobe::lab::expect::{Comparison, compare};
use censorprobe::lab::{Lab, LabOptions, Scenario, netns, plan, topology};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

use censorprobe::record::TargetRecord;
use censorprobe::vocab::DnsVerdict;
use censorprobe::vocab::{Blocking, BlockingLayer, HttpVerdict, TlsVerdict};

use crate::support::{BIN, Report, json, start_lab_with};

const SCENARIO: &str = r#"
[lab]
description = "integration test"

[pools]
bogon = ["10.10.34.34"]

[[servers]]
id = "web"
ips = ["198.19.1.1"]
behaviour = "normal"

[[servers]]
id = "broken"
ips = ["198.19.1.2"]
behaviour = "reset"

[[names]]
name = "broken.lab.example"
server = "broken"

[[names]]
name = "open.lab.example"
server = "web"
expect = { dns = "ok", http = "ok", tls = "ok", blocking = false }

[[names]]
name = "inject.lab.example"
server = "web"
expect = { dns = "dns_poisoning", dns_method = "injection", blocking = "dns" }

[[names]]
name = "rst.lab.example"
server = "web"
expect = { http = "rst_injection", http_stage = "request", blocking = "http" }

[[names]]
name = "sni.lab.example"
server = "web"
expect = { tls = "rst_injection", tls_stage = "handshake", blocking = "tls" }

[[dns_rules]]
pattern = "inject.lab.example"
action = "inject"
pool = "bogon"

[[http_rules]]
pattern = "rst.lab.example"
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
        "the lab tests need root (network namespaces, nftables)"
    );
    // Not `cp-`: a lab's teardown counts the `cp-` namespaces to decide whether the
    // host route is still needed.
    let probe = format!("censorprobe-check-{}", topology::random_id());
    if let Err(e) = netns::run("ip", &["netns", "add", &probe], None) {
        panic!("the lab tests need network namespaces: ip netns add fails: {e}");
    }
    let _ = netns::run("ip", &["netns", "del", &probe], None);
}

fn a_query(name: &str) -> Vec<u8> {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    query.to_vec().unwrap()
}

/// Every reply to one query within `wait`, in arrival order: (source, answer addresses).
fn replies(socket: &UdpSocket, wait: Duration) -> Vec<(SocketAddr, Vec<IpAddr>)> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            break;
        };
        let message = Message::from_vec(&buf[..len]).unwrap();
        let ips = message
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        out.push((from, ips));
    }
    out
}

fn http_get(server: SocketAddr, host: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn tls_handshake(server: SocketAddr, sni: &str, ca_pem: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock =
        TcpStream::connect_timeout(&server, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|e| format!("{:?}: {e}", e.kind()))?;
    }
    Ok(())
}

#[test]
fn lab_injects_resets_and_tears_down_cleanly() {
    require_lab();
    let file = Path::new("it-lab.toml");
    let lab = start_lab_with(Scenario::parse(SCENARIO, file).unwrap(), file, "it");
    let info = lab.info().clone();
    assert!(
        topology::host_route_exists(),
        "prohibit route while a lab is up"
    );
    let ca_pem = std::fs::read_to_string(&info.ca_cert).unwrap();
    let web = Ipv4Addr::new(198, 19, 1, 1);

    let outcome = lab.in_vantage(move || {
        let resolver = SocketAddr::from((plan::RESOLVER_IP, 53));
        let sink = SocketAddr::from((plan::SINK_IP, 53));
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();

        // On-path injection: the forged answer first, then the genuine one.
        socket
            .send_to(&a_query("inject.lab.example."), resolver)
            .unwrap();
        let got = replies(&socket, Duration::from_millis(800));
        assert_eq!(got.len(), 2, "forged and genuine replies: {got:?}");
        assert_eq!(got[0], (resolver, vec![IpAddr::from([10, 10, 34, 34])]));
        assert_eq!(got[1], (resolver, vec![IpAddr::V4(web)]));

        // A benign name: one genuine reply.
        socket
            .send_to(&a_query("open.lab.example."), resolver)
            .unwrap();
        let got = replies(&socket, Duration::from_millis(500));
        assert_eq!(got, vec![(resolver, vec![IpAddr::V4(web)])]);

        // The sink runs no DNS: only the injector answers, and only censored names.
        socket
            .send_to(&a_query("inject.lab.example."), sink)
            .unwrap();
        let got = replies(&socket, Duration::from_millis(500));
        assert_eq!(got, vec![(sink, vec![IpAddr::from([10, 10, 34, 34])])]);
        socket.send_to(&a_query("open.lab.example."), sink).unwrap();
        assert!(replies(&socket, Duration::from_millis(300)).is_empty());

        // HTTP: a benign Host gets the page; the censored Host gets a reset, and then
        // residual censorship resets the next connection to the same server and port.
        let http = SocketAddr::from((web, 80));
        let page = http_get(http, "open.lab.example").unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        let err = http_get(http, "rst.lab.example").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        let err = http_get(http, "open.lab.example").unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "residual: {err}"
        );

        // A server that resets every connection itself, whatever the Host or SNI.
        let broken = Ipv4Addr::new(198, 19, 1, 2);
        for host in ["broken.lab.example", "control.lab.example"] {
            let err = http_get(SocketAddr::from((broken, 80)), host).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset,
                "{host}: {err}"
            );
            let err = tls_handshake(SocketAddr::from((broken, 443)), host, &ca_pem).unwrap_err();
            assert!(err.starts_with("ConnectionReset"), "{host}: {err}");
        }

        // TLS: a benign SNI completes with a certificate from the lab CA; the censored
        // SNI is reset during the handshake.
        let tls = SocketAddr::from((web, 443));
        tls_handshake(tls, "open.lab.example", &ca_pem).unwrap();
        let err = tls_handshake(tls, "sni.lab.example", &ca_pem).unwrap_err();
        assert!(err.starts_with("ConnectionReset"), "{err}");
    });
    let stats = lab.stop().unwrap();
    outcome.unwrap();
    assert!(stats.dns_forged >= 2, "{stats:?}");
    assert_eq!(stats.keyword_matches, 2, "{stats:?}");
    assert_eq!(stats.residual_hits, 1, "{stats:?}");

    let left = netns::list();
    for ns in info.namespaces.all() {
        assert!(!left.iter().any(|n| n == ns), "{ns} left behind");
    }
    assert!(!info.state_dir.exists(), "state dir left behind");
    if !left
        .iter()
        .any(|n| n.starts_with(topology::NAMESPACE_PREFIX))
    {
        assert!(!topology::host_route_exists(), "prohibit route left behind");
    }
}

/// Replies to several queries sent at once on one socket, by query id, in arrival order.
fn replies_by_id(
    socket: &UdpSocket,
    wait: Duration,
) -> std::collections::HashMap<u16, Vec<(SocketAddr, Message)>> {
    let deadline = Instant::now() + wait;
    let mut out: std::collections::HashMap<u16, Vec<(SocketAddr, Message)>> =
        std::collections::HashMap::new();
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            break;
        };
        let message = Message::from_vec(&buf[..len]).unwrap();
        out.entry(message.metadata.id)
            .or_default()
            .push((from, message));
    }
    out
}

fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// How a TCP exchange ended, as a probe would see it (no judgement).
#[derive(Debug, PartialEq, Eq)]
enum Wire {
    Response(String),
    Reset,
    Refused,
    ConnectTimeout,
    ResponseTimeout,
    Other(String),
}

fn http_wire(server: SocketAddr, host: &str) -> Wire {
    let mut stream = match TcpStream::connect_timeout(&server, Duration::from_secs(1)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Wire::Refused,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Wire::ConnectTimeout,
        Err(e) => return Wire::Other(e.to_string()),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return Wire::Other(e.to_string());
    }
    let mut response = String::new();
    match stream.read_to_string(&mut response) {
        Ok(_) => Wire::Response(response),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Wire::Reset,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Wire::ResponseTimeout,
        Err(e) => Wire::Other(e.to_string()),
    }
}

/// Everything a server sends on one HTTP exchange, and how the connection ended.
fn read_until_closed(server: SocketAddr, host: &str) -> (String, std::io::ErrorKind) {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(1)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break std::io::ErrorKind::UnexpectedEof,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => break e.kind(),
        }
    };
    (String::from_utf8_lossy(&received).into_owned(), end)
}

#[test]
fn demo_scenario_every_rule_and_trap_on_the_wire() {
    require_lab();
    let path = censorprobe::lab::scenario::scenario_dir().join("demo.toml");
    let mut scenario = Scenario::load(&path).unwrap();
    // The demo's residual windows are a few seconds; these exchanges check them with
    // second-long deadlines, so give them room.
    for rule in scenario
        .http_rules
        .iter_mut()
        .chain(&mut scenario.tls_rules)
    {
        if let Some(residual) = rule.residual.as_mut() {
            residual.secs = 30;
        }
    }
    let id = format!("it{}", topology::random_id());
    let lab = Lab::start(
        scenario,
        &path,
        &LabOptions {
            id: Some(id.clone()),
            state_dir: Some(std::env::temp_dir().join(format!("censorprobe-lab-{id}"))),
        },
    )
    .unwrap();
    let ca_pem = std::fs::read_to_string(&lab.info().ca_cert).unwrap();
    let outcome = lab.in_vantage(move || {
        let web = Ipv4Addr::new(198, 19, 1, 10);
        let keyword = Ipv4Addr::new(198, 19, 1, 20);
        let resolver = SocketAddr::from((plan::RESOLVER_IP, 53));

        // DNS: every name at once, then every reply by query id.
        let names = [
            "open.example.",
            "dns-inject-bogon.example.",
            "dns-inject-nohost.example.",
            "dns-inject-decoy.example.",
            "dns-forged-nxdomain.example.",
            "dns-dropped.example.",
            "dns-censor-only.example.",
            "notblocked-news.example.",
            "gone.example.",
        ];
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut ids = Vec::new();
        for name in names {
            let query = a_query(name);
            ids.push(u16::from_be_bytes([query[0], query[1]]));
            socket.send_to(&query, resolver).unwrap();
        }
        let got = replies_by_id(&socket, Duration::from_millis(800));
        let of = |name: &str| -> Vec<&Message> {
            let i = names.iter().position(|n| *n == name).unwrap();
            got.get(&ids[i])
                .map(|v| v.iter().map(|(_, m)| m).collect())
                .unwrap_or_default()
        };
        assert_eq!(of("open.example.").len(), 1);
        for (name, forged) in [
            ("dns-inject-bogon.example.", vec!["127.0.0.2", "10.10.34.34"]),
            ("dns-inject-nohost.example.", vec!["198.19.250.1", "198.19.250.2"]),
            ("dns-inject-decoy.example.", vec!["198.19.9.10"]),
            ("notblocked-news.example.", vec!["127.0.0.2", "10.10.34.34"]),
        ] {
            let replies = of(name);
            assert_eq!(replies.len(), 2, "{name}: forged then genuine");
            let first = a_records(replies[0]);
            assert!(forged.contains(&first[0].to_string().as_str()), "{name}: {first:?}");
            assert_eq!(a_records(replies[1]), vec![web], "{name}");
        }
        let nx = of("dns-forged-nxdomain.example.");
        assert_eq!(nx.len(), 2);
        assert_eq!(
            nx[0].metadata.response_code,
            hickory_proto::op::ResponseCode::NXDomain
        );
        assert_eq!(a_records(nx[1]), vec![web]);
        assert!(of("dns-dropped.example.").is_empty());
        let only = of("dns-censor-only.example.");
        assert_eq!(only.len(), 1, "the genuine answer is dropped");
        assert_ne!(a_records(only[0]), vec![web]);
        let gone = of("gone.example.");
        assert_eq!(gone.len(), 1, "a genuine NXDOMAIN, nothing injected");
        assert_eq!(
            gone[0].metadata.response_code,
            hickory_proto::op::ResponseCode::NXDomain
        );

        // HTTP on the web server: open, subdomain rule, then a drop with residual drop.
        let web80 = SocketAddr::from((web, 80));
        assert!(matches!(http_wire(web80, "open.example"), Wire::Response(r) if r.contains("200 OK")));
        assert_eq!(http_wire(web80, "www.video.example"), Wire::Reset);
        assert_eq!(http_wire(web80, "http-drop.example"), Wire::ResponseTimeout);
        assert_eq!(http_wire(web80, "open.example"), Wire::ConnectTimeout, "residual drop");

        // HTTP on the keyword server: the neighbour first, then resets, then residual reset.
        let keyword80 = SocketAddr::from((keyword, 80));
        assert!(matches!(http_wire(keyword80, "neighbour.example"), Wire::Response(_)));
        assert_eq!(http_wire(keyword80, "http-rst-ack.example"), Wire::Reset);
        assert!(matches!(http_wire(keyword80, "neighbour.example"), Wire::Response(_)), "no residual after rst_ack");
        assert_eq!(http_wire(keyword80, "http-rst.example"), Wire::Reset);
        assert_eq!(http_wire(keyword80, "neighbour.example"), Wire::Refused, "residual reset");

        // TLS.
        let web443 = SocketAddr::from((web, 443));
        tls_handshake(web443, "open.example", &ca_pem).unwrap();
        let err = tls_handshake(web443, "myvpn.example", &ca_pem).unwrap_err();
        assert!(err.starts_with("ConnectionReset"), "suffix rule: {err}");
        let err = tls_handshake(web443, "tls-drop.example", &ca_pem).unwrap_err();
        assert!(err.starts_with("WouldBlock"), "dropped flow: {err}");
        let keyword443 = SocketAddr::from((keyword, 443));
        tls_handshake(keyword443, "neighbour.example", &ca_pem).unwrap();
        let err = tls_handshake(keyword443, "tls-rst.example", &ca_pem).unwrap_err();
        assert!(err.starts_with("ConnectionReset"), "{err}");
        let err = tls_handshake(keyword443, "neighbour.example", &ca_pem).unwrap_err();
        assert!(err.contains("refused"), "residual reset: {err}");

        // IP blocking.
        let blocked_drop = SocketAddr::from((Ipv4Addr::new(198, 19, 2, 10), 443));
        assert_eq!(http_wire(blocked_drop, "ip-blocked-drop.example"), Wire::ConnectTimeout);
        let blocked_reset = SocketAddr::from((Ipv4Addr::new(198, 19, 2, 11), 80));
        assert_eq!(http_wire(blocked_reset, "ip-blocked-reset.example"), Wire::Refused);

        // Traps.
        let closed = SocketAddr::from((Ipv4Addr::new(198, 19, 3, 13), 80));
        assert_eq!(http_wire(closed, "closed-port.example"), Wire::Refused);
        let slow = SocketAddr::from((Ipv4Addr::new(198, 19, 3, 10), 80));
        assert!(matches!(http_wire(slow, "slow.example"), Wire::Response(r) if r.contains("200 OK")));
        let wrong = SocketAddr::from((Ipv4Addr::new(198, 19, 3, 11), 443));
        let err = tls_handshake(wrong, "wrong-cert.example", &ca_pem).unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
        let resetter = SocketAddr::from((Ipv4Addr::new(198, 19, 3, 12), 80));
        let (page, end) = read_until_closed(resetter, "resets-itself.example");
        assert!(page.contains("200 OK"), "a complete answer first: {page}");
        assert_eq!(end, std::io::ErrorKind::ConnectionReset, "then its own reset");
        let decoy = SocketAddr::from((Ipv4Addr::new(198, 19, 9, 10), 80));
        assert!(matches!(http_wire(decoy, "dns-inject-decoy.example"), Wire::Response(r) if r.contains("decoy")));
    });
    let stats = lab.stop().unwrap();
    outcome.unwrap();
    assert!(stats.keyword_matches >= 7, "{stats:?}");
}

/// `censorprobe lab ...` through the real binary.
fn lab_command(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("lab")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the binary runs")
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh lab id for one test (tests run in parallel, each with its own namespaces).
fn lab_id(prefix: &str) -> String {
    format!("{prefix}{}", topology::random_id())
}

fn assert_lab_gone(id: &str) {
    let left = netns::list();
    let namespaces = topology::Namespaces::for_id(id);
    for ns in namespaces.all() {
        assert!(!left.iter().any(|n| n == ns), "{ns} left behind");
    }
    if !left
        .iter()
        .any(|n| n.starts_with(topology::NAMESPACE_PREFIX))
    {
        assert!(
            !topology::host_route_exists(),
            "the prohibit route outlived the last lab"
        );
    }
}

/// `lab up` and `lab demo` remove stale labs when they start; a test that looks at a
/// stale lab on purpose holds this for writing, the commands that may remove one hold it
/// for reading until their lab is up.
static STALE_LAB_CLEANERS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn may_clean_stale_labs() -> std::sync::RwLockReadGuard<'static, ()> {
    STALE_LAB_CLEANERS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn keep_stale_labs() -> std::sync::RwLockWriteGuard<'static, ()> {
    STALE_LAB_CLEANERS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `lab up ...` (it removes stale labs first).
fn lab_up(args: &[&str]) -> std::process::Output {
    let _cleaning = may_clean_stale_labs();
    let mut all = vec!["up"];
    all.extend_from_slice(args);
    lab_command(&all)
}

fn namespace_exists(name: &str) -> bool {
    netns::list().iter().any(|n| n == name)
}

/// Start `lab demo ARGS` with piped output; returns once its lab is up (or it ended).
fn spawn_demo(args: &[&str], id: &str, cwd: Option<&Path>) -> std::process::Child {
    let _cleaning = may_clean_stale_labs();
    let mut command = std::process::Command::new(BIN);
    command
        .args(["lab", "demo", "--id", id])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().expect("the binary runs");
    let vantage = topology::Namespaces::for_id(id).vantage;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !namespace_exists(&vantage)
        && child.try_wait().unwrap().is_none()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The processes inside a namespace.
fn processes_in(namespace: &str) -> Vec<i32> {
    netns::run("ip", &["netns", "pids", namespace], None)
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the demo of lab `id` runs its scan in the vantage point; its pid.
fn wait_for_scan(id: &str, demo: &mut std::process::Child) -> i32 {
    let vantage = topology::Namespaces::for_id(id).vantage;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pid) = processes_in(&vantage).first() {
            return *pid;
        }
        if let Some(status) = demo.try_wait().unwrap() {
            panic!("lab demo ended before its scan ran: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the scan of lab {id} never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pid {} did not end within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_running(pid: i32) -> bool {
    censorprobe::lab::state::ProcessStamp::of(pid).is_some()
}

/// Nothing of lab `id` is left: namespaces (with the censor's nftables table), the
/// registry entry, the state directory, the host route if no lab is left.
fn assert_lab_fully_gone(id: &str, state_dir: &Path) {
    assert_lab_gone(id);
    assert!(
        !censorprobe::lab::state::registry_entry(id).exists(),
        "registry entry of {id} left behind"
    );
    assert!(
        !state_dir.exists(),
        "state dir {} left behind",
        state_dir.display()
    );
}

/// `lab demo` on a scenario file with a fresh lab: the schema-checked report and its
/// comparison with the scenario's expectations, and where the report went. Without
/// `out`, the demo picks the report path itself (and says where).
fn demo_through_the_binary(
    scenario_path: &Path,
    dir: &Path,
    id: &str,
    out: Option<&Path>,
    cwd: Option<&Path>,
) -> (Report, Comparison, std::path::PathBuf) {
    let state = dir.join("state");
    let mut args = vec![
        "--scenario",
        scenario_path.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    if let Some(out) = out {
        args.extend(["--out", out.to_str().unwrap()]);
    }
    let run = spawn_demo(&args, id, cwd).wait_with_output().unwrap();
    let stdout = lossy(&run.stdout);
    assert!(
        run.status.success(),
        "lab demo failed ({}):\n{stdout}\n{}",
        run.status,
        lossy(&run.stderr)
    );
    assert!(stdout.contains("a perfect match"), "{stdout}");
    assert!(!state.exists(), "state dir left behind");
    assert_lab_gone(id);
    let reported = stdout
        .lines()
        .find_map(|l| l.strip_prefix("report:"))
        .map(|p| std::path::PathBuf::from(p.trim()))
        .expect("the demo says where the report went");
    if let Some(out) = out {
        assert_eq!(reported, std::path::absolute(out).unwrap());
    }
    let text = std::fs::read_to_string(&reported).unwrap();
    let report = Report::parse(&text);
    let scenario = Scenario::load(scenario_path).unwrap();
    let comparison = compare(&scenario, &text);
    assert!(comparison.is_perfect(), "{comparison}");
    assert_eq!(report.targets.len(), scenario.names.len());
    for record in &report.targets {
        let target = &json(record);
        let inconclusive = [
            (
                "dns",
                record.dns_verdict() == Some(DnsVerdict::Inconclusive),
            ),
            (
                "http",
                record
                    .http
                    .as_ref()
                    .is_some_and(|http| http.verdict == HttpVerdict::Inconclusive),
            ),
            (
                "tls",
                record
                    .tls
                    .as_ref()
                    .is_some_and(|tls| tls.verdict == TlsVerdict::Inconclusive),
            ),
        ];
        for (stage, inconclusive) in inconclusive {
            assert!(
                !inconclusive,
                "{}: {stage} is inconclusive: {target:#}",
                record.domain
            );
            assert!(
                target[stage]["evidence"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty()),
                "{}: every verdict rests on evidence",
                record.domain
            );
        }
    }
    (report, comparison, reported)
}

fn evidence_kinds_of<'a>(target: &'a serde_json::Value, stage: &str) -> Vec<&'a str> {
    target[stage]["evidence"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default()
}

/// The demo scenario through the real binary, as the README runs it (from the checkout,
/// no report path): every verdict, method and stage is the scenario's expectation,
/// nothing is inconclusive, the report matches the schema, and the report went to a
/// file of its own: the example report in the checkout is left alone.
#[test]
fn demo_scenario_through_the_binary_is_a_perfect_match() {
    require_lab();
    let dir = tempfile::tempdir().unwrap();
    let path = censorprobe::lab::scenario::scenario_dir().join("demo.toml");
    let example = crate::support::repo_path("reports/examples/lab-demo.jsonl");
    let example_before = (
        std::fs::read(&example).unwrap(),
        std::fs::metadata(&example).unwrap().modified().unwrap(),
    );
    let checkout = crate::support::repo_path("");
    let (report, comparison, reported) =
        demo_through_the_binary(&path, dir.path(), &lab_id("itdemo"), None, Some(&checkout));
    let example_after = (
        std::fs::read(&example).unwrap(),
        std::fs::metadata(&example).unwrap().modified().unwrap(),
    );
    assert!(
        example_before == example_after,
        "lab demo rewrote {}",
        example.display()
    );
    assert!(
        !reported.starts_with(&checkout),
        "the report went into the checkout: {}",
        reported.display()
    );
    std::fs::remove_file(&reported).unwrap();
    assert!(comparison.checks.len() > 150, "{}", comparison.checks.len());
    // Spot checks of the evidence behind the headline verdicts.
    let dropped = &json(report.target("dns-dropped.example"));
    assert!(evidence_kinds_of(dropped, "dns").contains(&"selective_silence"));
    let rst = &json(report.target("http-rst.example"));
    assert_eq!(rst["http"]["residual"], true, "residual censorship seen");
    let neighbour = &json(report.target("neighbour.example"));
    assert!(neighbour["http"]["evidence"].is_array());
    let wrong = &json(report.target("wrong-cert.example"));
    assert!(evidence_kinds_of(wrong, "tls").contains(&"certificate_invalid"));
    assert!(
        report
            .header
            .vantage
            .as_deref()
            .is_some_and(|v| v.starts_with("censorprobe-lab-"))
    );
}

/// A few hundred generated names on a handful of shared addresses, residual censorship
/// on: every name gets exactly its own verdicts, so no residual block of one name leaks
/// into the next on the same address.
#[test]
fn generated_names_on_shared_addresses_get_no_leaked_false_positive() {
    require_lab();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("generated.toml");
    let generated = lab_command(&[
        "gen",
        "240",
        "--seed",
        "11",
        "--residual-secs",
        "1",
        "--servers",
        "6",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(generated.status.success(), "{}", lossy(&generated.stderr));
    let scenario = Scenario::load(&path).unwrap();
    assert_eq!(scenario.names.len(), 240);
    assert!(scenario.servers.len() <= 8, "a handful of shared addresses");
    let out = dir.path().join("report.jsonl");
    let (report, _, _) =
        demo_through_the_binary(&path, dir.path(), &lab_id("itgen"), Some(&out), None);

    // Residual censorship really happened, and benign names met it and were kept honest
    // (the test would prove nothing if the windows had never overlapped other names).
    let triggered = report
        .targets
        .iter()
        .filter(|t| {
            t.http.as_ref().and_then(|http| http.residual) == Some(true)
                || t.tls.as_ref().and_then(|tls| tls.residual) == Some(true)
        })
        .count();
    assert!(
        triggered > 10,
        "residual blocking after {triggered} triggers"
    );
    let kept_honest = report
        .targets
        .iter()
        .filter(|t| t.blocking == Blocking::No)
        .filter(|t| {
            let t = &json(t);
            ["http", "tls"].iter().any(|stage| {
                let kinds = evidence_kinds_of(t, stage);
                kinds.contains(&"path_waited") || kinds.contains(&"requeued")
            })
        })
        .count();
    assert!(
        kept_honest > 0,
        "no benign name ever waited for a penalised path"
    );
    // What the guard learnt is in the summary: paths with residual blocking, their
    // triggers, and the measured residual duration (1 s here; measured from the first
    // failing control to the first passing one, so never less). On an idle machine it
    // comes out at 1.1-2.0 s; on a loaded one (a clean-clone CI run) a first re-check
    // failed and the next came a backoff step later (the 2 s re-check interval, then
    // 4 s), which measured 5.4 s. The bound allows those steps (1 + 2 + 4 s and slack);
    // past it the guard would not be measuring the window at all.
    let summary = json(&report.summary);
    let learnt = summary["residual_paths"]
        .as_array()
        .expect("residual paths in the summary");
    assert!(!learnt.is_empty());
    for path in learnt {
        assert!(path["triggers"].as_u64().unwrap() >= 1, "{path}");
        if let Some(ms) = path["residual_min_ms"].as_f64() {
            assert!((900.0..9000.0).contains(&ms), "{path}");
        }
    }
    assert!(learnt.iter().any(|p| p["measured"].as_u64() > Some(0)));
}

/// Dense censorship with no residual blocking: every verdict right, failures attributed
/// from the controls around them (never re-run alone, no path ever waited for), and
/// blackholes decided in round trips rather than after the whole web timeout.
#[test]
fn no_residual_failures_are_attributed_from_controls_and_blackholes_from_round_trips() {
    require_lab();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("generated.toml");
    let generated = lab_command(&[
        "gen",
        "160",
        "--seed",
        "5",
        "--residual-secs",
        "0",
        "--servers",
        "2",
        "--mix",
        "open=40,dns_hijack=10,http_reset=15,tls_reset=10,http_blackhole=8,tls_blackhole=8,http_tls_reset=5,slow=4",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(generated.status.success(), "{}", lossy(&generated.stderr));
    let (report, _, _) = demo_through_the_binary(&path, dir.path(), &lab_id("itnores"), None, None);
    let mut attributed = 0;
    for record in &report.targets {
        let target = &json(record);
        // Whether each attempt of each stage ended `ok`, in the record's order.
        let attempts_ok = [
            record
                .http
                .iter()
                .flat_map(|http| &http.attempts)
                .map(|a| a.verdict == HttpVerdict::Ok)
                .collect::<Vec<_>>(),
            record
                .tls
                .iter()
                .flat_map(|tls| &tls.attempts)
                .map(|a| a.verdict == TlsVerdict::Ok)
                .collect(),
        ];
        for (stage, attempts_ok) in ["http", "tls"].into_iter().zip(attempts_ok) {
            let attempts: Vec<&serde_json::Value> = target[stage]["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(attempts.len(), attempts_ok.len(), "{target:#}");
            for (attempt, ok) in attempts.into_iter().zip(attempts_ok) {
                let facts = &attempt["path"];
                assert_eq!(facts["mode"], "shared", "{target:#}");
                assert_eq!(facts["requeues"], 0, "{target:#}");
                if !ok {
                    assert_eq!(facts["attribution"], "controls_passed", "{target:#}");
                    assert!(evidence_kinds_of(target, stage).contains(&"attribution"));
                    attributed += 1;
                }
            }
        }
        let domain = target["domain"].as_str().unwrap();
        let blackholed = [("http-blackholed", "http"), ("tls-blackholed", "tls")]
            .into_iter()
            .find(|(zone, _)| domain.contains(zone));
        if let Some((_, stage)) = blackholed {
            let test = &target[stage]["attempts"][0]["observations"]["test"];
            let error = test["error"].as_str().unwrap_or_default();
            assert!(error.contains("dropped in the path"), "{target:#}");
            assert!(error.contains("never acknowledged"), "{error}");
            // Decided from the round trips (only the TCP_INFO watch writes this), not
            // by the lab's 3 s timeout.
            assert!(error.contains("consecutive timeouts"), "{error}");
        }
    }
    assert!(attributed > 30, "{attributed}");
    let summary = json(&report.summary);
    assert!(
        report.summary.residual_paths.is_empty() && summary.get("residual_paths").is_none(),
        "no residual blocking to learn: {summary}"
    );
}

/// Stops a daemonised lab if a test fails half-way.
struct DaemonGuard(String);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if topology::Namespaces::for_id(&self.0)
            .all()
            .iter()
            .any(|ns| netns::list().iter().any(|n| n == ns))
        {
            let _ = lab_command(&["down", "--id", &self.0]);
        }
    }
}

/// `lab up`, `lab status`, a probe through the daemonised lab, `lab down`: nothing left.
#[test]
fn lab_up_status_down_through_the_binary() {
    require_lab();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("daemon.toml");
    // No residual window: the probe below must not wait one out.
    std::fs::write(
        &scenario,
        SCENARIO.replace("residual = { action = \"reset\", secs = 60 }", ""),
    )
    .unwrap();
    let id = lab_id("itd");
    let guard = DaemonGuard(id.clone());
    let up = {
        let _cleaning = may_clean_stale_labs();
        // Info level: the censor logs every match, to a file.
        std::process::Command::new(BIN)
            .args(["lab", "up", scenario.to_str().unwrap(), "--id", &id])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    assert!(up.status.success(), "{}", lossy(&up.stderr));
    let namespaces = topology::Namespaces::for_id(&id);
    assert!(lossy(&up.stdout).contains(&namespaces.vantage));
    assert!(topology::host_route_exists(), "prohibit route while up");

    let status = lab_command(&["status", "--id", &id, "--json"]);
    assert!(status.status.success(), "{}", lossy(&status.stderr));
    let statuses: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let lab = &statuses[0];
    assert_eq!(lab["healthy"], true, "{lab:#}");
    assert_eq!(
        lab["roles_running"],
        serde_json::json!(["internet", "censor", "helper"]),
        "{lab:#}"
    );
    let info = &lab["info"];
    let pids: Vec<i64> = info["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();

    // The daemonised lab serves and censors: a probe from its vantage point.
    let control = format!(
        "dot:{}#{}",
        info["dot"].as_str().unwrap(),
        info["dot_name"].as_str().unwrap()
    );
    let scan = std::process::Command::new("ip")
        .args(["netns", "exec", &namespaces.vantage, BIN, "scan"])
        .args(["--resolver", info["resolver"].as_str().unwrap()])
        .args(["--dns-sink", info["sink"].as_str().unwrap()])
        .args(["--control", &control])
        .args(["--ca", info["ca_cert"].as_str().unwrap()])
        .args(["--control-name", info["control_name"].as_str().unwrap()])
        .args(["--qtype", "A", "--dns-timeout", "1s", "--dns-wait", "300ms"])
        .args(["--connect-timeout", "2s", "--web-timeout", "3s"])
        .args(["--web-control", info["web_control_url"].as_str().unwrap()])
        .args([
            "--web-control-token",
            info["web_control_token"].as_str().unwrap(),
        ])
        .args(["--web-control-ca", info["ca_cert"].as_str().unwrap()])
        .args(["open.lab.example", "rst.lab.example"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(scan.status.success(), "{}", lossy(&scan.stderr));
    let report = Report::parse(&lossy(&scan.stdout));
    let open = report.target("open.lab.example");
    let http_verdict = |record: &TargetRecord| record.http.as_ref().map(|http| http.verdict);
    assert_eq!(http_verdict(open), Some(HttpVerdict::Ok), "{open:#?}");
    assert_eq!(
        open.tls.as_ref().map(|tls| tls.verdict),
        Some(TlsVerdict::Ok),
        "{open:#?}"
    );
    let rst = report.target("rst.lab.example");
    assert_eq!(
        http_verdict(rst),
        Some(HttpVerdict::RstInjection),
        "{rst:#?}"
    );
    assert_eq!(rst.blocking, Blocking::At(BlockingLayer::Http));
    assert!(
        matches!(
            open.web_control,
            Some(censorprobe::observation::web_control::WebControlObservation::Answered { .. })
        ),
        "the daemonised lab's helper answers: {:#?}",
        open.web_control
    );

    // The roles' logs are files: plain text, no terminal colour codes.
    let state_dir = Path::new(info["state_dir"].as_str().unwrap());
    let censor_log = std::fs::read_to_string(state_dir.join("censor.log")).unwrap();
    assert!(
        censor_log.contains("Keyword"),
        "the censor logs its match: {censor_log:?}"
    );
    for role in ["censor", "internet"] {
        let log = std::fs::read_to_string(state_dir.join(format!("{role}.log"))).unwrap();
        assert!(!log.contains('\x1b'), "ANSI codes in {role}.log: {log:?}");
    }

    let down = lab_command(&["down", "--id", &id]);
    assert!(down.status.success(), "{}", lossy(&down.stderr));
    assert!(lossy(&down.stderr).contains(&format!("lab {id} is down")));
    drop(guard);
    assert_lab_gone(&id);
    assert!(
        !censorprobe::lab::state::default_state_dir(&id).exists(),
        "state dir left behind"
    );
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !lossy(&cmdline).contains("serve") && !lossy(&cmdline).contains("helper"),
            "role process {pid} still runs"
        );
    }
    let gone = lab_command(&["status", "--id", &id]);
    assert_eq!(gone.status.code(), Some(2), "status of a lab that is down");
    let gone = lab_command(&["down", "--id", &id]);
    assert_eq!(gone.status.code(), Some(2), "down of a lab that is down");
}

/// Lab ids are checked before they become paths or namespace names; naming a lab that
/// does not exist is a user's error (status 2) for `status` and `down` alike.
#[test]
fn lab_ids_are_validated_and_unknown_labs_are_user_errors() {
    for bad in ["x/../../etc", "../lab-x", "UPPER", "", "a b"] {
        for command in ["down", "status"] {
            let run = lab_command(&[command, "--id", bad]);
            assert_eq!(
                run.status.code(),
                Some(2),
                "{command} --id {bad:?}: {}",
                lossy(&run.stderr)
            );
            assert!(
                lossy(&run.stderr).contains("lab id"),
                "{command} --id {bad:?}: {}",
                lossy(&run.stderr)
            );
        }
    }
    let unknown = lab_id("itnone");
    for command in ["down", "status"] {
        let run = lab_command(&[command, "--id", &unknown]);
        assert_eq!(run.status.code(), Some(2), "{}", lossy(&run.stderr));
        assert!(
            lossy(&run.stderr).contains(&unknown),
            "{}",
            lossy(&run.stderr)
        );
    }
    // A directory that holds no lab: nothing in it is touched.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let run = lab_command(&["down", "--state", dir.path().to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2), "{}", lossy(&run.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "mine"
    );
}

/// `lab up --state DIR` refuses a directory with someone else's files in it; in a
/// directory it may use, `lab down` removes only what the lab wrote.
#[test]
fn lab_state_directory_keeps_the_users_files() {
    require_lab();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("daemon.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let scenario = scenario.to_str().unwrap();

    // A user's non-empty directory: refused, untouched, nothing built.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    let id = lab_id("itsd");
    let up = lab_up(&[scenario, "--id", &id, "--state", mine.to_str().unwrap()]);
    assert_eq!(up.status.code(), Some(2), "{}", lossy(&up.stderr));
    assert!(
        lossy(&up.stderr).contains("not empty"),
        "{}",
        lossy(&up.stderr)
    );
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_lab_fully_gone(&id, Path::new("/nonexistent"));

    // A new directory: the lab makes it; a file the user adds later survives `down`,
    // and so does the directory holding it.
    let fresh = dir.path().join("fresh");
    let id = lab_id("itsd");
    let guard = DaemonGuard(id.clone());
    let up = lab_up(&[scenario, "--id", &id, "--state", fresh.to_str().unwrap()]);
    assert!(up.status.success(), "{}", lossy(&up.stderr));
    assert!(fresh.join("state.json").is_file());
    std::fs::write(fresh.join("notes.txt"), "mine").unwrap();
    let down = lab_command(&["down", "--state", fresh.to_str().unwrap()]);
    assert!(down.status.success(), "{}", lossy(&down.stderr));
    drop(guard);
    let left: Vec<String> = std::fs::read_dir(&fresh)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["notes.txt".to_owned()]);
    assert_lab_gone(&id);

    // An existing empty directory: used, and kept (empty) after `down`.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let id = lab_id("itsd");
    let guard = DaemonGuard(id.clone());
    let up = lab_up(&[scenario, "--id", &id, "--state", empty.to_str().unwrap()]);
    assert!(up.status.success(), "{}", lossy(&up.stderr));
    let down = lab_command(&["down", "--id", &id]);
    assert!(down.status.success(), "{}", lossy(&down.stderr));
    drop(guard);
    assert!(empty.is_dir(), "the user's directory is kept");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert_lab_gone(&id);
}

/// A stop signal to `lab demo` (while its lab comes up or while it scans) stops the
/// scan and tears everything down: namespaces, nftables table, host route (when no
/// other lab is up), state directory, registry entry; the demo exits with 130.
#[test]
fn lab_demo_tears_down_on_every_stop_signal() {
    require_lab();
    let scenario = censorprobe::lab::scenario::scenario_dir().join("demo.toml");
    for (signal, during_scan) in [
        (nix::sys::signal::Signal::SIGINT, true),
        (nix::sys::signal::Signal::SIGTERM, true),
        (nix::sys::signal::Signal::SIGHUP, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let out = dir.path().join("report.jsonl");
        let id = lab_id("itsig");
        let mut demo = spawn_demo(
            &[
                "--scenario",
                scenario.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &id,
            None,
        );
        let scan = during_scan.then(|| wait_for_scan(&id, &mut demo));
        let pid = nix::unistd::Pid::from_raw(i32::try_from(demo.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
        let status = wait_with_deadline(&mut demo, Duration::from_secs(60));
        let mut stderr = String::new();
        demo.stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(130), "{signal}: {stderr}");
        assert!(stderr.contains("interrupted"), "{signal}: {stderr}");
        if let Some(scan) = scan {
            assert!(!is_running(scan), "{signal}: the scan {scan} still runs");
        }
        assert_lab_fully_gone(&id, &state);
        let status = lab_command(&["status", "--id", &id]);
        assert_eq!(
            status.status.code(),
            Some(2),
            "{signal}: the lab is unknown"
        );
    }
}

/// `kill -9` of `lab demo`: its scan dies with it (no orphan writing verdicts about a
/// dead lab), `lab status` calls what is left stale instead of healthy, and the next
/// `lab up` removes it, keeping the host route right.
#[test]
fn killed_demo_leaves_no_orphan_and_its_stale_lab_is_reported_and_removed() {
    require_lab();
    let scenario = censorprobe::lab::scenario::scenario_dir().join("demo.toml");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("report.jsonl");
    let id = lab_id("itkill");
    let mut demo = spawn_demo(
        &[
            "--scenario",
            scenario.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &id,
        None,
    );
    let scan = wait_for_scan(&id, &mut demo);
    let stale_kept = keep_stale_labs();
    demo.kill().unwrap();
    demo.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while is_running(scan) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!is_running(scan), "the scan {scan} outlived its demo");

    // What is left is stale, and said to be.
    assert!(namespace_exists(&topology::Namespaces::for_id(&id).vantage));
    let status = lab_command(&["status", "--id", &id]);
    let stdout = lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("STALE"), "{stdout}");
    assert!(!stdout.contains("health:     ok"), "{stdout}");
    let json = lab_command(&["status", "--id", &id, "--json"]);
    let statuses: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(statuses[0]["stale"], true, "{statuses:#}");
    assert_eq!(statuses[0]["healthy"], false, "{statuses:#}");
    drop(stale_kept);

    // The next lab removes it; its own host route stays while it is up.
    let dir2 = tempfile::tempdir().unwrap();
    let small = dir2.path().join("daemon.toml");
    std::fs::write(&small, SCENARIO).unwrap();
    let next = lab_id("itnext");
    let guard = DaemonGuard(next.clone());
    let up = lab_up(&[small.to_str().unwrap(), "--id", &next]);
    assert!(up.status.success(), "{}", lossy(&up.stderr));
    assert_lab_fully_gone(&id, &state);
    assert!(topology::host_route_exists(), "the new lab keeps its route");
    let down = lab_command(&["down", "--id", &next]);
    assert!(down.status.success(), "{}", lossy(&down.stderr));
    drop(guard);
    assert_lab_gone(&next);
}

/// The example report shipped in the repo (written by `lab demo`) matches the schema and
/// the demo scenario's expectations: regenerate it when either changes.
#[test]
fn shipped_example_report_is_the_demo_scenario_perfectly_matched() {
    let text =
        std::fs::read_to_string(crate::support::repo_path("reports/examples/lab-demo.jsonl"))
            .unwrap();
    let report = Report::parse(&text);
    let scenario =
        Scenario::load(&censorprobe::lab::scenario::scenario_dir().join("demo.toml")).unwrap();
    assert_eq!(report.targets.len(), scenario.names.len());
    let comparison = compare(&scenario, &text);
    assert!(comparison.is_perfect(), "{comparison}");
}

/// A stop signal while `lab up` builds the lab and starts its roles: everything built so
/// far is removed (no role process is left), and `lab up` exits with 130.
#[test]
fn lab_up_interrupted_while_starting_leaves_nothing() {
    require_lab();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("daemon.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let state = dir.path().join("state");
    let id = lab_id("itupsig");
    let guard = DaemonGuard(id.clone());
    let mut up = {
        let _cleaning = may_clean_stale_labs();
        let mut up = std::process::Command::new(BIN)
            .args(["lab", "up", scenario.to_str().unwrap(), "--id", &id])
            .arg("--state")
            .arg(&state)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The first role is being started once its log exists.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !state.join("internet.log").exists() && Instant::now() < deadline {
            assert!(up.try_wait().unwrap().is_none(), "lab up ended early");
            std::thread::sleep(Duration::from_millis(5));
        }
        up
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(up.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = wait_with_deadline(&mut up, Duration::from_secs(30));
    let mut stderr = String::new();
    up.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    drop(guard);
    assert_lab_fully_gone(&id, &state);
    for ns in topology::Namespaces::for_id(&id).all() {
        assert!(processes_in(ns).is_empty(), "a process is left in {ns}");
    }
    // No role process of this lab anywhere (they would hold the namespaces alive).
    let state_arg = state.to_str().unwrap().to_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = lossy(&cmdline);
        assert!(
            !(cmdline.contains("serve") && cmdline.contains(&state_arg)),
            "role process left: {cmdline}"
        );
    }
}

/// A lab whose only censorship is a Henan-like injector on one HTTP Host (no residual
/// blocking, so every connection of a test is judged on its own).
const HOPS_SCENARIO: &str = r#"
[[servers]]
id = "web"
ips = ["198.19.1.1"]
behaviour = "normal"

[[names]]
name = "open.lab.example"
server = "web"

[[names]]
name = "trigger.lab.example"
server = "web"

[[http_rules]]
pattern = "trigger.lab.example"
injector = "henan"
"#;

fn hops_lab(prefix: &str) -> Lab {
    require_lab();
    let file = Path::new("it-hops.toml");
    start_lab_with(Scenario::parse(HOPS_SCENARIO, file).unwrap(), file, prefix)
}

/// An ICMP error read from a raw socket: (type, sender, the quoted packet's protocol and
/// destination port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IcmpError {
    kind: u8,
    from: Ipv4Addr,
    quoted_protocol: u8,
    quoted_port: u16,
}

/// Every ICMP error that arrives within `wait`.
fn icmp_errors(socket: &socket2::Socket, wait: Duration) -> Vec<IcmpError> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok(len) = (&*socket).read(&mut buf) else {
            break;
        };
        let packet = &buf[..len];
        let header = usize::from(packet[0] & 0x0f) * 4;
        let icmp = &packet[header..];
        if icmp.len() < 8 + 20 + 4 || !matches!(icmp[0], 3 | 11) {
            continue;
        }
        let quoted = &icmp[8..];
        let quoted_header = usize::from(quoted[0] & 0x0f) * 4;
        out.push(IcmpError {
            kind: icmp[0],
            from: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
            quoted_protocol: quoted[9],
            quoted_port: u16::from_be_bytes([quoted[quoted_header + 2], quoted[quoted_header + 3]]),
        });
    }
    out
}

fn raw_icmp_socket() -> socket2::Socket {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::ICMPV4),
    )
    .unwrap()
}

/// TTL-limited packets expire at the planned hops: routers 1 and 2, the censor at
/// `CENSOR_HOP`, router 3, each answering with a time-exceeded from its address; with
/// TTL `SERVER_HOP` the packet reaches the server. Checked for traceroute-style UDP (the
/// kernels' forwarding, the censor's included) and for DNS queries (which the censor
/// process reads itself).
#[test]
fn lab_ttl_limited_packets_expire_at_the_planned_hops() {
    let lab = hops_lab("hops");
    let outcome = lab.in_vantage(|| {
        let icmp = raw_icmp_socket();
        let server = Ipv4Addr::new(198, 19, 1, 1);
        for (port, target, what) in [
            (33434, server, "traceroute UDP"),
            (53, plan::RESOLVER_IP, "DNS query"),
        ] {
            for ttl in 1..=plan::SERVER_HOP {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                socket.set_ttl(u32::from(ttl)).unwrap();
                let payload = if port == 53 {
                    a_query("open.lab.example.")
                } else {
                    b"probe".to_vec()
                };
                socket
                    .send_to(&payload, SocketAddr::from((target, port)))
                    .unwrap();
                let errors: Vec<IcmpError> = icmp_errors(&icmp, Duration::from_millis(400))
                    .into_iter()
                    .filter(|e| e.quoted_protocol == 17 && e.quoted_port == port)
                    .collect();
                if ttl < plan::SERVER_HOP {
                    let hop = plan::HOP_ADDRESSES[usize::from(ttl) - 1];
                    assert_eq!(
                        errors,
                        [IcmpError {
                            kind: 11,
                            from: hop,
                            quoted_protocol: 17,
                            quoted_port: port,
                        }],
                        "{what} with TTL {ttl} expires at hop {ttl} ({hop})"
                    );
                } else if port == 53 {
                    assert!(errors.is_empty(), "{what}: {errors:?}");
                    let got = replies(&socket, Duration::from_millis(500));
                    assert_eq!(got.len(), 1, "the resolver answers: {got:?}");
                } else {
                    assert_eq!(
                        errors,
                        [IcmpError {
                            kind: 3,
                            from: server,
                            quoted_protocol: 17,
                            quoted_port: port,
                        }],
                        "{what} with TTL {ttl} reaches the server (port unreachable)"
                    );
                }
            }
        }
    });
    lab.stop().unwrap();
    outcome.unwrap();
}

/// `CenTrace`'s method: the handshake at full TTL, then the trigger with a limited TTL. One
/// hop short of the censor, the trigger expires at router 2 and nothing is injected; with
/// TTL `CENSOR_HOP` it expires at the censor, which still injects its reset (and sends the
/// time-exceeded); the server never sees either.
#[test]
fn lab_a_trigger_with_the_censor_hop_ttl_still_draws_the_injection() {
    let lab = hops_lab("trig");
    let outcome = lab.in_vantage(|| {
        let icmp = raw_icmp_socket();
        let http = SocketAddr::from((Ipv4Addr::new(198, 19, 1, 1), 80));
        let request = b"GET / HTTP/1.1\r\nHost: trigger.lab.example\r\n\r\n";
        let mut outcomes = Vec::new();
        for ttl in [plan::CENSOR_HOP - 1, plan::CENSOR_HOP] {
            let mut stream = TcpStream::connect_timeout(&http, Duration::from_secs(2)).unwrap();
            stream.set_ttl(u32::from(ttl)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(700)))
                .unwrap();
            stream.write_all(request).unwrap();
            let mut buf = [0u8; 512];
            let read = stream.read(&mut buf).map_err(|e| e.kind());
            let hops: Vec<Ipv4Addr> = icmp_errors(&icmp, Duration::from_millis(200))
                .into_iter()
                .filter(|e| e.kind == 11 && e.quoted_protocol == 6 && e.quoted_port == 80)
                .map(|e| e.from)
                .collect();
            outcomes.push((ttl, read, hops));
        }
        outcomes
    });
    lab.stop().unwrap();
    let outcomes = outcome.unwrap();
    let (ttl, read, hops) = &outcomes[0];
    assert!(
        matches!(
            read,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "TTL {ttl}: no answer, no reset: {read:?}"
    );
    assert!(!hops.is_empty(), "TTL {ttl}: time-exceeded expected");
    assert!(
        hops.iter().all(|h| *h == plan::HOP_ADDRESSES[1]),
        "TTL {ttl} expires at router 2: {hops:?}"
    );
    let (ttl, read, hops) = &outcomes[1];
    assert_eq!(
        *read,
        Err(std::io::ErrorKind::ConnectionReset),
        "TTL {ttl}: the censor's reset"
    );
    assert!(
        hops.contains(&plan::CENSOR_VANTAGE_SIDE_IP),
        "TTL {ttl} expires at the censor: {hops:?}"
    );
}

mod capture;

/// A lab with IP blocking, a keyword rule, a `page` rule and a geo name: what the helper
/// namespace and the vantage point see of the same servers.
const HELPER_SCENARIO: &str = r#"
[[servers]]
id = "web"
ips = ["198.19.1.1"]
behaviour = "normal"

[[servers]]
id = "blocked"
ips = ["198.19.1.3"]
behaviour = "normal"

[[servers]]
id = "edge"
ips = ["198.19.20.10", "198.19.20.11"]
behaviour = "normal"

[[servers]]
id = "far"
ips = ["198.19.21.10"]
behaviour = "normal"

[[names]]
name = "open.lab.example"
server = "web"

[[names]]
name = "geo.lab.example"
a = ["198.19.20.10"]
geo = { control = ["198.19.21.10"], helper = ["198.19.20.11"] }

[[http_rules]]
pattern = "rst.lab.example"
action = "rst"

[[http_rules]]
pattern = "diff.lab.example"
action = "page"
page = { status = 200, body = "<html><head><title>Notice</title></head><body>forged-by-the-lab-censor</body></html>" }

[[ip_rules]]
ip = "198.19.1.3"
action = "drop"
"#;

/// One A query over UDP, its answer's addresses.
fn ask_a(resolver: SocketAddr, name: &str) -> Vec<Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.send_to(&a_query(name), resolver).unwrap();
    let got = replies_by_id(&socket, Duration::from_millis(800));
    let replies: Vec<&Message> = got.values().flatten().map(|(_, m)| m).collect();
    assert_eq!(replies.len(), 1, "{name} at {resolver}: {replies:?}");
    a_records(replies[0])
}

/// The helper namespace hangs off the Internet side: from there the servers are reached
/// around the censor (no IP blocking, no keyword reset, the real page instead of the
/// censor's), its resolver gives the helper's geo answers; the vantage point reaches the
/// helper's address through the censor, which lets it pass, and sees the censor's work
/// (IP blocking, the forged page) and its own geo answers, from the resolver under test
/// and from the DoT control. Teardown removes the helper namespace too.
#[test]
fn lab_helper_namespace_is_reached_through_the_censor_and_reaches_servers_around_it() {
    require_lab();
    let scenario = Scenario::parse(HELPER_SCENARIO, Path::new("helper.toml")).unwrap();
    let lab = start_lab_with(scenario, Path::new("helper.toml"), "ithlp");
    let info = lab.info().clone();
    let id = info.id.clone();
    assert!(namespace_exists(&info.namespaces.helper));
    let web80 = SocketAddr::from((Ipv4Addr::new(198, 19, 1, 1), 80));
    let blocked80 = SocketAddr::from((Ipv4Addr::new(198, 19, 1, 3), 80));

    // From the helper's namespace: nothing of the censor.
    netns::within(&info.namespaces.helper, move || {
        assert!(
            matches!(http_wire(blocked80, "open.lab.example"), Wire::Response(r) if r.contains("200 OK")),
            "IP blocking is the censor's, out of the helper's way"
        );
        assert!(matches!(http_wire(web80, "rst.lab.example"), Wire::Response(r) if r.contains("200 OK")));
        match http_wire(web80, "diff.lab.example") {
            Wire::Response(page) => {
                assert!(page.contains("Served by the censorprobe lab"), "{page}");
                assert!(!page.contains("forged-by-the-lab-censor"), "{page}");
            }
            other => panic!("the helper gets the real page: {other:?}"),
        }
        let helper_resolver = SocketAddr::from((plan::HELPER_RESOLVER_IP, 53));
        assert_eq!(
            ask_a(helper_resolver, "geo.lab.example."),
            [Ipv4Addr::new(198, 19, 20, 11)]
        );
        assert_eq!(
            ask_a(helper_resolver, "open.lab.example."),
            [Ipv4Addr::new(198, 19, 1, 1)]
        );
    })
    .unwrap();

    // A listener at the helper's address, for the vantage point to reach.
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let helper_ns = info.namespaces.helper.clone();
    let listener = std::thread::spawn(move || {
        netns::enter(&helper_ns).unwrap();
        let listener =
            std::net::TcpListener::bind(SocketAddr::from((plan::HELPER_IP, plan::HELPER_PORT)))
                .unwrap();
        bound_tx.send(()).unwrap();
        let (mut stream, peer) = listener.accept().unwrap();
        stream.write_all(b"hello from the helper").unwrap();
        peer
    });
    bound_rx.recv_timeout(Duration::from_secs(5)).unwrap();

    let ca_pem = std::fs::read_to_string(&info.ca_cert).unwrap();
    let dot = info.control_spec();
    lab.in_vantage(move || {
        let mut stream = TcpStream::connect_timeout(
            &SocketAddr::from((plan::HELPER_IP, plan::HELPER_PORT)),
            Duration::from_secs(2),
        )
        .expect("the vantage point reaches the helper through the censor");
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut greeting = String::new();
        stream.read_to_string(&mut greeting).unwrap();
        assert_eq!(greeting, "hello from the helper");

        assert_eq!(http_wire(blocked80, "open.lab.example"), Wire::ConnectTimeout);
        match http_wire(web80, "diff.lab.example") {
            Wire::Response(page) => {
                assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
                assert!(page.contains("forged-by-the-lab-censor"), "{page}");
                assert!(!page.contains("Served by the censorprobe lab"), "{page}");
            }
            other => panic!("the censor's page, complete: {other:?}"),
        }
        assert!(
            matches!(http_wire(web80, "control.lab.example"), Wire::Response(r) if r.contains("Served by the censorprobe lab")),
            "a benign Host still gets the real page"
        );
        assert_eq!(
            ask_a(SocketAddr::from((plan::RESOLVER_IP, 53)), "geo.lab.example."),
            [Ipv4Addr::new(198, 19, 20, 10)]
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let roots: Vec<rustls_pki_types::CertificateDer<'static>> =
                rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
            let spec: censorprobe::probe::control::ControlSpec = dot.parse().unwrap();
            let control =
                censorprobe::probe::control::ControlResolver::new(&spec, &roots, Duration::from_secs(2))
                    .unwrap()
                    .expect("a control resolver");
            let geo = control
                .resolve("geo.lab.example", &[RecordType::A])
                .await;
            match &geo.answer("A").expect("an A answer").outcome {
                censorprobe::observation::ControlOutcome::Resolved { ips, .. } => {
                    assert_eq!(ips, &[IpAddr::V4(Ipv4Addr::new(198, 19, 21, 10))]);
                }
                other => panic!("the control's geo answer: {other:?}"),
            }
        });
    })
    .unwrap();
    assert_eq!(
        listener.join().unwrap().ip(),
        IpAddr::V4(plan::VANTAGE_IP),
        "the helper sees the vantage point's own address"
    );
    lab.stop().unwrap();
    assert_lab_gone(&id);
}

/// One `POST` of a web-control request to the lab's helper, over TLS trusting the lab CA,
/// from the current namespace: the status line and the body.
fn ask_helper(info: &censorprobe::lab::LabInfo, body: &str, token: &str) -> (String, String) {
    let ca_pem = std::fs::read(&info.ca_cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::IpAddress(IpAddr::V4(plan::HELPER_IP).into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect_timeout(
        &SocketAddr::from((plan::HELPER_IP, plan::HELPER_PORT)),
        Duration::from_secs(2),
    )
    .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        censorprobe::observation::web_control::WEB_CONTROL_PATH,
        plan::HELPER_IP,
        body.len()
    );
    tls.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    // A peer that closes without close_notify still gave its whole answer.
    let _ = tls.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or("").to_owned();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        // Chunk sizes on their own lines, data between.
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (status, body)
}

/// The lab's helper process (`censorprobe helper` in the helper namespace, started by
/// `Lab::start_helper` as `lab demo` does): the vantage point reaches it through the
/// censor with the lab's token and CA, and it measures around the censor: it connects to
/// an address the censor IP-blocks, gets the real page where the censor forges one, and
/// resolves with its own network's resolver (the geo answer). A wrong token is refused.
/// Stopping the lab stops it.
#[test]
fn lab_helper_process_measures_around_the_censor_for_the_vantage_point() {
    use censorprobe::observation::web_control::{
        WEB_CONTROL_VERSION, WebControlQuery, WebControlReply, WebControlRequest,
    };
    require_lab();
    let scenario = Scenario::parse(HELPER_SCENARIO, Path::new("helper.toml")).unwrap();
    let mut lab = start_lab_with(scenario, Path::new("helper.toml"), "ithlpp");
    lab.start_helper(Path::new(BIN)).unwrap();
    assert!(lab.has_helper());
    let info = lab.info().clone();
    let helper_pids = processes_in(&info.namespaces.helper);
    assert_eq!(helper_pids.len(), 1, "one helper process: {helper_pids:?}");
    let token = std::fs::read_to_string(&info.web_control_token)
        .unwrap()
        .trim()
        .to_owned();
    let request = WebControlRequest {
        version: WEB_CONTROL_VERSION,
        targets: vec![
            WebControlQuery {
                name: "open.lab.example".to_owned(),
                addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 19, 1, 3))],
                http_port: Some(80),
                tls_port: Some(443),
            },
            WebControlQuery {
                name: "diff.lab.example".to_owned(),
                addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 19, 1, 1))],
                http_port: Some(80),
                tls_port: None,
            },
            WebControlQuery {
                name: "geo.lab.example".to_owned(),
                addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 19, 20, 10))],
                http_port: None,
                tls_port: None,
            },
        ],
    };
    let body = serde_json::to_string(&request).unwrap();
    let info_in = info.clone();
    let (answered, refused) = lab
        .in_vantage(move || {
            (
                ask_helper(&info_in, &body, &token),
                ask_helper(&info_in, &body, "not-the-token"),
            )
        })
        .unwrap();
    assert!(refused.0.contains(" 401 "), "a wrong token: {refused:?}");
    assert!(answered.0.contains(" 200 "), "{answered:?}");
    let reply: WebControlReply = serde_json::from_str(&answered.1).unwrap();
    assert_eq!(reply.results.len(), 3);
    let [open, diff, geo] = &reply.results[..] else {
        unreachable!()
    };
    let blocked = SocketAddr::from((Ipv4Addr::new(198, 19, 1, 3), 80));
    let connect = open
        .connect_to(blocked)
        .unwrap_or_else(|| panic!("no connect to {blocked}: {open:?}"));
    assert_eq!(
        connect.status,
        censorprobe::observation::web::ConnectStatus::Ok,
        "the helper connects where the censor drops: {connect:?}"
    );
    assert!(
        open.refused.is_empty(),
        "the lab range is allowed: {open:?}"
    );
    let page = diff
        .http_of(IpAddr::V4(Ipv4Addr::new(198, 19, 1, 1)), 80)
        .unwrap_or_else(|| panic!("no HTTP observation: {diff:?}"));
    let title = page.response.as_ref().and_then(|r| r.title.as_deref());
    assert_eq!(
        title,
        Some("censorprobe lab: diff.lab.example"),
        "the real page, not the censor's: {page:?}"
    );
    assert_eq!(
        geo.dns.resolver.addresses,
        [IpAddr::V4(Ipv4Addr::new(198, 19, 20, 11))],
        "the helper's resolver gives the helper's geo answer"
    );
    let helper_pid = helper_pids[0];
    lab.stop().unwrap();
    assert!(!is_running(helper_pid), "the helper stops with the lab");
    assert_lab_gone(&info.id);
}
