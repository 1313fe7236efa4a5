//! Records shaped like those of a bulk DNS scan (the DNS benchmark's names), built
//! through the real classifier, for the report-size tests.

use std::net::{IpAddr, SocketAddr};

use crate::classify::dns::{DnsInputs, classify_dns};
use crate::classify::web::target_blocking;
use crate::ipclass::ForgedIpList;
use crate::observation::{
    ControlAnswer, ControlObservation, ControlOutcome, DnsFlags, DnsQueryObservation, DnsRecord,
    DnsReply, DnsServerRole,
};
use crate::record::{DnsSection, HeaderRecord, ScanOptions, TargetRecord};
use crate::targets::TargetSource;

const DOMAIN: &str = "n123456.bench.test";
const RESOLVER: &str = "198.18.0.53:53";
const SINK: &str = "198.18.0.54:53";
const CONTROL: &str = "udp:198.18.0.55:53";

pub(crate) fn header() -> HeaderRecord {
    HeaderRecord {
        tool: "censorprobe".to_owned(),
        version: "0".to_owned(),
        schema_version: crate::record::SCHEMA_VERSION,
        started_at: "2026-11-30T08:27:44.975621141Z".to_owned(),
        vantage: None,
        resolver: RESOLVER.parse().unwrap(),
        control: CONTROL.to_owned(),
        sink: Some(SINK.parse().unwrap()),
        options: Box::new(ScanOptions::default()),
        targets_loaded: 1_000_000,
        targets_scheduled: 1_000_000,
        skipped_inputs: Vec::new(),
        skipped_inputs_omitted: 0,
    }
}

fn reply(from: &str, elapsed_ms: f64, id: u16, ips: &[&str]) -> DnsReply {
    DnsReply {
        from: from.parse().unwrap(),
        elapsed_ms,
        attempt: 1,
        ip_ttl: Some(63),
        ip_id: None,
        df: None,
        size: 52,
        id,
        flags: DnsFlags {
            qr: true,
            rd: true,
            ra: true,
            ..DnsFlags::default()
        },
        rcode: "NoError".to_owned(),
        question_matches: true,
        answers: ips
            .iter()
            .map(|ip| DnsRecord::new(DOMAIN.to_owned(), "A".to_owned(), 300, (*ip).to_owned()))
            .collect(),
        authorities: Vec::new(),
        malformed: None,
        records_omitted: 0,
    }
}

fn query(
    role: DnsServerRole,
    server: &str,
    id: u16,
    replies: Vec<DnsReply>,
) -> DnsQueryObservation {
    DnsQueryObservation {
        role,
        server: server.parse().unwrap(),
        qname: DOMAIN.to_owned(),
        qtype: "A".to_owned(),
        source_port: 40_123,
        ids: vec![id],
        attempts: 1,
        replies,
        listened_ms: 1_000.412_345,
        send_error: None,
        omitted_replies: None,
        tcp: None,
        rechecks: Vec::new(),
    }
}

fn record(resolver_ips: &[&str], sink_replies: Vec<DnsReply>) -> TargetRecord {
    let queries = vec![
        query(
            DnsServerRole::Resolver,
            RESOLVER,
            4711,
            vec![reply(RESOLVER, 0.412_345, 4711, resolver_ips)],
        ),
        query(DnsServerRole::Sink, SINK, 4712, sink_replies),
    ];
    let control_ip: IpAddr = "198.18.1.10".parse().unwrap();
    let control = ControlObservation {
        control: CONTROL.to_owned(),
        answers: vec![ControlAnswer {
            qtype: "A".to_owned(),
            outcome: ControlOutcome::Resolved {
                ips: vec![control_ip],
                records: vec![DnsRecord::new(
                    DOMAIN.to_owned(),
                    "A".to_owned(),
                    300,
                    control_ip.to_string(),
                )],
            },
            elapsed_ms: 0.634_211,
        }],
    };
    let assessment = classify_dns(&DnsInputs {
        queries: &queries,
        control: Some(&control),
        forged_ips: &ForgedIpList::default(),
        tls_proven: &[],
        benign_query: None,
    });
    let blocking = target_blocking(Some(&assessment), None, None);
    TargetRecord {
        domain: DOMAIN.to_owned(),
        address: None,
        pinned_ips: Vec::new(),
        sources: vec![TargetSource {
            source: "names.txt".into(),
            line: Some(123_457),
            input: DOMAIN.to_owned(),
            category_code: None,
        }],
        sources_omitted: 0,
        categories: Vec::new(),
        attempt: None,
        started_at: "2026-11-30T08:27:45.017072998Z".to_owned(),
        duration_ms: 1_002.118_734,
        dns: Some(DnsSection {
            assessment,
            resolver: RESOLVER.parse::<SocketAddr>().unwrap(),
            sink: Some(SINK.parse().unwrap()),
            queries,
            control: Some(control),
            tls_proof: Vec::new(),
            benign_query: None,
        }),
        addresses: None,
        http: None,
        tls: None,
        blocking: blocking.blocking,
        accessible: blocking.accessible,
        location: None,
        web_control: None,
    }
}

/// The resolver answers the control's address; the sink stays silent.
pub(crate) fn ok_record() -> TargetRecord {
    record(&["198.18.1.10"], Vec::new())
}

/// The sink answers a bogon: injection.
pub(crate) fn poisoned_record() -> TargetRecord {
    record(
        &["198.18.1.10"],
        vec![reply(SINK, 0.2, 4712, &["10.10.34.34"])],
    )
}
