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
//! The record is read as JSON, so the `http` and `tls` objects are mapped when present
//! (keys `ip`, `port`, `status`, `headers`, `tls_version`, `cipher`, `alpn`, ...) and
//! simply absent otherwise.

use serde_json::{Map, Value, json};

use crate::report::HeaderRecord;

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

fn first_str<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| str_at(value, k))
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

/// OONI failure string of an HTTP or TLS verdict (None: no failure).
fn web_failure(verdict: &str) -> Option<String> {
    Some(
        match verdict {
            "ok" | "blockpage" | "skipped" => return None,
            "rst_injection" => "connection_reset",
            "timeout" => "generic_timeout_error",
            "refused" => "connection_refused",
            "eof" => "eof_error",
            "cert_invalid" => "ssl_invalid_certificate",
            "tls_alert" => "ssl_failed_handshake",
            other => return Some(format!("unknown_failure {other}")),
        }
        .to_owned(),
    )
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

/// `tcp_connect`, `tls_handshakes`, `requests` and `network_events` from a web stage.
fn web_stage(
    name: &str,
    section: &Value,
    domain: &str,
    transaction_id: usize,
    keys: &mut Map<String, Value>,
    events: &mut Vec<Value>,
) -> Option<String> {
    let verdict = str_at(section, "verdict")?;
    if verdict == "skipped" {
        return None;
    }
    let failure = web_failure(verdict);
    let at_connect = str_at(section, "stage") == Some("connect");
    let ip = str_at(section, "ip");
    let port = section.get("port").and_then(Value::as_u64);
    let t = ms_to_s(
        section
            .get("timings")
            .and_then(|t| t.get("total_ms"))
            .or_else(|| section.get("elapsed_ms")),
    );
    let address = match (ip, port) {
        (Some(ip), Some(port)) if ip.contains(':') => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        _ => String::new(),
    };
    if let (Some(ip), Some(port)) = (ip, port) {
        let connect_failure = if at_connect { failure.clone() } else { None };
        push(
            keys,
            "tcp_connect",
            json!({
                "ip": ip, "port": port, "t": t, "transaction_id": transaction_id,
                "status": {
                    "failure": connect_failure,
                    "success": connect_failure.is_none(),
                    "blocked": at_connect && verdict != "ok" && verdict != "refused",
                },
            }),
        );
        events.push(json!({
            "address": address, "failure": connect_failure, "operation": "connect",
            "proto": "tcp", "t": t, "transaction_id": transaction_id,
        }));
    }
    match name {
        "tls" if !at_connect => {
            push(
                keys,
                "tls_handshakes",
                json!({
                    "network": "tcp",
                    "address": address,
                    "server_name": domain,
                    "failure": failure,
                    "no_tls_verify": false,
                    "tls_version": first_str(section, &["tls_version", "version"]).unwrap_or_default(),
                    "cipher_suite": first_str(section, &["cipher_suite", "cipher"]).unwrap_or_default(),
                    "negotiated_protocol": first_str(section, &["alpn", "negotiated_protocol"]).unwrap_or_default(),
                    "peer_certificates": [],
                    "t0": 0.0,
                    "t": t,
                    "transaction_id": transaction_id,
                }),
            );
        }
        "http" => {
            let response = section.get("response").unwrap_or(section);
            let headers = response
                .get("headers")
                .cloned()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            push(
                keys,
                "requests",
                json!({
                    "failure": failure,
                    "request": {
                        "body": "", "body_is_truncated": false, "method": "GET",
                        "headers": { "Host": domain },
                        "headers_list": [["Host", domain]],
                        "tor": { "exit_ip": null, "exit_name": null, "is_tor": false },
                        "url": format!("http://{domain}/"),
                        "x_transport": "tcp",
                    },
                    "response": {
                        "body": null,
                        "body_is_truncated": false,
                        "code": first_value(response, &["status", "status_code", "code"]),
                        "headers": headers,
                        "x_body_length": first_value(response, &["body_length", "body_len"]),
                        "x_body_sha256": first_value(response, &["body_sha256", "body_hash"]),
                        "x_title": first_value(response, &["title", "page_title"]),
                    },
                    "t": t,
                    "transaction_id": transaction_id,
                }),
            );
        }
        _ => {}
    }
    failure
}

fn first_value(value: &Value, keys: &[&str]) -> Value {
    keys.iter()
        .find_map(|k| value.get(k).filter(|v| !v.is_null()).cloned())
        .unwrap_or(Value::Null)
}

fn push(keys: &mut Map<String, Value>, key: &str, item: Value) {
    if let Some(Value::Array(list)) = keys.get_mut(key) {
        list.push(item);
    }
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
    let mut http_failure = Value::Null;
    for (index, name) in ["http", "tls"].into_iter().enumerate() {
        if let Some(section) = record.get(name).filter(|s| s.is_object()) {
            let failure = web_stage(name, section, domain, 100 + index, &mut keys, &mut events);
            if name == "http" {
                http_failure = failure.map_or(Value::Null, Value::from);
            }
        }
    }
    events.sort_by(|a, b| {
        a["t"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["t"].as_f64().unwrap_or(0.0))
    });
    keys.insert("network_events".to_owned(), events.into());

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
                "attempt": record.get("attempt").cloned().unwrap_or(Value::Null),
                "categories": record.get("categories").cloned().unwrap_or_else(|| json!([])),
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

    #[test]
    fn web_stages_map_when_present() {
        let mut record = injected_record();
        record["http"] =
            json!({"verdict": "rst_injection", "stage": "request", "ip": "198.18.1.2", "port": 80});
        record["tls"] =
            json!({"verdict": "timeout", "stage": "connect", "ip": "198.18.1.2", "port": 443});
        record["blocking"] = "http".into();
        record["accessible"] = false.into();
        let m = measurement(&record, &context());
        let keys = &m["test_keys"];
        let connects = keys["tcp_connect"].as_array().unwrap();
        assert_eq!(connects.len(), 2);
        assert_eq!(
            connects[0]["status"]["success"], true,
            "HTTP connected, reset later"
        );
        assert_eq!(connects[1]["status"]["failure"], "generic_timeout_error");
        assert_eq!(keys["requests"][0]["failure"], "connection_reset");
        assert_eq!(
            keys["requests"][0]["request"]["headers"]["Host"],
            "blocked.test"
        );
        assert_eq!(keys["http_experiment_failure"], "connection_reset");
        assert_eq!(
            keys["tls_handshakes"],
            json!([]),
            "no handshake after a failed connect"
        );
        assert_eq!(keys["blocking"], "http-failure");
        assert_eq!(keys["x_censorprobe"]["blocking"], "http");
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
