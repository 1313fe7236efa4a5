//! The web stage end to end on loopback: lab HTTP and TLS servers with per-Host/SNI
//! behaviours on distinct 127.0.0.x addresses, probed through `WebStage`, with each
//! verdict and stage asserted, the control logic, residual-blocking cooldown and
//! `--via` port rotation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use censorprobe::classify::blockpage::BlockpageSet;
use censorprobe::classify::web::judge_web;
use censorprobe::classify::web::target_blocking;
use censorprobe::observation::web::CertProblem;
use censorprobe::observation::web::{AddressPlan, AddressSource};
use censorprobe::pathguard::{PathGuard, PathGuardConfig, PathKey};
use censorprobe::probe::web::stage::ViaConfig;
use censorprobe::probe::web::{ConnectionBudget, WebStage, WebStageConfig};
use censorprobe::record::assessment::DnsAssessment;
use censorprobe::record::assessment::WebEvidenceKind;
use censorprobe::record::assessment::WebStageResult;
use censorprobe::servers::web::{
    HttpBehaviour, HttpLabConfig, LabServer, TlsBehaviour, TlsIdentity, TlsLabConfig,
    never_accepting_listener,
};
use censorprobe::vocab::DnsVerdict;
use censorprobe::vocab::Stage;
use censorprobe::vocab::{Blocking, BlockingLayer, HttpVerdict, TlsVerdict};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls::pki_types::PrivateKeyDer;

