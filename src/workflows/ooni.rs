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
//! The record is read as JSON. The `http` and `tls` objects (and the DNS stage's
//! `tls_proof` handshakes) are read back into the web stage's own types
//! ([`HttpAssessment`], [`TlsAssessment`], [`TlsObservation`]), so the mapping follows
//! the record's real shape; [`web`] maps each address's test connection.

use serde_json::{Map, Value, json};

use crate::classify::web::{HttpAssessment, TlsAssessment};
use crate::report::HeaderRecord;
use crate::web::observation::TlsObservation;

mod web;

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

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn ms_to_s(value: Option<&Value>) -> f64 {
    value.and_then(Value::as_f64).unwrap_or(0.0) / 1000.0
}

/// OONI failure string of a DNS reply's rcode.
fn dns_failure(rcode: &str, has_answer: bool) -> Value {
    match rcode {
        "NoError" if has_answer => Value::Null,
        "NoError" => "dns_no_answer".into(),
        "NXDomain" => "dns_nxdomain_error".into(),
        "ServFail" => "dns_servfail_error".into(),
        "Refused" => "dns_refused_error".into(),
        _ => "dns_server_misbehaving".into(),
    }
}

fn rcode_number(rcode: &str) -> Value {
    match rcode {
        "NoError" => 0.into(),
        "FormErr" => 1.into(),
        "ServFail" => 2.into(),
        "NXDomain" => 3.into(),
        "NotImp" => 4.into(),
        "Refused" => 5.into(),
        _ => Value::Null,
    }
}

fn answer(record: &Value) -> Value {
    let rtype = str_at(record, "type").unwrap_or_default();
    let data = str_at(record, "data").unwrap_or_default();
    let mut answer =
        json!({ "answer_type": rtype, "ttl": record.get("ttl").cloned().unwrap_or(Value::Null) });
    match rtype {
        "A" => answer["ipv4"] = data.into(),
        "AAAA" => answer["ipv6"] = data.into(),
        "CNAME" | "PTR" | "NS" => answer["hostname"] = data.trim_end_matches('.').into(),
        _ => answer["x_data"] = data.into(),
    }
    answer
}

/// `queries` and their `network_events` from the DNS stage.
fn dns_queries(dns: &Value, queries: &mut Vec<Value>, events: &mut Vec<Value>) {
    let Some(list) = dns.get("queries").and_then(Value::as_array) else {
        return;
    };
    for (index, query) in list.iter().enumerate() {
        let transaction_id = index + 1;
        let server = str_at(query, "server").unwrap_or_default();
        let qtype = str_at(query, "qtype").unwrap_or_default();
        let hostname = str_at(query, "qname")
            .unwrap_or_default()
            .trim_end_matches('.');
        let attempts = query.get("attempts").and_then(Value::as_u64).unwrap_or(0);
        for _ in 0..attempts {
            events.push(json!({
                "address": server, "failure": null, "operation": "write",
                "proto": "udp", "t": 0.0, "transaction_id": transaction_id,
            }));
        }
        let base = json!({
            "engine": "udp",
            "hostname": hostname,
            "query_type": qtype,
            "resolver_address": server,
            "resolver_hostname": null,
            "resolver_port": null,
            "t0": 0.0,
            "transaction_id": transaction_id,
            "x_role": query.get("role").cloned().unwrap_or(Value::Null),
        });
        let replies = query
            .get("replies")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if replies.is_empty() {
            let mut entry = base.clone();
            entry["answers"] = json!([]);
            entry["failure"] = "generic_timeout_error".into();
            entry["t"] = ms_to_s(query.get("listened_ms")).into();
            queries.push(entry);
        }
        for reply in replies {
            let answers: Vec<Value> = reply
                .get("answers")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(answer).collect())
                .unwrap_or_default();
            let rcode = str_at(reply, "rcode").unwrap_or_default();
            let t = ms_to_s(reply.get("elapsed_ms"));
            let mut entry = base.clone();
            entry["failure"] = dns_failure(rcode, !answers.is_empty());
            entry["answers"] = answers.into();
            entry["rcode"] = rcode_number(rcode);
            entry["t"] = t.into();
            for (from, to) in [
                ("from", "x_reply_from"),
                ("ip_ttl", "x_ip_ttl"),
                ("id", "x_dns_id"),
                ("question_matches", "x_question_matches"),
            ] {
                entry[to] = reply.get(from).cloned().unwrap_or(Value::Null);
            }
            queries.push(entry);
            events.push(json!({
                "address": reply.get("from").cloned().unwrap_or(Value::Null),
                "failure": null, "num_bytes": reply.get("size").cloned().unwrap_or(Value::Null),
                "operation": "read", "proto": "udp", "t": t, "transaction_id": transaction_id,
            }));
        }
    }
}

