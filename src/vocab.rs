//! The wire vocabulary: every verdict, poisoning method, stage, blocking layer and
//! blocking word a report carries, with its one spelling. Everything else (the judges,
//! the report, the workflows, the lab) names these types instead of strings.
//!
//! Spellings come from derives only: serde and strum both use `snake_case`, and the
//! test at the bottom pins every list of words, so a renamed variant shows up as a
//! failing test rather than as a changed report.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use strum::{EnumString, IntoStaticStr, VariantArray};

/// `as_str` (the wire word), `ALL` (every variant, in declaration order) and `Display`
/// (the wire word, unpadded) for the enums of this module, all from the strum derives.
macro_rules! wire_words {
    ($($ty:ident),* $(,)?) => {$(
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = <$ty as VariantArray>::VARIANTS;

            /// The word the report writes for this value.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

wire_words!(
    DnsVerdict,
    PoisoningMethod,
    HttpVerdict,
    TlsVerdict,
    Stage,
    StageName,
    BlockingLayer,
    BlockingKey,
    SummaryBlockingKey,
);

/// The DNS stage's verdict for one target.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DnsVerdict {
    /// The resolver answered, consistently with the control.
    Ok,
    /// The answer was forged or tampered with; `method` says how we know.
    DnsPoisoning,
    /// The resolver never answered while the control did.
    Timeout,
    /// Genuine NXDOMAIN: the resolver and the control agree the name does not exist.
    Nxdomain,
    /// The resolver answered SERVFAIL, REFUSED or another error code.
    Error,
    /// The evidence does not support any verdict (e.g. the control failed too).
    Inconclusive,
}

impl DnsVerdict {
    /// What this verdict says about blocking. `selective_silence`: the resolver answers
    /// a benign query but never answered this name (the evidence of the DNS judge).
    pub fn claim(self, selective_silence: bool) -> Claim {
        match self {
            DnsVerdict::Ok | DnsVerdict::Nxdomain => Claim::Clean,
            DnsVerdict::DnsPoisoning => Claim::Blocked(BlockingLayer::Dns),
            // Silence is blocking only when the resolver demonstrably answers other names.
            DnsVerdict::Timeout if selective_silence => Claim::Blocked(BlockingLayer::Dns),
            DnsVerdict::Timeout | DnsVerdict::Error | DnsVerdict::Inconclusive => Claim::Unclear,
        }
    }
}

/// How a `dns_poisoning` verdict was established. Declared strongest first:
/// the derived `Ord` ranks methods, and the strongest one found becomes `method`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PoisoningMethod {
    /// Replies that disagree for one query, or any reply from the sink.
    Injection,
    /// An answer address is in the `--forged-ips` list.
    KnownForgedIp,
    /// Bogon answers while the control's are not.
    Bogon,
    /// NXDOMAIN or no data while the control resolves the name.
    ForgedNxdomain,
    /// No answer address in common with the control.
    Inconsistent,
}

/// The HTTP stage's verdict for one target.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum HttpVerdict {
    /// A response arrived and matches no block-page fingerprint.
    Ok,
    /// The connection was reset after our request while the control passed (or a
    /// capture proved the RST injected).
    RstInjection,
    /// No answer before the deadline (at `connect`: the SYN went unanswered).
    Timeout,
    /// An RST answered our SYN.
    Refused,
    /// The connection was closed without a (complete) response while the control passed.
    Eof,
    /// The response matches a block-page fingerprint.
    Blockpage,
    /// The server sent bytes that are no HTTP/1.x response, or crossed a parse bound
    /// (head size, interim responses, chunk-size line, bytes on the wire) before one
    /// was complete. A server answering is not a censor: no blocking claim.
    MalformedResponse,
    /// Something else failed (unreachable network, local error...).
    Error,
    /// The evidence supports no verdict (the control failed too).
    Inconclusive,
    /// Not probed; `reason` says why.
    Skipped,
    /// Every connect of ours to the address failed (dropped or reset: the benign control
    /// too) while the web control, from an uncensored vantage, connected, and the probe's
    /// other paths work: the address is blocked (stage `connect`).
    TcpIpBlocking,
    /// The page differs from the one the web control got from the same address, in the
    /// way OONI's `web_connectivity` defines (status, title, body length proportion,
    /// headers), and matches no block-page fingerprint (stage `response`).
    HttpDiff,
    /// Our connects failed, and the web control's failed the same way: the server is
    /// down or the port closed, not blocked (stage `connect`).
    Down,
}

