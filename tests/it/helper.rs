//! `censorprobe helper` (the web control) on loopback: a real helper with a generated
//! certificate, measuring lab web servers through its own lab resolver, asked over HTTPS
//! by a minimal client. Loopback is special-purpose, so every measuring test passes
//! `--allow 127.0.0.0/8` like a lab does; the SSRF test leaves it out.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use censorprobe::helper::identity::{generate_identity, server_config};
use censorprobe::helper::{
    AddressPolicy, ErrorCode, ErrorReply, HelperLimits, HelperServer, Measurer, RunningHelper,
};
use censorprobe::observation::web::{HttpExchangeEnd, TlsHandshakeEnd};
use censorprobe::observation::web_control::{
    HelperLookupStatus, WEB_CONTROL_PATH, WEB_CONTROL_VERSION, WebControlQuery, WebControlReply,
    WebControlRequest,
};
use censorprobe::probe::control::{ControlResolver, ControlSpec};
use censorprobe::probe::web::ConnectionBudget;
use censorprobe::probe::web::http::{HttpProbeConfig, HttpProber};
use censorprobe::probe::web::tls::{TlsProbeConfig, TlsProber};
use censorprobe::servers::ca::LabCa;
use censorprobe::servers::dns::{AuthoritativeDns, DOH_PATH, RunningDns, TlsEndpoint, ZoneSpec};
use censorprobe::servers::web::{
    HttpBehaviour, HttpLabConfig, LabServer, TlsIdentity, TlsLabConfig,
};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "helper-test-token-0123456789";
const SITE: &str = "site.helper.test";
const BOGON_SITE: &str = "private.helper.test";
const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The lab's DNS (UDP and `DoH`) and its CA.
struct Lab {
    ca: LabCa,
    dns: RunningDns,
}

fn start_lab() -> Lab {
    let ca = LabCa::new("censorprobe helper test CA").unwrap();
    let mut zone = ZoneSpec::new("helper.test");
    zone.add_address(SITE, LOCALHOST)
        .add_address(BOGON_SITE, "10.10.34.34".parse().unwrap());
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let dns = AuthoritativeDns::new(zone)
        .udp_tcp(loopback)
        .doh(
            TlsEndpoint::new(loopback, ca.issue(&["localhost"], &[LOCALHOST]).unwrap()),
            DOH_PATH,
        )
        .serve()
        .unwrap();
    Lab { ca, dns }
}

struct Options {
    allow: Vec<&'static str>,
    limits: HelperLimits,
    timeout: Duration,
    name_timeout: Duration,
    doh: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow: vec!["127.0.0.0/8"],
            limits: HelperLimits {
                rate_per_client: 0.0,
                ..HelperLimits::default()
            },
            timeout: Duration::from_secs(2),
            name_timeout: Duration::from_secs(20),
            doh: false,
        }
    }
}

