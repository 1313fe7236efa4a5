//! `scan --web-control`: the probe asks a helper, here a fake one written in this file (a
//! hyper server over rustls on loopback), and records what it answered or why it did
//! not, never at the cost of the probe's own observations.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use censorprobe::observation::web::{ConnectObservation, ConnectStatus};
use censorprobe::observation::web_control::{
    HelperConnect, HelperDns, HelperLookup, HelperLookupStatus, RefusedAddress, WEB_CONTROL_PATH,
    WEB_CONTROL_VERSION, WebControlObservation, WebControlReply, WebControlRequest,
    WebControlResult,
};
use censorprobe::probe::dns_stage::first_reply_ips;
use censorprobe::probe::web_control::{WebControlClient, WebControlConfig, query};
use censorprobe::record::TargetRecord;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::support::{Behaviour, Report, args, fake_dns, run_binary};

const TOKEN: &str = "fake-helper-token-5c1e";
const SOFTWARE: &str = "fake-helper 0.0";
/// The address the fake resolver gives every name.
const RESOLVED: [u8; 4] = [198, 18, 0, 80];
/// The address the fake helper's own resolver gives every name.
const HELPER_RESOLVED: [u8; 4] = [198, 18, 7, 80];

/// How the fake helper answers a request that carries the right token.
#[derive(Debug, Clone, Copy)]
enum Helper {
    /// One result per name, in order.
    Answering,
    /// Answers, but only after this long.
    Slow(Duration),
    /// 200 with a body that is not a web control reply.
    BadJson,
}

/// A running fake helper: its URL, its certificate (the client's trust anchor), a token
/// file with the right token, and every request it accepted.
struct FakeHelper {
    url: String,
    ca_file: PathBuf,
    token_file: PathBuf,
    requests: Arc<Mutex<Vec<WebControlRequest>>>,
    dir: tempfile::TempDir,
}

async fn fake_helper(behaviour: Helper) -> FakeHelper {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let ca_file = dir.path().join("helper.pem");
    std::fs::write(&ca_file, key.cert.pem()).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(key.cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der())),
    )
    .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let requests: Arc<Mutex<Vec<WebControlRequest>>> = Arc::default();
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    service_fn(move |request| handle(request, behaviour, Arc::clone(&seen)));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    FakeHelper {
        url,
        ca_file,
        token_file,
        requests,
        dir,
    }
}

