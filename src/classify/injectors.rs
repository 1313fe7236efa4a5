//! Injector fingerprints (`targets/injectors.toml`, `--injectors FILE`): the packet
//! patterns of known injectors (GFW types I–III, provincial firewalls).
//!
//! A fingerprint names an injector; it never decides whether packets were injected
//! (that is [`crate::classify::packets`]'s judgement on the packets alone). A file given
//! with `--injectors` extends the built-in rows: its rows are tried first, a row named
//! like a built-in one replaces it, and `replace_builtin = true` drops the built-in rows.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::observation::packets::{PAYLOAD_HEAD_BYTES, PacketFacts, TcpFlagSet};

/// The name given to injected packets that match no fingerprint.
pub const UNKNOWN_INJECTOR: &str = crate::record::assessment::InjectorMatch::UNKNOWN;

/// The fingerprint file shipped with censorprobe.
pub const BUILTIN_INJECTORS: &str = include_str!("../../targets/injectors.toml");

/// Why an injector file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InjectorError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot load injector fingerprints from {source_name}")]
    Syntax {
        source_name: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("cannot load injector fingerprints from {source_name}: {problem}")]
    Invalid {
        source_name: String,
        problem: FingerprintProblem,
    },
}

/// What is wrong with a fingerprint row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintProblem {
    #[error("a fingerprint has an empty name")]
    EmptyName,
    #[error("the name {UNKNOWN_INJECTOR:?} is reserved for injected packets no row matches")]
    ReservedName,
    #[error("fingerprint name {0:?} appears twice")]
    DuplicateName(String),
    #[error(
        "fingerprint {0:?} has no per-packet condition (flags, ttl, ip_id, df, window or payload_hex): it would name every injector"
    )]
    NoCondition(String),
    #[error("fingerprint {name:?}: {field} range has min {min} above max {max}")]
    BadRange {
        name: String,
        field: &'static str,
        min: u64,
        max: u64,
    },
    #[error("fingerprint {name:?}: count must be at least 1")]
    ZeroCount { name: String },
    #[error("fingerprint {name:?}: max_span_ms must be a finite number >= 0, not {value}")]
    BadSpan { name: String, value: f64 },
    #[error("fingerprint {name:?}: payload_hex {reason}")]
    BadPayload { name: String, reason: String },
}

/// A number to match exactly, or an inclusive range `{ min, max }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ValueMatch<T> {
    Exactly(T),
    Within(ValueRange<T>),
}

/// An inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRange<T> {
    pub min: T,
    pub max: T,
}

impl<T: Copy + PartialOrd + Into<u64>> ValueMatch<T> {
    pub fn contains(&self, value: T) -> bool {
        match *self {
            ValueMatch::Exactly(v) => v == value,
            ValueMatch::Within(ValueRange { min, max }) => min <= value && value <= max,
        }
    }