impl HttpVerdict {
    /// What this verdict at this stage says about blocking.
    pub fn claim(self, stage: Option<Stage>) -> Claim {
        match (self, stage) {
            (HttpVerdict::Ok | HttpVerdict::Down, _) => Claim::Clean,
            (HttpVerdict::RstInjection, Some(Stage::Connect)) => {
                Claim::Blocked(BlockingLayer::TcpIp)
            }
            (HttpVerdict::TcpIpBlocking, _) => Claim::Blocked(BlockingLayer::TcpIp),
            (HttpVerdict::RstInjection | HttpVerdict::Blockpage | HttpVerdict::HttpDiff, _)
            | (HttpVerdict::Timeout | HttpVerdict::Eof, Some(Stage::Request | Stage::Response)) => {
                Claim::Blocked(BlockingLayer::Http)
            }
            (HttpVerdict::Skipped, _) => Claim::NotRun,
            _ => Claim::Unclear,
        }
    }
}

/// The TLS stage's verdict for one target.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TlsVerdict {
    /// The handshake completed with a chain valid for the name.
    Ok,
    /// The handshake was reset while the control passed (or a capture proved the RST
    /// injected).
    RstInjection,
    /// No answer before the deadline (at `connect`: the SYN went unanswered).
    Timeout,
    /// An RST answered our SYN.
    Refused,
    /// The connection was closed during the handshake while the control passed.
    Eof,
    /// The handshake completed; the chain is not valid for the name (`evidence` says why).
    CertInvalid,
    /// The handshake ended with a fatal alert from the other side.
    TlsAlert,
    /// Something else failed (unreachable network, protocol error...).
    Error,
    /// The evidence supports no verdict (the control failed too).
    Inconclusive,
    /// Not probed; `reason` says why.
    Skipped,
    /// Every connect of ours to the address failed while the web control connected, and
    /// the probe's other paths work: the address is blocked (stage `connect`).
    TcpIpBlocking,
    /// Our connects failed, and the web control's failed the same way: the server is
    /// down or the port closed, not blocked (stage `connect`).
    Down,
}

impl TlsVerdict {
    /// What this verdict at this stage says about blocking.
    pub fn claim(self, stage: Option<Stage>) -> Claim {
        match (self, stage) {
            (TlsVerdict::Ok | TlsVerdict::CertInvalid | TlsVerdict::Down, _) => Claim::Clean,
            (TlsVerdict::TcpIpBlocking, _) => Claim::Blocked(BlockingLayer::TcpIp),
            (TlsVerdict::RstInjection, Some(Stage::Connect)) => {
                Claim::Blocked(BlockingLayer::TcpIp)
            }
            (TlsVerdict::RstInjection, _)
            | (TlsVerdict::Timeout | TlsVerdict::Eof, Some(Stage::Handshake)) => {
                Claim::Blocked(BlockingLayer::Tls)
            }
            (TlsVerdict::Skipped, _) => Claim::NotRun,
            _ => Claim::Unclear,
        }
    }
}

/// Where in a connection's life something happened.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Stage {
    /// The TCP handshake (our SYN) did not complete.
    Connect,
    /// HTTP: after our request went out, before any byte of a response.
    Request,
    /// HTTP: after the first byte of a response arrived.
    Response,
    /// TLS: after the TCP handshake, before the TLS handshake completed.
    Handshake,
}

impl Stage {
    /// The places an HTTP probe can fail.
    pub const HTTP: &'static [Stage] = &[Stage::Connect, Stage::Request, Stage::Response];
    /// The places a TLS probe can fail.
    pub const TLS: &'static [Stage] = &[Stage::Connect, Stage::Handshake];
}

/// The probe stages, by the name a record, `--tests` and the consensus use for them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum StageName {
    Dns,
    Http,
    Tls,
}