impl FakeHelper {
    /// Every name asked, in the order the requests arrived.
    fn names_asked(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.targets.iter().map(|t| t.name.clone()))
            .collect()
    }

    /// A token file with a token the helper refuses.
    fn wrong_token_file(&self) -> PathBuf {
        let path = self.dir.path().join("wrong-token");
        std::fs::write(&path, "not-the-token\n").unwrap();
        path
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

async fn handle(
    request: Request<Incoming>,
    behaviour: Helper,
    seen: Arc<Mutex<Vec<WebControlRequest>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != WEB_CONTROL_PATH || request.method() != hyper::Method::POST {
        return Ok(respond(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#));
    }
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if !authorized {
        return Ok(respond(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"bad token"}"#,
        ));
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let asked: WebControlRequest = serde_json::from_slice(&body).unwrap();
    seen.lock().unwrap().push(asked.clone());
    match behaviour {
        Helper::Answering => {}
        Helper::Slow(delay) => tokio::time::sleep(delay).await,
        Helper::BadJson => return Ok(respond(StatusCode::OK, "<html>not json</html>")),
    }
    let reply = answer(&asked);
    Ok(respond(StatusCode::OK, serde_json::to_vec(&reply).unwrap()))
}

/// The fake helper's view: its resolver gives [`HELPER_RESOLVED`], it connects to every
/// address asked on every port asked, and refuses loopback (as a real helper would).
fn answer(request: &WebControlRequest) -> WebControlReply {
    let results = request
        .targets
        .iter()
        .map(|query| {
            let ports = query.http_port.into_iter().chain(query.tls_port);
            let mut refused = Vec::new();
            let mut connects = Vec::new();
            for port in ports {
                for &ip in &query.addresses {
                    if ip.is_loopback() {
                        refused.push(RefusedAddress {
                            ip,
                            reason: "loopback".to_owned(),
                        });
                        continue;
                    }
                    connects.push(HelperConnect {
                        address: SocketAddr::new(ip, port),
                        connect: ConnectObservation {
                            status: ConnectStatus::Ok,
                            errno: None,
                            error: None,
                            connect_ms: 1.5,
                            local_addr: None,
                        },
                    });
                }
            }
            WebControlResult {
                name: query.name.clone(),
                dns: HelperDns {
                    resolver: HelperLookup {
                        resolver: "udp:198.18.7.53:53".to_owned(),
                        status: HelperLookupStatus::Resolved,
                        addresses: vec![IpAddr::from(HELPER_RESOLVED)],
                        error: None,
                        ms: 2.0,
                    },
                    doh: None,
                },
                connects,
                http: Vec::new(),
                tls: Vec::new(),
                refused,
                ms: 3.0,
            }
        })
        .collect();
    WebControlReply {
        version: WEB_CONTROL_VERSION,
        software: SOFTWARE.to_owned(),
        results,
    }
}

/// Runs a DNS-only scan of `names` (each resolving to [`RESOLVED`]) asking the helper at
/// `url`; returns the report text.
async fn scan_with_helper(
    names: &[&str],
    url: &str,
    token_file: &Path,
    ca_file: &Path,
    extra: &[&str],
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.jsonl");
    let mut with_out = vec!["--out", out.to_str().unwrap()];
    with_out.extend(extra);
    scan_into(names, url, token_file, ca_file, &with_out).await;
    std::fs::read_to_string(&out).unwrap()
}

/// [`scan_with_helper`] with the report where `extra` says (`--out` or `--resume`).
async fn scan_into(names: &[&str], url: &str, token_file: &Path, ca_file: &Path, extra: &[&str]) {
    let resolver = fake_dns(&[], Behaviour::a(RESOLVED)).await.to_string();
    let mut argv = args(&[
        "scan",
        "--quiet",
        "--tests",
        "dns",
        "--qtype",
        "A",
        "--control",
        "none",
        "--resolver",
        &resolver,
        "--dns-wait",
        "50ms",
        "--observations",
        "full",
        "--web-control",
        url,
        "--web-control-token",
        token_file.to_str().unwrap(),
        "--web-control-ca",
        ca_file.to_str().unwrap(),
    ]);
    argv.extend(extra.iter().map(|a| (*a).to_owned()));
    argv.extend(names.iter().map(|n| (*n).to_owned()));
    let run = run_binary(&argv).await;
    assert!(run.status.success(), "{run:#?}");
}

/// The probe's own DNS observations are in the record whatever the helper did.
fn assert_probe_observations_kept(record: &TargetRecord) {
    let dns = record.dns.as_ref().expect("the probe's DNS section");
    assert_eq!(
        first_reply_ips(&dns.queries),
        vec![IpAddr::from(RESOLVED)],
        "{}",
        record.domain
    );
}

/// The helper's failure for every target of a report: each kept its DNS observations.
fn failures(report: &Report) -> Vec<String> {
    report
        .targets
        .iter()
        .map(|record| {
            assert_probe_observations_kept(record);
            match record.web_control.as_ref().expect("the helper's outcome") {
                WebControlObservation::Failed { error, helper, .. } => {
                    assert!(helper.starts_with("https://"), "{helper}");
                    error.clone()
                }
                answered => panic!("{}: not a failure: {answered:?}", record.domain),
            }
        })
        .collect()
}

/// A working helper: every name asked once, in batches of at most `--web-control-batch`,
/// with the resolver's answer among its addresses; every record carries the helper's
/// result (`status: answered`, schema-valid); the header names the helper, never the
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_helper_answers_every_name_in_batches() {
    let helper = fake_helper(Helper::Answering).await;
    let names = ["a.test", "b.test", "c.test", "d.test", "e.test"];
    let text = scan_with_helper(
        &names,
        &helper.url,
        &helper.token_file,
        &helper.ca_file,
        &["--web-control-batch", "2"],
    )
    .await;
    assert!(!text.contains(TOKEN), "the token leaked into the report");
    let report = Report::parse(&text);
    let recorded = report
        .header
        .options
        .web_control
        .as_ref()
        .expect("recorded");
    assert_eq!(recorded.url, helper.url);
    assert_eq!(recorded.batch, 2);
    assert_eq!(recorded.ca_file.as_deref(), Some(helper.ca_file.as_path()));
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["options"]["web_control"]["url"], helper.url.as_str());

    let mut asked = helper.names_asked();
    asked.sort();
    assert_eq!(asked, names, "every name asked exactly once");
    for request in helper.requests.lock().unwrap().iter() {
        assert!((1..=2).contains(&request.targets.len()), "{request:?}");
        assert_eq!(request.version, WEB_CONTROL_VERSION);
        for query in &request.targets {
            assert_eq!(query.addresses, vec![IpAddr::from(RESOLVED)], "{query:?}");
            // A DNS-only scan tests no port.
            assert_eq!((query.http_port, query.tls_port), (None, None));
        }
    }
    assert_eq!(report.targets.len(), names.len());
    for record in &report.targets {
        assert_probe_observations_kept(record);
        let observation = record.web_control.as_ref().expect("the helper's answer");
        let WebControlObservation::Answered {
            helper: url,
            software,
            result,
            ..
        } = observation
        else {
            panic!("{}: {observation:?}", record.domain);
        };
        assert_eq!(
            (url.as_str(), software.as_str()),
            (helper.url.as_str(), SOFTWARE)
        );
        assert_eq!(result.name, record.domain);
        assert_eq!(
            result.resolved_addresses().collect::<Vec<_>>(),
            vec![IpAddr::from(HELPER_RESOLVED)]
        );
        let wire = serde_json::to_value(record).unwrap();
        assert_eq!(wire["web_control"]["status"], "answered");
    }
}

/// With the web stage on, the helper is asked for the stage's port and the planned
/// address, and the record has both the stage's verdict and the helper's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_is_asked_for_the_web_stage_ports_and_addresses() {
    let helper = fake_helper(Helper::Answering).await;
    // A port nothing listens on: the probe's HTTP stage fails at connect, quickly.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dns = fake_dns(&[], Behaviour::a([127, 0, 0, 1])).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.jsonl");
    let (resolver, control, port) = (dns.to_string(), format!("udp:{dns}"), closed.to_string());
    let run = run_binary(&args(&[
        "scan",
        "--quiet",
        "--tests",
        "dns,http",
        "--qtype",
        "A",
        "--capture",
        "off",
        "--resolver",
        &resolver,
        "--control",
        &control,
        "--dns-wait",
        "50ms",
        "--http-port",
        &port,
        "--connect-timeout",
        "1s",
        "--web-control",
        &helper.url,
        "--web-control-token",
        helper.token_file.to_str().unwrap(),
        "--web-control-ca",
        helper.ca_file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "web.test",
    ]))
    .await;
    assert!(run.status.success(), "{run:#?}");
    let report = Report::parse(&std::fs::read_to_string(&out).unwrap());
    let record = report.target("web.test");
    assert!(record.http.is_some(), "the probe's HTTP stage is kept");
    let requests = helper.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let query = &requests[0].targets[0];
    assert_eq!(query.name, "web.test");
    assert_eq!(query.addresses, vec![IpAddr::from(Ipv4Addr::LOCALHOST)]);
    assert_eq!((query.http_port, query.tls_port), (Some(closed), None));
    let result = record
        .web_control
        .as_ref()
        .and_then(WebControlObservation::result)
        .expect("answered");
    assert_eq!(result.refused.len(), 1, "{result:?}");

    // A real helper's answer carries the probes' own observations: the schema takes them
    // (an HTTP GET with a complete response, a TLS handshake with its chain).
    let page = serve_one_page().await;
    let budget = censorprobe::probe::web::net::ConnectionBudget::new(16);
    let http = censorprobe::probe::web::http::HttpProber::new(Default::default(), budget.clone())
        .probe(page.ip(), page.port(), "web.test")
        .await;
    assert!(http.completed(), "{http:?}");
    let helper_addr: SocketAddr = helper.url.trim_start_matches("https://").parse().unwrap();
    let tls = censorprobe::probe::web::tls::TlsProber::new(
        Arc::new(censorprobe::trust::root_store(&[])),
        Default::default(),
        budget,
    )
    .unwrap()
    .probe(helper_addr.ip(), helper_addr.port(), "web.test")
    .await
    .unwrap();
    assert!(!tls.chain.is_empty(), "{tls:?}");
    let mut measured = record.clone();
    if let Some(WebControlObservation::Answered { result, .. }) = &mut measured.web_control {
        result.http.push(http);
        result.tls.push(tls);
    }
    let mut wire = serde_json::to_value(&measured).unwrap();
    wire["record"] = "target".into();
    crate::support::assert_schema_valid(&wire);
}

/// A loopback HTTP server that answers one request with a small page.
async fn serve_one_page() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = tcp.read(&mut request).await;
        let body = "<html><head><title>Example page</title></head><body>hello</body></html>";
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(response.as_bytes()).await.unwrap();
        let _ = tcp.shutdown().await;
    });
    addr
}

