//! Lab scenarios: readable TOML files (in `targets/lab/`) naming the lab's domains, their
//! records and servers, the censor's rules, the false-positive traps, and the verdicts a
//! correct probe must reach for every name.
//!
//! The format is documented by `targets/lab/demo.toml`, which uses every field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{LabError, LabResult};
use super::plan;
use crate::vocab::{
    Blocking, BlockingKey, DnsVerdict, HttpVerdict, PoisoningMethod, Stage, TlsVerdict,
};

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub lab: LabSettings,
    /// Defaults for the packets the censor forges.
    #[serde(default)]
    pub censor: CensorDefaults,
    /// Forged-answer pools for DNS injection, by pool name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, Vec<IpAddr>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<NameEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_rules: Vec<DnsRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_rules: Vec<KeywordRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_rules: Vec<KeywordRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_rules: Vec<IpRule>,
}

/// Lab-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSettings {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A benign name for control probes; it must match no censor rule.
    #[serde(default = "default_control_name")]
    pub control_name: String,
}

fn default_control_name() -> String {
    "control.lab.example".to_owned()
}

impl Default for LabSettings {
    fn default() -> Self {
        LabSettings {
            description: String::new(),
            control_name: default_control_name(),
        }
    }
}

/// The IP-header fingerprint of forged packets: GFW injections betray themselves by a TTL
/// and IP ID unlike the real server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CensorDefaults {
    #[serde(default = "default_ip_ttl")]
    pub ip_ttl: u8,
    #[serde(default)]
    pub ip_id: IpIdMode,
    /// TTL of the records in forged DNS answers.
    #[serde(default = "default_answer_ttl")]
    pub answer_ttl: u32,
}

fn default_ip_ttl() -> u8 {
    101
}

fn default_answer_ttl() -> u32 {
    60
}

impl Default for CensorDefaults {
    fn default() -> Self {
        CensorDefaults {
            ip_ttl: default_ip_ttl(),
            ip_id: IpIdMode::default(),
            answer_ttl: default_answer_ttl(),
        }
    }
}

/// How forged packets fill the IP ID field: a fixed number, or `"random"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpIdMode {
    Fixed(u16),
    #[default]
    Random,
}

impl Serialize for IpIdMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IpIdMode::Fixed(id) => s.serialize_u16(*id),
            IpIdMode::Random => s.serialize_str("random"),
        }
    }
}

impl<'de> Deserialize<'de> for IpIdMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => u16::try_from(n)
                .map(IpIdMode::Fixed)
                .map_err(|_| serde::de::Error::custom(format!("ip_id {n} is not in 0..=65535"))),
            Raw::Text(t) if t == "random" => Ok(IpIdMode::Random),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "ip_id must be a number or \"random\", not {t:?}"
            ))),
        }
    }
}

/// What an Internet-side server does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Answers HTTP, and TLS with a certificate valid for whatever name is asked.
    Normal,
    /// Like `normal`, after `delay_ms` (a trap: slow is not censored).
    Slow,
    /// TLS with a certificate for `cert_name` only, valid chain (a trap: misconfiguration).
    WrongCert,
    /// A decoy host, target of forged DNS answers: unrelated page, certificate for `cert_name`.
    Decoy,
    /// Resets every connection itself once the request (or `ClientHello`) arrives, the
    /// benign control's too: a broken server, which a probe must not call censored.
    Reset,
    /// Answers (HTTP page, TLS handshake), then closes every connection with a reset
    /// instead of a FIN, as some servers and load balancers do (a trap: not an injection).
    AnswerThenReset,
    /// The address exists and nothing listens (a trap: refused is not censorship).
    Closed,
}

impl Behaviour {
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Normal => "normal",
            Behaviour::Slow => "slow",
            Behaviour::WrongCert => "wrong_cert",
            Behaviour::Decoy => "decoy",
            Behaviour::Reset => "reset",
            Behaviour::AnswerThenReset => "answer_then_reset",
            Behaviour::Closed => "closed",
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Internet-side host running HTTP and TLS with one behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub id: String,
    /// Addresses in 198.19.1.0–198.19.255.255 (198.19.0.0/24 is the lab's own).
    pub ips: Vec<Ipv4Addr>,
    pub behaviour: Behaviour,
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    #[serde(default = "default_tls_port")]
    pub tls_port: u16,
    /// For `slow`: how long the server waits before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// For `wrong_cert` and `decoy`: the one name their certificate is valid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_name: Option<String>,
}

fn default_http_port() -> u16 {
    80
}