/// The layer at which a target is blocked. Declared in the order a user meets them:
/// the derived `Ord` makes the first blocked layer the smallest.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum BlockingLayer {
    Dns,
    TcpIp,
    Http,
    Tls,
}

/// What one verdict says about blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The stage worked, or failed for an honest non-censorship reason.
    Clean,
    Blocked(BlockingLayer),
    /// The evidence does not say (dead host or IP-level block, broken server...).
    Unclear,
    NotRun,
}

/// The target-level `blocking` field: `false`, a layer, or `null` (inconclusive). A
/// record without the field reads as inconclusive (serde asks an `Option` for a
/// missing field, and `None` is inconclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Option<BlockingJson>", into = "Option<BlockingWire>")]
pub enum Blocking {
    /// Every stage that ran is clean.
    No,
    At(BlockingLayer),
    /// Some stage's evidence does not say.
    Inconclusive,
}

impl Blocking {
    /// The target's blocking from its stages' claims: the first blocked layer (in the
    /// order a user meets them: DNS, TCP/IP, HTTP, TLS); otherwise inconclusive when some
    /// stage is unclear; otherwise `No` (every stage that ran is clean, or none ran).
    pub fn from_claims(claims: &[Claim]) -> Blocking {
        let blocked = claims
            .iter()
            .filter_map(|claim| match claim {
                Claim::Blocked(layer) => Some(*layer),
                _ => None,
            })
            .min();
        match blocked {
            Some(layer) => Blocking::At(layer),
            None if claims.contains(&Claim::Unclear) => Blocking::Inconclusive,
            None => Blocking::No,
        }
    }
}

impl From<BlockingLayer> for Blocking {
    fn from(layer: BlockingLayer) -> Self {
        Blocking::At(layer)
    }
}

/// How `blocking` is written: `false` or a layer (`None`, JSON null, is inconclusive).
#[derive(Serialize)]
#[serde(untagged)]
enum BlockingWire {
    Flag(bool),
    Layer(BlockingLayer),
}

/// How `blocking` is read: any bool or string, judged by `TryFrom` so the errors name
/// the offending value.
#[derive(Deserialize)]
#[serde(untagged)]
enum BlockingJson {
    Flag(bool),
    Word(String),
}

impl From<Blocking> for Option<BlockingWire> {
    fn from(blocking: Blocking) -> Self {
        match blocking {
            Blocking::No => Some(BlockingWire::Flag(false)),
            Blocking::At(layer) => Some(BlockingWire::Layer(layer)),
            Blocking::Inconclusive => None,
        }
    }
}

impl TryFrom<Option<BlockingJson>> for Blocking {
    type Error = String;

    fn try_from(value: Option<BlockingJson>) -> Result<Self, Self::Error> {
        match value {
            None => Ok(Blocking::Inconclusive),
            Some(BlockingJson::Flag(false)) => Ok(Blocking::No),
            Some(BlockingJson::Flag(true)) => {
                Err("blocking is false, a layer name or null, never true".to_owned())
            }
            Some(BlockingJson::Word(word)) => BlockingLayer::from_str(&word)
                .map(Blocking::At)
                .map_err(|_| format!("unknown blocking layer {word:?}")),
        }
    }
}

/// `blocking` as a map key or a word in text: `false`, a layer, or `null` (consensus
/// counts, the summary/diff/check workflows, the lab's expectations).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum BlockingKey {
    #[serde(rename = "false")]
    #[strum(serialize = "false")]
    No,
    Dns,
    TcpIp,
    Http,
    Tls,
    #[serde(rename = "null")]
    #[strum(serialize = "null")]
    Inconclusive,
}

/// `blocking` as a key of the report's summary record: `false`, a layer, or
/// `inconclusive` (the summary's schema names null so).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SummaryBlockingKey {
    #[serde(rename = "false")]
    #[strum(serialize = "false")]
    No,
    Dns,
    TcpIp,
    Http,
    Tls,
    Inconclusive,
}

