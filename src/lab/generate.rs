//! Synthetic scenarios: N names sharing a handful of server addresses, with a known mix of
//! behaviours (open, DNS-injected, HTTP-reset, TLS-reset, genuine NXDOMAIN), residual
//! censorship on, and the verdict each name must get. For benchmarks and for proving that
//! no false positive leaks from one name to the next through shared addresses.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scenario::{
    Behaviour, Blocking, CensorDefaults, Direction, DnsAction, DnsRule, Expectation, FlowAction,
    KeywordRule, LabSettings, MatchKind, NameEntry, Residual, ResidualAction, Scenario, Server,
};
use crate::verdict::{DnsVerdict, PoisoningMethod};

/// Number of web servers the names share, unless told otherwise.
pub const DEFAULT_SHARED_SERVERS: u8 = 4;

/// The kinds of names a generated scenario mixes, with their weights (percent).
pub const MIX: [(Kind, u32); 5] = [
    (Kind::Open, 40),
    (Kind::DnsInjected, 15),
    (Kind::HttpReset, 20),
    (Kind::TlsReset, 15),
    (Kind::Nxdomain, 10),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Open,
    DnsInjected,
    HttpReset,
    TlsReset,
    Nxdomain,
}

impl Kind {
    /// The zone under which names of this kind live (the censor's suffix rules key on it).
    pub fn zone(self) -> &'static str {
        match self {
            Kind::Open => "open.gen.example",
            Kind::DnsInjected => "dns-blocked.gen.example",
            Kind::HttpReset => "http-blocked.gen.example",
            Kind::TlsReset => "tls-blocked.gen.example",
            Kind::Nxdomain => "gone.gen.example",
        }
    }
}

fn pick(rng: &mut StdRng) -> Kind {
    let total: u32 = MIX.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for (kind, weight) in MIX {
        if roll < weight {
            return kind;
        }
        roll -= weight;
    }
    Kind::Open
}

fn keyword_rule(pattern: &str, action: FlowAction, residual_secs: u32) -> KeywordRule {
    KeywordRule {
        pattern: pattern.to_owned(),
        kind: MatchKind::Subdomain,
        action,
        count: 3,
        direction: Direction::Both,
        ip_ttl: None,
        ip_id: None,
        residual: Some(Residual {
            action: ResidualAction::Reset,
            secs: residual_secs,
        }),
    }
}