/// A throw-away CA for these tests (the lab's own CA is `servers::ca`).
struct Pki {
    params: CertificateParams,
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "censorprobe it CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki { params, key, cert }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut store = RootCertStore::empty();
        store.add(self.cert.der().clone()).unwrap();
        Arc::new(store)
    }

    fn identity(&self, names: &[&str]) -> TlsIdentity {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let key = KeyPair::generate().unwrap();
        let leaf = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        TlsIdentity {
            chain: vec![leaf.der().clone(), self.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }
}

const NAMES: &[&str] = &[
    "example.com",
    "good.test",
    "blocked.test",
    "silent.test",
    "close.test",
    "page.test",
    "wrong.test",
    "trigger.test",
    "benign.test",
    "benign2.test",
];

fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn quick_guard() -> PathGuard {
    PathGuard::new(PathGuardConfig {
        residual_wait: Duration::from_secs(20),
        recheck_initial: Duration::from_millis(100),
        recheck_max: Duration::from_millis(400),
    })
}

/// HTTP and TLS lab servers on one loopback address (random ports).
struct Site {
    ip: IpAddr,
    http: LabServer,
    tls: LabServer,
}

async fn site(
    pki: &Pki,
    ip: IpAddr,
    http: HttpLabConfig,
    tls: impl FnOnce(TlsLabConfig) -> TlsLabConfig,
) -> Site {
    let tls_config = tls(TlsLabConfig::new(pki.identity(NAMES)));
    Site {
        ip,
        http: LabServer::spawn_http(SocketAddr::new(ip, 0), http)
            .await
            .unwrap(),
        tls: LabServer::spawn_tls(SocketAddr::new(ip, 0), tls_config)
            .await
            .unwrap(),
    }
}

fn config_for(site: &Site) -> WebStageConfig {
    let mut config = WebStageConfig {
        http_port: site.http.local_addr().port(),
        tls_port: site.tls.local_addr().port(),
        ..WebStageConfig::default()
    };
    short_timeouts(&mut config);
    config
}

fn short_timeouts(config: &mut WebStageConfig) {
    config.http.connect_timeout = Duration::from_millis(800);
    config.http.response_timeout = Duration::from_millis(800);
    config.tls.connect_timeout = Duration::from_millis(800);
    config.tls.handshake_timeout = Duration::from_millis(800);
}

fn stage(pki: &Pki, config: WebStageConfig, guard: PathGuard) -> WebStage {
    WebStage::new(config, pki.roots(), guard, ConnectionBudget::new(256)).unwrap()
}

/// The scan's two steps for one target: the stage observes, the judge (with the
/// built-in block pages) decides.
trait ObserveThenJudge {
    async fn probe_target(&self, name: &str, plan: Result<AddressPlan, String>) -> WebStageResult;
}

impl ObserveThenJudge for WebStage {
    async fn probe_target(&self, name: &str, plan: Result<AddressPlan, String>) -> WebStageResult {
        let observations = self.observe_target(name, plan).await;
        judge_web(
            observations,
            &self.config().control_name,
            &BlockpageSet::builtin(),
        )
    }
}

/// Pinned addresses, in the form `probe_target` takes from `plan_addresses`.
#[allow(clippy::unnecessary_wraps)]
fn plan(ips: &[IpAddr]) -> Result<AddressPlan, String> {
    Ok(AddressPlan {
        source: AddressSource::Pinned,
        ips: ips.to_vec(),
    })
}

fn http_of(r: &WebStageResult) -> (HttpVerdict, Option<Stage>) {
    let h = r.http.as_ref().expect("http ran");
    (h.verdict, h.stage)
}

fn tls_of(r: &WebStageResult) -> (TlsVerdict, Option<Stage>) {
    let t = r.tls.as_ref().expect("tls ran");
    (t.verdict, t.stage)
}

fn dns_ok() -> DnsAssessment {
    DnsAssessment {
        verdict: DnsVerdict::Ok,
        method: None,
        methods: Vec::new(),
        rcode: None,
        forged_ips: Vec::new(),
        genuine_ips: Vec::new(),
        evidence: Vec::new(),
    }
}

#[tokio::test]
async fn good_site_is_ok_and_accessible() {
    let pki = Pki::new();
    let s = site(&pki, lo(11), HttpLabConfig::default(), |c| c).await;
    let web = stage(&pki, config_for(&s), quick_guard());
    let r = web.probe_target("good.test", plan(&[s.ip])).await;
    assert_eq!(http_of(&r), (HttpVerdict::Ok, None));
    assert_eq!(tls_of(&r), (TlsVerdict::Ok, None));
    let http = r.http.as_ref().unwrap();
    assert_eq!(http.ip, Some(s.ip));
    assert!(http.control.as_ref().unwrap().passed);
    assert_eq!(
        http.residual, None,
        "no residual check after a passing test"
    );
    let test = &http.attempts[0].observations.test;
    assert_eq!(
        test.response.as_ref().unwrap().title.as_deref(),
        Some("censorprobe lab: good.test")
    );
    let tls = r.tls.as_ref().unwrap();
    assert_eq!(
        tls.attempts[0].observations.test.sni.as_deref(),
        Some("good.test")
    );
    let b = target_blocking(Some(&dns_ok()), r.http.as_ref(), r.tls.as_ref());
    assert_eq!((b.blocking, b.accessible), (Blocking::No, Some(true)));
}

#[tokio::test]
async fn keyword_reset_is_rst_injection_at_request_and_handshake() {
    let pki = Pki::new();
    let s = site(
        &pki,
        lo(12),
        HttpLabConfig::default().on("blocked.test", HttpBehaviour::Reset),
        |c| c.on("blocked.test", TlsBehaviour::Reset),
    )
    .await;
    let web = stage(&pki, config_for(&s), quick_guard());
    let r = web.probe_target("blocked.test", plan(&[s.ip])).await;
    assert_eq!(
        http_of(&r),
        (HttpVerdict::RstInjection, Some(Stage::Request))
    );
    assert_eq!(
        tls_of(&r),
        (TlsVerdict::RstInjection, Some(Stage::Handshake))
    );
    // This server resets only the name: the post-test control passes.
    assert_eq!(r.http.as_ref().unwrap().residual, Some(false));
    assert_eq!(r.tls.as_ref().unwrap().residual, Some(false));
    let evidence: Vec<_> = r
        .http
        .as_ref()
        .unwrap()
        .evidence
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(evidence.contains(&WebEvidenceKind::ControlPassed));
    assert!(evidence.contains(&WebEvidenceKind::ConnectionReset));
    assert!(evidence.contains(&WebEvidenceKind::NoResidualBlocking));
    let b = target_blocking(Some(&dns_ok()), r.http.as_ref(), r.tls.as_ref());
    assert_eq!(
        (b.blocking, b.accessible),
        (Blocking::At(BlockingLayer::Http), Some(false))
    );
}

#[tokio::test]
async fn silence_close_blockpage_and_wrong_certificate() {
    let pki = Pki::new();
    let s = site(
        &pki,
        lo(13),
        HttpLabConfig::default()
            .on("silent.test", HttpBehaviour::Silent)
            .on("close.test", HttpBehaviour::Close)
            .on("page.test", HttpBehaviour::BlockPage),
        |c| {
            c.on("silent.test", TlsBehaviour::Silent)
                .on("close.test", TlsBehaviour::Close)
                .on("wrong.test", TlsBehaviour::WrongCert)
                .on("page.test", TlsBehaviour::Alert)
        },
    )
    .await;
    let web = stage(&pki, config_for(&s), quick_guard());
    let (silent, close, page, wrong) = tokio::join!(
        web.probe_target("silent.test", plan(&[s.ip])),
        web.probe_target("close.test", plan(&[s.ip])),
        web.probe_target("page.test", plan(&[s.ip])),
        web.probe_target("wrong.test", plan(&[s.ip])),
    );
    assert_eq!(
        http_of(&silent),
        (HttpVerdict::Timeout, Some(Stage::Request))
    );
    assert_eq!(
        tls_of(&silent),
        (TlsVerdict::Timeout, Some(Stage::Handshake))
    );
    assert_eq!(http_of(&close), (HttpVerdict::Eof, Some(Stage::Request)));
    assert_eq!(tls_of(&close), (TlsVerdict::Eof, Some(Stage::Handshake)));
    assert_eq!(
        http_of(&page),
        (HttpVerdict::Blockpage, Some(Stage::Response))
    );
    assert!(
        page.http
            .as_ref()
            .unwrap()
            .evidence
            .iter()
            .any(|e| e.kind == WebEvidenceKind::BlockpageMatch
                && e.detail.contains("censorprobe-lab"))
    );
    assert_eq!(
        tls_of(&page),
        (TlsVerdict::TlsAlert, Some(Stage::Handshake))
    );
    let alert = page.tls.as_ref().unwrap().attempts[0]
        .observations
        .test
        .alert
        .clone()
        .unwrap();
    assert_eq!(alert.description, "no_application_protocol");
    assert_eq!(http_of(&wrong), (HttpVerdict::Ok, None));
    assert_eq!(
        tls_of(&wrong),
        (TlsVerdict::CertInvalid, Some(Stage::Handshake))
    );
    let validity = wrong.tls.as_ref().unwrap().attempts[0]
        .observations
        .test
        .validity
        .clone()
        .unwrap();
    assert_eq!(validity.problem, Some(CertProblem::UnknownIssuer));
    let b = target_blocking(Some(&dns_ok()), wrong.http.as_ref(), wrong.tls.as_ref());
    assert_eq!(
        (b.blocking, b.accessible),
        (Blocking::No, Some(true)),
        "a bad certificate is not censorship"
    );
}

#[tokio::test]
async fn ip_level_failure_is_not_keyword_blocking() {
    let pki = Pki::new();
    // Every Host and SNI is reset, the benign control's too.
    let s = site(
        &pki,
        lo(14),
        HttpLabConfig::default().otherwise(HttpBehaviour::Reset),
        |c| c.otherwise(TlsBehaviour::Reset),
    )
    .await;
    let web = stage(&pki, config_for(&s), quick_guard());
    let r = web.probe_target("blocked.test", plan(&[s.ip])).await;
    assert_eq!(
        http_of(&r),
        (HttpVerdict::Inconclusive, Some(Stage::Request))
    );
    assert_eq!(
        tls_of(&r),
        (TlsVerdict::Inconclusive, Some(Stage::Handshake))
    );
    assert!(!r.http.as_ref().unwrap().control.as_ref().unwrap().passed);
    let b = target_blocking(Some(&dns_ok()), r.http.as_ref(), r.tls.as_ref());
    assert_eq!(
        (b.blocking, b.accessible),
        (Blocking::Inconclusive, Some(false))
    );
}

#[tokio::test]
async fn closed_port_is_refused_at_connect_for_control_and_test() {
    let pki = Pki::new();
    let dead = censorprobe::servers::web::closed_port(lo(15)).unwrap();
    let mut config = WebStageConfig {
        http_port: dead.port(),
        tls_port: dead.port(),
        ..WebStageConfig::default()
    };
    short_timeouts(&mut config);
    let web = stage(&pki, config, quick_guard());
    let r = web.probe_target("good.test", plan(&[lo(15)])).await;
    assert_eq!(http_of(&r), (HttpVerdict::Refused, Some(Stage::Connect)));
    assert_eq!(tls_of(&r), (TlsVerdict::Refused, Some(Stage::Connect)));
    let http = r.http.as_ref().unwrap();
    assert!(
        http.evidence
            .iter()
            .any(|e| e.kind == WebEvidenceKind::BothFailedAtConnect)
    );
    assert_eq!(http.residual, None);
    let b = target_blocking(Some(&dns_ok()), r.http.as_ref(), r.tls.as_ref());
    assert_eq!(
        (b.blocking, b.accessible),
        (Blocking::Inconclusive, Some(false))
    );
}

#[tokio::test]
async fn listener_that_never_accepts() {
    let pki = Pki::new();
    // With room in the backlog the kernel completes the handshake; nobody answers.
    let listener = never_accepting_listener(SocketAddr::new(lo(16), 0), 64).unwrap();
    let port = listener.local_addr().unwrap().as_socket().unwrap().port();
    let mut config = WebStageConfig {
        http_port: port,
        tls_port: port,
        ..WebStageConfig::default()
    };
    short_timeouts(&mut config);
    let web = stage(&pki, config.clone(), quick_guard());
    let r = web.probe_target("good.test", plan(&[lo(16)])).await;
    assert_eq!(
        http_of(&r),
        (HttpVerdict::Inconclusive, Some(Stage::Request))
    );
    assert_eq!(
        tls_of(&r),
        (TlsVerdict::Inconclusive, Some(Stage::Handshake))
    );

    // With a full backlog, SYNs go unanswered: a timeout at connect.
    let full = never_accepting_listener(SocketAddr::new(lo(17), 0), 0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    let _filler = std::net::TcpStream::connect(addr).unwrap();
    config.http_port = addr.port();
    config.tls_port = addr.port();
    let web = stage(&pki, config, quick_guard());
    let r = web.probe_target("good.test", plan(&[lo(17)])).await;
    assert_eq!(http_of(&r), (HttpVerdict::Timeout, Some(Stage::Connect)));
    assert_eq!(tls_of(&r), (TlsVerdict::Timeout, Some(Stage::Connect)));
    assert!(
        r.http
            .as_ref()
            .unwrap()
            .evidence
            .iter()
            .any(|e| e.kind == WebEvidenceKind::BothFailedAtConnect)
    );
}

#[tokio::test]
async fn no_trusted_address_skips_with_the_reason() {
    let pki = Pki::new();
    let web = stage(&pki, WebStageConfig::default(), quick_guard());
    let r = web
        .probe_target(
            "gone.test",
            Err("the control says the name does not exist".into()),
        )
        .await;
    let http = r.http.as_ref().unwrap();
    assert_eq!(http.verdict, HttpVerdict::Skipped);
    assert_eq!(
        http.reason.as_deref(),
        Some("the control says the name does not exist")
    );
    assert_eq!(r.tls.as_ref().unwrap().verdict, TlsVerdict::Skipped);
    let json = serde_json::to_value(http).unwrap();
    assert_eq!(json["verdict"], "skipped");
    assert!(json.get("attempts").is_none());
}

#[tokio::test]
async fn residual_blocking_is_not_reported_against_the_next_name() {
    let pki = Pki::new();
    let residual = Duration::from_millis(1500);
    let s = site(
        &pki,
        lo(20),
        HttpLabConfig::default().residual("trigger.test", residual),
        |c| c.residual("trigger.test", residual),
    )
    .await;
    let other = site(&pki, lo(21), HttpLabConfig::default(), |c| c).await;
    let guard = quick_guard();
    let web = stage(&pki, config_for(&s), guard.clone());

    let trigger = web.probe_target("trigger.test", plan(&[s.ip])).await;
    assert_eq!(
        http_of(&trigger),
        (HttpVerdict::RstInjection, Some(Stage::Request))
    );
    assert_eq!(
        tls_of(&trigger),
        (TlsVerdict::RstInjection, Some(Stage::Handshake))
    );
    assert_eq!(
        trigger.http.as_ref().unwrap().residual,
        Some(true),
        "post-test control blocked"
    );
    assert_eq!(trigger.tls.as_ref().unwrap().residual, Some(true));
    let http_path = PathKey::new(s.ip, s.http.local_addr().port());
    assert!(guard.is_penalised(http_path));

    // Another address is not held up while this one is penalised.
    let mut other_config = config_for(&other);
    other_config.run_tls = false;
    let other_web = stage(&pki, other_config, guard.clone());
    let elsewhere = other_web.probe_target("good.test", plan(&[other.ip])).await;
    assert_eq!(http_of(&elsewhere), (HttpVerdict::Ok, None));
    assert!(
        guard.is_penalised(http_path),
        "the other address finished while this path was closed"
    );

    // The next name on the same address waits for the path and ends ok.
    let next = web.probe_target("benign.test", plan(&[s.ip])).await;
    assert_eq!(http_of(&next), (HttpVerdict::Ok, None));
    assert_eq!(tls_of(&next), (TlsVerdict::Ok, None));
    assert!(
        next.http
            .as_ref()
            .unwrap()
            .evidence
            .iter()
            .any(|e| e.kind == WebEvidenceKind::PathWaited)
    );
    assert!(!guard.is_penalised(http_path));
}

#[tokio::test]
async fn concurrent_names_on_a_residual_address_are_attributed_correctly() {
    let pki = Pki::new();
    let residual = Duration::from_secs(1);
    let s = site(
        &pki,
        lo(22),
        HttpLabConfig::default().residual("trigger.test", residual),
        |c| c.residual("trigger.test", residual),
    )
    .await;
    let web = stage(&pki, config_for(&s), quick_guard());
    let (trigger, benign, benign2) = tokio::join!(
        web.probe_target("trigger.test", plan(&[s.ip])),
        web.probe_target("benign.test", plan(&[s.ip])),
        web.probe_target("benign2.test", plan(&[s.ip])),
    );
    assert_eq!(
        http_of(&trigger),
        (HttpVerdict::RstInjection, Some(Stage::Request))
    );
    assert_eq!(
        tls_of(&trigger),
        (TlsVerdict::RstInjection, Some(Stage::Handshake))
    );
    for r in [&benign, &benign2] {
        assert_eq!(http_of(r), (HttpVerdict::Ok, None), "{:#?}", r.http);
        assert_eq!(tls_of(r), (TlsVerdict::Ok, None), "{:#?}", r.tls);
    }
}

#[tokio::test]
async fn via_rotates_ports_so_residual_blocking_stays_behind() {
    let pki = Pki::new();
    let via_ip = lo(30);
    let residual = Duration::from_millis(1500);
    // Four consecutive ports on one address, each a dual HTTP/TLS server.
    let (base, servers) = loop {
        let base = 20000 + (rand::random::<u16>() % 40000);
        let mut servers = Vec::new();
        for port in base..base + 4 {
            match LabServer::spawn_dual(
                SocketAddr::new(via_ip, port),
                HttpLabConfig::default().residual("trigger.test", residual),
                TlsLabConfig::new(pki.identity(NAMES)).residual("trigger.test", residual),
            )
            .await
            {
                Ok(server) => servers.push(server),
                Err(_) => break,
            }
        }
        if servers.len() == 4 {
            break (base, servers);
        }
    };
    let mut config = WebStageConfig {
        via: Some(ViaConfig {
            ip: via_ip,
            ports: Some(base..=base + 3),
            window: residual,
        }),
        ..WebStageConfig::default()
    };
    short_timeouts(&mut config);
    let web = stage(&pki, config, quick_guard());
    let ports = |r: &WebStageResult| {
        [
            r.http.as_ref().unwrap().port.unwrap(),
            r.tls.as_ref().unwrap().port.unwrap(),
        ]
    };

    // The plan is ignored with --via: every probe goes to the via server.
    let trigger = web.probe_target("trigger.test", Err("unused".into())).await;
    assert_eq!(
        trigger.addresses.as_ref().unwrap().source,
        AddressSource::Via
    );
    assert_eq!(
        http_of(&trigger),
        (HttpVerdict::RstInjection, Some(Stage::Request))
    );
    assert_eq!(
        tls_of(&trigger),
        (TlsVerdict::RstInjection, Some(Stage::Handshake))
    );
    assert_eq!(trigger.http.as_ref().unwrap().residual, Some(true));

    // The next target gets fresh ports: no residual blocking, no waiting.
    let next = web.probe_target("benign.test", Err("unused".into())).await;
    assert_eq!(http_of(&next), (HttpVerdict::Ok, None));
    assert_eq!(tls_of(&next), (TlsVerdict::Ok, None));
    let mut first_four: Vec<u16> = ports(&trigger).into_iter().chain(ports(&next)).collect();
    first_four.sort_unstable();
    assert_eq!(
        first_four,
        (base..base + 4).collect::<Vec<_>>(),
        "no port shared inside the window"
    );
    for evidence in [
        &next.http.as_ref().unwrap().evidence,
        &next.tls.as_ref().unwrap().evidence,
    ] {
        assert!(
            !evidence
                .iter()
                .any(|e| e.kind == WebEvidenceKind::PathWaited)
        );
    }

    // A third target reuses the least recently used ports, the trigger's, only after
    // the window; it is not reported blocked.
    let third = web.probe_target("benign2.test", Err("unused".into())).await;
    let mut reused = ports(&third).to_vec();
    reused.sort_unstable();
    let mut trigger_ports = ports(&trigger).to_vec();
    trigger_ports.sort_unstable();
    assert_eq!(reused, trigger_ports);
    assert_eq!(http_of(&third), (HttpVerdict::Ok, None));
    assert_eq!(tls_of(&third), (TlsVerdict::Ok, None));
    drop(servers);
}

#[tokio::test]
async fn tls_as_proof_of_an_address() {
    let pki = Pki::new();
    let server = LabServer::spawn_tls(
        SocketAddr::new(lo(40), 443),
        TlsLabConfig::new(pki.identity(&["good.test"])),
    )
    .await
    .unwrap();
    let web = stage(&pki, WebStageConfig::default(), quick_guard());
    let proof = web
        .tls_prober()
        .prove_address("good.test", lo(40))
        .await
        .unwrap();
    assert!(proof.valid_for_name());
    let not_proof = web
        .tls_prober()
        .prove_address("other.test", lo(40))
        .await
        .unwrap();
    assert!(!not_proof.valid_for_name());
    assert_eq!(
        not_proof.validity.unwrap().problem,
        Some(CertProblem::NameMismatch)
    );
    drop(server);
}

#[tokio::test]
async fn record_json_shape() {
    let pki = Pki::new();
    let s = site(
        &pki,
        lo(41),
        HttpLabConfig::default().on("blocked.test", HttpBehaviour::Reset),
        |c| c,
    )
    .await;
    let web = stage(&pki, config_for(&s), quick_guard());
    let r = web.probe_target("blocked.test", plan(&[s.ip])).await;
    let typed_http = r.http.as_ref().unwrap();
    assert_eq!(typed_http.verdict, HttpVerdict::RstInjection);
    assert_eq!(typed_http.stage, Some(Stage::Request));
    let json = serde_json::to_value(&r).unwrap();
    let http = &json["http"];
    assert_eq!(http["ip"], "127.0.0.41");
    assert_eq!(http["control"]["passed"], true);
    assert_eq!(http["control"]["outcome"], "ok");
    assert_eq!(http["residual"], false);
    assert!(
        http["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"].is_string() && e["detail"].is_string())
    );
    assert!(http["timings"]["total_ms"].is_number());
    let attempt = &http["attempts"][0];
    assert_eq!(
        attempt["observations"]["test"]["exchange"],
        "reset_after_request"
    );
    assert_eq!(
        attempt["observations"]["control"]["response"]["status"],
        200
    );
    assert!(
        attempt["observations"]["control"]["response"]
            .get("body_prefix")
            .is_none()
    );
    assert_eq!(r.tls.as_ref().unwrap().verdict, TlsVerdict::Ok);
    assert_eq!(json["addresses"]["source"], "pinned");
}

#[tokio::test]
async fn many_names_share_a_clean_address_under_a_small_socket_budget() {
    let pki = Pki::new();
    let s = site(&pki, lo(42), HttpLabConfig::default(), |c| c).await;
    let budget = ConnectionBudget::new(8);
    let web = WebStage::new(config_for(&s), pki.roots(), quick_guard(), budget.clone()).unwrap();
    let names: Vec<String> = (0..150).map(|i| format!("site{i}.test")).collect();
    let results =
        futures::future::join_all(names.iter().map(|n| web.probe_target(n, plan(&[s.ip])))).await;
    for r in &results {
        assert_eq!(http_of(r), (HttpVerdict::Ok, None));
        // The lab certificate does not name these sites: a completed handshake, judged invalid.
        assert_eq!(tls_of(r), (TlsVerdict::CertInvalid, Some(Stage::Handshake)));
        assert_eq!(r.http.as_ref().unwrap().attempts[0].path.requeues, 0);
    }
    assert_eq!(
        budget.available(),
        8,
        "every socket went back to the budget"
    );
}

/// What a hostile HTTP server sends the test name, without end (the benign control
/// gets a normal page).
#[derive(Debug, Clone, Copy)]
enum Endless {
    /// A chunk-size line that never ends (an endless chunk extension).
    ChunkSizeLine,
    /// `100 Continue` after `100 Continue`.
    Continue,
    /// Header line after header line.
    HeaderLines,
    /// Tiny chunks whose framing costs more than the body it carries.
    TinyChunks,
}

/// A loopback HTTP server that floods the test name with `endless` as fast as it can.
async fn flooding_http_server(ip: IpAddr, endless: Endless) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if head.contains("\r\nhost: example.com\r\n") {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    return;
                }
                let (prefix, filler): (&[u8], &[u8]) = match endless {
                    Endless::ChunkSizeLine => (
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=",
                        b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                    ),
                    Endless::Continue => (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
                    Endless::HeaderLines => {
                        (b"HTTP/1.1 200 OK\r\n", b"X-Filler: aaaaaaaaaaaaaaaa\r\n")
                    }
                    Endless::TinyChunks => (
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                        b"1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n",
                    ),
                };
                if stream.write_all(prefix).await.is_err() {
                    return;
                }
                let filler = filler.repeat(64);
                while stream.write_all(&filler).await.is_ok() {}
            });
        }
    });
    addr
}