/// A running helper and what a client needs to reach it.
struct Helper {
    running: RunningHelper,
    ca: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

async fn start_helper(lab: &Lab, options: Options) -> Helper {
    let dir = tempfile::tempdir().unwrap();
    let ca_out: PathBuf = dir.path().join("helper-ca.pem");
    let identity = generate_identity(&["localhost".to_owned()], &[LOCALHOST], &ca_out).unwrap();
    let ca = censorprobe::trust::load_ca_file(&ca_out).unwrap().remove(0);
    let extra_roots = vec![lab.ca.cert_der()];
    let budget = ConnectionBudget::new(256);
    let resolver = ControlResolver::new(
        &ControlSpec::Udp {
            addr: lab.dns.udp_addr().unwrap(),
        },
        &extra_roots,
        options.timeout,
    )
    .unwrap()
    .unwrap();
    let doh = options.doh.then(|| {
        let url = format!(
            "doh:https://127.0.0.1:{}{DOH_PATH}",
            lab.dns.doh_addr().unwrap().port()
        );
        ControlResolver::new(
            &url.parse::<ControlSpec>().unwrap(),
            &extra_roots,
            options.timeout,
        )
        .unwrap()
        .unwrap()
    });
    let measurer = Measurer {
        resolver,
        resolver_label: "udp:lab".to_owned(),
        doh,
        http: HttpProber::new(
            HttpProbeConfig {
                connect_timeout: options.timeout,
                response_timeout: options.timeout,
                ..HttpProbeConfig::default()
            },
            budget.clone(),
        ),
        tls: TlsProber::new(
            Arc::new(censorprobe::trust::root_store(&extra_roots)),
            TlsProbeConfig {
                connect_timeout: options.timeout,
                handshake_timeout: options.timeout,
                ..TlsProbeConfig::default()
            },
            budget,
        )
        .unwrap(),
        policy: AddressPolicy::new(options.allow.iter().map(|p| p.parse().unwrap()).collect()),
        max_addresses: 8,
        name_timeout: options.name_timeout,
    };
    let server = HelperServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        server_config(identity).unwrap(),
        TOKEN,
        options.limits,
        measurer,
    )
    .await
    .unwrap();
    Helper {
        running: server.spawn(),
        ca,
        _dir: dir,
    }
}

/// An HTTP/1.1 answer: status and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn error(&self) -> ErrorReply {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn reply(&self) -> WebControlReply {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request over a fresh TLS connection that trusts only the helper's CA.
async fn send(helper: &Helper, head: &str, body: &[u8]) -> Answer {
    send_to(helper.running.local_addr(), &helper.ca, head, body).await
}

async fn send_to(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    head: &str,
    body: &[u8],
) -> Answer {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(TlsProber::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::IpAddress(LOCALHOST.into()), tcp)
        .await
        .expect("the helper's certificate is trusted through its CA file");
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(body);
    tls.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(&raw).unwrap() else {
        panic!("incomplete answer: {}", String::from_utf8_lossy(&raw));
    };
    Answer {
        status: response.code.unwrap(),
        headers: response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: raw[head_len..].to_vec(),
    }
}

async fn post(helper: &Helper, token: Option<&str>, body: &[u8]) -> Answer {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {WEB_CONTROL_PATH} HTTP/1.1\r\nHost: helper\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    send(helper, &head, body).await
}

fn request(targets: Vec<WebControlQuery>) -> Vec<u8> {
    serde_json::to_vec(&WebControlRequest {
        version: WEB_CONTROL_VERSION,
        targets,
    })
    .unwrap()
}

fn query(
    name: &str,
    addresses: &[IpAddr],
    http_port: Option<u16>,
    tls_port: Option<u16>,
) -> WebControlQuery {
    WebControlQuery {
        name: name.to_owned(),
        addresses: addresses.to_vec(),
        http_port,
        tls_port,
    }
}

