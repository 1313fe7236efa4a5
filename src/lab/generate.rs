//! Synthetic scenarios: N names sharing a handful of server addresses, with a known mix of
//! behaviours (open, DNS injection of bogons, DNS hijack to a decoy, Host/SNI resets,
//! Host/SNI blackholes, combinations of DNS and keyword blocking, a slow server, genuine
//! NXDOMAIN), residual censorship on or off, and the verdict each name must get. For
//! benchmarks and for proving that no false positive leaks from one name to the next
//! through shared addresses.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scenario::{
    Behaviour, CensorDefaults, Direction, DnsAction, DnsRule, Expectation, ExpectedBlocking,
    FlowAction, KeywordRule, LabSettings, MatchKind, NameEntry, Residual, ResidualAction, Scenario,
    Server,
};
use crate::vocab::{
    Blocking, BlockingLayer, DnsVerdict, HttpVerdict, PoisoningMethod, Stage, TlsVerdict,
};

/// Number of web servers the names share, unless told otherwise.
pub const DEFAULT_SHARED_SERVERS: u8 = 4;

/// The decoy a hijacked name's forged answer points to: a real host with its own page
/// and a certificate for another name.
const DECOY_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 9, 10);
/// The slow server of the `slow` kind, and how long it waits before answering: well
/// past a few round trips, well inside the lab's web timeout.
const SLOW_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 11, 1);
const SLOW_DELAY_MS: u64 = 1000;

/// The kinds of names a generated scenario mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Open,
    /// DNS injection of bogons (the genuine answer still arrives).
    DnsInjected,
    /// DNS injection of a decoy host's address.
    DnsHijack,
    HttpReset,
    TlsReset,
    /// The HTTP flow is dropped once the Host is seen.
    HttpBlackhole,
    /// The TLS flow is dropped once the SNI is seen.
    TlsBlackhole,
    /// Host and SNI both reset.
    HttpTlsReset,
    /// DNS injection, and the Host reset as well.
    DnsInjectedHttpReset,
    /// A server that takes a second to answer: must stay `ok` (not a blackhole).
    Slow,
    /// A genuine NXDOMAIN.
    Nxdomain,
}

/// The default mix (percent): about a quarter of the names are reset or blackholed by
/// Host/SNI, others are DNS-injected or hijacked, some both.
pub const MIX: [(Kind, u32); 11] = [
    (Kind::Open, 50),
    (Kind::DnsInjected, 10),
    (Kind::DnsHijack, 5),
    (Kind::HttpReset, 8),
    (Kind::TlsReset, 6),
    (Kind::HttpBlackhole, 3),
    (Kind::TlsBlackhole, 3),
    (Kind::HttpTlsReset, 3),
    (Kind::DnsInjectedHttpReset, 2),
    (Kind::Slow, 0),
    (Kind::Nxdomain, 10),
];

