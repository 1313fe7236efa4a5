//! The control path end to end on loopback: a real authoritative server (hickory-server)
//! on UDP, `DoT` and `DoH` with a run-time CA, queried through `ControlResolver`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use censorprobe::observation::{ControlObservation, ControlOutcome};
use censorprobe::probe::ProbeError;
use censorprobe::probe::control::{ControlResolver, ControlSpec};
use censorprobe::servers::ca::LabCa;
use censorprobe::servers::dns::{AuthoritativeDns, DOH_PATH, RunningDns, TlsEndpoint, ZoneSpec};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use rustls_pki_types::CertificateDer;

const TIMEOUT: Duration = Duration::from_secs(2);
const SERVER_NAME: &str = "dns.lab.example";
const A_AND_AAAA: [RecordType; 2] = [RecordType::A, RecordType::AAAA];

struct Lab {
    ca: LabCa,
    dns: RunningDns,
}

fn zone() -> ZoneSpec {
    let mut zone = ZoneSpec::new("lab.example");
    zone.add_address("www.lab.example", "198.18.1.10".parse().unwrap())
        .add_address("v6.lab.example", "2001:db8::10".parse().unwrap())
        .add_cname("alias.lab.example", "www.lab.example")
        .add_nxdomain("gone.lab.example");
    zone
}

/// The lab server on 127.0.0.1: UDP+TCP, `DoT` and `DoH`, each on a port of its own.
fn start_lab() -> Lab {
    let ca = LabCa::new("censorprobe control test CA").unwrap();
    let names = [SERVER_NAME, "localhost"];
    let ips = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    ];
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let dns = AuthoritativeDns::new(zone())
        .udp_tcp(loopback)
        .dot(TlsEndpoint::new(loopback, ca.issue(&names, &ips).unwrap()))
        .doh(
            TlsEndpoint::new(loopback, ca.issue(&names, &ips).unwrap()),
            DOH_PATH,
        )
        .serve()
        .unwrap();
    Lab { ca, dns }
}

fn control(spec: &str, roots: &[CertificateDer<'static>], timeout: Duration) -> ControlResolver {
    let spec: ControlSpec = spec.parse().unwrap();
    ControlResolver::new(&spec, roots, timeout)
        .unwrap()
        .expect("a control resolver")
}

fn outcome<'a>(obs: &'a ControlObservation, qtype: &str) -> &'a ControlOutcome {
    &obs.answer(qtype)
        .unwrap_or_else(|| panic!("no {qtype} answer in {obs:?}"))
        .outcome
}

/// Every outcome the zone can produce, asserted through one control.
async fn assert_zone_outcomes(control: &ControlResolver) {
    control.check_reachable().await.unwrap();

    let www = control.resolve("WWW.lab.example.", &A_AND_AAAA).await;
    assert_eq!(www.control, control.label());
    assert_eq!(www.answers.len(), 2);
    match outcome(&www, "A") {
        ControlOutcome::Resolved { ips, records } => {
            assert_eq!(ips, &vec!["198.18.1.10".parse::<IpAddr>().unwrap()]);
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].name, "www.lab.example");
            assert_eq!(records[0].rtype, "A");
            assert_eq!(records[0].data, "198.18.1.10");
            assert_eq!(records[0].ttl, 300);
        }
        other => panic!("www A: {other:?}"),
    }
    assert_eq!(outcome(&www, "AAAA"), &ControlOutcome::NoData);

    let v6 = control.resolve("v6.lab.example", &A_AND_AAAA).await;
    assert_eq!(outcome(&v6, "A"), &ControlOutcome::NoData);
    match outcome(&v6, "AAAA") {
        ControlOutcome::Resolved { ips, .. } => {
            assert_eq!(ips, &vec!["2001:db8::10".parse::<IpAddr>().unwrap()]);
        }
        other => panic!("v6 AAAA: {other:?}"),
    }

    let gone = control.resolve("gone.lab.example", &A_AND_AAAA).await;
    assert_eq!(outcome(&gone, "A"), &ControlOutcome::Nxdomain);
    assert_eq!(outcome(&gone, "AAAA"), &ControlOutcome::Nxdomain);
    let unlisted = control
        .resolve("unlisted.lab.example", &[RecordType::A])
        .await;
    assert_eq!(outcome(&unlisted, "A"), &ControlOutcome::Nxdomain);

    let alias = control.resolve("alias.lab.example", &[RecordType::A]).await;
    match outcome(&alias, "A") {
        ControlOutcome::Resolved { ips, records } => {
            assert_eq!(ips, &vec!["198.18.1.10".parse::<IpAddr>().unwrap()]);
            let cname = records
                .iter()
                .find(|r| r.rtype == "CNAME")
                .unwrap_or_else(|| panic!("no CNAME in {records:?}"));
            assert_eq!(cname.name, "alias.lab.example");
            assert_eq!(cname.data, "www.lab.example");
        }
        other => panic!("alias A: {other:?}"),
    }

    // Outside the zone the server refuses: an error, never NXDOMAIN or no data.
    let refused = control.resolve("example.org", &[RecordType::A]).await;
    match outcome(&refused, "A") {
        ControlOutcome::Error { message } => assert!(message.contains("Refused"), "{message}"),
        other => panic!("refused name: {other:?}"),
    }
}