#[tokio::test]
async fn helper_round_trip_returns_real_observations_of_a_loopback_web_server() {
    let lab = start_lab();
    let (chain, key) = lab.ca.issue(&[SITE], &[]).unwrap();
    let bind = SocketAddr::new(LOCALHOST, 0);
    let http = LabServer::spawn_http(bind, HttpLabConfig::default())
        .await
        .unwrap();
    let tls = LabServer::spawn_tls(bind, TlsLabConfig::new(TlsIdentity { chain, key }))
        .await
        .unwrap();
    let helper = start_helper(
        &lab,
        Options {
            doh: true,
            ..Options::default()
        },
    )
    .await;
    let body = request(vec![query(
        SITE,
        &[LOCALHOST],
        Some(http.local_addr().port()),
        Some(tls.local_addr().port()),
    )]);
    let reply = post(&helper, Some(TOKEN), &body).await.reply();
    assert_eq!(reply.version, WEB_CONTROL_VERSION);
    assert!(
        reply.software.starts_with("censorprobe "),
        "{}",
        reply.software
    );
    assert_eq!(reply.results.len(), 1);
    let result = &reply.results[0];
    assert_eq!(result.name, SITE);
    // Its own lookups: the lab resolver and DoH both give the address.
    assert_eq!(
        result.dns.resolver.status,
        HelperLookupStatus::Resolved,
        "{result:?}"
    );
    assert_eq!(result.dns.resolver.resolver, "udp:lab");
    assert_eq!(result.dns.resolver.addresses, vec![LOCALHOST]);
    let doh = result.dns.doh.as_ref().expect("a DoH lookup");
    assert_eq!(doh.status, HelperLookupStatus::Resolved, "{doh:?}");
    assert!(
        doh.resolver.starts_with("doh:https://127.0.0.1:"),
        "{}",
        doh.resolver
    );
    assert_eq!(doh.addresses, vec![LOCALHOST]);
    // One address (the client's and the resolvers' are the same), two ports.
    assert!(result.refused.is_empty(), "{:?}", result.refused);
    assert_eq!(result.connects.len(), 2, "{:?}", result.connects);
    assert!(result.connect_to(http.local_addr()).unwrap().is_ok());
    assert!(result.connect_to(tls.local_addr()).unwrap().is_ok());
    let page = result.http_of(LOCALHOST, http.local_addr().port()).unwrap();
    assert_eq!(page.host, SITE);
    assert_eq!(page.exchange, Some(HttpExchangeEnd::Complete));
    let response = page.response.as_ref().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.title.as_deref(),
        Some(&*format!("censorprobe lab: {SITE}"))
    );
    assert!(response.body_length > 0);
    assert_eq!(response.body_sha256.len(), 64);
    let handshake = result.tls_of(LOCALHOST, tls.local_addr().port()).unwrap();
    assert_eq!(handshake.sni.as_deref(), Some(SITE));
    assert_eq!(
        handshake.handshake,
        Some(TlsHandshakeEnd::Complete),
        "{handshake:?}"
    );
    let validity = handshake.validity.as_ref().unwrap();
    assert!(validity.valid, "{validity:?}");
    assert!(!handshake.chain.is_empty());
    assert!(result.ms > 0.0);
}