/// A helper that is down, too slow, refuses the token, or answers nonsense: each name
/// records the failure with its reason, and keeps the probe's own observations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_helper_is_recorded_and_the_probe_keeps_its_observations() {
    let names = ["x.test", "y.test", "z.test"];

    // Down: nothing listens at the URL.
    let files = fake_helper(Helper::Answering).await;
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", listener.local_addr().unwrap())
    };
    let text = scan_with_helper(&names, &down, &files.token_file, &files.ca_file, &[]).await;
    for error in failures(&Report::parse(&text)) {
        assert!(error.starts_with("unreachable:"), "{error}");
    }

    // Slow: the helper answers after the deadline.
    let slow = fake_helper(Helper::Slow(Duration::from_secs(30))).await;
    let text = scan_with_helper(
        &names,
        &slow.url,
        &slow.token_file,
        &slow.ca_file,
        &["--web-control-timeout", "300ms"],
    )
    .await;
    for error in failures(&Report::parse(&text)) {
        assert!(error.starts_with("timeout:"), "{error}");
    }
    assert!(!slow.names_asked().is_empty(), "the slow helper was asked");

    // Refused token.
    let strict = fake_helper(Helper::Answering).await;
    let wrong = strict.wrong_token_file();
    let text = scan_with_helper(&names, &strict.url, &wrong, &strict.ca_file, &[]).await;
    for error in failures(&Report::parse(&text)) {
        assert!(error.starts_with("HTTP 401"), "{error}");
        assert!(
            error.contains("bad token"),
            "the helper's reason is quoted: {error}"
        );
    }
    assert!(strict.names_asked().is_empty());

    // Not a reply.
    let garbled = fake_helper(Helper::BadJson).await;
    let text = scan_with_helper(
        &names,
        &garbled.url,
        &garbled.token_file,
        &garbled.ca_file,
        &[],
    )
    .await;
    for error in failures(&Report::parse(&text)) {
        assert!(error.starts_with("bad reply:"), "{error}");
    }

    // An untrusted certificate is a failure too (not a silent downgrade).
    let other = fake_helper(Helper::Answering).await;
    let text = scan_with_helper(&names, &other.url, &other.token_file, &files.ca_file, &[]).await;
    for error in failures(&Report::parse(&text)) {
        assert!(error.starts_with("unreachable:"), "{error}");
        assert!(error.contains("certificate"), "{error}");
    }
    assert!(other.names_asked().is_empty());
}