#[tokio::test]
async fn udp_control_reports_every_outcome() {
    let lab = start_lab();
    let addr = lab.dns.udp_addr().unwrap();
    assert_zone_outcomes(&control(&format!("udp:{addr}"), &[], TIMEOUT)).await;
    lab.dns.shutdown().await.unwrap();
}

#[tokio::test]
async fn dot_control_with_the_lab_ca_reports_every_outcome() {
    let lab = start_lab();
    let addr = lab.dns.dot_addr().unwrap();
    let spec = format!("dot:{addr}#{SERVER_NAME}");
    assert_zone_outcomes(&control(&spec, &[lab.ca.cert_der()], TIMEOUT)).await;
    lab.dns.shutdown().await.unwrap();
}

#[tokio::test]
async fn doh_control_with_the_lab_ca_reports_every_outcome() {
    let lab = start_lab();
    let addr = lab.dns.doh_addr().unwrap();
    let spec = format!("doh:https://{addr}{DOH_PATH}");
    assert_zone_outcomes(&control(&spec, &[lab.ca.cert_der()], TIMEOUT)).await;
    lab.dns.shutdown().await.unwrap();
}

/// A `DoH` host given by name is looked up once with the system resolver (here: `localhost`
/// from /etc/hosts); the certificate is then checked for that name.
#[tokio::test]
async fn doh_control_by_host_name_bootstraps_through_the_system_resolver() {
    let lab = start_lab();
    let port = lab.dns.doh_addr().unwrap().port();
    let spec = format!("doh:https://localhost:{port}{DOH_PATH}");
    assert_zone_outcomes(&control(&spec, &[lab.ca.cert_der()], TIMEOUT)).await;
    lab.dns.shutdown().await.unwrap();
}

#[tokio::test]
async fn encrypted_controls_without_the_ca_are_unreachable() {
    let lab = start_lab();
    let specs = [
        format!("dot:{}#{SERVER_NAME}", lab.dns.dot_addr().unwrap()),
        format!("doh:https://{}{DOH_PATH}", lab.dns.doh_addr().unwrap()),
    ];
    for spec in specs {
        let untrusting = control(&spec, &[], TIMEOUT);
        let err = untrusting.check_reachable().await.unwrap_err();
        match &err {
            ProbeError::ControlUnreachable { control, reason } => {
                assert_eq!(control, &spec);
                assert!(
                    reason.to_lowercase().contains("certificate"),
                    "{spec}: {reason}"
                );
            }
            other => panic!("{spec}: {other:?}"),
        }
        let obs = untrusting
            .resolve("www.lab.example", &[RecordType::A])
            .await;
        match outcome(&obs, "A") {
            ControlOutcome::Error { message } => {
                assert!(message.to_lowercase().contains("certificate"), "{message}");
            }
            other => panic!("{spec}: untrusted server gave {other:?}"),
        }
    }
    lab.dns.shutdown().await.unwrap();
}