#[tokio::test]
async fn helper_refuses_bogon_targets_without_connecting() {
    let lab = start_lab();
    // A listener nobody should reach: the helper must not even try.
    let trap = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    trap.set_nonblocking(true).unwrap();
    let port = trap.local_addr().unwrap().port();
    let helper = start_helper(
        &lab,
        Options {
            allow: Vec::new(),
            ..Options::default()
        },
    )
    .await;
    let body = request(vec![
        query(
            SITE,
            &[
                LOCALHOST,
                "::1".parse().unwrap(),
                "::ffff:127.0.0.1".parse().unwrap(),
            ],
            Some(port),
            Some(port),
        ),
        // Its own resolver answers 10.10.34.34: refused as well.
        query(BOGON_SITE, &[], Some(port), None),
    ]);
    let reply = post(&helper, Some(TOKEN), &body).await.reply();
    let site = &reply.results[0];
    let refused: Vec<IpAddr> = site.refused.iter().map(|r| r.ip).collect();
    assert_eq!(
        refused,
        vec![
            LOCALHOST,
            "::1".parse().unwrap(),
            "::ffff:127.0.0.1".parse().unwrap()
        ]
    );
    assert!(
        site.refused.iter().all(|r| r.reason.contains("--allow")),
        "{:?}",
        site.refused
    );
    assert!(
        site.connects.is_empty() && site.http.is_empty() && site.tls.is_empty(),
        "{site:?}"
    );
    let private = &reply.results[1];
    assert_eq!(
        private.dns.resolver.addresses,
        vec!["10.10.34.34".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(private.refused.len(), 1);
    assert!(private.connects.is_empty() && private.http.is_empty());
    match trap.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the helper connected to a refused address: {other:?}"),
    }
}

#[tokio::test]
async fn helper_rejects_missing_and_wrong_tokens() {
    let lab = start_lab();
    let helper = start_helper(&lab, Options::default()).await;
    let body = request(Vec::new());
    for token in [None, Some("helper-test-token-012345678"), Some("wrong")] {
        let answer = post(&helper, token, &body).await;
        assert_eq!(answer.status, 401, "{token:?}");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        assert_eq!(answer.error().error, ErrorCode::Unauthorized);
    }
    let reply = post(&helper, Some(TOKEN), &body).await.reply();
    assert!(reply.results.is_empty());
    // Other paths and methods.
    let answer = send(
        &helper,
        &format!("GET {WEB_CONTROL_PATH} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(answer.status, 405);
    let answer = send(
        &helper,
        "GET /v1/health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn helper_rate_limits_each_client() {
    let lab = start_lab();
    let helper = start_helper(
        &lab,
        Options {
            limits: HelperLimits {
                rate_per_client: 0.5,
                burst: 3,
                ..HelperLimits::default()
            },
            ..Options::default()
        },
    )
    .await;
    let body = request(Vec::new());
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(post(&helper, Some(TOKEN), &body).await.status);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let limited = post(&helper, None, &body).await;
    assert_eq!(limited.status, 429, "bad tokens are throttled too");
    assert_eq!(limited.error().error, ErrorCode::RateLimited);
    assert_eq!(limited.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn helper_refuses_oversized_requests_and_too_many_names() {
    let lab = start_lab();
    let helper = start_helper(
        &lab,
        Options {
            limits: HelperLimits {
                rate_per_client: 0.0,
                max_request_bytes: 1024,
                max_names: 2,
                ..HelperLimits::default()
            },
            ..Options::default()
        },
    )
    .await;
    // Declared too large.
    let big = request(
        (0..40)
            .map(|i| query(&format!("n{i}.helper.test"), &[], None, None))
            .collect(),
    );
    assert!(big.len() > 1024);
    let answer = post(&helper, Some(TOKEN), &big).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error().error, ErrorCode::TooLarge);
    // Too large without a declared length (chunked).
    let head = format!(
        "POST {WEB_CONTROL_PATH} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        big.len()
    );
    let mut chunked = big.clone();
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = send(&helper, &head, &chunked).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error().error, ErrorCode::TooLarge);
    // Small enough, but three names.
    let three = request(
        (0..3)
            .map(|i| query(&format!("n{i}.helper.test"), &[], None, None))
            .collect(),
    );
    let answer = post(&helper, Some(TOKEN), &three).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error().error, ErrorCode::TooManyNames);
    // Not JSON, and a version it does not speak.
    assert_eq!(
        post(&helper, Some(TOKEN), b"{").await.error().error,
        ErrorCode::BadRequest
    );
    let v2 = br#"{"version":2,"targets":[]}"#;
    assert_eq!(
        post(&helper, Some(TOKEN), v2).await.error().error,
        ErrorCode::UnsupportedVersion
    );
}

#[tokio::test]
async fn helper_times_out_on_a_slow_target() {
    let lab = start_lab();
    let silent = LabServer::spawn_http(
        SocketAddr::new(LOCALHOST, 0),
        HttpLabConfig::default().otherwise(HttpBehaviour::Silent),
    )
    .await
    .unwrap();
    let port = silent.local_addr().port();
    let body = request(vec![query(SITE, &[LOCALHOST], Some(port), None)]);

    // The step timeout: the GET times out, the connect is recorded as made.
    let helper = start_helper(
        &lab,
        Options {
            timeout: Duration::from_millis(300),
            ..Options::default()
        },
    )
    .await;
    let start = Instant::now();
    let reply = post(&helper, Some(TOKEN), &body).await.reply();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let page = reply.results[0].http_of(LOCALHOST, port).unwrap();
    assert_eq!(
        page.exchange,
        Some(HttpExchangeEnd::TimeoutAfterRequest),
        "{page:?}"
    );
    assert!(
        reply.results[0]
            .connect_to(silent.local_addr())
            .unwrap()
            .is_ok()
    );

    // The per-name timeout: the name's result says so.
    let helper = start_helper(
        &lab,
        Options {
            timeout: Duration::from_secs(10),
            name_timeout: Duration::from_millis(300),
            ..Options::default()
        },
    )
    .await;
    let reply = post(&helper, Some(TOKEN), &body).await.reply();
    let result = &reply.results[0];
    assert_eq!(result.dns.resolver.status, HelperLookupStatus::Failed);
    let error = result.dns.resolver.error.as_deref().unwrap();
    assert!(error.contains("per-name timeout"), "{error}");

    // The per-request timeout: 504.
    let helper = start_helper(
        &lab,
        Options {
            timeout: Duration::from_secs(10),
            limits: HelperLimits {
                rate_per_client: 0.0,
                request_timeout: Duration::from_millis(300),
                ..HelperLimits::default()
            },
            ..Options::default()
        },
    )
    .await;
    let answer = post(&helper, Some(TOKEN), &body).await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.error().error, ErrorCode::Timeout);
}

#[tokio::test]
async fn helper_answers_busy_when_every_slot_is_taken() {
    let lab = start_lab();
    let silent = LabServer::spawn_http(
        SocketAddr::new(LOCALHOST, 0),
        HttpLabConfig::default().otherwise(HttpBehaviour::Silent),
    )
    .await
    .unwrap();
    let helper = Arc::new(
        start_helper(
            &lab,
            Options {
                limits: HelperLimits {
                    rate_per_client: 0.0,
                    max_concurrency: 1,
                    queue_wait: Duration::from_millis(200),
                    ..HelperLimits::default()
                },
                ..Options::default()
            },
        )
        .await,
    );
    let slow = request(vec![query(
        SITE,
        &[LOCALHOST],
        Some(silent.local_addr().port()),
        None,
    )]);
    let first = tokio::spawn({
        let helper = Arc::clone(&helper);
        async move { post(&helper, Some(TOKEN), &slow).await.status }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = post(&helper, Some(TOKEN), &request(Vec::new())).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.error().error, ErrorCode::Busy);
    assert_eq!(first.await.unwrap(), 200);
}

/// The command line a lab runs (`--listen --token-file --cert-out --allow --resolver`):
/// the binary starts, says where it listens, and measures.
#[tokio::test]
async fn helper_command_serves_with_the_lab_flags() {
    use std::io::BufRead;
    let lab = start_lab();
    let http = LabServer::spawn_http(SocketAddr::new(LOCALHOST, 0), HttpLabConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let cert_out = dir.path().join("helper-ca.pem");
    let mut child = std::process::Command::new(crate::support::BIN)
        .arg("helper")
        .args(["--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8"])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--cert-out")
        .arg(&cert_out)
        .args(["--resolver", &lab.dns.udp_addr().unwrap().to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stderr)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let outcome = async {
        let addr: SocketAddr = line
            .split("https://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap();
        let ca = censorprobe::trust::load_ca_file(&cert_out)
            .unwrap()
            .remove(0);
        let body = request(vec![query(SITE, &[], Some(http.local_addr().port()), None)]);
        let auth = format!(
            "POST {WEB_CONTROL_PATH} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        send_to(addr, &ca, &auth, &body).await.reply()
    };
    let reply = tokio::time::timeout(Duration::from_secs(30), outcome).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let reply = reply.expect("the helper answered in time");
    let result = &reply.results[0];
    assert_eq!(result.dns.resolver.addresses, vec![LOCALHOST], "{result:?}");
    assert!(result.dns.resolver.resolver.starts_with("udp:127.0.0.1:"));
    let page = result.http_of(LOCALHOST, http.local_addr().port()).unwrap();
    assert_eq!(page.response.as_ref().unwrap().status, 200);
}