fn default_tls_port() -> u16 {
    443
}

impl Server {
    /// The name in the certificate of `wrong_cert` and `decoy` servers.
    pub fn certificate_name(&self) -> String {
        self.cert_name
            .clone()
            .unwrap_or_else(|| match self.behaviour {
                Behaviour::Decoy => "decoy.lab.example".to_owned(),
                _ => "wrong-name.lab.example".to_owned(),
            })
    }
}

/// One name of the scenario: its records and the verdicts expected for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameEntry {
    pub name: String,
    /// The server whose addresses are the name's A records (unless `a` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Explicit A records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub a: Vec<Ipv4Addr>,
    /// Explicit AAAA records (the lab itself is IPv4-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aaaa: Vec<std::net::Ipv6Addr>,
    /// The authoritative server says the name does not exist (a genuine NXDOMAIN).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nxdomain: bool,
    /// Geo-DNS: other A records for other clients (the records above are what the
    /// resolver under test answers the vantage point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<GeoAnswers>,
    #[serde(default)]
    pub expect: Expectation,
}

/// A name's answers for the lab's other DNS clients, as a CDN's geo-DNS gives each
/// region its own servers: the `DoT`/`DoH` resolver (the scan's control) and the
/// resolver of the web-control helper's network. An empty list keeps the name's records.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoAnswers {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helper: Vec<Ipv4Addr>,
}

/// Who asks the lab's DNS: each sees its own view of geo names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsClient {
    /// The resolver under test, on UDP and TCP port 53 (the vantage point's).
    Vantage,
    /// The resolver over `DoT` and `DoH` (the scan's control).
    Control,
    /// The resolver of the helper's network.
    Helper,
}

/// The verdicts a correct probe reaches for a name. A stage's verdict is checked
/// together with its detail: `dns` with `dns_method` (none expected when absent),
/// `http` with `http_stage`, `tls` with `tls_stage`; `dns_methods`, `blocking`,
/// `accessible` and the injectors are checked when given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_method: Option<PoisoningMethod>,
    /// Every poisoning method, strongest first (the report's `dns.methods`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_methods: Option<Vec<PoisoningMethod>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_stage: Option<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_stage: Option<Stage>,
    /// The injector fingerprint the HTTP verdict names (`targets/injectors.toml`); needs
    /// the packet capture, which the lab's scans have (they run as root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_injector: Option<String>,
    /// The injector fingerprint the TLS verdict names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_injector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking: Option<ExpectedBlocking>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessible: Option<bool>,
}

/// The target-level `blocking` a name is expected to get: `false`, the layer that
/// blocks, or `"null"` (the report's null: the evidence neither shows blocking nor rules
/// it out). TOML has no null, so the scenario writes the word; `true` is refused as
/// ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ExpectedBlockingToml", into = "ExpectedBlockingToml")]
pub struct ExpectedBlocking(pub Blocking);

impl From<Blocking> for ExpectedBlocking {
    fn from(blocking: Blocking) -> Self {
        ExpectedBlocking(blocking)
    }
}

/// `false` | `"null"` | a layer, as in the report's `null`-keyed counts.
impl fmt::Display for ExpectedBlocking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        BlockingKey::from(self.0).fmt(f)
    }
}

/// How `blocking` is written in a scenario file.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ExpectedBlockingToml {
    Flag(bool),
    Word(String),
}

impl From<ExpectedBlocking> for ExpectedBlockingToml {
    fn from(expected: ExpectedBlocking) -> Self {
        match expected.0 {
            Blocking::No => ExpectedBlockingToml::Flag(false),
            other => ExpectedBlockingToml::Word(BlockingKey::from(other).as_str().to_owned()),
        }
    }
}

impl TryFrom<ExpectedBlockingToml> for ExpectedBlocking {
    type Error = String;

    fn try_from(toml: ExpectedBlockingToml) -> Result<Self, Self::Error> {
        match toml {
            ExpectedBlockingToml::Flag(false) => Ok(ExpectedBlocking(Blocking::No)),
            ExpectedBlockingToml::Flag(true) => Err(
                "blocking = true is ambiguous: name the layer (\"dns\", \"tcp_ip\", \"http\", \"tls\")"
                    .to_owned(),
            ),
            ExpectedBlockingToml::Word(word) => match word.parse::<BlockingKey>() {
                Ok(key) if key != BlockingKey::No => Ok(ExpectedBlocking(key.into())),
                _ => Err(format!(
                    "blocking must be false, \"dns\", \"tcp_ip\", \"http\", \"tls\" or \"null\", not {word:?}"
                )),
            },
        }
    }
}