/// A server that sends data all the time but never a well-formed response is not a
/// censor: `malformed_response` at `response` (no blocking claim), found as soon as a
/// parse bound is crossed, with a bounded number of bytes read.
#[tokio::test]
async fn endless_responses_are_malformed_not_blocking() {
    let pki = Pki::new();
    for (last, endless) in [
        (50, Endless::ChunkSizeLine),
        (51, Endless::Continue),
        (52, Endless::HeaderLines),
        (53, Endless::TinyChunks),
    ] {
        let addr = flooding_http_server(lo(last), endless).await;
        let mut config = WebStageConfig {
            run_tls: false,
            http_port: addr.port(),
            ..WebStageConfig::default()
        };
        short_timeouts(&mut config);
        // Long enough that a probe which never gives up on the flood ends at the deadline.
        config.http.response_timeout = Duration::from_secs(3);
        let web = stage(&pki, config, quick_guard());
        let r = web.probe_target("flood.test", plan(&[addr.ip()])).await;
        assert_eq!(
            http_of(&r),
            (HttpVerdict::MalformedResponse, Some(Stage::Response)),
            "{endless:?}: {:#?}",
            r.http.as_ref().unwrap().evidence
        );
        let http = r.http.as_ref().unwrap();
        assert!(http.control.as_ref().unwrap().passed, "{endless:?}");
        let test = &http.attempts[0].observations.test;
        assert!(
            test.bytes_received < 1024 * 1024,
            "{endless:?}: {} bytes read from a flood",
            test.bytes_received
        );
        assert!(
            test.error.as_deref().is_some_and(|e| !e.is_empty()),
            "{endless:?}: the bound that was crossed is recorded"
        );
        let b = target_blocking(Some(&dns_ok()), r.http.as_ref(), None);
        assert_ne!(
            b.blocking,
            Blocking::At(BlockingLayer::Http),
            "{endless:?}: a flooding server is not a censor"
        );
    }
}