#[tokio::test]
async fn dot_control_with_the_wrong_server_name_is_unreachable() {
    let lab = start_lab();
    let spec = format!("dot:{}#other.lab.example", lab.dns.dot_addr().unwrap());
    let err = control(&spec, &[lab.ca.cert_der()], TIMEOUT)
        .check_reachable()
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProbeError::ControlUnreachable { .. }),
        "{err:?}"
    );
    lab.dns.shutdown().await.unwrap();
}

#[tokio::test]
async fn udp_control_with_nothing_listening_is_unreachable() {
    // A port that was free a moment ago, on loopback: nothing answers there.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = control(
        &format!("udp:127.0.0.1:{port}"),
        &[],
        Duration::from_millis(300),
    );
    let err = dead.check_reachable().await.unwrap_err();
    assert!(
        matches!(err, ProbeError::ControlUnreachable { .. }),
        "{err:?}"
    );
    let obs = dead.resolve("www.lab.example", &[RecordType::A]).await;
    assert!(
        matches!(outcome(&obs, "A"), ControlOutcome::Error { .. }),
        "{obs:?}"
    );
}

/// A UDP fake that answers every query with `rcode` and no records.
async fn start_rcode_fake(rcode: ResponseCode) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_bytes(&buf[..len]) else {
                continue;
            };
            let mut reply = Message::error_msg(query.metadata.id, query.metadata.op_code, rcode);
            reply.metadata.message_type = MessageType::Response;
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            reply.add_queries(query.queries.iter().cloned());
            let _ = socket.send_to(&reply.to_bytes().unwrap(), from).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn any_dns_response_makes_the_control_reachable() {
    // REFUSED: the lab server is not authoritative for the root the check asks about.
    let lab = start_lab();
    control(
        &format!("udp:{}", lab.dns.udp_addr().unwrap()),
        &[],
        TIMEOUT,
    )
    .check_reachable()
    .await
    .unwrap();
    lab.dns.shutdown().await.unwrap();

    for rcode in [
        ResponseCode::NXDomain,
        ResponseCode::ServFail,
        ResponseCode::Refused,
    ] {
        let (addr, fake) = start_rcode_fake(rcode).await;
        let fake_control = control(&format!("udp:{addr}"), &[], TIMEOUT);
        fake_control
            .check_reachable()
            .await
            .unwrap_or_else(|e| panic!("{rcode:?}: {e}"));
        let obs = fake_control
            .resolve("www.lab.example", &[RecordType::A])
            .await;
        let expected = match rcode {
            ResponseCode::NXDomain => ControlOutcome::Nxdomain,
            other => ControlOutcome::Error {
                message: format!("response code {other:?}"),
            },
        };
        assert_eq!(outcome(&obs, "A"), &expected, "{rcode:?}");
        fake.abort();
    }
}

/// Many names at once, pipelined over one encrypted connection: each gets its own answer
/// (positive and negative answers never cross between names).
#[tokio::test]
async fn many_concurrent_names_through_dot_get_their_own_answers() {
    let lab = start_lab();
    let spec = format!("dot:{}#{SERVER_NAME}", lab.dns.dot_addr().unwrap());
    let dot = control(&spec, &[lab.ca.cert_der()], Duration::from_secs(10));
    let names: Vec<String> = (0..400)
        .map(|i| {
            if i % 2 == 0 {
                "www.lab.example".to_owned()
            } else {
                format!("absent-{i}.lab.example")
            }
        })
        .collect();
    let observations =
        futures::future::join_all(names.iter().map(|n| dot.resolve(n, &[RecordType::A]))).await;
    for (name, obs) in names.iter().zip(&observations) {
        let got = outcome(obs, "A");
        if name.starts_with("www") {
            assert!(
                matches!(got, ControlOutcome::Resolved { .. }),
                "{name}: {got:?}"
            );
        } else {
            assert_eq!(got, &ControlOutcome::Nxdomain, "{name}");
        }
    }
    lab.dns.shutdown().await.unwrap();
}

/// Names for the scale tests: even ones exist in the lab zone, odd ones do not.
fn scale_names(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            if i % 2 == 0 {
                "www.lab.example".to_owned()
            } else {
                format!("absent-{i}.lab.example")
            }
        })
        .collect()
}