/// How a rule's pattern is compared with a name (`GFWatch`'s rule shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// The name is the pattern.
    #[default]
    Exact,
    /// The name ends with the pattern as a string, `GFWatch`'s `*pattern`: `bad.example`
    /// also catches `notbad.example` (the over-blocking `GFWatch` documents).
    Suffix,
    /// The name is the pattern or a subdomain of it (`*.pattern` plus the pattern).
    Subdomain,
    /// The name starts with the pattern, `GFWatch`'s `pattern*`.
    Prefix,
}

impl MatchKind {
    /// Whether `name` (any case, optional trailing dot) matches `pattern`.
    pub fn matches(self, pattern: &str, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match self {
            MatchKind::Exact => name == pattern,
            MatchKind::Suffix => name.ends_with(&pattern),
            MatchKind::Prefix => name.starts_with(&pattern),
            MatchKind::Subdomain => {
                name == pattern
                    || (name.len() > pattern.len()
                        && name.ends_with(&pattern)
                        && name.as_bytes()[name.len() - pattern.len() - 1] == b'.')
            }
        }
    }
}

/// What the censor does with a DNS query whose name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsAction {
    /// On-path: a forged answer from `pool` at once; the genuine answer still arrives.
    Inject,
    /// On-path: a forged NXDOMAIN at once; the genuine answer still arrives.
    Nxdomain,
    /// In-path: the query gets no answer at all.
    Drop,
    /// In-path: a forged answer from `pool`, and the genuine one is dropped.
    CensorOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRule {
    pub pattern: String,
    #[serde(default, rename = "match")]
    pub kind: MatchKind,
    pub action: DnsAction,
    /// Forged-answer pool, for `inject` and `censor_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_ttl: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<IpIdMode>,
}

/// What the censor does to a TCP flow whose HTTP Host or TLS SNI matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowAction {
    /// Inject RST segments.
    Rst,
    /// Inject RST+ACK segments.
    RstAck,
    /// Drop the flow, both directions, from then on.
    Drop,
    /// HTTP only: answer the request with the rule's `page` (an unknown block page, in
    /// the server's name, with a TTL like the server's, ended by the close), end the flow
    /// toward the client with a FIN and reset the server's side: the request never reaches it (a
    /// transparent proxy). Only a comparison with an uncensored view tells the page
    /// from the real one.
    Page,
}

/// The page a `page` rule answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgedPage {
    #[serde(default = "default_page_status")]
    pub status: u16,
    /// The HTML body (at most [`MAX_PAGE_BODY`] bytes: it goes out in one segment).
    pub body: String,
}

fn default_page_status() -> u16 {
    200
}

/// The longest `page` body a rule may give.
pub const MAX_PAGE_BODY: usize = 1200;

impl ForgedPage {
    /// The whole HTTP response, ended by the close (no `Content-Length`), as injected
    /// block pages often are: its header names are not a web server's (OONI's header
    /// comparison looks at the uncommon ones: here there are none).
    pub fn response(&self) -> Vec<u8> {
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
             Cache-Control: no-store\r\n\r\n{}",
            self.status, self.body
        )
        .into_bytes()
    }
}

/// Who receives injected resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Client,
    Both,
}

/// What residual censorship does to new connections on the same (client, server, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualAction {
    Drop,
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Residual {
    pub action: ResidualAction,
    pub secs: u32,
}

/// An HTTP Host or TLS SNI rule. `injector` picks a real injector's packet pattern
/// ([`InjectorProfile`]); the explicit fields, when given, override the profile's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeywordRule {
    pub pattern: String,
    #[serde(default, rename = "match")]
    pub kind: MatchKind,
    /// What to do; the profile's (`rst` or `rst_ack`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<FlowAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injector: Option<InjectorProfile>,
    /// Number of resets injected per direction (1 when neither this nor a profile says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The TTL the receiver sees on the forged packets (the censor adds the routers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_ttl: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<IpIdMode>,
    /// The IP Don't Fragment bit of the forged packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<bool>,
    /// TCP payload carried by each forged reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<Residual>,
    /// For action `page`: the page the censor answers with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<ForgedPage>,
}