/// Under a low `RLIMIT_NOFILE` (64), many names against loopback servers: a shortage
/// of file descriptors makes work wait, it never becomes a verdict. The control's
/// sockets (plain UDP here: one socket per lookup) are inside the socket budget, so
/// no lookup fails with `EMFILE`, and every name gets its true verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_fd_limit_is_back_pressure_never_a_verdict() {
    use crate::support::{Behaviour, Report, args, fake_dns, json};
    use censorprobe::servers::ca::LabCa;
    let ip = lo(62);
    let dns = fake_dns(&[], Behaviour::a([127, 0, 0, 62])).await;
    let ca = LabCa::new("censorprobe fd-limit CA").unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("site{i}.test")).collect();
    let mut sans: Vec<&str> = names.iter().map(String::as_str).collect();
    sans.push("example.com");
    let (chain, key) = ca.issue(&sans, &[]).unwrap();
    let http = LabServer::spawn_http(SocketAddr::new(ip, 0), HttpLabConfig::default())
        .await
        .unwrap();
    let tls = LabServer::spawn_tls(
        SocketAddr::new(ip, 0),
        TlsLabConfig::new(TlsIdentity { chain, key }),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write_pem(&ca_file).unwrap();
    let list = dir.path().join("targets.txt");
    std::fs::write(&list, names.join("\n")).unwrap();
    let (resolver, control) = (dns.to_string(), format!("udp:{dns}"));
    let (http_port, tls_port) = (
        http.local_addr().port().to_string(),
        tls.local_addr().port().to_string(),
    );
    let mut command = vec!["--nofile=64:64", crate::support::BIN];
    command.extend([
        "scan",
        "--quiet",
        "--targets",
        list.to_str().unwrap(),
        "--resolver",
        &resolver,
        "--control",
        &control,
        "--dns-wait",
        "200ms",
        "--ca",
        ca_file.to_str().unwrap(),
        "--http-port",
        &http_port,
        "--tls-port",
        &tls_port,
        "--web-timeout",
        "5s",
    ]);
    let output = tokio::process::Command::new("prlimit")
        .args(args(&command))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("prlimit (util-linux) runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report = Report::parse(&stdout);
    assert_eq!(report.targets.len(), names.len());
    let mut wrong = Vec::new();
    for record in &report.targets {
        let verdicts = (
            record.dns_verdict(),
            record.http.as_ref().map(|http| http.verdict),
            record.tls.as_ref().map(|tls| tls.verdict),
            record.blocking,
        );
        if verdicts
            != (
                Some(DnsVerdict::Ok),
                Some(HttpVerdict::Ok),
                Some(TlsVerdict::Ok),
                Blocking::No,
            )
        {
            wrong.push(format!(
                "{}: {verdicts:?} {}",
                record.domain,
                json(record)["dns"]["evidence"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} names wrong under RLIMIT_NOFILE 64, e.g. {:#?}",
        wrong.len(),
        names.len(),
        &wrong[..wrong.len().min(3)]
    );
}

/// A network namespace of this test's own with only `lo` up, deleted on drop: nothing
/// sent to a public address from inside it leaves the machine (`ENETUNREACH`).
struct IsolatedNamespace(String);

impl IsolatedNamespace {
    fn new(tag: &str) -> Self {
        use censorprobe::lab::netns;
        assert!(
            netns::is_root(),
            "this test needs root: it runs the probe in a network namespace of its own"
        );
        let name = format!("cpweb-{tag}-{}", std::process::id());
        netns::run("ip", &["netns", "add", &name], None).expect("ip netns add");
        let ns = IsolatedNamespace(name);
        netns::run("ip", &["-n", &ns.0, "link", "set", "lo", "up"], None).expect("lo up");
        ns
    }
}

impl Drop for IsolatedNamespace {
    fn drop(&mut self) {
        let _ = censorprobe::lab::netns::run("ip", &["netns", "del", &self.0], None);
    }
}

/// "TLS as proof" of an answer of 2,000 addresses (a censor's, say): a handful of
/// handshakes at most, never to a bogon (the lab's 198.18.0.0/15 included), and the
/// addresses not tried are recorded as evidence, with the count and the reason. The
/// probe runs in a namespace with no route out, so no handshake leaves the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_as_proof_is_capped_and_skips_bogons_with_evidence() {
    use crate::support::{Behaviour, Report, args, fake_dns, json};
    use censorprobe::ipclass::is_bogon;
    let ns = IsolatedNamespace::new("proof");
    // 1,990 public addresses (11.0.0.0/8, unreachable from the namespace) and ten in
    // the lab's range, which the control's answer shares.
    let mut answer: Vec<Ipv4Addr> = (0..1990u32)
        .map(|i| Ipv4Addr::from(0x0B00_0000 + i))
        .collect();
    for i in 0..10u8 {
        answer.insert(usize::from(i) * 7, Ipv4Addr::new(198, 18, 9, i));
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ns_name = ns.0.clone();
    let servers = std::thread::spawn(move || {
        censorprobe::lab::netns::enter(&ns_name).expect("enter the namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let resolver = fake_dns(
                &[(
                    "cdn.test",
                    Behaviour::Answers(vec![(Duration::ZERO, answer)]),
                )],
                Behaviour::Nxdomain,
            )
            .await;
            let control = fake_dns(
                &[("cdn.test", Behaviour::a([198, 18, 77, 1]))],
                Behaviour::Nxdomain,
            )
            .await;
            ready_tx.send((resolver, control)).unwrap();
            let _ = stop_rx.await;
        });
    });
    let (resolver, control) = ready_rx.recv().unwrap();
    let (resolver, control) = (resolver.to_string(), format!("udp:{control}"));
    let output = tokio::process::Command::new("ip")
        .args(args(&[
            "netns",
            "exec",
            &ns.0,
            crate::support::BIN,
            "scan",
            "--quiet",
            "--tests",
            "dns,tls",
            "--resolver",
            &resolver,
            "--control",
            &control,
            "--qtype",
            "A",
            "--dns-wait",
            "200ms",
            "--connect-timeout",
            "1s",
            "--web-timeout",
            "1s",
            "cdn.test",
        ]))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("ip netns exec runs");
    let _ = stop_tx.send(());
    servers.join().unwrap();
    drop(ns);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = Report::parse(&stdout);
    let cdn = json(report.target("cdn.test"));
    let dns = &cdn["dns"];
    let tried: Vec<IpAddr> = dns["tls_proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["ip"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        !tried.is_empty() && tried.len() <= 4,
        "{} handshakes for one name",
        tried.len()
    );
    assert!(
        tried.iter().all(|ip| !is_bogon(*ip)),
        "a bogon was contacted for proof: {tried:?}"
    );
    let skipped: Vec<&str> = dns["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "tls_proof_skipped")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    // The reply keeps its first records only (the rest are counted), and proof is
    // planned from what was kept: count the kept public and bogon addresses.
    let kept: Vec<IpAddr> = dns["queries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|q| q["replies"].as_array().unwrap())
        .flat_map(|r| r["answers"].as_array().unwrap())
        .filter_map(|a| a["data"].as_str().unwrap().parse().ok())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let kept_bogons = kept.iter().filter(|ip| is_bogon(**ip)).count();
    assert!(kept_bogons > 0 && kept.len() - kept_bogons > 4, "{kept:?}");
    let over_cap = kept.len() - kept_bogons - tried.len();
    assert!(
        skipped
            .iter()
            .any(|d| d.contains(&format!("{over_cap} address")) && d.contains("at most")),
        "{skipped:#?}"
    );
    assert!(
        skipped
            .iter()
            .any(|d| d.contains(&format!("{kept_bogons} address")) && d.contains("bogon")),
        "{skipped:#?}"
    );
    assert_eq!(
        report.target("cdn.test").dns_verdict(),
        Some(DnsVerdict::DnsPoisoning),
        "{dns:#}"
    );
}