    fn check(&self, name: &str, field: &'static str) -> Result<(), FingerprintProblem> {
        match *self {
            ValueMatch::Within(ValueRange { min, max }) if min > max => {
                Err(FingerprintProblem::BadRange {
                    name: name.to_owned(),
                    field,
                    min: min.into(),
                    max: max.into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// `{what} {value}` with the condition when it is a range, hex or decimal.
    fn fact(&self, what: &str, value: T, hex: bool) -> String {
        let show = |v: T| {
            let v: u64 = v.into();
            if hex {
                format!("{v:#06x}")
            } else {
                v.to_string()
            }
        };
        match *self {
            ValueMatch::Exactly(_) => format!("{what} {}", show(value)),
            ValueMatch::Within(ValueRange { min, max }) => {
                format!("{what} {} in {}–{}", show(value), show(min), show(max))
            }
        }
    }
}

/// One injector's packet pattern. Every condition given must hold for every packet of
/// a burst of injected packets (and `count`, `max_span_ms`, `ip_id_same_in_burst` for
/// the burst as a whole).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectorFingerprint {
    pub name: String,
    pub description: String,
    pub source: String,
    #[serde(default)]
    pub flags: Option<TcpFlagSet>,
    #[serde(default)]
    pub count: Option<ValueMatch<u32>>,
    #[serde(default)]
    pub max_span_ms: Option<f64>,
    #[serde(default)]
    pub ttl: Option<ValueMatch<u8>>,
    #[serde(default)]
    pub ip_id: Option<ValueMatch<u16>>,
    #[serde(default)]
    pub ip_id_same_in_burst: Option<bool>,
    #[serde(default)]
    pub df: Option<bool>,
    #[serde(default)]
    pub window: Option<ValueMatch<u16>>,
    /// Hex as written; [`InjectorFingerprint::payload`] is the bytes.
    #[serde(default)]
    pub payload_hex: Option<String>,
    /// Parsed `payload_hex` (lowercase, no separators), set when the file is loaded.
    #[serde(skip)]
    payload: Option<String>,
}

/// Hex without separators, lowercase; spaces and colons between bytes are allowed.
fn normalise_hex(text: &str) -> Result<String, String> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let bytes = hex::decode(&compact).map_err(|e| format!("is not hex: {e}"))?;
    if bytes.len() > PAYLOAD_HEAD_BYTES {
        return Err(format!(
            "has {} bytes; a record keeps only the first {PAYLOAD_HEAD_BYTES} of a payload",
            bytes.len()
        ));
    }
    Ok(compact)
}

/// Hex bytes spaced for reading: `01 02 03`.
pub fn spaced_hex(compact: &str) -> String {
    compact
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl InjectorFingerprint {
    fn validate(&mut self) -> Result<(), FingerprintProblem> {
        let name = self.name.clone();
        if name.trim().is_empty() {
            return Err(FingerprintProblem::EmptyName);
        }
        if name == UNKNOWN_INJECTOR {
            return Err(FingerprintProblem::ReservedName);
        }
        let per_packet = self.flags.is_some()
            || self.ttl.is_some()
            || self.ip_id.is_some()
            || self.df.is_some()
            || self.window.is_some()
            || self.payload_hex.is_some();
        if !per_packet {
            return Err(FingerprintProblem::NoCondition(name));
        }
        if let Some(count) = &self.count {
            count.check(&name, "count")?;
            let min = match *count {
                ValueMatch::Exactly(n) => n,
                ValueMatch::Within(r) => r.min,
            };
            if min == 0 {
                return Err(FingerprintProblem::ZeroCount { name });
            }
        }
        if let Some(ttl) = &self.ttl {
            ttl.check(&name, "ttl")?;
        }
        if let Some(id) = &self.ip_id {
            id.check(&name, "ip_id")?;
        }
        if let Some(window) = &self.window {
            window.check(&name, "window")?;
        }
        if let Some(span) = self.max_span_ms
            && !(span.is_finite() && span >= 0.0)
        {
            return Err(FingerprintProblem::BadSpan { name, value: span });
        }
        if let Some(text) = &self.payload_hex {
            let compact = normalise_hex(text)
                .map_err(|reason| FingerprintProblem::BadPayload { name, reason })?;
            self.payload = Some(compact);
        }
        Ok(())
    }

    /// The facts of `burst` (the injected packets of one burst, in arrival order) this
    /// fingerprint matches, with their values; `None` unless every condition holds.
    pub fn matches(&self, burst: &[&PacketFacts]) -> Option<Vec<String>> {
        let first = *burst.first()?;
        let tcp = |p: &PacketFacts| p.tcp().cloned();
        let tcps: Vec<_> = burst.iter().map(|p| tcp(p)).collect::<Option<Vec<_>>>()?;
        let first_tcp = &tcps[0];
        let count = u32::try_from(burst.len()).unwrap_or(u32::MAX);
        let span_ms = burst
            .last()
            .map_or(0, |last| last.at_us.saturating_sub(first.at_us)) as f64
            / 1000.0;
        let mut facts = Vec::new();

        if let Some(flags) = self.flags
            && tcps.iter().any(|t| t.flags != flags)
        {
            return None;
        }
        if let Some(want) = &self.count
            && !want.contains(count)
        {
            return None;
        }
        if let Some(max) = self.max_span_ms
            && span_ms > max
        {
            return None;
        }
        // The burst's shape: "3 × RST+ACK within 0.30 ms".
        let what = self
            .flags
            .map_or_else(|| "packet(s)".to_owned(), |f| f.to_string());
        if self.count.is_some() || self.flags.is_some() || self.max_span_ms.is_some() {
            let within = if count > 1 {
                format!(" within {span_ms:.2} ms")
            } else {
                String::new()
            };
            facts.push(if count == 1 {
                format!("1 {what}")
            } else {
                format!("{count} identical {what}{within}")
            });
        }
        if let Some(ttl) = &self.ttl {
            if burst.iter().any(|p| !ttl.contains(p.ip.ttl)) {
                return None;
            }
            facts.push(ttl.fact("IP TTL", first.ip.ttl, false));
        }
        if let Some(want) = &self.ip_id {
            let ids: Vec<u16> = burst.iter().map(|p| p.ip.ip_id).collect::<Option<_>>()?;
            if ids.iter().any(|id| !want.contains(*id)) {
                return None;
            }
            facts.push(want.fact("IP ID", ids[0], true));
        }
        if let Some(same) = self.ip_id_same_in_burst {
            let ids: Vec<u16> = burst.iter().map(|p| p.ip.ip_id).collect::<Option<_>>()?;
            let all_same = ids.iter().all(|id| *id == ids[0]);
            if all_same != same {
                return None;
            }
            facts.push(if same {
                format!("IP ID {:#06x} in all {count}", ids[0])
            } else {
                "IP IDs differ within the burst".to_owned()
            });
        }
        if let Some(df) = self.df {
            if burst.iter().any(|p| p.ip.df != Some(df)) {
                return None;
            }
            facts.push(if df { "IP DF set" } else { "IP DF clear" }.to_owned());
        }
        if let Some(window) = &self.window {
            if tcps.iter().any(|t| !window.contains(t.window)) {
                return None;
            }
            facts.push(window.fact("TCP window", first_tcp.window, false));
        }
        if let Some(payload) = &self.payload {
            let expected_len = payload.len() / 2;
            let matches = |t: &crate::observation::packets::TcpFacts| {
                t.payload_len as usize == expected_len
                    && t.payload_hex.eq_ignore_ascii_case(payload)
            };
            if !tcps.iter().all(matches) {
                return None;
            }
            facts.push(if payload.is_empty() {
                "no payload".to_owned()
            } else {
                format!("payload {} ({expected_len} bytes)", spaced_hex(payload))
            });
        }
        Some(facts)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectorFile {
    /// Drop the built-in rows (for `--injectors`).
    #[serde(default)]
    replace_builtin: bool,
    #[serde(default)]
    injector: Vec<InjectorFingerprint>,
}

/// A set of injector fingerprints, tried in order.
#[derive(Debug, Clone, Default)]
pub struct InjectorSet {
    fingerprints: Vec<InjectorFingerprint>,
}

impl InjectorSet {
    /// The fingerprints shipped with censorprobe (`targets/injectors.toml`).
    pub fn builtin() -> InjectorSet {
        Self::parse("builtin injectors.toml", BUILTIN_INJECTORS)
            .map(|(set, _)| set)
            .expect("the built-in injector file is valid (tested)")
    }

    /// The built-in set, parsed once (the web judge uses it per connection).
    pub fn builtin_shared() -> &'static InjectorSet {
        static BUILTIN: std::sync::LazyLock<InjectorSet> =
            std::sync::LazyLock::new(InjectorSet::builtin);
        &BUILTIN
    }

    /// Fingerprints from a TOML file, extending the built-in ones: the file's rows are
    /// tried first, a row named like a built-in one replaces it; with
    /// `replace_builtin = true` only the file's rows are used.
    pub fn load(path: &Path) -> Result<InjectorSet, InjectorError> {
        let text = std::fs::read_to_string(path).map_err(|source| InjectorError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&path.display().to_string(), &text)
    }

    /// Like [`InjectorSet::load`], from text (`source_name` names it in errors).
    pub fn from_toml(source_name: &str, text: &str) -> Result<InjectorSet, InjectorError> {
        let (mut set, replace_builtin) = Self::parse(source_name, text)?;
        if !replace_builtin {
            let own: HashSet<String> = set.fingerprints.iter().map(|f| f.name.clone()).collect();
            set.fingerprints.extend(
                Self::builtin()
                    .fingerprints
                    .into_iter()
                    .filter(|f| !own.contains(&f.name)),
            );
        }
        Ok(set)
    }

    fn parse(source_name: &str, text: &str) -> Result<(InjectorSet, bool), InjectorError> {
        let file: InjectorFile = toml::from_str(text).map_err(|source| InjectorError::Syntax {
            source_name: source_name.to_owned(),
            source,
        })?;
        let invalid = |problem| InjectorError::Invalid {
            source_name: source_name.to_owned(),
            problem,
        };
        let mut seen = HashSet::new();
        let mut fingerprints = file.injector;
        for fp in &mut fingerprints {
            fp.validate().map_err(invalid)?;
            if !seen.insert(fp.name.clone()) {
                return Err(invalid(FingerprintProblem::DuplicateName(fp.name.clone())));
            }
        }
        Ok((InjectorSet { fingerprints }, file.replace_builtin))
    }

    pub fn fingerprints(&self) -> &[InjectorFingerprint] {
        &self.fingerprints
    }

    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    /// The first fingerprint `burst` matches, with the matching facts.
    pub fn find(&self, burst: &[&PacketFacts]) -> Option<(&InjectorFingerprint, Vec<String>)> {
        self.fingerprints
            .iter()
            .find_map(|fp| fp.matches(burst).map(|facts| (fp, facts)))
    }
}

impl fmt::Display for InjectorFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> FingerprintProblem {
        match InjectorSet::from_toml("test.toml", text) {
            Err(InjectorError::Invalid { problem, .. }) => problem,
            other => panic!("expected an invalid row, got {other:?}"),
        }
    }

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\nsource = \"s\"\n";

    #[test]
    fn the_builtin_file_has_the_four_documented_injectors() {
        let set = InjectorSet::builtin();
        let names: Vec<&str> = set.fingerprints().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["gfw_type_i", "gfw_type_ii", "gfw_type_iii", "henan"]
        );
        let henan = &set.fingerprints()[3];
        assert_eq!(henan.payload.as_deref(), Some("01020304050607080900"));
        assert_eq!(
            set.fingerprints()[2].ip_id,
            Some(ValueMatch::Within(ValueRange {
                min: 0x9916,
                max: 0x9933
            }))
        );
    }

    #[test]
    fn a_file_extends_the_builtin_rows_replaces_by_name_or_replaces_all() {
        let text = format!(
            "[[injector]]\n{HEAD}flags = \"FIN+ACK\"\n[[injector]]\nname = \"henan\"\ndescription = \"mine\"\nsource = \"me\"\nttl = 60\n"
        );
        let set = InjectorSet::from_toml("mine.toml", &text).unwrap();
        let names: Vec<&str> = set.fingerprints().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["x", "henan", "gfw_type_i", "gfw_type_ii", "gfw_type_iii"]
        );
        assert_eq!(set.fingerprints()[1].description, "mine");
        let only = format!("replace_builtin = true\n[[injector]]\n{HEAD}df = true\n");
        assert_eq!(InjectorSet::from_toml("only.toml", &only).unwrap().len(), 1);
    }

    #[test]
    fn injector_files_with_unknown_keys_or_bad_values_are_refused() {
        // Unknown keys, at the top and in a row.
        for text in [
            "colour = 1\n".to_owned(),
            format!("[[injector]]\n{HEAD}ttl = 58\nresidual = 180\n"),
            format!("[[injector]]\n{HEAD}ip_id = {{ min = 1, max = 2, step = 1 }}\n"),
            format!("[[injector]]\n{HEAD}flags = \"RST+BOGUS\"\n"),
            format!("[[injector]]\n{HEAD}ttl = 300\n"),
            "[[injector]]\nname = \"x\"\nttl = 1\n".to_owned(),
        ] {
            assert!(
                matches!(
                    InjectorSet::from_toml("bad.toml", &text),
                    Err(InjectorError::Syntax { .. })
                ),
                "{text}"
            );
        }
        assert!(matches!(
            problem(&format!(
                "[[injector]]\n{HEAD}ip_id = {{ min = 0x9933, max = 0x9916 }}\n"
            )),
            FingerprintProblem::BadRange {
                field: "ip_id",
                min: 0x9933,
                max: 0x9916,
                ..
            }
        ));
        assert!(matches!(
            problem(&format!("[[injector]]\n{HEAD}count = 3\n")),
            FingerprintProblem::NoCondition(_)
        ));
        assert!(matches!(
            problem(&format!("[[injector]]\n{HEAD}df = true\ncount = 0\n")),
            FingerprintProblem::ZeroCount { .. }
        ));
        assert!(matches!(
            problem(&format!(
                "[[injector]]\n{HEAD}df = true\nmax_span_ms = -1.0\n"
            )),
            FingerprintProblem::BadSpan { .. }
        ));
        assert!(matches!(
            problem(&format!("[[injector]]\n{HEAD}payload_hex = \"0g\"\n")),
            FingerprintProblem::BadPayload { .. }
        ));
        let long = "00".repeat(PAYLOAD_HEAD_BYTES + 1);
        assert!(matches!(
            problem(&format!("[[injector]]\n{HEAD}payload_hex = \"{long}\"\n")),
            FingerprintProblem::BadPayload { .. }
        ));
        assert!(matches!(
            problem(&format!(
                "[[injector]]\n{HEAD}df = true\n[[injector]]\n{HEAD}df = false\n"
            )),
            FingerprintProblem::DuplicateName(_)
        ));
        assert!(matches!(
            problem(
                "[[injector]]\nname = \"unknown_injector\"\ndescription = \"d\"\nsource = \"s\"\ndf = true\n"
            ),
            FingerprintProblem::ReservedName
        ));
        assert!(matches!(
            problem("[[injector]]\nname = \" \"\ndescription = \"d\"\nsource = \"s\"\ndf = true\n"),
            FingerprintProblem::EmptyName
        ));
        let missing = InjectorSet::load(Path::new("/nonexistent/injectors.toml"));
        assert!(matches!(missing, Err(InjectorError::Read { .. })));
    }
}