/// Packet patterns of real injectors ("A Wall Behind A Wall", IEEE S&P 2025), as seen by
/// the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectorProfile {
    /// 1 RST (no ACK), DF 0, IP ID 0, TTL varying (55-118); residual blocking.
    GfwTypeI,
    /// 3 identical RST+ACK, DF 1, IP ID random but the same in the 3, TTL varying
    /// (39-238); residual blocking.
    GfwTypeIi,
    /// 1 RST+ACK, DF 0, IP ID in 0x9916-0x9933, TTL 248; residual blocking.
    GfwTypeIii,
    /// Henan's provincial firewall: 1 RST+ACK to the client only, DF 0, IP ID 1, TTL 58,
    /// payload `01 02 03 04 05 06 07 08 09 00`; no residual blocking.
    Henan,
}

/// The TTL the client sees on forged packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlPattern {
    Fixed(u8),
    /// Drawn once per burst in this range (inclusive), never the lab servers' TTL as seen
    /// by the client ([`plan::SERVER_TTL_SEEN`]): forged packets must betray themselves.
    Range(u8, u8),
}

/// How forged packets fill the IP ID field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdPattern {
    Fixed(u16),
    /// A new random ID on every packet.
    Random,
    /// One random ID per burst, the same on every packet of it.
    RandomPerBurst,
    /// Random in this range (inclusive), per packet.
    Range(u16, u16),
}

impl From<IpIdMode> for IdPattern {
    fn from(mode: IpIdMode) -> Self {
        match mode {
            IpIdMode::Fixed(id) => IdPattern::Fixed(id),
            IpIdMode::Random => IdPattern::Random,
        }
    }
}

/// Everything the censor needs to inject for one rule: the profile with the explicit
/// fields over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub action: FlowAction,
    pub count: u8,
    /// Every packet of the burst is the same (same sequence number), as GFW type II's.
    pub identical: bool,
    pub direction: Direction,
    pub ttl: TtlPattern,
    pub ip_id: IdPattern,
    pub dont_fragment: bool,
    pub payload: Vec<u8>,
    pub residual: Option<Residual>,
    /// For action `page`: the whole HTTP response the censor answers with.
    pub page: Option<Vec<u8>>,
}

/// Henan's firewall's reset payload.
pub const HENAN_PAYLOAD: [u8; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0];
/// Residual blocking of the GFW profiles when the rule gives none: 90 s after an HTTP
/// trigger, 180 s after an SNI trigger.
pub const GFW_HTTP_RESIDUAL_SECS: u32 = 90;
pub const GFW_TLS_RESIDUAL_SECS: u32 = 180;

/// Which protocol a keyword rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeywordProtocol {
    Http,
    Tls,
}

impl InjectorProfile {
    /// The profile's pattern, before a rule's explicit fields.
    pub fn injection(self, protocol: KeywordProtocol) -> Injection {
        let gfw_residual = Some(Residual {
            action: ResidualAction::Reset,
            secs: match protocol {
                KeywordProtocol::Http => GFW_HTTP_RESIDUAL_SECS,
                KeywordProtocol::Tls => GFW_TLS_RESIDUAL_SECS,
            },
        });
        let base = Injection {
            action: FlowAction::RstAck,
            count: 1,
            identical: false,
            direction: Direction::Client,
            ttl: TtlPattern::Fixed(248),
            ip_id: IdPattern::Fixed(0),
            dont_fragment: false,
            payload: Vec::new(),
            residual: gfw_residual,
            page: None,
        };
        match self {
            InjectorProfile::GfwTypeI => Injection {
                action: FlowAction::Rst,
                ttl: TtlPattern::Range(55, 118),
                ip_id: IdPattern::Fixed(0),
                ..base
            },
            InjectorProfile::GfwTypeIi => Injection {
                count: 3,
                identical: true,
                ttl: TtlPattern::Range(39, 238),
                ip_id: IdPattern::RandomPerBurst,
                dont_fragment: true,
                ..base
            },
            InjectorProfile::GfwTypeIii => Injection {
                ttl: TtlPattern::Fixed(248),
                ip_id: IdPattern::Range(0x9916, 0x9933),
                ..base
            },
            InjectorProfile::Henan => Injection {
                ttl: TtlPattern::Fixed(58),
                ip_id: IdPattern::Fixed(1),
                payload: HENAN_PAYLOAD.to_vec(),
                residual: None,
                ..base
            },
        }
    }
}

impl DnsRule {
    pub fn matches(&self, name: &str) -> bool {
        self.kind.matches(&self.pattern, name)
    }
}

impl KeywordRule {
    pub fn matches(&self, name: &str) -> bool {
        self.kind.matches(&self.pattern, name)
    }