impl From<Blocking> for BlockingKey {
    fn from(blocking: Blocking) -> Self {
        match blocking {
            Blocking::No => BlockingKey::No,
            Blocking::At(BlockingLayer::Dns) => BlockingKey::Dns,
            Blocking::At(BlockingLayer::TcpIp) => BlockingKey::TcpIp,
            Blocking::At(BlockingLayer::Http) => BlockingKey::Http,
            Blocking::At(BlockingLayer::Tls) => BlockingKey::Tls,
            Blocking::Inconclusive => BlockingKey::Inconclusive,
        }
    }
}

impl From<BlockingKey> for Blocking {
    fn from(key: BlockingKey) -> Self {
        match key {
            BlockingKey::No => Blocking::No,
            BlockingKey::Dns => Blocking::At(BlockingLayer::Dns),
            BlockingKey::TcpIp => Blocking::At(BlockingLayer::TcpIp),
            BlockingKey::Http => Blocking::At(BlockingLayer::Http),
            BlockingKey::Tls => Blocking::At(BlockingLayer::Tls),
            BlockingKey::Inconclusive => Blocking::Inconclusive,
        }
    }
}

impl From<Blocking> for SummaryBlockingKey {
    fn from(blocking: Blocking) -> Self {
        match blocking {
            Blocking::No => SummaryBlockingKey::No,
            Blocking::At(BlockingLayer::Dns) => SummaryBlockingKey::Dns,
            Blocking::At(BlockingLayer::TcpIp) => SummaryBlockingKey::TcpIp,
            Blocking::At(BlockingLayer::Http) => SummaryBlockingKey::Http,
            Blocking::At(BlockingLayer::Tls) => SummaryBlockingKey::Tls,
            Blocking::Inconclusive => SummaryBlockingKey::Inconclusive,
        }
    }
}

impl From<SummaryBlockingKey> for Blocking {
    fn from(key: SummaryBlockingKey) -> Self {
        match key {
            SummaryBlockingKey::No => Blocking::No,
            SummaryBlockingKey::Dns => Blocking::At(BlockingLayer::Dns),
            SummaryBlockingKey::TcpIp => Blocking::At(BlockingLayer::TcpIp),
            SummaryBlockingKey::Http => Blocking::At(BlockingLayer::Http),
            SummaryBlockingKey::Tls => Blocking::At(BlockingLayer::Tls),
            SummaryBlockingKey::Inconclusive => Blocking::Inconclusive,
        }
    }
}

/// The verdict vocabulary of one stage.
pub trait StageVerdict:
    Copy + Eq + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    const ALL: &'static [Self];
    /// The wire name.
    fn name(self) -> &'static str;
    /// What the verdict (at this place, for web stages) says about blocking, without
    /// the evidence the record carries.
    fn blocking_claim(self, place: Option<Stage>) -> Claim;
    /// The stage worked.
    fn is_ok(self) -> bool;
    /// The name does not exist (DNS only).
    fn is_nxdomain(self) -> bool {
        false
    }
}

impl StageVerdict for DnsVerdict {
    const ALL: &'static [Self] = DnsVerdict::ALL;

    fn name(self) -> &'static str {
        self.as_str()
    }

    /// Without the evidence a selective silence is only a timeout: unclear.
    fn blocking_claim(self, _: Option<Stage>) -> Claim {
        self.claim(false)
    }

    fn is_ok(self) -> bool {
        self == DnsVerdict::Ok
    }

    fn is_nxdomain(self) -> bool {
        self == DnsVerdict::Nxdomain
    }
}

/// The web stages' verdicts: the claim depends on where in the connection it happened.
macro_rules! web_stage_verdict {
    ($($ty:ident),+) => {$(
        impl StageVerdict for $ty {
            const ALL: &'static [Self] = $ty::ALL;

            fn name(self) -> &'static str {
                self.as_str()
            }

            fn blocking_claim(self, place: Option<Stage>) -> Claim {
                self.claim(place)
            }

            fn is_ok(self) -> bool {
                self == $ty::Ok
            }
        }
    )+};
}

web_stage_verdict!(HttpVerdict, TlsVerdict);

/// A stage's verdict in an outcome: one measurement's, or the consensus of several
/// attempts, which may have no majority or a majority of attempts without the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Majority<V> {
    /// No verdict has more than half of the attempts.
    #[serde(rename = "no_majority")]
    NoMajority,
    /// Most attempts did not run the stage (the `none` count of a consensus).
    #[serde(rename = "none")]
    NotRun,
    #[serde(untagged)]
    Of(V),
}