/// What the censor does to one kind of name.
struct Effects {
    dns: Option<&'static str>,
    http: Option<FlowAction>,
    tls: Option<FlowAction>,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Open,
        Kind::DnsInjected,
        Kind::DnsHijack,
        Kind::HttpReset,
        Kind::TlsReset,
        Kind::HttpBlackhole,
        Kind::TlsBlackhole,
        Kind::HttpTlsReset,
        Kind::DnsInjectedHttpReset,
        Kind::Slow,
        Kind::Nxdomain,
    ];

    /// The name of the kind in `--mix`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Open => "open",
            Kind::DnsInjected => "dns_injected",
            Kind::DnsHijack => "dns_hijack",
            Kind::HttpReset => "http_reset",
            Kind::TlsReset => "tls_reset",
            Kind::HttpBlackhole => "http_blackhole",
            Kind::TlsBlackhole => "tls_blackhole",
            Kind::HttpTlsReset => "http_tls_reset",
            Kind::DnsInjectedHttpReset => "dns_injected_http_reset",
            Kind::Slow => "slow",
            Kind::Nxdomain => "nxdomain",
        }
    }

    /// The zone under which names of this kind live (the censor's rules key on it).
    pub fn zone(self) -> &'static str {
        match self {
            Kind::Open => "open.gen.example",
            Kind::DnsInjected => "dns-blocked.gen.example",
            Kind::DnsHijack => "dns-hijacked.gen.example",
            Kind::HttpReset => "http-blocked.gen.example",
            Kind::TlsReset => "tls-blocked.gen.example",
            Kind::HttpBlackhole => "http-blackholed.gen.example",
            Kind::TlsBlackhole => "tls-blackholed.gen.example",
            Kind::HttpTlsReset => "http-tls-blocked.gen.example",
            Kind::DnsInjectedHttpReset => "dns-http-blocked.gen.example",
            Kind::Slow => "slow.gen.example",
            Kind::Nxdomain => "gone.gen.example",
        }
    }

    fn effects(self) -> Effects {
        let (dns, http, tls) = match self {
            Kind::Open | Kind::Slow | Kind::Nxdomain => (None, None, None),
            Kind::DnsInjected => (Some("bogon"), None, None),
            Kind::DnsHijack => (Some("decoy"), None, None),
            Kind::HttpReset => (None, Some(FlowAction::RstAck), None),
            Kind::TlsReset => (None, None, Some(FlowAction::Rst)),
            Kind::HttpBlackhole => (None, Some(FlowAction::Drop), None),
            Kind::TlsBlackhole => (None, None, Some(FlowAction::Drop)),
            Kind::HttpTlsReset => (None, Some(FlowAction::RstAck), Some(FlowAction::Rst)),
            Kind::DnsInjectedHttpReset => (Some("bogon"), Some(FlowAction::RstAck), None),
        };
        Effects { dns, http, tls }
    }

    /// Whether an HTTP or TLS test of this name triggers the censor (and so residual
    /// blocking, when the scenario has it).
    pub fn triggers_http(self) -> bool {
        self.effects().http.is_some()
    }

    pub fn triggers_tls(self) -> bool {
        self.effects().tls.is_some()
    }

    /// The kind of a generated name, from its zone.
    pub fn of_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            name.strip_suffix(k.zone())
                .is_some_and(|head| head.ends_with('.'))
        })
    }

    fn expectation(self) -> Expectation {
        if self == Kind::Nxdomain {
            return Expectation {
                dns: Some(DnsVerdict::Nxdomain),
                http: Some(HttpVerdict::Skipped),
                tls: Some(TlsVerdict::Skipped),
                blocking: Some(ExpectedBlocking(Blocking::No)),
                accessible: Some(false),
                ..Expectation::default()
            };
        }
        let effects = self.effects();
        let mut expect = Expectation {
            dns: Some(DnsVerdict::Ok),
            http: Some(HttpVerdict::Ok),
            tls: Some(TlsVerdict::Ok),
            ..Expectation::default()
        };
        let mut blocked = Vec::new();
        if let Some(pool) = effects.dns {
            // Forged first (injection: they disagree with the genuine answer and the
            // sink draws them too); bogons lie in a range the control's do not; and the
            // forged answer shares nothing with the control (inconsistent). The decoy's
            // certificate is for another name: no TLS proof rescues it.
            expect.dns = Some(DnsVerdict::DnsPoisoning);
            expect.dns_method = Some(PoisoningMethod::Injection);
            expect.dns_methods = Some(if pool == "bogon" {
                vec![
                    PoisoningMethod::Injection,
                    PoisoningMethod::Bogon,
                    PoisoningMethod::Inconsistent,
                ]
            } else {
                vec![PoisoningMethod::Injection, PoisoningMethod::Inconsistent]
            });
            blocked.push(BlockingLayer::Dns);
        }
        if let Some(action) = effects.http {
            expect.http = Some(flow_http_verdict(action));
            expect.http_stage = Some(Stage::Request);
            blocked.push(BlockingLayer::Http);
        }
        if let Some(action) = effects.tls {
            expect.tls = Some(flow_tls_verdict(action));
            expect.tls_stage = Some(Stage::Handshake);
            blocked.push(BlockingLayer::Tls);
        }
        // The report names the first blocked layer, in the order dns, tcp_ip, http, tls.
        expect.blocking = Some(ExpectedBlocking(
            blocked
                .first()
                .map_or(Blocking::No, |&layer| Blocking::At(layer)),
        ));
        expect.accessible = Some(blocked.is_empty());
        expect
    }
}