    /// What the censor does on a match: the profile (if any), with the rule's explicit
    /// fields over it; `defaults` give the fingerprint when neither does.
    pub fn injection(&self, protocol: KeywordProtocol, defaults: &CensorDefaults) -> Injection {
        let base = match self.injector {
            Some(profile) => profile.injection(protocol),
            None => Injection {
                action: FlowAction::Rst,
                count: 1,
                identical: false,
                direction: Direction::Client,
                ttl: TtlPattern::Fixed(defaults.ip_ttl),
                ip_id: defaults.ip_id.into(),
                dont_fragment: false,
                payload: Vec::new(),
                residual: None,
                page: None,
            },
        };
        let action = self.action.unwrap_or(base.action);
        // A forged page passes for the server's: its TTL is the server's, its IP ID
        // random, unless the rule says otherwise.
        let (base_ttl, base_ip_id) = if action == FlowAction::Page {
            (TtlPattern::Fixed(plan::SERVER_TTL_SEEN), IdPattern::Random)
        } else {
            (base.ttl, base.ip_id)
        };
        Injection {
            action,
            count: self.count.unwrap_or(base.count),
            identical: base.identical,
            direction: self.direction.unwrap_or(base.direction),
            ttl: self.ip_ttl.map_or(base_ttl, TtlPattern::Fixed),
            ip_id: self.ip_id.map_or(base_ip_id, IdPattern::from),
            dont_fragment: self.df.unwrap_or(base.dont_fragment),
            payload: self.payload.clone().unwrap_or(base.payload),
            residual: self.residual.or(base.residual),
            page: self.page.as_ref().map(ForgedPage::response),
        }
    }

    /// The longest residual window this rule can arm (for probe timing).
    pub fn longest_residual(&self) -> Option<Residual> {
        let defaults = CensorDefaults::default();
        [KeywordProtocol::Http, KeywordProtocol::Tls]
            .into_iter()
            .filter_map(|p| self.injection(p, &defaults).residual)
            .max_by_key(|r| r.secs)
    }
}

/// IP blocking of an address (optionally only some TCP ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRule {
    pub ip: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    pub action: IpAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpAction {
    /// Every packet to the address is dropped.
    Drop,
    /// Connection attempts are answered with a reset from the censor.
    Reset,
}

impl Scenario {
    /// Read and validate a scenario file.
    pub fn load(path: &Path) -> LabResult<Scenario> {
        let text =
            std::fs::read_to_string(path).map_err(|source| LabError::ScenarioUnreadable {
                path: path.to_owned(),
                source,
            })?;
        Scenario::parse(&text, path)
    }