impl<V: StageVerdict> Majority<V> {
    pub fn as_str(self) -> &'static str {
        match self {
            Majority::NoMajority => "no_majority",
            Majority::NotRun => "none",
            Majority::Of(verdict) => verdict.name(),
        }
    }

    pub fn verdict(self) -> Option<V> {
        match self {
            Majority::Of(verdict) => Some(verdict),
            Majority::NoMajority | Majority::NotRun => None,
        }
    }

    pub fn is_ok(self) -> bool {
        self.verdict().is_some_and(V::is_ok)
    }
}

impl<V: StageVerdict> fmt::Display for Majority<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every word of `T`, in declaration order, after checking that serde writes and
    /// reads each one exactly as `as_str`/`FromStr` do.
    fn words<T>(all: &[T]) -> Vec<&'static str>
    where
        T: Copy
            + PartialEq
            + fmt::Debug
            + fmt::Display
            + Serialize
            + for<'de> Deserialize<'de>
            + FromStr
            + Into<&'static str>,
        <T as FromStr>::Err: fmt::Debug,
    {
        all.iter()
            .map(|&value| {
                let word: &'static str = value.into();
                assert_eq!(value.to_string(), word);
                assert_eq!(
                    serde_json::to_string(&value).unwrap(),
                    format!("\"{word}\"")
                );
                assert_eq!(
                    serde_json::from_str::<T>(&format!("\"{word}\"")).unwrap(),
                    value
                );
                assert_eq!(word.parse::<T>().unwrap(), value);
                word
            })
            .collect()
    }

    #[test]
    fn wire_words_are_pinned() {
        assert_eq!(
            words(DnsVerdict::ALL),
            [
                "ok",
                "dns_poisoning",
                "timeout",
                "nxdomain",
                "error",
                "inconclusive"
            ]
        );
        assert_eq!(
            words(PoisoningMethod::ALL),
            [
                "injection",
                "known_forged_ip",
                "bogon",
                "forged_nxdomain",
                "inconsistent"
            ]
        );
        assert_eq!(
            words(HttpVerdict::ALL),
            [
                "ok",
                "rst_injection",
                "timeout",
                "refused",
                "eof",
                "blockpage",
                "malformed_response",
                "error",
                "inconclusive",
                "skipped",
                "tcp_ip_blocking",
                "http_diff",
                "down"
            ]
        );
        assert_eq!(
            words(TlsVerdict::ALL),
            [
                "ok",
                "rst_injection",
                "timeout",
                "refused",
                "eof",
                "cert_invalid",
                "tls_alert",
                "error",
                "inconclusive",
                "skipped",
                "tcp_ip_blocking",
                "down"
            ]
        );
        assert_eq!(
            words(Stage::ALL),
            ["connect", "request", "response", "handshake"]
        );
        assert_eq!(words(StageName::ALL), ["dns", "http", "tls"]);
        assert_eq!(words(BlockingLayer::ALL), ["dns", "tcp_ip", "http", "tls"]);
        assert_eq!(
            words(BlockingKey::ALL),
            ["false", "dns", "tcp_ip", "http", "tls", "null"]
        );
        assert_eq!(
            words(SummaryBlockingKey::ALL),
            ["false", "dns", "tcp_ip", "http", "tls", "inconclusive"]
        );
    }

    #[test]
    fn unknown_words_are_rejected() {
        assert!("rst".parse::<HttpVerdict>().is_err());
        assert!("OK".parse::<DnsVerdict>().is_err());
        assert!(serde_json::from_str::<TlsVerdict>("\"alert\"").is_err());
        assert!("none".parse::<BlockingKey>().is_err());
        assert!("null".parse::<SummaryBlockingKey>().is_err());
    }

    fn every_blocking() -> Vec<Blocking> {
        [Blocking::No, Blocking::Inconclusive]
            .into_iter()
            .chain(BlockingLayer::ALL.iter().copied().map(Blocking::At))
            .collect()
    }

    #[test]
    fn blocking_is_false_a_layer_or_null_on_the_wire() {
        let wire: Vec<String> = every_blocking()
            .into_iter()
            .map(|b| serde_json::to_string(&b).unwrap())
            .collect();
        assert_eq!(
            wire,
            [
                "false",
                "null",
                "\"dns\"",
                "\"tcp_ip\"",
                "\"http\"",
                "\"tls\""
            ]
        );
        for (blocking, json) in every_blocking().into_iter().zip(&wire) {
            assert_eq!(serde_json::from_str::<Blocking>(json).unwrap(), blocking);
        }
    }

    #[test]
    fn blocking_rejects_true_and_unknown_layers_naming_the_value() {
        let err = serde_json::from_str::<Blocking>("true").unwrap_err();
        assert!(
            err.to_string()
                .contains("blocking is false, a layer name or null, never true"),
            "{err}"
        );
        let err = serde_json::from_str::<Blocking>("\"ip\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown blocking layer \"ip\""),
            "{err}"
        );
        assert!(serde_json::from_str::<Blocking>("1").is_err());
    }

    #[test]
    fn a_missing_blocking_field_reads_as_inconclusive() {
        #[derive(Deserialize)]
        struct Record {
            blocking: Blocking,
        }
        let record: Record = serde_json::from_str("{}").unwrap();
        assert_eq!(record.blocking, Blocking::Inconclusive);
        let record: Record = serde_json::from_str(r#"{"blocking":false}"#).unwrap();
        assert_eq!(record.blocking, Blocking::No);
    }

    #[test]
    fn blocking_keys_spell_null_their_own_way() {
        for blocking in every_blocking() {
            let key = BlockingKey::from(blocking);
            let summary_key = SummaryBlockingKey::from(blocking);
            assert_eq!(Blocking::from(key), blocking);
            assert_eq!(Blocking::from(summary_key), blocking);
            match blocking {
                Blocking::No => {
                    assert_eq!((key.as_str(), summary_key.as_str()), ("false", "false"));
                }
                Blocking::At(layer) => {
                    assert_eq!(key.as_str(), layer.as_str());
                    assert_eq!(summary_key.as_str(), layer.as_str());
                }
                Blocking::Inconclusive => {
                    assert_eq!(
                        (key.as_str(), summary_key.as_str()),
                        ("null", "inconclusive")
                    );
                }
            }
        }
    }

    #[test]
    fn claims_give_the_first_blocked_layer_then_unclear_then_no() {
        use Claim::{Blocked, Clean, NotRun, Unclear};
        let cases: [(&[Claim], Blocking); 7] = [
            (&[], Blocking::No),
            (&[Clean, NotRun], Blocking::No),
            (&[Clean, Unclear], Blocking::Inconclusive),
            (
                &[Unclear, Blocked(BlockingLayer::Tls)],
                Blocking::At(BlockingLayer::Tls),
            ),
            (
                &[Blocked(BlockingLayer::Tls), Blocked(BlockingLayer::Http)],
                Blocking::At(BlockingLayer::Http),
            ),
            (
                &[Blocked(BlockingLayer::Http), Blocked(BlockingLayer::TcpIp)],
                Blocking::At(BlockingLayer::TcpIp),
            ),
            (
                &[
                    Clean,
                    Blocked(BlockingLayer::Tls),
                    Blocked(BlockingLayer::Dns),
                ],
                Blocking::At(BlockingLayer::Dns),
            ),
        ];
        for (claims, blocking) in cases {
            assert_eq!(Blocking::from_claims(claims), blocking, "{claims:?}");
        }
    }

    #[test]
    fn dns_silence_claims_blocking_only_when_selective() {
        assert_eq!(
            DnsVerdict::Timeout.claim(true),
            Claim::Blocked(BlockingLayer::Dns)
        );
        assert_eq!(DnsVerdict::Timeout.claim(false), Claim::Unclear);
        assert_eq!(
            DnsVerdict::DnsPoisoning.claim(false),
            Claim::Blocked(BlockingLayer::Dns)
        );
        assert_eq!(DnsVerdict::Nxdomain.claim(true), Claim::Clean);
        assert_eq!(DnsVerdict::Error.claim(true), Claim::Unclear);
    }
}