/// Names asked at once share a request: a batch leaves when it is full, before its
/// linger ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_names_share_one_batch() {
    let helper = fake_helper(Helper::Answering).await;
    let roots = censorprobe::trust::load_ca_file(&helper.ca_file).unwrap();
    let client = WebControlClient::start(WebControlConfig {
        roots,
        batch: 3,
        linger: Duration::from_secs(600),
        ..WebControlConfig::new(helper.url.clone(), TOKEN)
    })
    .unwrap();
    let ask = |name: &str| client.ask(query(name, [IpAddr::from(RESOLVED)], Some(80), Some(443)));
    let (a, b, c) = tokio::join!(ask("one.test"), ask("two.test"), ask("three.test"));
    let requests = helper.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].targets.len(), 3);
    for (observation, name) in [(a, "one.test"), (b, "two.test"), (c, "three.test")] {
        let result = observation.result().expect("answered");
        assert_eq!(result.name, name);
        // One connect per address and port asked.
        assert_eq!(result.connects.len(), 2, "{result:?}");
    }
}

/// Reports with `web_control` read back: `summary`, `diff`, and `--resume` (which measures
/// only the new name, asking the helper for it alone, and keeps the earlier answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_with_a_web_control_read_back() {
    let helper = fake_helper(Helper::Answering).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.jsonl");
    let out_arg = out.to_str().unwrap();
    let first = ["one.test", "two.test"];
    scan_into(
        &first,
        &helper.url,
        &helper.token_file,
        &helper.ca_file,
        &["--out", out_arg],
    )
    .await;
    let summary = run_binary(&args(&["summary", out_arg])).await;
    assert!(summary.status.success(), "{summary:#?}");
    let diff = run_binary(&args(&["diff", "--json", out_arg, out_arg])).await;
    assert!(diff.status.success(), "{diff:#?}");

    let all = ["one.test", "two.test", "three.test"];
    scan_into(
        &all,
        &helper.url,
        &helper.token_file,
        &helper.ca_file,
        &["--resume", out_arg],
    )
    .await;
    let report = Report::parse(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(report.targets.len(), 3);
    assert_eq!(report.summary.targets_measured, 3);
    for record in &report.targets {
        assert!(
            record
                .web_control
                .as_ref()
                .and_then(|w| w.result())
                .is_some(),
            "{}",
            record.domain
        );
    }
    let mut asked = helper.names_asked();
    asked.sort();
    assert_eq!(asked, ["one.test", "three.test", "two.test"]);
}