    /// Parse and validate scenario text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> LabResult<Scenario> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| LabError::ScenarioSyntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        scenario
            .validate()
            .map_err(|message| LabError::ScenarioInvalid {
                path: path.to_owned(),
                message,
            })?;
        Ok(scenario)
    }

    /// The scenario as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a scenario always serialises")
    }

    pub fn server(&self, id: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.id == id)
    }

    /// The A records of a name (explicit ones, else its server's addresses).
    pub fn a_records(&self, entry: &NameEntry) -> Vec<Ipv4Addr> {
        if !entry.a.is_empty() || entry.nxdomain {
            return entry.a.clone();
        }
        entry
            .server
            .as_deref()
            .and_then(|id| self.server(id))
            .map(|s| s.ips.clone())
            .unwrap_or_default()
    }

    /// The A records `client` gets for a name: its geo answer when the name has one for
    /// it, else the name's records.
    pub fn a_records_for(&self, entry: &NameEntry, client: DnsClient) -> Vec<Ipv4Addr> {
        let geo = entry.geo.as_ref().map(|geo| match client {
            DnsClient::Vantage => &[][..],
            DnsClient::Control => &geo.control[..],
            DnsClient::Helper => &geo.helper[..],
        });
        match geo {
            Some(answer) if !answer.is_empty() => answer.to_vec(),
            _ => self.a_records(entry),
        }
    }

    /// How long one web step (connect, handshake, response) may take in this lab, the
    /// probe's and the helper's: nothing in a lab is far away, but never shorter than
    /// twice the slowest server's delay.
    pub fn web_step_timeout(&self) -> std::time::Duration {
        let slowest = self
            .servers
            .iter()
            .filter(|s| s.behaviour == Behaviour::Slow)
            .filter_map(|s| s.delay_ms)
            .max()
            .map_or(std::time::Duration::ZERO, std::time::Duration::from_millis);
        std::time::Duration::from_secs(3).max(slowest * 2)
    }

    /// Whether some name answers differently per client.
    pub fn has_geo_names(&self) -> bool {
        self.names.iter().any(|entry| entry.geo.is_some())
    }

    /// Every address the Internet side must hold: servers, plus the lab's own hosts.
    pub fn server_addresses(&self) -> Vec<Ipv4Addr> {
        self.servers
            .iter()
            .flat_map(|s| s.ips.iter().copied())
            .collect()
    }

    fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut server_ids = HashSet::new();
        let mut address_owner: HashMap<Ipv4Addr, &str> = HashMap::new();
        for server in &self.servers {
            if !server_ids.insert(server.id.as_str()) {
                errors.push(format!("server id {:?} is used twice", server.id));
            }
            if server.ips.is_empty() {
                errors.push(format!("server {:?} has no address", server.id));
            }
            for ip in &server.ips {
                if !plan::is_server_address(*ip) {
                    errors.push(format!(
                        "server {:?}: {ip} is outside 198.19.1.0-198.19.255.255 (the lab's server range)",
                        server.id
                    ));
                }
                if let Some(other) = address_owner.insert(*ip, &server.id) {
                    errors.push(format!(
                        "servers {other:?} and {:?} share address {ip}",
                        server.id
                    ));
                }
            }
            if server.behaviour == Behaviour::Slow && server.delay_ms.is_none() {
                errors.push(format!("slow server {:?} needs delay_ms", server.id));
            }
            if server.http_port == server.tls_port {
                errors.push(format!(
                    "server {:?}: http_port and tls_port are both {}",
                    server.id, server.http_port
                ));
            }
        }
        for (pool, ips) in &self.pools {
            if ips.is_empty() {
                errors.push(format!("pool {pool:?} is empty"));
            }
        }
        let mut names = HashSet::new();
        for entry in &self.names {
            let lowered = entry.name.trim_end_matches('.').to_ascii_lowercase();
            if lowered.is_empty() || hickory_proto::rr::Name::from_ascii(&lowered).is_err() {
                errors.push(format!("{:?} is not a valid domain name", entry.name));
            }
            if lowered != entry.name {
                errors.push(format!(
                    "name {:?} must be written lowercase without a trailing dot",
                    entry.name
                ));
            }
            if !names.insert(lowered) {
                errors.push(format!("name {:?} is listed twice", entry.name));
            }
            if let Some(id) = &entry.server
                && self.server(id).is_none()
            {
                errors.push(format!("name {:?}: no server {id:?}", entry.name));
            }
            if entry.nxdomain && (entry.server.is_some() || !entry.a.is_empty()) {
                errors.push(format!(
                    "name {:?} is nxdomain and also has records",
                    entry.name
                ));
            }
            if !entry.nxdomain
                && entry.server.is_none()
                && entry.a.is_empty()
                && entry.aaaa.is_empty()
            {
                errors.push(format!(
                    "name {:?} has no records: give server, a, aaaa, or nxdomain = true",
                    entry.name
                ));
            }
            if let Some(geo) = &entry.geo {
                if entry.nxdomain {
                    errors.push(format!(
                        "name {:?} is nxdomain and has geo answers",
                        entry.name
                    ));
                }
                if geo.control.is_empty() && geo.helper.is_empty() {
                    errors.push(format!("name {:?}: geo answers nothing", entry.name));
                }
                for ip in geo.control.iter().chain(&geo.helper) {
                    if !plan::is_server_address(*ip) {
                        errors.push(format!(
                            "name {:?}: geo address {ip} is outside 198.19.1.0-198.19.255.255",
                            entry.name
                        ));
                    }
                }
            }
            check_expectation(&entry.name, &entry.expect, &mut errors);
        }
        if entry_matches_any(&self.lab.control_name, self) {
            errors.push(format!(
                "control_name {:?} matches a censor rule: controls must be benign",
                self.lab.control_name
            ));
        }
        for rule in &self.dns_rules {
            match (rule.action, &rule.pool) {
                (DnsAction::Inject | DnsAction::CensorOnly, None) => errors.push(format!(
                    "DNS rule {:?}: action {:?} needs a pool",
                    rule.pattern, rule.action
                )),
                (_, Some(pool)) if !self.pools.contains_key(pool) => {
                    errors.push(format!("DNS rule {:?}: no pool {pool:?}", rule.pattern));
                }
                _ => {}
            }
        }
        for (kind, rules) in [("HTTP", &self.http_rules), ("TLS", &self.tls_rules)] {
            for rule in rules {
                if rule.action.is_none() && rule.injector.is_none() {
                    errors.push(format!(
                        "{kind} rule {:?}: give an action or an injector",
                        rule.pattern
                    ));
                }
                if let Some(action @ (FlowAction::Drop | FlowAction::Page)) = rule.action
                    && rule.injector.is_some()
                {
                    let action = if action == FlowAction::Drop {
                        "drop"
                    } else {
                        "page"
                    };
                    errors.push(format!(
                        "{kind} rule {:?}: an injector injects; action {action} contradicts it",
                        rule.pattern
                    ));
                }
                match (rule.action == Some(FlowAction::Page), &rule.page) {
                    (true, None) => errors.push(format!(
                        "{kind} rule {:?}: action page needs a page",
                        rule.pattern
                    )),
                    (false, Some(_)) => errors.push(format!(
                        "{kind} rule {:?}: a page is only for action page",
                        rule.pattern
                    )),
                    (true, Some(page)) => {
                        if kind != "HTTP" {
                            errors.push(format!(
                                "{kind} rule {:?}: action page is for HTTP rules only",
                                rule.pattern
                            ));
                        }
                        if page.body.len() > MAX_PAGE_BODY {
                            errors.push(format!(
                                "{kind} rule {:?}: page body is longer than {MAX_PAGE_BODY} bytes",
                                rule.pattern
                            ));
                        }
                        if !(100..=599).contains(&page.status) {
                            errors.push(format!(
                                "{kind} rule {:?}: page status {} is no HTTP status",
                                rule.pattern, page.status
                            ));
                        }
                    }
                    (false, None) => {}
                }
                if rule.payload.as_ref().is_some_and(|p| p.len() > 1000) {
                    errors.push(format!(
                        "{kind} rule {:?}: payload is longer than 1000 bytes",
                        rule.pattern
                    ));
                }
                if rule.count.is_some_and(|c| c == 0 || c > 16) {
                    errors.push(format!(
                        "{kind} rule {:?}: count must be 1..=16",
                        rule.pattern
                    ));
                }
                if let Some(residual) = rule.residual
                    && residual.secs == 0
                {
                    errors.push(format!(
                        "{kind} rule {:?}: residual secs must be positive",
                        rule.pattern
                    ));
                }
            }
        }
        for rule in &self.ip_rules {
            if !plan::is_server_address(rule.ip) {
                errors.push(format!(
                    "IP rule {}: only server-range addresses can be blocked",
                    rule.ip
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

fn entry_matches_any(name: &str, scenario: &Scenario) -> bool {
    scenario.dns_rules.iter().any(|r| r.matches(name))
        || scenario.http_rules.iter().any(|r| r.matches(name))
        || scenario.tls_rules.iter().any(|r| r.matches(name))
}

fn check_expectation(name: &str, expect: &Expectation, errors: &mut Vec<String>) {
    for (field, stage, allowed) in [
        ("http_stage", expect.http_stage, Stage::HTTP),
        ("tls_stage", expect.tls_stage, Stage::TLS),
    ] {
        if let Some(stage) = stage
            && !allowed.contains(&stage)
        {
            let allowed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            errors.push(format!(
                "name {name:?}: expect.{field} = {:?} is not one of {}",
                stage.as_str(),
                allowed.join(", ")
            ));
        }
    }
    if (expect.dns_method.is_some() || expect.dns_methods.is_some())
        && expect.dns != Some(DnsVerdict::DnsPoisoning)
    {
        errors.push(format!(
            "name {name:?}: expect.dns_method(s) needs expect.dns = \"dns_poisoning\""
        ));
    }
    if let (Some(method), Some(methods)) = (expect.dns_method, &expect.dns_methods)
        && methods.first() != Some(&method)
    {
        errors.push(format!(
            "name {name:?}: expect.dns_method must be the first (strongest) of expect.dns_methods"
        ));
    }
    for (field, stage, has_verdict) in [
        ("http_stage", expect.http_stage, expect.http.is_some()),
        ("tls_stage", expect.tls_stage, expect.tls.is_some()),
    ] {
        if stage.is_some() && !has_verdict {
            errors.push(format!(
                "name {name:?}: expect.{field} needs the stage's verdict too"
            ));
        }
    }
}

/// Where `lab demo` and the tests find the scenario files shipped with censorprobe.
pub fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("targets/lab")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::BlockingLayer;

    #[test]
    fn match_kinds_follow_gfwatch_rule_shapes() {
        let p = "bad.example";
        assert!(MatchKind::Exact.matches(p, "bad.example"));
        assert!(MatchKind::Exact.matches(p, "BAD.example."));
        assert!(!MatchKind::Exact.matches(p, "www.bad.example"));

        assert!(MatchKind::Suffix.matches(p, "www.bad.example"));
        assert!(
            MatchKind::Suffix.matches(p, "notbad.example"),
            "string suffix over-blocks"
        );
        assert!(!MatchKind::Suffix.matches(p, "bad.example.org"));

        assert!(MatchKind::Subdomain.matches(p, "bad.example"));
        assert!(MatchKind::Subdomain.matches(p, "a.b.bad.example"));
        assert!(!MatchKind::Subdomain.matches(p, "notbad.example"));

        assert!(MatchKind::Prefix.matches("bad.", "bad.example.org"));
        assert!(!MatchKind::Prefix.matches("bad.", "notbad.example"));
    }

    #[test]
    fn shipped_scenarios_parse_and_validate() {
        for entry in std::fs::read_dir(scenario_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let scenario = Scenario::load(&path).unwrap();
                assert!(!scenario.names.is_empty(), "{}", path.display());
                // A scenario written back out reads back the same.
                let again = Scenario::parse(&scenario.to_toml(), &path).unwrap();
                assert_eq!(again, scenario);
            }
        }
    }

    #[test]
    fn invalid_scenarios_are_rejected_with_every_reason() {
        let text = r#"
[[servers]]
id = "web"
ips = ["10.0.0.1"]
behaviour = "slow"

[[names]]
name = "Upper.example"
server = "nope"
expect = { http = "rst_injection", http_stage = "handshake", dns_method = "injection" }

[[dns_rules]]
pattern = "x.example"
action = "inject"
pool = "missing"
"#;
        let err = Scenario::parse(text, Path::new("bad.toml")).unwrap_err();
        let message = err.to_string();
        for needle in [
            "outside 198.19.1.0",
            "needs delay_ms",
            "lowercase",
            "no server \"nope\"",
            "expect.http_stage = \"handshake\" is not one of connect, request, response",
            "dns_method(s) needs",
            "no pool \"missing\"",
        ] {
            assert!(
                message.contains(needle),
                "{needle:?} missing from {message}"
            );
        }
    }

    #[test]
    fn expected_blocking_reads_and_writes_false_a_layer_or_the_word_null() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Holder {
            blocking: ExpectedBlocking,
        }
        for (toml_value, blocking, shown) in [
            ("false", Blocking::No, "false"),
            ("\"null\"", Blocking::Inconclusive, "null"),
            ("\"dns\"", Blocking::At(BlockingLayer::Dns), "dns"),
            ("\"tcp_ip\"", Blocking::At(BlockingLayer::TcpIp), "tcp_ip"),
            ("\"http\"", Blocking::At(BlockingLayer::Http), "http"),
            ("\"tls\"", Blocking::At(BlockingLayer::Tls), "tls"),
        ] {
            let text = format!("blocking = {toml_value}\n");
            let holder: Holder = toml::from_str(&text).unwrap();
            assert_eq!(holder.blocking, ExpectedBlocking(blocking));
            assert_eq!(holder.blocking.to_string(), shown);
            assert_eq!(toml::to_string(&holder).unwrap(), text);
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_are_syntax_errors() {
        let err = Scenario::parse("[lab]\ndelay = 3\n", Path::new("x.toml")).unwrap_err();
        assert!(matches!(err, LabError::ScenarioSyntax { .. }), "{err}");
        let err = Scenario::parse(
            "[[names]]\nname = \"a.example\"\na = [\"198.19.1.1\"]\nexpect = { blocking = true }\n",
            Path::new("x.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ambiguous"), "{err}");
        // A word that is no verdict (or no blocking value) is refused when read, naming it.
        let err = Scenario::parse(
            "[[names]]\nname = \"a.example\"\na = [\"198.19.1.1\"]\nexpect = { http = \"rst\" }\n",
            Path::new("x.toml"),
        )
        .unwrap_err();
        assert!(matches!(err, LabError::ScenarioSyntax { .. }), "{err}");
        assert!(err.to_string().contains("http = \"rst\""), "{err}");
        assert!(err.to_string().contains("rst_injection"), "{err}");
        let err = Scenario::parse(
            "[[names]]\nname = \"a.example\"\na = [\"198.19.1.1\"]\nexpect = { blocking = \"false\" }\n",
            Path::new("x.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not \"false\""), "{err}");
        let err =
            Scenario::parse("[censor]\nip_id = \"sometimes\"\n", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("random"), "{err}");
    }
}