/// Every lookup of `names` (all at once) got its own right answer, none failed.
async fn assert_all_answered(control: &ControlResolver, names: &[String]) {
    let observations =
        futures::future::join_all(names.iter().map(|n| control.resolve(n, &[RecordType::A]))).await;
    let mut failures = Vec::new();
    for (name, obs) in names.iter().zip(&observations) {
        match (name.starts_with("www"), outcome(obs, "A")) {
            (true, ControlOutcome::Resolved { ips, .. }) => {
                assert_eq!(
                    ips,
                    &vec!["198.18.1.10".parse::<IpAddr>().unwrap()],
                    "{name}"
                );
            }
            (false, ControlOutcome::Nxdomain) => {}
            (_, ControlOutcome::Error { message }) => failures.push(format!("{name}: {message}")),
            (_, other) => panic!("{name}: wrong answer {other:?}"),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} lookups failed, e.g. {:?}",
        failures.len(),
        names.len(),
        &failures[..failures.len().min(3)]
    );
}

/// 5000 lookups at once through the lab's `DoT` server: all answered, none failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_lookups_at_once_through_dot_all_answered() {
    let lab = start_lab();
    let spec = format!("dot:{}#{SERVER_NAME}", lab.dns.dot_addr().unwrap());
    let dot = control(&spec, &[lab.ca.cert_der()], TIMEOUT);
    assert_all_answered(&dot, &scale_names(5000)).await;
    lab.dns.shutdown().await.unwrap();
}

/// The same through the lab's `DoH` server (HTTP/2 streams on a few connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_lookups_at_once_through_doh_all_answered() {
    let lab = start_lab();
    let spec = format!("doh:https://{}{DOH_PATH}", lab.dns.doh_addr().unwrap());
    let doh = control(&spec, &[lab.ca.cert_der()], TIMEOUT);
    assert_all_answered(&doh, &scale_names(5000)).await;
    lab.dns.shutdown().await.unwrap();
}

/// How a [`FakeDot`] server misbehaves.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// Answers everything (replies to each batch of queries in reverse order).
    None,
    /// Never answers the very first query it receives.
    IgnoreFirstQuery,
    /// Closes its first connection once it has received this many queries, answering none
    /// of the queries of that connection.
    CloseFirstConnectionAfter(usize),
    /// Accepts connections and queries, answers nothing.
    Silent,
}

/// A `DoT` server written for the tests: answers `www.lab.example` A with 198.18.1.10 and
/// every `absent-*` name with NXDOMAIN, misbehaving as told; counts its connections.
struct FakeDot {
    addr: SocketAddr,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_fake_dot(ca: &LabCa, misbehaviour: Misbehaviour) -> FakeDot {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let ips = [IpAddr::from([127, 0, 0, 1])];
    let (certs, key) = ca.issue(&[SERVER_NAME], &ips).unwrap();
    let config = censorprobe::servers::tls_server_config(certs, key, &[b"dot"]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let first_query_pending = Arc::new(AtomicBool::new(matches!(
        misbehaviour,
        Misbehaviour::IgnoreFirstQuery
    )));
    let task = tokio::spawn(async move {
        let mut served = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let number = counted.fetch_add(1, Ordering::SeqCst);
            let close_after = match misbehaviour {
                Misbehaviour::CloseFirstConnectionAfter(n) if number == 0 => Some(n),
                _ => None,
            };
            let silent = matches!(misbehaviour, Misbehaviour::Silent);
            let acceptor = acceptor.clone();
            let ignore_first = Arc::clone(&first_query_pending);
            served.spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_fake_dot(tls, close_after, silent, &ignore_first).await;
                }
            });
        }
    });
    FakeDot {
        addr,
        connections,
        task,
    }
}

