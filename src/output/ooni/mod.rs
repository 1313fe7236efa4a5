//! `--format ooni`: one OONI-style measurement per target record, so that tooling
//! written for OONI data can read censorprobe's.
//!
//! The layout follows ooni/spec's data formats: the base format's top-level keys,
//! `test_keys` in the shape of `web_connectivity` 0.4 with `queries` (df-002-dnst),
//! `tcp_connect` (df-005), `tls_handshakes` (df-006), `requests` (df-001) and
//! `network_events` (df-008), failure strings from df-007. What OONI has no key for is
//! kept under `x_` keys (permitted anywhere by the spec), and censorprobe's own verdicts
//! under `test_keys.x_censorprobe`. `reports/ooni-mapping.md` documents every key.
//!
//! The mapping reads the typed [`TargetRecord`] and builds the typed [`Measurement`]
//! ([`types`]; its structs declare their fields alphabetically, the order OONI output
//! has always had). [`web`] maps each address's test connection.

use crate::observation::{
    ControlObservation, ControlOutcome, DnsQueryObservation, DnsRecord, DnsServerRole,
};
use crate::record::{DnsSection, HeaderRecord, TargetRecord};
use crate::vocab::DnsVerdict;
use crate::vocab::{Blocking, BlockingLayer, HttpVerdict};

mod control;
pub mod sorted;
mod types;
mod web;

use sorted::views;
pub use types::{
    Annotations, AttemptKeys, ComparisonKeys, ControlDns, ControlHttpRequest, ControlKeys,
    ControlTcpConnect, DnsAnswer, DnsQuery, DnsVerdictKeys, Extensions, HttpTransaction,
    Measurement, NetworkEvent, StageAttempts, StageEvidence, StageVerdicts, TcpConnect,
    TestHelpers, TestKeys, TlsHandshake, WcBlocking, WebVerdictKeys, XCensorprobe,
};
use web::WebLists;

#[cfg(test)]
mod golden;

/// What every measurement of one run shares.
#[derive(Debug, Clone)]
pub struct OoniContext {
    pub report_id: String,
    pub test_start_time: String,
    pub software_version: String,
    pub resolver_ip: String,
    pub control: String,
    pub vantage: Option<String>,
}

/// `web_connectivity` test keys layout this mapping follows.
pub const TEST_VERSION: &str = "0.4.3";

impl OoniContext {
    pub fn from_header(header: &HeaderRecord) -> OoniContext {
        let start = ooni_time(&header.started_at).unwrap_or_default();
        let compact: String = start
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>();
        let stamp = if compact.len() == 14 {
            format!("{}T{}Z", &compact[..8], &compact[8..])
        } else {
            "00000000T000000Z".to_owned()
        };
        let random: String = {
            use rand::Rng;
            use rand::distr::Alphanumeric;
            rand::rng()
                .sample_iter(&Alphanumeric)
                .take(40)
                .map(char::from)
                .collect()
        };
        OoniContext {
            report_id: format!("{stamp}_webconnectivity_ZZ_0_n1_{random}"),
            test_start_time: start,
            software_version: header.version.clone(),
            resolver_ip: header.resolver.ip().to_string(),
            control: header.control.clone(),
            vantage: header.vantage.clone(),
        }
    }
}

/// RFC 3339 → OONI's `YYYY-MM-DD hh:mm:ss` in UTC.
pub fn ooni_time(rfc3339: &str) -> Option<String> {
    let parsed =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
            .ok()?
            .to_offset(time::UtcOffset::UTC);
    parsed
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .ok()
}

/// OONI failure string of a DNS reply's rcode.
fn dns_failure(rcode: &str, has_answer: bool) -> Option<&'static str> {
    match rcode {
        "NoError" if has_answer => None,
        "NoError" => Some("dns_no_answer"),
        "NXDomain" => Some("dns_nxdomain_error"),
        "ServFail" => Some("dns_servfail_error"),
        "Refused" => Some("dns_refused_error"),
        _ => Some("dns_server_misbehaving"),
    }
}

fn rcode_number(rcode: &str) -> Option<u8> {
    match rcode {
        "NoError" => Some(0),
        "FormErr" => Some(1),
        "ServFail" => Some(2),
        "NXDomain" => Some(3),
        "NotImp" => Some(4),
        "Refused" => Some(5),
        _ => None,
    }
}