/// WC's `control.dns` from the control resolution.
fn control_dns(dns: &Value) -> Option<Value> {
    let answers = dns.get("control")?.get("answers")?.as_array()?;
    let mut addrs = Vec::new();
    let mut failure = Value::Null;
    for answer in answers {
        match str_at(answer, "status") {
            Some("resolved") => {
                if let Some(ips) = answer.get("ips").and_then(Value::as_array) {
                    addrs.extend(ips.iter().cloned());
                }
            }
            Some("nxdomain") => failure = "dns_nxdomain_error".into(),
            Some("error") if addrs.is_empty() => {
                failure = str_at(answer, "message")
                    .map_or("unknown_failure".into(), |m| format!("unknown_failure {m}"))
                    .into();
            }
            _ => {}
        }
    }
    if !addrs.is_empty() {
        failure = Value::Null;
    }
    Some(json!({ "addrs": addrs, "failure": failure }))
}

/// WC's `blocking` from censorprobe's: `http` is `http-diff` for a block page and
/// `http-failure` otherwise; WC 0.4 has no TLS value, so `tls` is `http-failure` too.
fn wc_blocking(blocking: &Value, http_verdict: Option<&str>) -> Value {
    match blocking.as_str() {
        Some("http") if http_verdict == Some("blockpage") => "http-diff".into(),
        Some("http" | "tls") => "http-failure".into(),
        Some(other) => other.into(),
        None => blocking.clone(),
    }
}