async fn serve_fake_dot(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    close_after: Option<usize>,
    silent: bool,
    ignore_first: &std::sync::atomic::AtomicBool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (read, mut write) = tokio::io::split(tls);
    let mut read = tokio::io::BufReader::new(read);
    let mut received = 0;
    loop {
        // One batch: the queries that arrived together, answered in reverse order so that
        // replies come back out of order.
        let mut batch = Vec::new();
        loop {
            let mut len = [0u8; 2];
            if read.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut wire = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if read.read_exact(&mut wire).await.is_err() {
                return;
            }
            received += 1;
            if close_after == Some(received) {
                return; // the connection closes with every query on it unanswered
            }
            if ignore_first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            batch.push(Message::from_bytes(&wire).unwrap());
            if read.buffer().is_empty() {
                break;
            }
        }
        let mut out = Vec::new();
        for query in batch.iter().rev() {
            let reply = fake_reply(query).to_bytes().unwrap();
            out.extend_from_slice(&u16::try_from(reply.len()).unwrap().to_be_bytes());
            out.extend_from_slice(&reply);
        }
        if !silent && close_after.is_none() && write.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn fake_reply(query: &Message) -> Message {
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};

    let question = query.queries[0].clone();
    let absent = question.name().to_ascii().starts_with("absent");
    let mut reply = Message::error_msg(
        query.metadata.id,
        query.metadata.op_code,
        if absent {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        },
    );
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    if !absent {
        reply.add_answer(Record::from_rdata(
            question.name().clone(),
            300,
            RData::A(A::new(198, 18, 1, 10)),
        ));
    }
    reply.add_query(question);
    reply
}

/// Thousands of lookups share a few long-lived connections (pipelined, replies out of
/// order): the pool stays bounded instead of opening a connection per lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_lookups_share_a_bounded_pool_of_pipelined_connections() {
    let ca = LabCa::new("censorprobe control test CA").unwrap();
    let fake = start_fake_dot(&ca, Misbehaviour::None).await;
    let dot = control(
        &format!("dot:{}#{SERVER_NAME}", fake.addr),
        &[ca.cert_der()],
        TIMEOUT,
    );
    assert_all_answered(&dot, &scale_names(3000)).await;
    assert_all_answered(&dot, &scale_names(1000)).await;
    let opened = fake.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=4).contains(&opened), "{opened} connections");
}

/// A query the server never answers is asked again (on another connection) before the
/// lookup gives up: the lookup gets its answer, not a timeout.
#[tokio::test]
async fn dot_lookup_whose_first_exchange_is_lost_is_answered_by_a_retry() {
    let ca = LabCa::new("censorprobe control test CA").unwrap();
    let fake = start_fake_dot(&ca, Misbehaviour::IgnoreFirstQuery).await;
    let dot = control(
        &format!("dot:{}#{SERVER_NAME}", fake.addr),
        &[ca.cert_der()],
        Duration::from_millis(300),
    );
    let gone = dot.resolve("absent-1.lab.example", &[RecordType::A]).await;
    assert_eq!(outcome(&gone, "A"), &ControlOutcome::Nxdomain);
    assert_all_answered(&dot, &scale_names(100)).await;
}

/// The server closes a connection with queries in flight: every one of them is retried on
/// another connection and answered. (Through hickory-resolver, about 5 % of these lookups
/// failed with "no connection to the control could be made".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_connection_closed_mid_flight_loses_no_lookup() {
    let ca = LabCa::new("censorprobe control test CA").unwrap();
    let fake = start_fake_dot(&ca, Misbehaviour::CloseFirstConnectionAfter(20)).await;
    let dot = control(
        &format!("dot:{}#{SERVER_NAME}", fake.addr),
        &[ca.cert_der()],
        TIMEOUT,
    );
    assert_all_answered(&dot, &scale_names(2000)).await;
    let opened = fake.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        opened >= 2,
        "the closed connection was never replaced ({opened})"
    );
}

/// A control that accepts connections and then never answers: lookups fail after their
/// retries, saying so, instead of hanging.
#[tokio::test]
async fn dot_control_that_never_answers_fails_after_the_retries() {
    let ca = LabCa::new("censorprobe control test CA").unwrap();
    let fake = start_fake_dot(&ca, Misbehaviour::Silent).await;
    let dot = control(
        &format!("dot:{}#{SERVER_NAME}", fake.addr),
        &[ca.cert_der()],
        Duration::from_millis(200),
    );
    let obs = dot.resolve("www.lab.example", &[RecordType::A]).await;
    match outcome(&obs, "A") {
        ControlOutcome::Error { message } => {
            assert!(message.contains("no answer within 200 ms"), "{message}");
            assert!(message.contains("3 attempts"), "{message}");
        }
        other => panic!("silent control gave {other:?}"),
    }
}