fn answer(record: &DnsRecord) -> DnsAnswer {
    let data = || Some(record.data.clone());
    let mut answer = DnsAnswer {
        answer_type: record.rtype.clone(),
        hostname: None,
        ipv4: None,
        ipv6: None,
        ttl: record.ttl,
        x_data: None,
    };
    match record.rtype.as_str() {
        "A" => answer.ipv4 = data(),
        "AAAA" => answer.ipv6 = data(),
        "CNAME" | "PTR" | "NS" => {
            answer.hostname = Some(record.data.trim_end_matches('.').to_owned());
        }
        _ => answer.x_data = data(),
    }
    answer
}

/// The `queries` entries (and their `network_events`) of one DNS query: one per
/// reply, or one timeout when nothing answered.
fn dns_query(
    query: &DnsQueryObservation,
    transaction_id: usize,
    queries: &mut Vec<DnsQuery>,
    events: &mut Vec<NetworkEvent>,
) {
    let server = query.server.to_string();
    for _ in 0..query.attempts {
        events.push(NetworkEvent {
            address: Some(server.clone()),
            failure: None,
            num_bytes: None,
            operation: "write",
            proto: "udp",
            t: 0.0,
            t0: None,
            tags: None,
            transaction_id,
        });
    }
    let base = DnsQuery {
        answers: Vec::new(),
        engine: "udp",
        failure: None,
        hostname: query.qname.trim_end_matches('.').to_owned(),
        query_type: query.qtype.clone(),
        rcode: None,
        resolver_address: server,
        resolver_hostname: None,
        resolver_port: None,
        t: 0.0,
        t0: 0.0,
        transaction_id,
        x_dns_id: None,
        x_ip_ttl: None,
        x_question_matches: None,
        x_reply_from: None,
        x_role: query.role,
    };
    if query.replies.is_empty() {
        queries.push(DnsQuery {
            failure: Some("generic_timeout_error"),
            t: query.listened_ms / 1000.0,
            ..base.clone()
        });
    }
    for reply in &query.replies {
        let answers: Vec<DnsAnswer> = reply.answers.iter().map(answer).collect();
        let t = reply.elapsed_ms / 1000.0;
        let from = reply.from.to_string();
        queries.push(DnsQuery {
            failure: dns_failure(&reply.rcode, !answers.is_empty()),
            answers,
            rcode: Some(rcode_number(&reply.rcode)),
            t,
            x_reply_from: Some(from.clone()),
            x_ip_ttl: Some(reply.ip_ttl),
            x_dns_id: Some(reply.id),
            x_question_matches: Some(reply.question_matches),
            ..base.clone()
        });
        events.push(NetworkEvent {
            address: Some(from),
            failure: None,
            num_bytes: Some(reply.size as u64),
            operation: "read",
            proto: "udp",
            t,
            t0: None,
            tags: None,
            transaction_id,
        });
    }
}

/// WC's `control.dns` from the control resolution.
fn control_dns(control: &ControlObservation) -> ControlDns {
    let mut addrs = Vec::new();
    let mut failure = None;
    for answer in &control.answers {
        match &answer.outcome {
            ControlOutcome::Resolved { ips, .. } => addrs.extend(ips.iter().copied()),
            ControlOutcome::Nxdomain => failure = Some("dns_nxdomain_error".to_owned()),
            ControlOutcome::Error { message } if addrs.is_empty() => {
                failure = Some(format!("unknown_failure {message}"));
            }
            ControlOutcome::Error { .. } | ControlOutcome::NoData => {}
        }
    }
    if !addrs.is_empty() {
        failure = None;
    }
    ControlDns { addrs, failure }
}

/// WC's `blocking` from censorprobe's: `http` is `http-diff` for a block page or a
/// page unlike the web control's (`http_diff`) and `http-failure` otherwise; WC 0.4 has no TLS value, so `tls` is `http-failure` too.
fn wc_blocking(blocking: Blocking, http_verdict: Option<HttpVerdict>) -> WcBlocking {
    match blocking {
        Blocking::No => WcBlocking::No,
        Blocking::At(BlockingLayer::Http)
            if matches!(
                http_verdict,
                Some(HttpVerdict::Blockpage | HttpVerdict::HttpDiff)
            ) =>
        {
            WcBlocking::HttpDiff
        }
        Blocking::At(BlockingLayer::Http | BlockingLayer::Tls) => WcBlocking::HttpFailure,
        Blocking::At(layer) => WcBlocking::Layer(layer),
        Blocking::Inconclusive => WcBlocking::Inconclusive,
    }
}

/// The DNS stage's keys: `queries`, their `network_events` (in time order: they share
/// one clock, the target's start), `dns_experiment_failure`, `dns_consistency` and
/// WC's `control`.
#[derive(Debug, Default)]
struct DnsKeys {
    queries: Vec<DnsQuery>,
    events: Vec<NetworkEvent>,
    experiment_failure: Option<String>,
    consistency: Option<&'static str>,
    control: ControlKeys,
}