/// One OONI measurement from one target record (as JSON).
pub fn measurement(record: &Value, context: &OoniContext) -> Value {
    let domain = str_at(record, "domain").unwrap_or_default();
    let input = record
        .get("sources")
        .and_then(Value::as_array)
        .and_then(|s| s.iter().find_map(|s| str_at(s, "input")))
        .filter(|i| i.contains("://"))
        .map_or_else(|| format!("http://{domain}/"), str::to_owned);
    let outcome = super::outcome::TargetOutcome::from_value(record).ok();

    let mut keys = Map::new();
    for list in [
        "queries",
        "tcp_connect",
        "tls_handshakes",
        "requests",
        "network_events",
    ] {
        keys.insert(list.to_owned(), Value::Array(Vec::new()));
    }
    let mut events = Vec::new();
    let dns = record.get("dns").filter(|d| d.is_object());
    let mut dns_failure_value = Value::Null;
    let mut dns_consistency = Value::Null;
    let mut control = Map::new();
    if let Some(dns) = dns {
        let mut queries = Vec::new();
        dns_queries(dns, &mut queries, &mut events);
        dns_failure_value = queries
            .iter()
            .find(|q| q["x_role"] == "resolver")
            .map_or(Value::Null, |q| q["failure"].clone());
        keys.insert("queries".to_owned(), queries.into());
        dns_consistency = match str_at(dns, "verdict") {
            Some("ok" | "nxdomain") => "consistent".into(),
            Some("dns_poisoning") => "inconsistent".into(),
            _ => Value::Null,
        };
        if let Some(control_dns) = control_dns(dns) {
            control.insert("dns".to_owned(), control_dns);
        }
    }
    // DNS events share one clock (the target's start): in time order. Web events
    // follow, connection by connection (each timed from its own start).
    events.sort_by(|a, b| {
        a["t"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["t"].as_f64().unwrap_or(0.0))
    });
    let dns_transactions = dns
        .and_then(|d| d.get("queries"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut web = web::WebLists::new(dns_transactions + 1);
    let mut unmapped = Vec::new();
    if let Some(proof) = dns.and_then(|d| d.get("tls_proof")) {
        match serde_json::from_value::<Vec<TlsObservation>>(proof.clone()) {
            Ok(handshakes) => web.tls_proof(&handshakes),
            Err(e) => unmapped.push(format!("dns.tls_proof: {e}")),
        }
    }
    let mut attempts = Map::new();
    let mut http_failure = Value::Null;
    if let Some(section) = record.get("http").filter(|s| s.is_object()) {
        match serde_json::from_value::<HttpAssessment>(section.clone()) {
            Ok(assessment) => {
                let mapping = web.http(&assessment);
                http_failure = mapping.headline_failure.map_or(Value::Null, Value::from);
                attempts.insert("http".to_owned(), mapping.attempts.into());
            }
            Err(e) => unmapped.push(format!("http: {e}")),
        }
    }
    if let Some(section) = record.get("tls").filter(|s| s.is_object()) {
        match serde_json::from_value::<TlsAssessment>(section.clone()) {
            Ok(assessment) => {
                let mapping = web.tls(&assessment);
                attempts.insert("tls".to_owned(), mapping.attempts.into());
            }
            Err(e) => unmapped.push(format!("tls: {e}")),
        }
    }
    events.append(&mut web.network_events);
    keys.insert("network_events".to_owned(), events.into());
    keys.insert("tcp_connect".to_owned(), web.tcp_connect.into());
    keys.insert("tls_handshakes".to_owned(), web.tls_handshakes.into());
    keys.insert("requests".to_owned(), web.requests.into());

    let blocking = outcome
        .as_ref()
        .map_or(Value::Null, |o| o.blocking.to_json());
    let http_verdict = record.get("http").and_then(|h| str_at(h, "verdict"));
    let control_failure = if control.is_empty() && context.control != "none" {
        Value::from("unknown_failure control unavailable")
    } else {
        Value::Null
    };
    let mut verdicts = Map::new();
    let mut evidence = Map::new();
    for stage in super::outcome::STAGES {
        if let Some(section) = record.get(stage).filter(|s| s.is_object()) {
            let mut v = Map::new();
            for key in [
                "verdict",
                "method",
                "methods",
                "stage",
                "residual",
                "forged_ips",
            ] {
                if let Some(value) = section.get(key) {
                    v.insert(key.to_owned(), value.clone());
                }
            }
            verdicts.insert(stage.to_owned(), v.into());
            if let Some(items) = section.get("evidence") {
                evidence.insert(stage.to_owned(), items.clone());
            }
        }
    }
    keys.extend([
        ("agent".to_owned(), "agent".into()),
        (
            "client_resolver".to_owned(),
            context.resolver_ip.clone().into(),
        ),
        ("retries".to_owned(), Value::Null),
        ("socksproxy".to_owned(), Value::Null),
        ("dns_experiment_failure".to_owned(), dns_failure_value),
        ("dns_consistency".to_owned(), dns_consistency),
        ("control_failure".to_owned(), control_failure),
        ("control".to_owned(), control.into()),
        ("http_experiment_failure".to_owned(), http_failure),
        ("blocking".to_owned(), wc_blocking(&blocking, http_verdict)),
        (
            "accessible".to_owned(),
            outcome
                .as_ref()
                .and_then(|o| o.accessible)
                .map_or(Value::Null, Value::from),
        ),
        (
            "x_censorprobe".to_owned(),
            json!({
                "blocking": blocking,
                "verdicts": verdicts,
                "evidence": evidence,
                "attempts": attempts,
                "attempt": record.get("attempt").cloned().unwrap_or(Value::Null),
                "categories": record.get("categories").cloned().unwrap_or_else(|| json!([])),
                "unmapped": unmapped,
            }),
        ),
    ]);

    let mut annotations = json!({
        "engine_name": "censorprobe",
        "engine_version": context.software_version,
    });
    if let Some(vantage) = &context.vantage {
        annotations["vantage"] = vantage.clone().into();
    }
    if let Some(category) = record
        .get("categories")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(Value::as_str)
    {
        annotations["category_code"] = category.into();
    }
    let measurement_start_time = str_at(record, "started_at")
        .and_then(ooni_time)
        .unwrap_or_else(|| context.test_start_time.clone());
    json!({
        "annotations": annotations,
        "data_format_version": "0.2.0",
        "extensions": { "dnst": 0, "httpt": 0, "netevents": 0, "tcpconnect": 0, "tlshandshake": 0 },
        "input": input,
        "measurement_start_time": measurement_start_time,
        "probe_asn": "AS0",
        "probe_cc": "ZZ",
        "probe_ip": "127.0.0.1",
        "probe_network_name": "",
        "report_id": context.report_id,
        "resolver_asn": "AS0",
        "resolver_ip": context.resolver_ip,
        "resolver_network_name": "",
        "software_name": "censorprobe",
        "software_version": context.software_version,
        "test_helpers": if context.control == "none" { json!({}) } else { json!({ "control": context.control }) },
        "test_keys": keys,
        "test_name": "web_connectivity",
        "test_runtime": ms_to_s(record.get("duration_ms")),
        "test_start_time": context.test_start_time,
        "test_version": TEST_VERSION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::RootCertStore;

    use crate::classify::blockpage::BlockpageSet;
    use crate::classify::web::target_blocking;
    use crate::pathguard::{PathGuard, PathGuardConfig};
    use crate::servers::ca::LabCa;
    use crate::servers::web::{
        HttpBehaviour, HttpLabConfig, LabServer, TlsBehaviour, TlsIdentity, TlsLabConfig,
    };
    use crate::verdict::DnsAssessment;
    use crate::web::stage::{AddressPlan, AddressSource};
    use crate::web::{ConnectionBudget, WebStage, WebStageConfig};

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

    fn reply(elapsed_ms: f64, ip_ttl: u8, ttl: u32, data: &str) -> Value {
        json!({
            "from": "198.18.0.53:53", "elapsed_ms": elapsed_ms, "attempt": 1, "ip_ttl": ip_ttl,
            "size": 50, "id": 7, "flags": {}, "rcode": "NoError", "question_matches": true,
            "answers": [{"name": "blocked.test.", "type": "A", "ttl": ttl, "data": data}],
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
        })
    }

    #[test]
    fn dns_stage_maps_to_queries_and_network_events() {
        let m = measurement(&injected_record(), &context());
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
            measurement(&record, &context())
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
    fn unreadable_web_sections_are_reported_not_guessed() {
        let mut record = injected_record();
        record["http"] = json!({"verdict": "rst_injection", "ip": "198.18.1.2", "port": 80});
        let m = measurement(&record, &context());
        assert_eq!(m["test_keys"]["requests"], json!([]));
        let unmapped = m["test_keys"]["x_censorprobe"]["unmapped"]
            .as_array()
            .unwrap();
        assert_eq!(unmapped.len(), 1);
        assert!(
            unmapped[0].as_str().unwrap().starts_with("http: "),
            "{unmapped:?}"
        );
        assert_eq!(
            m["test_keys"]["x_censorprobe"]["verdicts"]["http"]["verdict"], "rst_injection",
            "the verdict itself is still carried"
        );
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