/// The HTTP verdict a keyword rule's action leads to.
fn flow_http_verdict(action: FlowAction) -> HttpVerdict {
    match action {
        FlowAction::Rst | FlowAction::RstAck => HttpVerdict::RstInjection,
        FlowAction::Drop => HttpVerdict::Timeout,
        FlowAction::Page => HttpVerdict::HttpDiff,
    }
}

/// The TLS verdict a keyword rule's action leads to.
fn flow_tls_verdict(action: FlowAction) -> TlsVerdict {
    match action {
        FlowAction::Rst | FlowAction::RstAck => TlsVerdict::RstInjection,
        FlowAction::Drop => TlsVerdict::Timeout,
        // A scenario with a TLS page rule does not validate.
        FlowAction::Page => TlsVerdict::Ok,
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.label() == s.trim())
            .ok_or_else(|| {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.label()).collect();
                format!("unknown kind {s:?} (known: {})", known.join(", "))
            })
    }
}

/// A mix of kinds with weights, as `KIND=WEIGHT,...` (kinds left out weigh 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(pub Vec<(Kind, u32)>);

impl Default for Mix {
    fn default() -> Self {
        Mix(MIX.to_vec())
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected KIND=WEIGHT"))?;
            let kind: Kind = kind.parse()?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight is a whole number"))?;
            weights.push((kind, weight));
        }
        if weights.iter().map(|(_, w)| w).sum::<u32>() == 0 {
            return Err("the mix weighs nothing".to_owned());
        }
        Ok(Mix(weights))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(k, w)| format!("{k}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Mix {
    fn pick(&self, rng: &mut StdRng) -> Kind {
        let total: u32 = self.0.iter().map(|(_, w)| w).sum();
        let mut roll = rng.random_range(0..total);
        for &(kind, weight) in &self.0 {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        Kind::Open
    }
}

/// Everything `lab gen` can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    pub n: usize,
    pub seed: u64,
    /// Residual blocking after every Host/SNI match, in seconds; 0: none.
    pub residual_secs: u32,
    /// Web servers (addresses) the names share (at least one).
    pub shared_servers: u8,
    pub mix: Mix,
}

fn keyword_rule(pattern: &str, action: FlowAction, residual_secs: u32) -> KeywordRule {
    KeywordRule {
        pattern: pattern.to_owned(),
        kind: MatchKind::Subdomain,
        action: Some(action),
        injector: None,
        count: Some(3),
        direction: Some(Direction::Both),
        ip_ttl: None,
        ip_id: None,
        df: None,
        payload: None,
        page: None,
        residual: (residual_secs > 0).then_some(Residual {
            // A blackholing censor blackholes the residual connections too.
            action: if action == FlowAction::Drop {
                ResidualAction::Drop
            } else {
                ResidualAction::Reset
            },
            secs: residual_secs,
        }),
    }
}

/// A scenario of `n` names on `shared_servers` web servers (at least one), the default
/// mix drawn with `seed`, residual censorship lasting `residual_secs` (0: none) after
/// every HTTP or TLS match.
pub fn generate(n: usize, seed: u64, residual_secs: u32, shared_servers: u8) -> Scenario {
    generate_with(&GenOptions {
        n,
        seed,
        residual_secs,
        shared_servers,
        mix: Mix::default(),
    })
}

pub fn generate_with(options: &GenOptions) -> Scenario {
    let GenOptions {
        n,
        seed,
        residual_secs,
        shared_servers,
        ref mix,
    } = *options;
    let mut rng = StdRng::seed_from_u64(seed);
    let shared_servers = shared_servers.max(1);
    let mut servers: Vec<Server> = (1..=shared_servers)
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
    let shared = servers.len();
    let weight = |kind: Kind| {
        mix.0
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, w)| w)
            .sum::<u32>()
    };
    let mut pools = BTreeMap::new();
    pools.insert(
        "bogon".to_owned(),
        vec![
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(10, 10, 34, 34)),
        ],
    );
    if weight(Kind::DnsHijack) > 0 {
        servers.push(Server {
            id: "decoy".to_owned(),
            ips: vec![DECOY_IP],
            behaviour: Behaviour::Decoy,
            http_port: 80,
            tls_port: 443,
            delay_ms: None,
            cert_name: Some("decoy.gen.example".to_owned()),
        });
        pools.insert("decoy".to_owned(), vec![IpAddr::V4(DECOY_IP)]);
    }
    if weight(Kind::Slow) > 0 {
        servers.push(Server {
            id: "slow".to_owned(),
            ips: vec![SLOW_IP],
            behaviour: Behaviour::Slow,
            http_port: 80,
            tls_port: 443,
            delay_ms: Some(SLOW_DELAY_MS),
            cert_name: None,
        });
    }
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let kind = mix.pick(&mut rng);
        let server = match kind {
            Kind::Nxdomain => None,
            Kind::Slow => Some("slow".to_owned()),
            _ => Some(servers[rng.random_range(0..shared)].id.clone()),
        };
        names.push(NameEntry {
            name: format!("n{i}.{}", kind.zone()),
            server,
            a: Vec::new(),
            aaaa: Vec::new(),
            nxdomain: kind == Kind::Nxdomain,
            geo: None,
            expect: kind.expectation(),
        });
    }
    let mut dns_rules = Vec::new();
    let mut http_rules = Vec::new();
    let mut tls_rules = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| weight(*k) > 0) {
        let effects = kind.effects();
        if let Some(pool) = effects.dns {
            dns_rules.push(DnsRule {
                pattern: kind.zone().to_owned(),
                kind: MatchKind::Subdomain,
                action: DnsAction::Inject,
                pool: Some(pool.to_owned()),
                ip_ttl: None,
                ip_id: None,
            });
        }
        if let Some(action) = effects.http {
            http_rules.push(keyword_rule(kind.zone(), action, residual_secs));
        }
        if let Some(action) = effects.tls {
            tls_rules.push(keyword_rule(kind.zone(), action, residual_secs));
        }
    }
    let residual = if residual_secs > 0 {
        format!("residual {residual_secs}s")
    } else {
        "no residual".to_owned()
    };
    Scenario {
        lab: LabSettings {
            description: format!(
                "generated: {n} names on {shared_servers} shared servers, seed {seed}, {residual}, mix {mix}"
            ),
            ..LabSettings::default()
        },
        censor: CensorDefaults::default(),
        pools,
        servers,
        names,
        dns_rules,
        http_rules,
        tls_rules,
        ip_rules: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn generated_scenarios_are_valid_deterministic_and_mixed() {
        let scenario = generate(2000, 7, 90, DEFAULT_SHARED_SERVERS);
        let again = Scenario::parse(&scenario.to_toml(), Path::new("gen.toml")).unwrap();
        assert_eq!(again, scenario);
        assert_eq!(generate(2000, 7, 90, DEFAULT_SHARED_SERVERS), scenario);
        assert_ne!(generate(2000, 8, 90, DEFAULT_SHARED_SERVERS), scenario);
        for (kind, weight) in MIX {
            let count = scenario
                .names
                .iter()
                .filter(|n| Kind::of_name(&n.name) == Some(kind))
                .count();
            if weight == 0 {
                assert_eq!(count, 0, "{kind:?}");
            } else {
                assert!(count > 10, "{kind:?}: {count}");
            }
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
            let http_hit = scenario.http_rules.iter().find(|r| r.matches(&entry.name));
            let http_blocked = entry
                .expect
                .http
                .filter(|v| !matches!(v, HttpVerdict::Ok | HttpVerdict::Skipped));
            assert_eq!(
                http_blocked,
                http_hit.map(|r| flow_http_verdict(r.action.unwrap_or(FlowAction::Rst))),
                "{}",
                entry.name
            );
            let tls_hit = scenario.tls_rules.iter().find(|r| r.matches(&entry.name));
            let tls_blocked = entry
                .expect
                .tls
                .filter(|v| !matches!(v, TlsVerdict::Ok | TlsVerdict::Skipped));
            assert_eq!(
                tls_blocked,
                tls_hit.map(|r| flow_tls_verdict(r.action.unwrap_or(FlowAction::Rst))),
                "{}",
                entry.name
            );
            for rule in http_hit.into_iter().chain(tls_hit) {
                assert_eq!(rule.residual.map(|r| r.secs), Some(90));
            }
        }
    }

    #[test]
    fn no_residual_blackholes_hijacks_and_combinations() {
        let scenario = generate_with(&GenOptions {
            n: 500,
            seed: 3,
            residual_secs: 0,
            shared_servers: 2,
            mix: "open=1,dns_hijack=1,http_blackhole=1,tls_blackhole=1,http_tls_reset=1,dns_injected_http_reset=1,slow=1"
                .parse()
                .unwrap(),
        });
        Scenario::parse(&scenario.to_toml(), Path::new("gen.toml")).unwrap();
        assert!(
            scenario
                .http_rules
                .iter()
                .chain(&scenario.tls_rules)
                .all(|r| r.residual.is_none())
        );
        let find = |kind: Kind| {
            scenario
                .names
                .iter()
                .find(|n| Kind::of_name(&n.name) == Some(kind))
                .unwrap_or_else(|| panic!("no {kind:?} name"))
        };
        let blackhole = find(Kind::HttpBlackhole);
        assert_eq!(blackhole.expect.http, Some(HttpVerdict::Timeout));
        assert_eq!(blackhole.expect.http_stage, Some(Stage::Request));
        assert_eq!(
            find(Kind::TlsBlackhole).expect.tls,
            Some(TlsVerdict::Timeout)
        );
        let at = |layer| Some(ExpectedBlocking(Blocking::At(layer)));
        let hijack = find(Kind::DnsHijack);
        assert_eq!(hijack.expect.blocking, at(BlockingLayer::Dns));
        assert!(scenario.pools.contains_key("decoy"));
        let both = find(Kind::HttpTlsReset);
        assert_eq!(
            (both.expect.http, both.expect.tls),
            (
                Some(HttpVerdict::RstInjection),
                Some(TlsVerdict::RstInjection)
            )
        );
        assert_eq!(both.expect.blocking, at(BlockingLayer::Http));
        assert_eq!(
            find(Kind::DnsInjectedHttpReset).expect.blocking,
            at(BlockingLayer::Dns)
        );
        assert_eq!(find(Kind::Slow).server.as_deref(), Some("slow"));
        // Names spread over the two shared servers only (plus the slow one).
        let used: std::collections::BTreeSet<_> = scenario
            .names
            .iter()
            .filter_map(|n| n.server.clone())
            .collect();
        assert_eq!(
            used.into_iter().collect::<Vec<_>>(),
            ["shared1", "shared2", "slow"]
        );
    }

    #[test]
    fn mixes_parse_and_print() {
        let mix: Mix = "open=3, http_reset=1".parse().unwrap();
        assert_eq!(mix.0, [(Kind::Open, 3), (Kind::HttpReset, 1)]);
        assert_eq!(mix.to_string(), "open=3,http_reset=1");
        assert!("open".parse::<Mix>().is_err());
        assert!("nope=1".parse::<Mix>().is_err());
        assert!("open=0".parse::<Mix>().is_err());
    }
}