/// A scenario of `n` names on `shared_servers` web servers (at least one), the mix drawn
/// with `seed`, residual censorship lasting `residual_secs` after every HTTP or TLS match.
pub fn generate(n: usize, seed: u64, residual_secs: u32, shared_servers: u8) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let shared_servers = shared_servers.max(1);
    let servers: Vec<Server> = (1..=shared_servers)
        .map(|i| Server {
            id: format!("shared{i}"),
            ips: vec![Ipv4Addr::new(198, 19, 10, i)],
            behaviour: Behaviour::Normal,
            http_port: 80,
            tls_port: 443,
            delay_ms: None,
            cert_name: None,
        })
        .collect();
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let kind = pick(&mut rng);
        let server = &servers[rng.random_range(0..servers.len())];
        let name = format!("n{i}.{}", kind.zone());
        let ok = Some("ok".to_owned());
        let expect = match kind {
            Kind::Open => Expectation {
                dns: Some(DnsVerdict::Ok),
                http: ok.clone(),
                tls: ok.clone(),
                blocking: Some(Blocking::None),
                accessible: Some(true),
                ..Expectation::default()
            },
            // Forged bogons, first (injection: they disagree with the genuine answer
            // and the sink draws them too), in a range the control's are not (bogon),
            // sharing nothing with the control (inconsistent).
            Kind::DnsInjected => Expectation {
                dns: Some(DnsVerdict::DnsPoisoning),
                dns_method: Some(PoisoningMethod::Injection),
                dns_methods: Some(vec![
                    PoisoningMethod::Injection,
                    PoisoningMethod::Bogon,
                    PoisoningMethod::Inconsistent,
                ]),
                http: ok.clone(),
                tls: ok.clone(),
                blocking: Some(Blocking::Dns),
                accessible: Some(false),
                ..Expectation::default()
            },
            Kind::HttpReset => Expectation {
                dns: Some(DnsVerdict::Ok),
                http: Some("rst_injection".to_owned()),
                http_stage: Some("request".to_owned()),
                tls: ok.clone(),
                blocking: Some(Blocking::Http),
                accessible: Some(false),
                ..Expectation::default()
            },
            Kind::TlsReset => Expectation {
                dns: Some(DnsVerdict::Ok),
                http: ok.clone(),
                tls: Some("rst_injection".to_owned()),
                tls_stage: Some("handshake".to_owned()),
                blocking: Some(Blocking::Tls),
                accessible: Some(false),
                ..Expectation::default()
            },
            Kind::Nxdomain => Expectation {
                dns: Some(DnsVerdict::Nxdomain),
                http: Some("skipped".to_owned()),
                tls: Some("skipped".to_owned()),
                blocking: Some(Blocking::None),
                accessible: Some(false),
                ..Expectation::default()
            },
        };
        names.push(NameEntry {
            name,
            server: (kind != Kind::Nxdomain).then(|| server.id.clone()),
            a: Vec::new(),
            aaaa: Vec::new(),
            nxdomain: kind == Kind::Nxdomain,
            expect,
        });
    }
    let mut pools = BTreeMap::new();
    pools.insert(
        "bogon".to_owned(),
        vec![
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(10, 10, 34, 34)),
        ],
    );
    Scenario {
        lab: LabSettings {
            description: format!(
                "generated: {n} names on {shared_servers} shared servers, seed {seed}, residual {residual_secs}s"
            ),
            ..LabSettings::default()
        },
        censor: CensorDefaults::default(),
        pools,
        servers,
        names,
        dns_rules: vec![DnsRule {
            pattern: Kind::DnsInjected.zone().to_owned(),
            kind: MatchKind::Subdomain,
            action: DnsAction::Inject,
            pool: Some("bogon".to_owned()),
            ip_ttl: None,
            ip_id: None,
        }],
        http_rules: vec![keyword_rule(
            Kind::HttpReset.zone(),
            FlowAction::RstAck,
            residual_secs,
        )],
        tls_rules: vec![keyword_rule(
            Kind::TlsReset.zone(),
            FlowAction::Rst,
            residual_secs,
        )],
        ip_rules: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn generated_scenarios_are_valid_deterministic_and_mixed() {
        let scenario = generate(300, 7, 90, DEFAULT_SHARED_SERVERS);
        let again = Scenario::parse(&scenario.to_toml(), Path::new("gen.toml")).unwrap();
        assert_eq!(again, scenario);
        assert_eq!(generate(300, 7, 90, DEFAULT_SHARED_SERVERS), scenario);
        assert_ne!(generate(300, 8, 90, DEFAULT_SHARED_SERVERS), scenario);
        for (kind, _) in MIX {
            let count = scenario
                .names
                .iter()
                .filter(|n| n.name.ends_with(kind.zone()))
                .count();
            assert!(count > 10, "{kind:?}: {count}");
        }
        // Every name's expectation agrees with the rules that apply to it.
        for entry in &scenario.names {
            let dns_hit = scenario.dns_rules.iter().any(|r| r.matches(&entry.name));
            assert_eq!(
                dns_hit,
                entry.expect.dns == Some(DnsVerdict::DnsPoisoning),
                "{}",
                entry.name
            );
            let http_hit = scenario.http_rules.iter().any(|r| r.matches(&entry.name));
            assert_eq!(
                http_hit,
                entry.expect.http.as_deref() == Some("rst_injection")
            );
        }
    }
}