fn dns_keys(dns: Option<&DnsSection>) -> DnsKeys {
    let Some(dns) = dns else {
        return DnsKeys::default();
    };
    let mut keys = DnsKeys::default();
    for (index, query) in dns.queries.iter().enumerate() {
        dns_query(query, index + 1, &mut keys.queries, &mut keys.events);
    }
    keys.events.sort_by(|a, b| a.t.total_cmp(&b.t));
    keys.experiment_failure = keys
        .queries
        .iter()
        .find(|q| q.x_role == DnsServerRole::Resolver)
        .and_then(|q| q.failure.map(str::to_owned));
    keys.consistency = match dns.assessment.verdict {
        DnsVerdict::Ok | DnsVerdict::Nxdomain => Some("consistent"),
        DnsVerdict::DnsPoisoning => Some("inconsistent"),
        DnsVerdict::Timeout | DnsVerdict::Error | DnsVerdict::Inconclusive => None,
    };
    keys.control.dns = dns.control.as_ref().map(control_dns);
    keys
}

/// The web stages' keys: each test connection as OONI transactions, numbered after
/// the DNS queries' (the "TLS as proof" handshakes first).
#[derive(Debug)]
struct WebKeys<'a> {
    lists: WebLists<'a>,
    attempts: StageAttempts<'a>,
    http_experiment_failure: Option<String>,
}

fn web_keys(record: &TargetRecord) -> WebKeys<'_> {
    let dns_transactions = record.dns.as_ref().map_or(0, |d| d.queries.len());
    let mut lists = WebLists::new(dns_transactions + 1);
    if let Some(dns) = &record.dns {
        lists.tls_proof(&dns.tls_proof);
    }
    let mut attempts = StageAttempts::default();
    let mut http_experiment_failure = None;
    if let Some(http) = &record.http {
        let mapping = lists.http(http);
        http_experiment_failure = mapping.headline_failure;
        attempts.http = Some(mapping.attempts);
    }
    if let Some(tls) = &record.tls {
        attempts.tls = Some(lists.tls(tls).attempts);
    }
    WebKeys {
        lists,
        attempts,
        http_experiment_failure,
    }
}

/// `x_censorprobe.verdicts` and `.evidence`: each stage's headline verdict and its
/// evidence, as recorded.
fn verdict_keys(record: &TargetRecord) -> (StageVerdicts, StageEvidence<'_>) {
    let mut verdicts = StageVerdicts::default();
    let mut evidence = StageEvidence::default();
    if let Some(dns) = &record.dns {
        let assessment = &dns.assessment;
        verdicts.dns = Some(DnsVerdictKeys {
            forged_ips: assessment.forged_ips.clone(),
            method: assessment.method,
            methods: assessment.methods.clone(),
            verdict: assessment.verdict,
        });
        evidence.dns = Some(views(&assessment.evidence));
    }
    if let Some(http) = &record.http {
        verdicts.http = Some(WebVerdictKeys {
            residual: http.residual,
            stage: http.stage,
            verdict: http.verdict,
        });
        evidence.http = Some(views(&http.evidence));
    }
    if let Some(tls) = &record.tls {
        verdicts.tls = Some(WebVerdictKeys {
            residual: tls.residual,
            stage: tls.stage,
            verdict: tls.verdict,
        });
        evidence.tls = Some(views(&tls.evidence));
    }
    (verdicts, evidence)
}

fn annotations<'a>(record: &'a TargetRecord, context: &'a OoniContext) -> Annotations<'a> {
    Annotations {
        category_code: record.categories.first().map(String::as_str),
        engine_name: "censorprobe",
        engine_version: &context.software_version,
        vantage: context.vantage.as_deref(),
    }
}

/// The measurement's `input`: the target's URL when it was given as one.
fn input(record: &TargetRecord) -> String {
    record
        .sources
        .first()
        .map(|s| s.input_or(&record.domain))
        .filter(|i| i.contains("://"))
        .map_or_else(|| format!("http://{}/", record.domain), str::to_owned)
}

/// One OONI measurement from one target record.
pub fn measurement<'a>(record: &'a TargetRecord, context: &'a OoniContext) -> Measurement<'a> {
    let dns = dns_keys(record.dns.as_ref());
    let web = web_keys(record);
    let (verdicts, evidence) = verdict_keys(record);
    // A lean record (an `ok` name written without its observations) had its control.
    let lean = record.dns.as_ref().is_some_and(DnsSection::is_lean);
    let mut control_keys = dns.control;
    let control_failure = match &record.web_control {
        // With a web control, OONI's `control` is its view (the test helper's shape).
        Some(web_control) => {
            if let Some(helper) = web_control.result() {
                control_keys.dns = Some(control::helper_dns(helper));
                control_keys.tcp_connect = Some(control::helper_connects(helper));
                control_keys.http_request =
                    control::helper_http_request(helper, record.http.as_ref());
            }
            control::web_control_failure(web_control)
        }
        None => (control_keys.dns.is_none() && context.control != "none" && !lean)
            .then(|| "unknown_failure control unavailable".to_owned()),
    };
    let comparison = control::comparison(record);
    let mut network_events = dns.events;
    network_events.extend(web.lists.network_events);
    let test_keys = TestKeys {
        accessible: record.accessible,
        agent: "agent",
        blocking: wc_blocking(record.blocking, record.http.as_ref().map(|h| h.verdict)),
        body_length_match: comparison.body_length_match,
        body_proportion: comparison.body_proportion,
        client_resolver: &context.resolver_ip,
        control: control_keys,
        control_failure,
        dns_consistency: dns.consistency,
        dns_experiment_failure: dns.experiment_failure,
        headers_match: comparison.headers_match,
        http_experiment_failure: web.http_experiment_failure,
        network_events,
        queries: dns.queries,
        requests: web.lists.requests,
        retries: None,
        socksproxy: None,
        status_code_match: comparison.status_code_match,
        tcp_connect: web.lists.tcp_connect,
        title_match: comparison.title_match,
        tls_handshakes: web.lists.tls_handshakes,
        x_censorprobe: XCensorprobe {
            attempt: record.attempt,
            attempts: web.attempts,
            blocking: record.blocking,
            categories: &record.categories,
            evidence,
            unmapped: Vec::new(),
            verdicts,
        },
    };
    Measurement {
        annotations: annotations(record, context),
        data_format_version: "0.2.0",
        extensions: Extensions::default(),
        input: input(record),
        measurement_start_time: ooni_time(&record.started_at)
            .unwrap_or_else(|| context.test_start_time.clone()),
        probe_asn: "AS0",
        probe_cc: "ZZ",
        probe_ip: "127.0.0.1",
        probe_network_name: "",
        report_id: &context.report_id,
        resolver_asn: "AS0",
        resolver_ip: &context.resolver_ip,
        resolver_network_name: "",
        software_name: "censorprobe",
        software_version: &context.software_version,
        test_helpers: TestHelpers {
            control: (context.control != "none").then_some(context.control.as_str()),
        },
        test_keys,
        test_name: "web_connectivity",
        test_runtime: record.duration_ms / 1000.0,
        test_start_time: &context.test_start_time,
        test_version: TEST_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::RootCertStore;

    use crate::classify::blockpage::BlockpageSet;
    use crate::classify::web::target_blocking;
    use crate::observation::web::{AddressPlan, AddressSource};
    use crate::pathguard::{PathGuard, PathGuardConfig};
    use crate::probe::web::{ConnectionBudget, WebStage, WebStageConfig};
    use crate::record::assessment::DnsAssessment;
    use crate::servers::ca::LabCa;
    use crate::servers::web::{
        HttpBehaviour, HttpLabConfig, LabServer, TlsBehaviour, TlsIdentity, TlsLabConfig,
    };

    fn context() -> OoniContext {
        OoniContext {
            report_id: "20240501T101500Z_webconnectivity_ZZ_0_n1_x".into(),
            test_start_time: "2024-05-01 10:15:00".into(),
            software_version: "0.1.0".into(),
            resolver_ip: "198.18.0.53".into(),
            control: "udp:198.18.0.54:53".into(),
            vantage: Some("lab".into()),
        }
    }

    /// The measurement of a record written as JSON, as JSON.
    fn measure(record: &Value) -> Value {
        let record: TargetRecord = serde_json::from_value(record.clone()).unwrap();
        serde_json::to_value(measurement(&record, &context())).unwrap()
    }

    fn reply(elapsed_ms: f64, ip_ttl: u8, ttl: u32, data: &str) -> Value {
        json!({
            "from": "198.18.0.53:53", "elapsed_ms": elapsed_ms, "attempt": 1, "ip_ttl": ip_ttl,
            "size": 50, "id": 7, "rcode": "NoError", "question_matches": true,
            "answers": [{"name": "blocked.test.", "type": "A", "ttl": ttl, "data": data}],
            "flags": {"qr": true, "aa": false, "tc": false, "rd": true, "ra": true, "ad": false, "cd": false},
        })
    }

    fn injected_record() -> Value {
        let a_query = json!({
            "role": "resolver", "server": "198.18.0.53:53", "qname": "blocked.test.", "qtype": "A",
            "source_port": 40000, "ids": [7], "attempts": 1, "listened_ms": 1000.0,
            "replies": [reply(3.0, 60, 60, "10.10.34.34"), reply(80.0, 52, 300, "198.18.1.2")],
        });
        let aaaa_query = json!({
            "role": "resolver", "server": "198.18.0.53:53", "qname": "blocked.test.", "qtype": "AAAA",
            "source_port": 40000, "ids": [8, 9], "attempts": 2, "listened_ms": 2000.0, "replies": [],
        });
        let control = json!({"control": "udp:198.18.0.54:53", "answers": [
            {"qtype": "A", "status": "resolved", "ips": ["198.18.1.2"], "records": [], "elapsed_ms": 4.0}
        ]});
        let dns = json!({
            "verdict": "dns_poisoning", "method": "injection", "methods": ["injection"],
            "forged_ips": ["10.10.34.34"],
            "evidence": [{"kind": "disagreeing_replies", "detail": "two answers"}],
            "resolver": "198.18.0.53:53",
            "queries": [a_query, aaaa_query],
            "control": control,
        });
        json!({
            "record": "target",
            "domain": "blocked.test",
            "sources": [{"source": "cli", "input": "blocked.test"}],
            "categories": ["NEWS"],
            "started_at": "2024-05-01T10:15:02.5Z",
            "duration_ms": 1250.0,
            "dns": dns,
            "blocking": "dns",
            "accessible": false,
        })
    }

    #[test]
    fn dns_stage_maps_to_queries_and_network_events() {
        let m = measure(&injected_record());
        assert_eq!(m["test_name"], "web_connectivity");
        assert_eq!(m["input"], "http://blocked.test/");
        assert_eq!(m["measurement_start_time"], "2024-05-01 10:15:02");
        assert_eq!(m["probe_cc"], "ZZ");
        assert_eq!(m["annotations"]["category_code"], "NEWS");
        assert!((m["test_runtime"].as_f64().unwrap() - 1.25).abs() < 1e-9);
        let keys = &m["test_keys"];
        let queries = keys["queries"].as_array().unwrap();
        assert_eq!(queries.len(), 3, "two replies and one unanswered query");
        assert_eq!(queries[0]["answers"][0]["ipv4"], "10.10.34.34");
        assert_eq!(queries[0]["hostname"], "blocked.test");
        assert_eq!(queries[0]["engine"], "udp");
        assert_eq!(queries[0]["failure"], Value::Null);
        assert_eq!(queries[1]["answers"][0]["ipv4"], "198.18.1.2");
        assert_eq!(queries[1]["x_ip_ttl"], 52);
        assert_eq!(queries[0]["transaction_id"], queries[1]["transaction_id"]);
        assert_eq!(queries[2]["failure"], "generic_timeout_error");
        assert_eq!(queries[2]["query_type"], "AAAA");
        let events = keys["network_events"].as_array().unwrap();
        let ops: Vec<&str> = events
            .iter()
            .map(|e| e["operation"].as_str().unwrap())
            .collect();
        assert_eq!(ops.iter().filter(|o| **o == "write").count(), 3);
        assert_eq!(ops.iter().filter(|o| **o == "read").count(), 2);
        assert_eq!(keys["dns_consistency"], "inconsistent");
        assert_eq!(keys["blocking"], "dns");
        assert_eq!(keys["accessible"], false);
        assert_eq!(keys["control"]["dns"]["addrs"], json!(["198.18.1.2"]));
        assert_eq!(keys["control_failure"], Value::Null);
        assert_eq!(
            keys["x_censorprobe"]["verdicts"]["dns"]["method"],
            "injection"
        );
        assert_eq!(keys["tcp_connect"], json!([]));
    }

    // ---- The web stages, from records made by the real probes on loopback servers.

    const NAMES: &[&str] = &[
        "example.com",
        "good.test",
        "blocked.test",
        "close.test",
        "silent.test",
        "alert.test",
        "wrong.test",
    ];

    fn lo(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    /// HTTP and TLS lab servers on one loopback address, certificates from a lab CA
    /// valid for [`NAMES`], and a web stage that trusts that CA.
    struct Lab {
        ip: IpAddr,
        http: LabServer,
        tls: LabServer,
        ca: LabCa,
    }

    impl Lab {
        async fn start(
            ip: IpAddr,
            http: HttpLabConfig,
            tls: impl FnOnce(TlsLabConfig) -> TlsLabConfig,
        ) -> Lab {
            let ca = LabCa::new("censorprobe ooni test CA").unwrap();
            let (chain, key) = ca.issue(NAMES, &[]).unwrap();
            let tls = tls(TlsLabConfig::new(TlsIdentity { chain, key }));
            Lab {
                ip,
                http: LabServer::spawn_http(SocketAddr::new(ip, 0), http)
                    .await
                    .unwrap(),
                tls: LabServer::spawn_tls(SocketAddr::new(ip, 0), tls)
                    .await
                    .unwrap(),
                ca,
            }
        }

        fn stage(&self, http_port: u16, tls_port: u16) -> WebStage {
            let mut config = WebStageConfig {
                http_port,
                tls_port,
                ..WebStageConfig::default()
            };
            config.http.connect_timeout = Duration::from_millis(500);
            config.http.response_timeout = Duration::from_millis(500);
            config.tls.connect_timeout = Duration::from_millis(500);
            config.tls.handshake_timeout = Duration::from_millis(500);
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.cert_der()).unwrap();
            WebStage::new(
                config,
                Arc::new(roots),
                PathGuard::new(PathGuardConfig {
                    residual_wait: Duration::from_secs(5),
                    recheck_initial: Duration::from_millis(50),
                    recheck_max: Duration::from_millis(200),
                }),
                ConnectionBudget::new(64),
            )
            .unwrap()
        }

        fn web(&self) -> WebStage {
            self.stage(self.http.local_addr().port(), self.tls.local_addr().port())
        }

        /// The OONI measurement of `domain` probed by the real web stage, in a record
        /// with `dns` (or no DNS stage).
        async fn measure(&self, web: &WebStage, domain: &str, dns: Option<Value>) -> Value {
            let plan = Ok(AddressPlan {
                source: AddressSource::Pinned,
                ips: vec![self.ip],
            });
            let result = crate::classify::web::judge_web(
                web.observe_target(domain, plan).await,
                &web.config().control_name,
                &BlockpageSet::builtin(),
            );
            let dns_assessment: Option<DnsAssessment> = dns
                .as_ref()
                .map(|d| serde_json::from_value(d.clone()).unwrap());
            let blocking = target_blocking(
                dns_assessment.as_ref(),
                result.http.as_ref(),
                result.tls.as_ref(),
            );
            let mut record = injected_record();
            record["domain"] = domain.into();
            record["sources"] = json!([{"source": "cli", "input": domain}]);
            record["dns"] = dns.unwrap_or(Value::Null);
            record["addresses"] = serde_json::to_value(&result.addresses).unwrap();
            record["http"] = serde_json::to_value(&result.http).unwrap();
            record["tls"] = serde_json::to_value(&result.tls).unwrap();
            record["blocking"] = serde_json::to_value(blocking.blocking).unwrap();
            record["accessible"] = serde_json::to_value(blocking.accessible).unwrap();
            measure(&record)
        }
    }

    fn events_of(keys: &Value, transaction_id: &Value) -> Vec<(String, Value)> {
        keys["network_events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| &e["transaction_id"] == transaction_id)
            .map(|e| (e["operation"].as_str().unwrap().to_owned(), e.clone()))
            .collect()
    }

    fn operations(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(op, _)| op.as_str()).collect()
    }

    #[tokio::test]
    async fn good_site_maps_to_successful_connects_request_and_handshake() {
        let lab = Lab::start(lo(61), HttpLabConfig::default(), |c| c).await;
        let m = lab.measure(&lab.web(), "good.test", None).await;
        let keys = &m["test_keys"];
        assert_eq!(keys["x_censorprobe"]["unmapped"], json!([]), "{m:#}");

        let connects = keys["tcp_connect"].as_array().unwrap();
        assert_eq!(connects.len(), 2, "one test connection per stage: {m:#}");
        assert_eq!(connects[0]["ip"], "127.0.0.61");
        assert_eq!(connects[0]["port"], lab.http.local_addr().port());
        assert_eq!(connects[1]["port"], lab.tls.local_addr().port());
        for c in connects {
            assert_eq!(
                c["status"],
                json!({"failure": null, "success": true, "blocked": false})
            );
        }
        assert_eq!(
            connects[0]["transaction_id"], 1,
            "no DNS stage: transactions start at 1"
        );

        let request = &keys["requests"][0];
        assert_eq!(request["failure"], Value::Null);
        assert_eq!(
            request["address"],
            format!("127.0.0.61:{}", lab.http.local_addr().port())
        );
        assert_eq!(request["request"]["method"], "GET");
        let sent: Vec<&str> = request["request"]["headers_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap())
            .collect();
        assert_eq!(sent, ["Host", "User-Agent", "Accept", "Connection"]);
        assert_eq!(request["request"]["headers"]["Host"], "good.test");
        assert_eq!(request["response"]["code"], 200);
        assert_eq!(request["response"]["x_title"], "censorprobe lab: good.test");
        let received = request["response"]["headers_list"].as_array().unwrap();
        assert!(!received.is_empty(), "{request:#}");
        let first = &received[0];
        assert_eq!(
            request["response"]["headers"][first[0].as_str().unwrap()],
            first[1]
        );
        assert!(request["response"]["x_body_length"].as_u64().unwrap() > 0);

        let handshake = &keys["tls_handshakes"][0];
        assert_eq!(handshake["failure"], Value::Null);
        assert_eq!(handshake["server_name"], "good.test");
        assert_eq!(handshake["tls_version"], "TLSv1.3");
        let cipher = handshake["cipher_suite"].as_str().unwrap();
        assert!(
            cipher.starts_with("TLS_AES_") || cipher.starts_with("TLS_CHACHA20_"),
            "{cipher}"
        );
        assert_eq!(handshake["negotiated_protocol"], "http/1.1");
        assert_eq!(handshake["peer_certificates"], json!([]));
        assert_eq!(
            handshake["x_peer_certificates"].as_array().unwrap().len(),
            2,
            "leaf and CA as served"
        );
        assert_eq!(handshake["transaction_id"], connects[1]["transaction_id"]);
        assert!(handshake["t"].as_f64().unwrap() >= handshake["t0"].as_f64().unwrap());

        for (transaction, first_read) in [
            (
                &request["transaction_id"],
                request["response"]["x_body_length"].as_u64().unwrap(),
            ),
            (&handshake["transaction_id"], 1),
        ] {
            let events = events_of(keys, transaction);
            assert_eq!(operations(&events), ["connect", "write", "read"], "{m:#}");
            assert!(events.iter().all(|(_, e)| e["failure"].is_null()));
            assert!(events[1].1["num_bytes"].as_u64().unwrap() > 0);
            assert!(events[2].1["num_bytes"].as_u64().unwrap() >= first_read);
        }
        assert_eq!(keys["http_experiment_failure"], Value::Null);
        assert_eq!(keys["blocking"], false);
        assert_eq!(keys["accessible"], true);
    }

    #[tokio::test]
    async fn resets_map_to_connection_reset_after_the_dns_transactions() {
        let lab = Lab::start(
            lo(62),
            HttpLabConfig::default().on("blocked.test", HttpBehaviour::Reset),
            |c| c.on("blocked.test", TlsBehaviour::Reset),
        )
        .await;
        let dns = injected_record()["dns"].clone();
        let m = lab.measure(&lab.web(), "blocked.test", Some(dns)).await;
        let keys = &m["test_keys"];
        assert_eq!(keys["queries"].as_array().unwrap().len(), 3);

        let connects = keys["tcp_connect"].as_array().unwrap();
        assert_eq!(connects.len(), 2);
        assert_eq!(
            connects[0]["status"]["success"], true,
            "the connect worked; the reset came after the request"
        );
        assert_eq!(connects[0]["status"]["blocked"], false);
        assert_eq!(
            connects[0]["transaction_id"], 3,
            "after the two DNS queries' transactions"
        );

        let request = &keys["requests"][0];
        assert_eq!(request["failure"], "connection_reset");
        assert_eq!(request["x_failed_at"], "request");
        assert_eq!(request["response"]["code"], 0);
        assert_eq!(request["response"]["headers_list"], json!([]));
        let events = events_of(keys, &request["transaction_id"]);
        assert_eq!(operations(&events), ["connect", "write", "read"]);
        assert_eq!(events[1].1["failure"], Value::Null, "the request went out");
        assert_eq!(events[2].1["failure"], "connection_reset");
        assert_eq!(events[2].1["num_bytes"], 0);

        let handshake = &keys["tls_handshakes"][0];
        assert_eq!(handshake["failure"], "connection_reset");
        assert_eq!(handshake["server_name"], "blocked.test");
        assert_eq!(handshake["tls_version"], "");
        assert_eq!(handshake["x_progress"], "client_hello_sent");

        assert_eq!(keys["http_experiment_failure"], "connection_reset");
        let attempts = &keys["x_censorprobe"]["attempts"];
        assert_eq!(attempts["http"][0]["verdict"], "rst_injection");
        assert_eq!(attempts["http"][0]["stage"], "request");
        assert_eq!(attempts["http"][0]["control"]["passed"], true);
        assert_eq!(attempts["http"][0]["residual"], false);
        assert_eq!(
            attempts["http"][0]["transaction_id"],
            request["transaction_id"]
        );
        assert_eq!(attempts["tls"][0]["verdict"], "rst_injection");
        assert_eq!(attempts["tls"][0]["failure"], "connection_reset");
        assert_eq!(
            keys["x_censorprobe"]["verdicts"]["http"]["verdict"],
            "rst_injection"
        );
        assert_eq!(keys["dns_consistency"], "inconsistent");
    }

    #[tokio::test]
    async fn closes_silence_alerts_and_certificates_map_to_their_failures() {
        let lab = Lab::start(
            lo(63),
            HttpLabConfig::default()
                .on("close.test", HttpBehaviour::Close)
                .on("silent.test", HttpBehaviour::Silent),
            |c| {
                c.on("close.test", TlsBehaviour::Close)
                    .on("alert.test", TlsBehaviour::Alert)
                    .on("wrong.test", TlsBehaviour::WrongCert)
            },
        )
        .await;
        let web = lab.web();
        let request_failure = |m: &Value| m["test_keys"]["requests"][0]["failure"].clone();
        let handshake = |m: &Value| m["test_keys"]["tls_handshakes"][0].clone();

        let closed = lab.measure(&web, "close.test", None).await;
        assert_eq!(request_failure(&closed), "eof_error");
        assert_eq!(handshake(&closed)["failure"], "eof_error");

        let silent = lab.measure(&web, "silent.test", None).await;
        assert_eq!(request_failure(&silent), "generic_timeout_error");

        let alert = lab.measure(&web, "alert.test", None).await;
        assert_eq!(handshake(&alert)["failure"], "ssl_failed_handshake");
        assert_eq!(
            handshake(&alert)["x_alert"]["description"],
            "no_application_protocol"
        );

        // A chain from nobody's CA, and a chain from the trusted CA for other names.
        let wrong = lab.measure(&web, "wrong.test", None).await;
        assert_eq!(handshake(&wrong)["failure"], "ssl_unknown_authority");
        assert_eq!(handshake(&wrong)["x_validity"]["valid"], false);
        let other = lab.measure(&web, "other.test", None).await;
        assert_eq!(handshake(&other)["failure"], "ssl_invalid_hostname");
        assert_eq!(handshake(&other)["tls_version"], "TLSv1.3");
        assert_eq!(
            other["test_keys"]["x_censorprobe"]["verdicts"]["tls"]["verdict"],
            "cert_invalid"
        );
    }

    #[tokio::test]
    async fn refused_connects_have_no_handshake_and_an_empty_response() {
        let lab = Lab::start(lo(64), HttpLabConfig::default(), |c| c).await;
        let closed = crate::servers::web::closed_port(lab.ip).unwrap().port();
        let m = lab
            .measure(&lab.stage(closed, closed), "good.test", None)
            .await;
        let keys = &m["test_keys"];
        let connects = keys["tcp_connect"].as_array().unwrap();
        assert_eq!(connects.len(), 2);
        for c in connects {
            assert_eq!(c["port"], closed);
            assert_eq!(c["status"]["failure"], "connection_refused");
            assert_eq!(c["status"]["success"], false);
            assert_eq!(
                c["status"]["blocked"], false,
                "a refused connect with a failing control claims no blocking"
            );
        }
        assert_eq!(
            keys["tls_handshakes"],
            json!([]),
            "no handshake without a connection"
        );
        assert_eq!(keys["requests"][0]["failure"], "connection_refused");
        assert_eq!(keys["requests"][0]["response"]["code"], 0);
        let events = keys["network_events"].as_array().unwrap();
        assert!(
            events.iter().all(|e| e["operation"] == "connect"),
            "nothing read or written: {m:#}"
        );
        assert_eq!(keys["http_experiment_failure"], "connection_refused");
    }

    #[test]
    fn unreadable_web_sections_are_refused_by_the_record_type_not_guessed() {
        // The mapping reads the typed record, so a web section that is not the web
        // stage's assessment never reaches it: the record itself does not parse.
        let mut record = injected_record();
        record["http"] = json!({"verdict": "rst_injection", "ip": "198.18.1.2", "port": 80});
        let error = serde_json::from_value::<TargetRecord>(record).unwrap_err();
        assert!(error.to_string().contains("missing field"), "{error}");
        // A readable record leaves nothing unmapped.
        let m = measure(&injected_record());
        assert_eq!(m["test_keys"]["x_censorprobe"]["unmapped"], json!([]));
    }

    #[test]
    fn times() {
        assert_eq!(
            ooni_time("2024-05-01T12:00:00+02:00").as_deref(),
            Some("2024-05-01 10:00:00")
        );
        assert_eq!(ooni_time("yesterday"), None);
    }
}
