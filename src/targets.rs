//! Target lists: parsing, normalisation, de-duplication.
//!
//! Targets come from command-line arguments ([`TargetLoader::add_cli`]) and from files
//! ([`TargetLoader::add_file`], `-` meaning stdin). A file is one of two formats, told apart
//! by its first line:
//!
//! * **Citizen Lab test-list CSV**: the first line is a header whose first two columns are
//!   `url,category_code` (the layout of `citizenlab/test-lists`). Each row's `url` is the
//!   target and its `category_code` is kept. Rows are parsed with the `csv` crate, so quoted
//!   fields and multi-line notes are handled; line numbers are those where a row starts.
//! * **Plain list**: anything else. One entry a line:
//!
//!   ```text
//!   # a comment line
//!   www.example.com                        # domain
//!   https://www.example.org/some/page      # URL: only the host is kept
//!   example.net,192.0.2.7,2001:db8::7      # pinned addresses
//!   www.example.com,category=NEWS          # Citizen Lab category code
//!   example.net,192.0.2.7,category=CTRL    # both
//!   ```
//!
//!   A `#` starts a comment when it begins the line or follows whitespace, so URL fragments
//!   (`https://host/#/page`) are not comments. Blank and comment-only lines are not entries.
//!   The first comma-separated field is the target; each further field is an IP address to
//!   pin (IPv6 bare or bracketed) or `category=CODE` (a code of the Citizen Lab legend,
//!   [`CITIZENLAB_CATEGORIES`], any case, stored in upper case; at most one per line). A comma always ends the target field, so a URL whose
//!   path contains a comma must write it as `%2C`. Command-line arguments use the same entry
//!   syntax, without comments.
//!
//! # Normalisation
//!
//! The target field is a host name, an IP literal, or a URL. URLs (`http`/`https`, or no
//! scheme at all: `host/path`, `host:port`, `user@host`) are parsed with the `url` crate and
//! reduced to their host; port, path and user information are dropped. Host names are
//! lower-cased and mapped to punycode by UTS-46 IDNA (`bücher.example` becomes
//! `xn--bcher-kva.example`); one trailing dot is removed. The result must be a plausible DNS
//! name: at least two labels, each 1–63 octets, at most 253 octets in all, made of ASCII
//! letters, digits, `-` and `_`.
//!
//! **Underscores and trailing hyphens are allowed**: DNS carries any octet, resolvers answer
//! for such names, censors match on them, and real test lists contain them (e.g. blog
//! sub-domains). Strict LDH would drop real targets. A label that *starts* with a hyphen
//! is rejected: the DNS library refuses to put it in a query, and the probe must never
//! query another name in its place. Every name is also checked against that library at
//! load time, so a name the probe cannot query is a skipped line with its reason, never a
//! record. Everything else (spaces, `*`, `!`, `=`, ...) is rejected.
//!
//! IPv4 literals (dotted quad only; the URL standard's `0x7f.1` style is rejected as
//! ambiguous) and IPv6 literals (bare, or bracketed in URLs) become targets whose
//! [`Target::address`] is set and whose [`Target::domain`] is the canonical address text.
//!
//! # De-duplication and bad input
//!
//! Targets are keyed by normalised domain and kept in first-seen order; a name given on
//! several lines or in several files is one [`Target`] with several [`Target::sources`], each
//! keeping its line and category, and the union of their pinned addresses. A line that is
//! not a target is recorded as a [`SkippedInput`] with its source, line number and reason
//! (for command-line arguments the "line" is the argument's 1-based position among the
//! targets given there). In strict mode the first such line is an
//! [`TargetsError::MalformedTarget`] instead. Nothing is dropped silently.
//!
//! # Bounds
//!
//! Hostile or careless lists cost bounded time and memory: a line over
//! [`MAX_LINE_BYTES`] is skipped without being held in memory; a target has at most
//! [`MAX_PINS_PER_TARGET`] pinned addresses (a line that would pass it is skipped);
//! a target keeps [`MAX_SOURCES_PER_TARGET`] sources (plus one per new category code) and
//! counts further lines in [`Target::sources_omitted`]; the first [`MAX_SKIPPED_KEPT`]
//! skipped inputs are kept and later ones counted; inputs echoed in skips are cut to
//! [`MAX_ECHO_BYTES`] with a marker.
//!
//! # Memory
//!
//! The list is held in a [`TargetStore`]: the names in one arena and a 20-byte slot per
//! target, de-duplicated through a set of `u32` indices, so that a million names cost
//! tens of megabytes; a [`Target`] is made only when asked for.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::rc::Rc;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::lines::{read_line_bounded, shorten};

mod store;

pub use store::{Iter as TargetIter, TargetStore};
use store::{NewSource, StoreFull};

type Result<T, E = TargetsError> = std::result::Result<T, E>;

/// Why targets could not be loaded. The cause is the [`source`](std::error::Error::source),
/// not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetsError {
    #[error("cannot read targets file {path}")]
    TargetsUnreadable {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line that is not a target, in strict mode.
    #[error("{source_name}:{line}: malformed target {input:?}")]
    MalformedTarget {
        source_name: String,
        line: usize,
        input: String,
        #[source]
        reason: InvalidTarget,
    },
}

/// Where one input line for a target came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSource {
    /// File path as given, `-` for stdin, `cli` for command-line arguments.
    pub source: std::sync::Arc<str>,
    /// 1-based line number in the source (None for command-line arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The input as written (URL or domain). Empty when read from a lean record that
    /// left it out because it was the domain itself: see [`TargetSource::input_or`].
    #[serde(default)]
    pub input: String,
    /// Citizen Lab category code, when the source gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_code: Option<String>,
}

impl TargetSource {
    /// The input as written, given the target's domain (a lean record leaves out an
    /// input that is the domain itself).
    pub fn input_or<'a>(&'a self, domain: &'a str) -> &'a str {
        if self.input.is_empty() {
            domain
        } else {
            &self.input
        }
    }
}

/// One normalised target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Normalised host: lowercase, no trailing dot, IDNA punycode; or an IP literal.
    pub domain: String,
    /// Set when the input names an address, not a domain (no DNS stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// Addresses pinned by the list (`domain,ip[,ip]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned_ips: Vec<IpAddr>,
    /// The input lines that named this target, up to [`MAX_SOURCES_PER_TARGET`] (and
    /// any further line that brings a category code not seen yet).
    pub sources: Vec<TargetSource>,
    /// Further lines that named this target but are not kept in `sources`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sources_omitted: usize,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
pub(crate) fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Target {
    /// The distinct category codes the sources give, in first-seen order.
    pub fn category_codes(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = Vec::new();
        for code in self
            .sources
            .iter()
            .filter_map(|s| s.category_code.as_deref())
        {
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        codes
    }
}

/// An input line that was not a target, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedInput {
    /// File path as given, `-` for stdin, `cli` for command-line arguments.
    pub source: String,
    /// 1-based line number; for `cli`, the argument's 1-based position.
    pub line: usize,
    /// The line as written (comment removed, whitespace trimmed).
    pub input: String,
    /// Why the line is not a target.
    pub reason: String,
}

/// The loaded targets and the inputs that were skipped.
#[derive(Debug, Clone, Default)]
pub struct TargetList {
    /// The targets in first-seen order, compactly; [`TargetStore::target`] makes one.
    pub targets: TargetStore,
    /// The first [`MAX_SKIPPED_KEPT`] skipped inputs.
    pub skipped: Vec<SkippedInput>,
    /// Skipped inputs past the first [`MAX_SKIPPED_KEPT`], counted only.
    pub skipped_omitted: usize,
}

impl TargetList {
    /// Every skipped input, kept or only counted.
    pub fn skipped_total(&self) -> usize {
        self.skipped.len() + self.skipped_omitted
    }

    /// Why no target was loaded: the count of rejected inputs and the first reasons,
    /// e.g. `3 input line(s) rejected: list.txt:1: whitespace inside a target; ...`.
    pub fn rejection_summary(&self) -> Option<String> {
        const SHOWN: usize = 3;
        let total = self.skipped_total();
        if total == 0 {
            return None;
        }
        let first: Vec<String> = self
            .skipped
            .iter()
            .take(SHOWN)
            .map(|s| format!("{}:{}: {:?}: {}", s.source, s.line, s.input, s.reason))
            .collect();
        let mut reasons: Vec<(&str, usize)> = Vec::new();
        for skipped in &self.skipped {
            let kind = skipped.reason_kind();
            match reasons.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => reasons.push((kind, 1)),
            }
        }
        let counts: Vec<String> = reasons.iter().map(|(k, n)| format!("{n} {k}")).collect();
        Some(format!(
            "{total} input line(s) rejected ({}{}): {}{}",
            counts.join(", "),
            if self.skipped_omitted > 0 {
                format!(", {} more not classified", self.skipped_omitted)
            } else {
                String::new()
            },
            first.join("; "),
            if total > SHOWN { "; ..." } else { "" }
        ))
    }
}

impl SkippedInput {
    /// The reason without the quoted input it names, to count alike reasons together
    /// (`character '*' is not allowed...` and `character '!' ...` stay apart, which is
    /// what a user fixing a list wants to see).
    fn reason_kind(&self) -> &str {
        self.reason
            .split_once(" \"")
            .map_or(self.reason.as_str(), |(kind, _)| kind)
            .trim_end_matches(':')
    }
}

/// Accumulates targets from several sources; see the module documentation for the formats.
///
/// Memory is a few tens of bytes per target (see [`TargetStore`]): the de-duplication
/// set holds only indices into the store (with part of each name's hash), compared
/// against the stored names.
#[derive(Debug, Default)]
pub struct TargetLoader {
    strict: bool,
    list: TargetList,
    /// The indices of `list.targets`, hashed by their normalised domain.
    index: HashTable<Deduplicated>,
    hasher: RandomState,
    /// Source names already interned in `list.targets`.
    source_ids: HashMap<String, u32>,
    /// Command-line targets seen so far (their position stands in for a line number).
    cli_args: usize,
}

/// A target in the de-duplication set: its index in the store and 32 bits of its name's
/// hash. Growing the set rehashes from the entry alone: rehashing from the stored names
/// (a random read of the store per entry at every doubling) took about half the time of
/// loading a million names. The stored bits also spare most name comparisons.
#[derive(Debug, Clone, Copy)]
struct Deduplicated {
    index: u32,
    hash: u32,
}

impl Deduplicated {
    /// The set's hash of a name whose 32 stored bits are `hash`: spread over 64 bits, as
    /// the set takes its bucket from the low bits and a tag from the high ones.
    fn table_hash(hash: u32) -> u64 {
        u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// A host after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name: ASCII, lowercase, punycode, no trailing dot.
    Domain(String),
    /// An IP literal.
    Address(IpAddr),
}

impl Host {
    /// The text used as [`Target::domain`].
    pub fn name(&self) -> String {
        match self {
            Host::Domain(name) => name.clone(),
            Host::Address(ip) => ip.to_string(),
        }
    }
}

/// Why an input is not a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTarget {
    #[error("empty target")]
    Empty,
    #[error("whitespace inside a target")]
    Whitespace,
    #[error("unsupported URL scheme {0:?} (only http and https name a host to probe)")]
    UnsupportedScheme(String),
    #[error("not a URL or host name: {0}")]
    Unparsable(String),
    #[error("URL has no host")]
    NoHost,
    #[error("IPv4 address written as {0:?}; only dotted-quad form is accepted")]
    NonCanonicalIpv4(String),
    #[error("empty label in {0:?}")]
    EmptyLabel(String),
    #[error("label {0:?} is longer than 63 octets")]
    LabelTooLong(String),
    #[error("name is {0} octets long; at most 253 are allowed")]
    NameTooLong(usize),
    #[error("character {0:?} is not allowed in a host name (letters, digits, '-' and '_' only)")]
    BadCharacter(char),
    #[error("single-label name {0:?}: a target needs at least two labels")]
    SingleLabel(String),
    #[error("empty field after a comma")]
    EmptyField,
    #[error("field {0:?} is neither an IP address nor category=CODE")]
    BadField(String),
    #[error("category code {0:?} is not 1-16 ASCII letters or digits")]
    BadCategory(String),
    #[error("category given twice on one line")]
    DuplicateCategory,
    #[error("an IP-address target cannot pin addresses")]
    PinnedOnAddress,
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("CSV row has an empty or missing url field")]
    MissingUrl,
    #[error("label {0:?} starts with a hyphen (a DNS query cannot carry it)")]
    LeadingHyphen(String),
    #[error("{0} pinned addresses on one line; at most {MAX_PINS_PER_TARGET} are allowed")]
    TooManyPins(usize),
    #[error("the target would have more than {MAX_PINS_PER_TARGET} pinned addresses")]
    TargetPinsFull,
    #[error("line is {0} bytes long; at most {MAX_LINE_BYTES} are allowed")]
    LineTooLong(u64),
    #[error("category code {0:?} is not in the Citizen Lab legend{hint}", hint = replaced_by(.0))]
    UnknownCategory(String),
    #[error("the list is full ({} targets or 4 GiB of names at most)", u32::MAX - 1)]
    ListFull,
}

impl From<StoreFull> for InvalidTarget {
    fn from(_: StoreFull) -> Self {
        InvalidTarget::ListFull
    }
}

fn replaced_by(code: &str) -> String {
    OLD_CATEGORY_CODES
        .iter()
        .find(|(old, _)| *old == code)
        .map_or_else(String::new, |(_, new)| {
            format!(" (an old code: the legend replaces it with {new})")
        })
}

/// One parsed entry: a plain-list line, a CSV row or a command-line argument.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    /// The target field as written.
    input: &'a str,
    host: Host,
    pinned_ips: Vec<IpAddr>,
    category_code: Option<String>,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const MAX_LABEL: usize = 63;
const MAX_NAME: usize = 253;
const MAX_CATEGORY: usize = 16;
/// Longest input line: a name, [`MAX_PINS_PER_TARGET`] addresses and a category fit
/// many times over; a longer line is skipped unread.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Pinned addresses a target may have (over all its lines).
pub const MAX_PINS_PER_TARGET: usize = 64;
/// Sources kept per target; further lines naming it are counted in
/// [`Target::sources_omitted`].
pub const MAX_SOURCES_PER_TARGET: usize = 100;
/// Skipped inputs kept with their reason; further ones are counted.
pub const MAX_SKIPPED_KEPT: usize = 1000;
/// Longest input echoed in a skip (on stderr, in the report header).
pub const MAX_ECHO_BYTES: usize = 200;

/// The category codes of the Citizen Lab legend (`00-LEGEND-new_category_codes.csv`).
pub const CITIZENLAB_CATEGORIES: [&str; 31] = [
    "ALDR", "REL", "PORN", "PROV", "POLR", "HUMR", "ENV", "MILX", "HATE", "NEWS", "XED", "PUBH",
    "GMB", "ANON", "DATE", "GRP", "LGBT", "FILE", "HACK", "COMT", "MMED", "HOST", "SRCH", "GAME",
    "CULTR", "ECON", "GOVT", "COMM", "CTRL", "IGO", "MISC",
];

/// Old codes the legend replaces, with their replacement (for the rejection message).
const OLD_CATEGORY_CODES: [(&str, &str); 19] = [
    ("POLT", "POLR"),
    ("MINR", "HUMR"),
    ("WOMR", "HUMR"),
    ("MINF", "HUMR"),
    ("FEXP", "NEWS"),
    ("SELFHARM", "PUBH"),
    ("GAYL", "LGBT"),
    ("P2P", "FILE"),
    ("SFTWR", "FILE"),
    ("WRZ", "FILE"),
    ("VOIP", "COMT"),
    ("EMAIL", "COMT"),
    ("TRNS", "COMT"),
    ("MSG", "COMT"),
    ("BLGSERV", "HOST"),
    ("CLOUD", "HOST"),
    ("HAL", "CULTR"),
    ("DEV", "ECON"),
    ("CACH", "CTRL"),
];

impl TargetLoader {
    /// A loader; with `strict` the first malformed input is an error instead of a skip.
    pub fn new(strict: bool) -> Self {
        TargetLoader {
            strict,
            ..TargetLoader::default()
        }
    }

    /// Add one command-line argument (`DOMAIN|URL[,IP...][,category=CODE]`).
    pub fn add_cli(&mut self, arg: &str) -> Result<()> {
        self.cli_args += 1;
        let position = self.cli_args;
        match parse_entry(arg.trim()).and_then(|entry| self.accept("cli", None, entry)) {
            Ok(()) => Ok(()),
            Err(reason) => self.reject("cli", position, arg.trim(), &reason),
        }
    }

    /// Add a targets file; `-` reads stdin. An unopenable or unreadable file is
    /// [`TargetsError::TargetsUnreadable`].
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        if path == Path::new("-") {
            let stdin = io::stdin();
            return self.read_source("-", path, stdin.lock());
        }
        let file = File::open(path).map_err(|source| TargetsError::TargetsUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        self.read_source(&path.display().to_string(), path, BufReader::new(file))
    }

    /// Add targets from a reader, named `source` in sources, skips and errors.
    pub fn add_reader(&mut self, source: &str, reader: impl BufRead) -> Result<()> {
        self.read_source(source, Path::new(source), reader)
    }

    /// The targets in first-seen order and every skipped input.
    pub fn finish(mut self) -> TargetList {
        self.list.targets.shrink_to_fit();
        self.list
    }

    fn read_source(&mut self, source: &str, path: &Path, mut reader: impl BufRead) -> Result<()> {
        let mut first_line = Vec::new();
        let result = match read_line_bounded(&mut reader, &mut first_line, MAX_LINE_BYTES) {
            Err(e) => Err(ReadError::Io(e)),
            Ok(length) if length.truncated => self
                .reject_long_line(source, 1, &first_line, length.total)
                .map_err(ReadError::from)
                .and_then(|()| self.read_plain_from(source, 2, reader)),
            Ok(_) if is_citizenlab_header(&first_line) => {
                self.read_csv(source, io::Cursor::new(first_line).chain(reader))
            }
            Ok(_) => self.read_plain(source, &first_line, reader),
        };
        result.map_err(|e| match e {
            ReadError::Io(source) => TargetsError::TargetsUnreadable {
                path: path.to_path_buf(),
                source,
            },
            ReadError::Malformed(e) => e,
        })
    }

    fn read_plain(
        &mut self,
        source: &str,
        first_line: &[u8],
        reader: impl BufRead,
    ) -> Result<(), ReadError> {
        let first_line = first_line.strip_prefix(UTF8_BOM).unwrap_or(first_line);
        self.plain_line(source, 1, first_line)?;
        self.read_plain_from(source, 2, reader)
    }

    /// Plain-list lines from `first_number` on; a line over [`MAX_LINE_BYTES`] is
    /// skipped without being held in memory.
    fn read_plain_from(
        &mut self,
        source: &str,
        first_number: usize,
        mut reader: impl BufRead,
    ) -> Result<(), ReadError> {
        let mut line = Vec::new();
        let mut line_number = first_number;
        loop {
            line.clear();
            let length = read_line_bounded(&mut reader, &mut line, MAX_LINE_BYTES)?;
            if length.at_end() {
                return Ok(());
            }
            if length.truncated {
                self.reject_long_line(source, line_number, &line, length.total)?;
            } else {
                self.plain_line(source, line_number, &line)?;
            }
            line_number += 1;
        }
    }

    fn reject_long_line(
        &mut self,
        source: &str,
        line_number: usize,
        start: &[u8],
        total: u64,
    ) -> Result<()> {
        let input = String::from_utf8_lossy(start);
        self.reject(
            source,
            line_number,
            input.trim(),
            &InvalidTarget::LineTooLong(total),
        )
    }

    /// One plain-list line, line ending included; blank and comment lines are no entry.
    fn plain_line(&mut self, source: &str, line_number: usize, line: &[u8]) -> Result<()> {
        let Ok(text) = std::str::from_utf8(line) else {
            let input = String::from_utf8_lossy(line).trim().to_owned();
            return self.reject(source, line_number, &input, &InvalidTarget::NotUtf8);
        };
        let text = strip_comment(text).trim();
        if text.is_empty() {
            return Ok(());
        }
        match parse_entry(text).and_then(|entry| self.accept(source, Some(line_number), entry)) {
            Ok(()) => Ok(()),
            Err(reason) => self.reject(source, line_number, text, &reason),
        }
    }

    fn read_csv(&mut self, source: &str, reader: impl Read) -> Result<(), ReadError> {
        // The csv crate holds a whole record in memory: cut overlong physical lines
        // before it sees them, and reject the record that held one.
        let cuts = Rc::new(LineCuts::default());
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(LineCap::new(reader, MAX_LINE_BYTES, Rc::clone(&cuts)));
        let mut cuts_seen = 0;
        let headers = csv.byte_headers()?.clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
        };
        // Detection guarantees both columns exist.
        let url_column = column("url").unwrap_or(0);
        let category_column = column("category_code").unwrap_or(1);
        let mut record = csv::ByteRecord::new();
        while csv.read_byte_record(&mut record)? {
            let line_number = record
                .position()
                .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
            // A cut can only have happened inside this record: csv reads ahead by less
            // than a line's bound, so it cannot reach the cut point of a later line.
            cuts.since_record.set(0);
            let cut = cuts.count.get() != cuts_seen;
            if cut || record.as_slice().len() > MAX_LINE_BYTES {
                cuts_seen = cuts.count.get();
                let length = if cut {
                    cuts.last_length.get()
                } else {
                    record.as_slice().len() as u64
                };
                let kept = record.as_slice();
                let start = &kept[..kept.len().min(MAX_LINE_BYTES.min(MAX_ECHO_BYTES * 2))];
                self.reject_long_line(source, line_number, start, length)?;
                continue;
            }
            let field = |i: usize| record.get(i).map(<[u8]>::trim_ascii).unwrap_or_default();
            let (url, category) = (field(url_column), field(category_column));
            let (Ok(url), Ok(category)) = (std::str::from_utf8(url), std::str::from_utf8(category))
            else {
                let input = String::from_utf8_lossy(url).into_owned();
                self.reject(source, line_number, &input, &InvalidTarget::NotUtf8)?;
                continue;
            };
            if url.is_empty() {
                let input = String::from_utf8_lossy(record.as_slice()).into_owned();
                self.reject(source, line_number, &input, &InvalidTarget::MissingUrl)?;
                continue;
            }
            let category_code = if category.is_empty() {
                Ok(None)
            } else {
                parse_category(category).map(Some)
            };
            match normalize_host(url).and_then(|host| Ok((host, category_code?))) {
                Ok((host, category_code)) => {
                    let entry = Entry {
                        input: url,
                        host,
                        pinned_ips: Vec::new(),
                        category_code,
                    };
                    if let Err(reason) = self.accept(source, Some(line_number), entry) {
                        self.reject(source, line_number, url, &reason)?;
                    }
                }
                Err(reason) => self.reject(source, line_number, url, &reason)?,
            }
        }
        Ok(())
    }

    /// Adds an entry to its target; refused when it would take the target past
    /// [`MAX_PINS_PER_TARGET`] pinned addresses.
    fn accept(
        &mut self,
        source: &str,
        line: Option<usize>,
        entry: Entry<'_>,
    ) -> Result<(), InvalidTarget> {
        let domain = entry.host.name();
        let input = shorten(entry.input, MAX_ECHO_BYTES);
        let source = NewSource {
            source: self
                .list
                .targets
                .intern_source(source, &mut self.source_ids)
                .map_err(InvalidTarget::from)?,
            line,
            input: &input,
            category: entry.category_code.as_deref(),
        };
        // The high half: the set's own spreading (`table_hash`) makes its buckets and
        // tags from it.
        let hash = (self.hasher.hash_one(domain.as_bytes()) >> 32) as u32;
        let store = &mut self.list.targets;
        let found = self
            .index
            .find(Deduplicated::table_hash(hash), |entry| {
                entry.hash == hash && store.domain(entry.index as usize) == domain
            })
            .map(|entry| entry.index);
        if let Some(i) = found {
            let i = i as usize;
            let pinned = store.pinned_ips(i);
            let new_pins: Vec<IpAddr> = entry
                .pinned_ips
                .into_iter()
                .filter(|ip| !pinned.contains(ip))
                .collect();
            if pinned.len() + new_pins.len() > MAX_PINS_PER_TARGET {
                return Err(InvalidTarget::TargetPinsFull);
            }
            store.add_pins(i, new_pins);
            // Past the cap a line is only counted, unless it brings a new category (at
            // most one per legend code, so still bounded).
            let new_category = entry
                .category_code
                .as_deref()
                .is_some_and(|code| !store.has_category(i, code));
            if store.source_count(i) < MAX_SOURCES_PER_TARGET || new_category {
                store.add_source(i, source);
            } else {
                store.count_omitted(i);
            }
        } else {
            let is_address = matches!(entry.host, Host::Address(_));
            let i = store.push(&domain, is_address, entry.pinned_ips, source)?;
            self.index.insert_unique(
                Deduplicated::table_hash(hash),
                Deduplicated { index: i, hash },
                |entry| Deduplicated::table_hash(entry.hash),
            );
        }
        Ok(())
    }

    /// Record a malformed input; in strict mode it is also the returned error.
    fn reject(
        &mut self,
        source: &str,
        line: usize,
        input: &str,
        reason: &InvalidTarget,
    ) -> Result<()> {
        let skipped = SkippedInput {
            source: source.to_owned(),
            line,
            input: shorten(input, MAX_ECHO_BYTES),
            reason: reason.to_string(),
        };
        let error = self.strict.then(|| TargetsError::MalformedTarget {
            source_name: skipped.source.clone(),
            line,
            input: skipped.input.clone(),
            reason: reason.clone(),
        });
        if self.list.skipped.len() < MAX_SKIPPED_KEPT {
            self.list.skipped.push(skipped);
        } else {
            self.list.skipped_omitted += 1;
        }
        error.map_or(Ok(()), Err)
    }
}

/// Failures while reading one source: I/O (reported with the path) or a strict-mode reject.
enum ReadError {
    Io(io::Error),
    Malformed(TargetsError),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<TargetsError> for ReadError {
    fn from(e: TargetsError) -> Self {
        ReadError::Malformed(e)
    }
}

/// What [`LineCap`] cut: how many lines, and the full length of the last one.
#[derive(Debug, Default)]
struct LineCuts {
    count: Cell<u64>,
    last_length: Cell<u64>,
    /// Bytes passed on since the parser last finished a record (it resets this).
    since_record: Cell<u64>,
}

/// A CSV record (quoted fields may span lines) longer than this is no list entry but a
/// quote left open: the rest of the file cannot be split into records.
const MAX_CSV_RECORD_BYTES: u64 = 4 * MAX_LINE_BYTES as u64;

/// A reader that passes every physical line through up to `limit` bytes and drops the
/// rest of a longer one (its line end is kept), counting what it cut: memory for one
/// line stays bounded whatever the parser above it does with a line.
struct LineCap<R> {
    inner: R,
    limit: usize,
    /// Bytes of the current line so far (all of them, the dropped ones included).
    in_line: u64,
    cuts: Rc<LineCuts>,
}

impl<R> LineCap<R> {
    fn new(inner: R, limit: usize, cuts: Rc<LineCuts>) -> Self {
        LineCap {
            inner,
            limit,
            in_line: 0,
            cuts,
        }
    }
}

impl<R: Read> Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                if self.in_line > self.limit as u64 {
                    self.cuts.last_length.set(self.in_line);
                }
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                let byte = buf[i];
                if byte == b'\n' {
                    if self.in_line > self.limit as u64 {
                        self.cuts.last_length.set(self.in_line);
                    }
                    self.in_line = 0;
                } else {
                    self.in_line += 1;
                    if self.in_line == self.limit as u64 + 1 {
                        self.cuts.count.set(self.cuts.count.get() + 1);
                        // Known at once, corrected when the line ends.
                        self.cuts.last_length.set(self.in_line);
                    }
                    if self.in_line > self.limit as u64 {
                        continue;
                    }
                }
                buf[kept] = byte;
                kept += 1;
            }
            if kept > 0 {
                let since = self.cuts.since_record.get() + kept as u64;
                self.cuts.since_record.set(since);
                if since > MAX_CSV_RECORD_BYTES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "a CSV record runs past {MAX_CSV_RECORD_BYTES} bytes (a quote left open?)"
                        ),
                    ));
                }
                return Ok(kept);
            }
        }
    }
}

impl From<csv::Error> for ReadError {
    fn from(e: csv::Error) -> Self {
        match e.into_kind() {
            csv::ErrorKind::Io(io) => ReadError::Io(io),
            // Byte records in flexible mode fail only on I/O; keep any other kind readable.
            other => ReadError::Io(io::Error::other(format!("{other:?}"))),
        }
    }
}

/// Whether a file's first line is a Citizen Lab test-list header (`url,category_code,...`).
fn is_citizenlab_header(first_line: &[u8]) -> bool {
    let line = first_line.strip_prefix(UTF8_BOM).unwrap_or(first_line);
    let mut fields = line.split(|&b| b == b',').map(<[u8]>::trim_ascii);
    fields
        .next()
        .is_some_and(|f| f.eq_ignore_ascii_case(b"url"))
        && fields
            .next()
            .is_some_and(|f| f.eq_ignore_ascii_case(b"category_code"))
}

/// Cut a plain-list line at its comment: a `#` at the start or after whitespace.
fn strip_comment(line: &str) -> &str {
    let mut previous_is_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && previous_is_space {
            return &line[..i];
        }
        previous_is_space = c.is_whitespace();
    }
    line
}

/// Parse `TARGET[,IP...][,category=CODE]` (comment already removed, trimmed).
fn parse_entry(text: &str) -> Result<Entry<'_>, InvalidTarget> {
    let mut fields = text.split(',').map(str::trim);
    let input = fields.next().unwrap_or_default();
    let host = normalize_host(input)?;
    let mut pinned_ips = Vec::new();
    let mut category_code = None;
    for field in fields {
        if field.is_empty() {
            return Err(InvalidTarget::EmptyField);
        }
        if let Some((key, value)) = field.split_once('=')
            && key.trim().eq_ignore_ascii_case("category")
        {
            if category_code.is_some() {
                return Err(InvalidTarget::DuplicateCategory);
            }
            category_code = Some(parse_category(value.trim())?);
        } else {
            let ip =
                parse_ip_literal(field).ok_or_else(|| InvalidTarget::BadField(field.into()))?;
            if !pinned_ips.contains(&ip) {
                if pinned_ips.len() == MAX_PINS_PER_TARGET {
                    // Stop before the line makes the de-duplication quadratic.
                    return Err(InvalidTarget::TooManyPins(text.split(',').count() - 1));
                }
                pinned_ips.push(ip);
            }
        }
    }
    if matches!(host, Host::Address(_)) && !pinned_ips.is_empty() {
        return Err(InvalidTarget::PinnedOnAddress);
    }
    Ok(Entry {
        input,
        host,
        pinned_ips,
        category_code,
    })
}

/// A category code of the Citizen Lab legend ([`CITIZENLAB_CATEGORIES`]), any case.
fn parse_category(code: &str) -> Result<String, InvalidTarget> {
    if !((1..=MAX_CATEGORY).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(InvalidTarget::BadCategory(code.to_owned()));
    }
    let code = code.to_ascii_uppercase();
    if CITIZENLAB_CATEGORIES.contains(&code.as_str()) {
        Ok(code)
    } else {
        Err(InvalidTarget::UnknownCategory(code))
    }
}

/// An IP address, IPv6 optionally in brackets.
fn parse_ip_literal(text: &str) -> Option<IpAddr> {
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    unbracketed.parse().ok()
}

/// Normalise a host name, IP literal or URL to the host it names.
///
/// See the module documentation for the rules.
pub fn normalize_host(input: &str) -> Result<Host, InvalidTarget> {
    let input = input.trim();
    if input.is_empty() {
        return Err(InvalidTarget::Empty);
    }
    // The URL parser would drop tabs and report spaces as IDNA errors; say what is wrong.
    if input.contains(char::is_whitespace) {
        return Err(InvalidTarget::Whitespace);
    }
    // Most entries of a list are already plain lower-case names, which the URL parser
    // returns unchanged: judge those without it (it is most of the cost of loading a
    // list of a million names).
    if is_plain_lowercase_name(input) {
        return validate_domain(input).map(Host::Domain);
    }
    host_by_url(input)
}

/// Lower-case letters, digits, hyphens and dots, no IDNA label (`xn--`), and a last
/// label that starts with a letter (so the URL parser cannot read the name as an IPv4
/// address): a name the URL parser would return as it is.
fn is_plain_lowercase_name(input: &str) -> bool {
    let name = input.strip_suffix('.').unwrap_or(input);
    input
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.split('.').any(|label| label.starts_with("xn--"))
        && name
            .rsplit('.')
            .next()
            .and_then(|last| last.bytes().next())
            .is_some_and(|b| b.is_ascii_lowercase())
}

/// [`normalize_host`] by way of the URL parser (WHATWG URL, UTS-46 IDNA), for a
/// non-empty input without whitespace.
fn host_by_url(input: &str) -> Result<Host, InvalidTarget> {
    if let Some(ip) = parse_ip_literal(input) {
        return Ok(Host::Address(ip));
    }
    let url_text = match url_scheme(input) {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            input.to_owned()
        }
        Some(scheme) => return Err(InvalidTarget::UnsupportedScheme(scheme.to_owned())),
        None => format!("http://{input}"),
    };
    let url = url::Url::parse(&url_text).map_err(|e| InvalidTarget::Unparsable(e.to_string()))?;
    match url.host() {
        None => Err(InvalidTarget::NoHost),
        Some(url::Host::Ipv6(ip)) => Ok(Host::Address(IpAddr::V6(ip))),
        Some(url::Host::Ipv4(ip)) => {
            // The URL standard reads `0x7f.1` or `1.2.3` as IPv4; a list that writes that is
            // more likely wrong than clever, so only the dotted quad is accepted.
            let written = written_host(&url_text);
            if written.parse::<Ipv4Addr>() == Ok(ip) {
                Ok(Host::Address(IpAddr::V4(ip)))
            } else {
                Err(InvalidTarget::NonCanonicalIpv4(written.to_owned()))
            }
        }
        // The url crate has already lower-cased the name and applied UTS-46 IDNA.
        Some(url::Host::Domain(name)) => validate_domain(name).map(Host::Domain),
    }
}

/// The scheme of `scheme://...`, if the input starts with one.
fn url_scheme(input: &str) -> Option<&str> {
    let (scheme, _) = input.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// The host exactly as written in `scheme://[userinfo@]host[:port][/...]`.
fn written_host(url_text: &str) -> &str {
    let after_scheme = url_text
        .split_once("://")
        .map_or(url_text, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#', '\\'])
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port.split_once(':').map_or(host_port, |(h, _)| h)
}

/// Check an IDNA-processed, lower-case name against the DNS shape rules and strip one
/// trailing dot.
fn validate_domain(name: &str) -> Result<String, InvalidTarget> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_NAME {
        return Err(InvalidTarget::NameTooLong(name.len()));
    }
    let mut labels = 0;
    for label in name.split('.') {
        labels += 1;
        if label.is_empty() {
            return Err(InvalidTarget::EmptyLabel(name.to_owned()));
        }
        if label.len() > MAX_LABEL {
            return Err(InvalidTarget::LabelTooLong(label.to_owned()));
        }
        if label.starts_with('-') {
            return Err(InvalidTarget::LeadingHyphen(label.to_owned()));
        }
        if let Some(bad) = label
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
        {
            return Err(InvalidTarget::BadCharacter(bad));
        }
    }
    if labels < 2 {
        return Err(InvalidTarget::SingleLabel(name.to_owned()));
    }
    // The probe puts exactly this name in its queries, so the DNS library must take every
    // name taken here. The checks above are stricter than the library's (characters,
    // label and name lengths): a property test holds that, rather than the library
    // parsing every name of a million-name list a second time here.
    Ok(name.to_owned())
}

/// Checks a DNS name given as an option (e.g. `--control-name`) by the rules of targets.
pub fn validate_dns_name(name: &str) -> Result<String, InvalidTarget> {
    match normalize_host(name)? {
        Host::Domain(name) => Ok(name),
        Host::Address(ip) => Err(InvalidTarget::Unparsable(format!(
            "{ip} is an address, not a name"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(input: &str) -> String {
        match normalize_host(input) {
            Ok(Host::Domain(name)) => name,
            other => panic!("{input:?} gave {other:?}"),
        }
    }

    fn address(input: &str) -> IpAddr {
        match normalize_host(input) {
            Ok(Host::Address(ip)) => ip,
            other => panic!("{input:?} gave {other:?}"),
        }
    }

    fn load(text: &str, strict: bool) -> Result<TargetList> {
        let mut loader = TargetLoader::new(strict);
        loader.add_reader("list.txt", text.as_bytes())?;
        Ok(loader.finish())
    }

    #[test]
    fn urls_reduce_to_their_host() {
        assert_eq!(
            domain("https://www.Example.com/path?q=1#frag"),
            "www.example.com"
        );
        assert_eq!(domain("http://example.com:8080/"), "example.com");
        assert_eq!(domain("https://user:secret@example.com/x"), "example.com");
        assert_eq!(domain("HTTPS://EXAMPLE.ORG"), "example.org");
        assert_eq!(domain("https://example.com/#/app"), "example.com");
    }

    #[test]
    fn scheme_less_inputs_are_hosts() {
        assert_eq!(domain("example.com"), "example.com");
        assert_eq!(domain("example.com/some/page"), "example.com");
        assert_eq!(domain("example.com:443"), "example.com");
        assert_eq!(domain("user@example.com"), "example.com");
        assert_eq!(domain("  WWW.EXAMPLE.NET  "), "www.example.net");
    }

    #[test]
    fn trailing_dot_is_removed_once() {
        assert_eq!(domain("example.com."), "example.com");
        assert_eq!(domain("https://example.com./"), "example.com");
        assert!(matches!(
            normalize_host("example.com.."),
            Err(InvalidTarget::EmptyLabel(_))
        ));
    }

    #[test]
    fn idn_becomes_punycode() {
        assert_eq!(domain("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(domain("BÜCHER.example"), "xn--bcher-kva.example");
        assert_eq!(
            domain("https://bücher.example/straße"),
            "xn--bcher-kva.example"
        );
        assert_eq!(domain("xn--bcher-kva.example"), "xn--bcher-kva.example");
    }

    #[test]
    fn underscores_are_accepted_other_symbols_are_not() {
        assert_eq!(domain("my_blog.example.com"), "my_blog.example.com");
        assert_eq!(domain("trailing-.blogspot.com"), "trailing-.blogspot.com");
        assert_eq!(
            normalize_host("bad*name.example"),
            Err(InvalidTarget::BadCharacter('*'))
        );
        assert_eq!(
            normalize_host("a=b.example"),
            Err(InvalidTarget::BadCharacter('='))
        );
        assert_eq!(
            normalize_host("two words.example"),
            Err(InvalidTarget::Whitespace)
        );
        assert_eq!(
            normalize_host("tab\tinside.example"),
            Err(InvalidTarget::Whitespace)
        );
        assert!(matches!(
            normalize_host("a<b.example"),
            Err(InvalidTarget::Unparsable(_))
        ));
    }

    #[test]
    fn length_limits_are_enforced() {
        let label63 = "a".repeat(63);
        assert_eq!(
            domain(&format!("{label63}.example")),
            format!("{label63}.example")
        );
        assert!(matches!(
            normalize_host(&format!("{}.example", "a".repeat(64))),
            Err(InvalidTarget::LabelTooLong(_))
        ));
        // 4 * 63 + 3 dots = 255 octets.
        let long = [label63.as_str(); 4].join(".");
        assert_eq!(normalize_host(&long), Err(InvalidTarget::NameTooLong(255)));
        let fits = format!("{}.{}", [label63.as_str(); 3].join("."), "a".repeat(61));
        assert_eq!(fits.len(), 253);
        assert_eq!(domain(&fits), fits);
    }

    #[test]
    fn single_labels_and_other_schemes_are_rejected() {
        assert!(matches!(
            normalize_host("localhost"),
            Err(InvalidTarget::SingleLabel(_))
        ));
        assert_eq!(
            normalize_host("ftp://example.com/"),
            Err(InvalidTarget::UnsupportedScheme("ftp".into()))
        );
        assert_eq!(normalize_host("   "), Err(InvalidTarget::Empty));
        assert_eq!(
            normalize_host("http://"),
            Err(InvalidTarget::Unparsable("empty host".into()))
        );
    }

    #[test]
    fn ip_literals_become_address_targets() {
        assert_eq!(address("192.0.2.1"), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            address("http://192.0.2.1:8080/x"),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address("2001:DB8::1"),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address("[2001:db8::1]"),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address("https://[2001:db8::1]:8443/path"),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            normalize_host("0x7f.1"),
            Err(InvalidTarget::NonCanonicalIpv4("0x7f.1".into()))
        );
        assert!(normalize_host("999.1.1.1").is_err());
        assert!(normalize_host("example.123").is_err());

        let list = load("2001:DB8::1\nhttp://[2001:db8::1]/\n", false).unwrap();
        assert_eq!(list.targets.len(), 1);
        let target = &list.targets.target(0);
        assert_eq!(target.domain, "2001:db8::1");
        assert_eq!(target.address, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(target.sources.len(), 2);
    }

    #[test]
    fn plain_list_comments_blanks_pins_and_categories() {
        let text = "\u{feff}# header comment\n\
                    \n\
                    example.com   # trailing comment\n\
                    \t  \r\n\
                    https://example.org/#/page\r\n\
                    example.net, 192.0.2.7 ,[2001:db8::7],category=news\n\
                    www.example.com,category=CTRL # comment after fields\n";
        let list = load(text, false).unwrap();
        assert!(list.skipped.is_empty(), "{:?}", list.skipped);
        let domains: Vec<_> = list.targets.domains().collect();
        assert_eq!(
            domains,
            [
                "example.com",
                "example.org",
                "example.net",
                "www.example.com"
            ]
        );
        assert_eq!(list.targets.target(0).sources[0].line, Some(3));
        assert_eq!(list.targets.target(0).sources[0].input, "example.com");
        assert_eq!(
            list.targets.target(1).sources[0].input,
            "https://example.org/#/page"
        );
        let net = &list.targets.target(2);
        assert_eq!(
            net.pinned_ips,
            vec![
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        assert_eq!(net.sources[0].category_code.as_deref(), Some("NEWS"));
        assert_eq!(net.sources[0].line, Some(6));
        assert_eq!(list.targets.target(3).category_codes(), ["CTRL"]);
        assert_eq!(list.targets.target(3).address, None);
    }

    #[test]
    fn garbage_lines_are_skipped_with_line_and_reason() {
        let text = "example.com\n\
                    not a domain\n\
                    example.org,not-an-ip\n\
                    example.net,\n\
                    example.info,category=NE-WS\n\
                    example.biz,category=NEWS,category=POLR\n\
                    192.0.2.1,192.0.2.2\n\
                    localhost\n\
                    \u{ff}\u{fe}\n\
                    www.example.com\n";
        let mut loader = TargetLoader::new(false);
        let mut bytes = text.as_bytes().to_vec();
        // Make line 9 invalid UTF-8 (a lone continuation byte).
        let at = bytes.iter().position(|&b| b == 0xC3).unwrap();
        bytes[at] = 0x80;
        loader.add_reader("list.txt", bytes.as_slice()).unwrap();
        let list = loader.finish();
        let domains: Vec<_> = list.targets.domains().collect();
        assert_eq!(domains, ["example.com", "www.example.com"]);
        let skipped: Vec<_> = list
            .skipped
            .iter()
            .map(|s| (s.line, s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (2, "whitespace inside a target"),
                (
                    3,
                    "field \"not-an-ip\" is neither an IP address nor category=CODE"
                ),
                (4, "empty field after a comma"),
                (
                    5,
                    "category code \"NE-WS\" is not 1-16 ASCII letters or digits"
                ),
                (6, "category given twice on one line"),
                (7, "an IP-address target cannot pin addresses"),
                (
                    8,
                    "single-label name \"localhost\": a target needs at least two labels"
                ),
                (9, "line is not valid UTF-8"),
            ]
        );
        assert!(list.skipped.iter().all(|s| s.source == "list.txt"));
        assert_eq!(list.skipped[0].input, "not a domain");
    }

    #[test]
    fn citizenlab_csv_is_detected_and_keeps_categories() {
        let text = "url,category_code,category_description,date_added,source,notes\n\
                    https://www.example.com/,NEWS,News Media,2014-04-15,citizenlab,\n\
                    http://example.org/a,HUMR,Human Rights Issues,2014-04-15,citizenlab,\"two\n\
                    line note, with comma\"\n\
                    http://bad host/,NEWS,News Media,2014-04-15,citizenlab,\n\
                    ,NEWS,News Media,2014-04-15,citizenlab,\n\
                    http://www.example.com/other,POLR,Political Criticism,2015-01-01,x,\n";
        let list = load(text, false).unwrap();
        assert_eq!(list.targets.len(), 2);
        let com = &list.targets.target(0);
        assert_eq!(com.domain, "www.example.com");
        assert_eq!(com.category_codes(), ["NEWS", "POLR"]);
        assert_eq!(com.sources[0].line, Some(2));
        assert_eq!(com.sources[1].line, Some(7));
        assert_eq!(com.sources[1].input, "http://www.example.com/other");
        assert_eq!(
            list.targets.target(1).sources[0].category_code.as_deref(),
            Some("HUMR")
        );
        let skipped: Vec<_> = list
            .skipped
            .iter()
            .map(|s| (s.line, s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (5, "whitespace inside a target"),
                (6, "CSV row has an empty or missing url field"),
            ]
        );
    }

    #[test]
    fn csv_detection_needs_the_header_on_the_first_line() {
        // Not a Citizen Lab header: parsed as a plain list, whose extra fields are bad.
        let text = "# comment\nurl,category_code\n";
        let list = load(text, false).unwrap();
        assert!(list.targets.is_empty());
        assert_eq!(list.skipped.len(), 1);
        assert_eq!(list.skipped[0].line, 2);

        assert!(is_citizenlab_header(
            b"\xEF\xBB\xBFURL, Category_Code ,x\r\n"
        ));
        assert!(!is_citizenlab_header(b"url\n"));
        assert!(!is_citizenlab_header(b"example.com,category=NEWS\n"));
    }

    #[test]
    fn duplicates_merge_and_keep_every_source() {
        let mut loader = TargetLoader::new(false);
        loader.add_cli("https://Example.COM/page").unwrap();
        loader
            .add_reader(
                "a.txt",
                "example.org\nexample.com.,192.0.2.1,category=NEWS\n".as_bytes(),
            )
            .unwrap();
        loader
            .add_reader("b.txt", "EXAMPLE.com,192.0.2.1,192.0.2.2\n".as_bytes())
            .unwrap();
        let list = loader.finish();
        assert!(list.skipped.is_empty());
        let domains: Vec<_> = list.targets.domains().collect();
        assert_eq!(domains, ["example.com", "example.org"]);
        let com = &list.targets.target(0);
        let sources: Vec<_> = com
            .sources
            .iter()
            .map(|s| (&*s.source, s.line, s.category_code.as_deref()))
            .collect();
        assert_eq!(
            sources,
            [
                ("cli", None, None),
                ("a.txt", Some(2), Some("NEWS")),
                ("b.txt", Some(1), None)
            ]
        );
        assert_eq!(
            com.pinned_ips,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "192.0.2.2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn strict_mode_fails_on_the_first_malformed_line() {
        let err = load("example.com\nbad_*.example\nworse line\n", true).unwrap_err();
        match err {
            TargetsError::MalformedTarget {
                source_name,
                line,
                input,
                reason,
            } => {
                assert_eq!(source_name, "list.txt");
                assert_eq!(line, 2);
                assert_eq!(input, "bad_*.example");
                assert!(reason.to_string().contains("'*'"), "{reason}");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(load("example.com\n# fine\n\n", true).is_ok());

        let mut loader = TargetLoader::new(true);
        loader.add_cli("example.com").unwrap();
        let err = loader.add_cli("no spaces allowed.example").unwrap_err();
        assert!(
            matches!(err, TargetsError::MalformedTarget { ref source_name, line: 2, .. } if source_name == "cli"),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_cli_arguments_are_skipped_with_their_position() {
        let mut loader = TargetLoader::new(false);
        loader.add_cli("example.com").unwrap();
        loader.add_cli("ftp://example.org/").unwrap();
        let list = loader.finish();
        assert_eq!(list.targets.len(), 1);
        assert_eq!(list.skipped.len(), 1);
        assert_eq!(list.skipped[0].source, "cli");
        assert_eq!(list.skipped[0].line, 2);
    }

    #[test]
    fn unreadable_files_name_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.txt");
        let mut loader = TargetLoader::new(false);
        match loader.add_file(&missing) {
            Err(TargetsError::TargetsUnreadable { path, .. }) => assert_eq!(path, missing),
            other => panic!("unexpected {other:?}"),
        }
        // A directory opens but cannot be read.
        match loader.add_file(dir.path()) {
            Err(TargetsError::TargetsUnreadable { path, .. }) => assert_eq!(path, dir.path()),
            other => panic!("unexpected {other:?}"),
        }
        let file = dir.path().join("list.txt");
        std::fs::write(&file, "example.com\n").unwrap();
        loader.add_file(&file).unwrap();
        let list = loader.finish();
        assert_eq!(
            list.targets.target(0).sources[0].source,
            file.display().to_string().into()
        );
    }

    #[test]
    fn load_errors_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.txt");
        let err = TargetLoader::new(false).add_file(&missing).unwrap_err();
        let source = std::error::Error::source(&err).expect("the I/O error is kept");
        let io = source.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        assert!(
            !err.to_string().contains(&io.to_string()),
            "not repeated: {err}"
        );

        let err = load("bad_*.example\n", true).unwrap_err();
        let source = std::error::Error::source(&err).expect("the reason is kept");
        let reason = source
            .downcast_ref::<InvalidTarget>()
            .expect("an InvalidTarget");
        assert!(
            !err.to_string().contains(&reason.to_string()),
            "not repeated: {err}"
        );
    }

    #[test]
    fn labels_starting_with_a_hyphen_are_refused_at_load() {
        for name in ["-a.example", "a.-b.example", "https://-x.example/"] {
            assert!(
                matches!(normalize_host(name), Err(InvalidTarget::LeadingHyphen(_))),
                "{name}: {:?}",
                normalize_host(name)
            );
        }
        let list = load("-a.example\nok.example\n", false).unwrap();
        assert_eq!(list.targets.len(), 1);
        assert_eq!(list.skipped[0].line, 1);
        assert_eq!(
            list.skipped[0].reason,
            "label \"-a\" starts with a hyphen (a DNS query cannot carry it)"
        );
        // Still accepted: what real lists hold and DNS carries.
        assert_eq!(domain("trailing-.blogspot.com"), "trailing-.blogspot.com");
        assert_eq!(domain("_dmarc.example.com"), "_dmarc.example.com");
        assert_eq!(domain("a-b.example"), "a-b.example");
        assert!(validate_dns_name("-x.example").is_err());
        assert!(validate_dns_name("192.0.2.1").is_err());
        assert_eq!(validate_dns_name("Example.COM").unwrap(), "example.com");
    }

    #[test]
    fn category_codes_come_from_the_legend() {
        let list = load(
            "a.example,category=news\nb.example,category=XYZ\nc.example,category=POLT\n",
            false,
        )
        .unwrap();
        assert_eq!(list.targets.len(), 1);
        assert_eq!(list.targets.target(0).category_codes(), ["NEWS"]);
        let reasons: Vec<&str> = list.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "category code \"XYZ\" is not in the Citizen Lab legend",
                "category code \"POLT\" is not in the Citizen Lab legend (an old code: the legend replaces it with POLR)",
            ]
        );
        let csv = "url,category_code\nhttp://a.example/,NEWS\nhttp://b.example/,BOGUS\n";
        let list = load(csv, false).unwrap();
        assert_eq!(list.targets.len(), 1);
        assert_eq!(list.skipped[0].line, 3);
    }

    #[test]
    fn pins_are_bounded_per_line_and_per_target() {
        let many: Vec<String> = (0..200_000u32)
            .map(|i| std::net::Ipv4Addr::from(0xC612_0000 + i).to_string())
            .collect();
        let line = format!("a.example,{}\n", many[..100].join(","));
        let list = load(&line, false).unwrap();
        assert!(list.targets.is_empty());
        assert_eq!(
            list.skipped[0].reason,
            "100 pinned addresses on one line; at most 64 are allowed"
        );
        // The 200,000-address line of the issue is past the line bound: skipped unparsed.
        let line = format!("a.example,{}\n", many.join(","));
        let list = load(&line, false).unwrap();
        assert!(list.targets.is_empty());
        assert!(
            list.skipped[0].reason.starts_with("line is "),
            "{:?}",
            list.skipped
        );
        // Duplicates do not count against the bound.
        let repeated = format!("a.example,{}\n", vec!["198.18.0.1"; 500].join(","));
        assert_eq!(
            load(&repeated, false)
                .unwrap()
                .targets
                .target(0)
                .pinned_ips
                .len(),
            1
        );
        // Over several lines: the line that would pass the bound is refused.
        let text = format!(
            "a.example,{}\na.example,{}\na.example,{}\n",
            many[..40].join(","),
            many[..40].join(","),
            many[40..70].join(",")
        );
        let list = load(&text, false).unwrap();
        assert_eq!(list.targets.target(0).pinned_ips.len(), 40);
        assert_eq!(list.targets.target(0).sources.len(), 2);
        assert_eq!(list.skipped[0].line, 3);
        assert_eq!(
            list.skipped[0].reason,
            "the target would have more than 64 pinned addresses"
        );
    }

    #[test]
    fn duplicate_lines_keep_a_bounded_number_of_sources() {
        let mut text = "dup.example\n".repeat(100_000);
        text.push_str("dup.example,category=NEWS\n");
        let list = load(&text, false).unwrap();
        let target = &list.targets.target(0);
        assert_eq!(target.sources.len(), MAX_SOURCES_PER_TARGET + 1);
        assert_eq!(target.sources_omitted, 100_000 - MAX_SOURCES_PER_TARGET);
        assert_eq!(target.category_codes(), ["NEWS"], "a new category is kept");
        let json = serde_json::to_string(target).unwrap();
        assert!(json.len() < 20_000, "{}", json.len());
        assert!(json.contains("\"sources_omitted\":99900"), "{json}");
    }

    #[test]
    fn csv_lines_are_cut_before_the_parser_holds_them() {
        let huge = "z".repeat(100_000);
        let text = format!("a,b\n{huge},x\nc,d\n{huge}");
        let cuts = Rc::new(LineCuts::default());
        let mut capped = LineCap::new(text.as_bytes(), 1000, Rc::clone(&cuts));
        let mut out = Vec::new();
        // Small reads, as a buffered parser makes them.
        let mut buf = [0u8; 64];
        loop {
            let n = capped.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], b"a,b");
        assert_eq!(lines[1].len(), 1000);
        assert_eq!(lines[2], b"c,d");
        assert_eq!(lines[3].len(), 1000);
        assert_eq!(cuts.count.get(), 2);
        assert_eq!(cuts.last_length.get(), 100_000);
    }

    #[test]
    fn an_open_quote_cannot_make_one_endless_csv_record() {
        let lines = "x,y\n".repeat(100_000);
        let text = format!("url,category_code\nhttp://a.example/,NEWS\n\"{lines}");
        let error = load(&text, false).unwrap_err();
        let chain = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        assert!(chain.contains("a quote left open"), "{chain}");
    }

    #[test]
    fn huge_lines_are_skipped_and_echoed_short() {
        let huge = "x".repeat(10 << 20);
        for text in [
            format!("a.example\n{huge}\nb.example\n"),
            format!("{huge}\na.example\nb.example\n"),
            format!(
                "url,category_code\nhttp://a.example/,NEWS\nhttp://{huge}/,NEWS\nhttp://b.example/,NEWS\n"
            ),
        ] {
            let list = load(&text, false).unwrap();
            let domains: Vec<_> = list.targets.domains().collect();
            assert_eq!(domains, ["a.example", "b.example"]);
            assert_eq!(list.skipped.len(), 1);
            let skipped = &list.skipped[0];
            assert!(
                skipped.reason.starts_with("line is 1048")
                    && skipped.reason.contains("at most 16384"),
                "{}",
                skipped.reason
            );
            assert!(skipped.input.len() < 300, "{}", skipped.input.len());
            assert!(
                skipped.input.ends_with("bytes in all)"),
                "{}",
                skipped.input
            );
        }
        // A long but acceptable line (within the bound) is parsed as usual.
        let long_comment = format!("c.example # {}\n", "y".repeat(10_000));
        assert_eq!(load(&long_comment, false).unwrap().targets.len(), 1);
    }

    #[test]
    fn skipped_inputs_are_kept_up_to_a_bound_and_counted_beyond() {
        let text = "not a name\n".repeat(MAX_SKIPPED_KEPT + 5);
        let list = load(&text, false).unwrap();
        assert_eq!(list.skipped.len(), MAX_SKIPPED_KEPT);
        assert_eq!(list.skipped_omitted, 5);
        assert_eq!(list.skipped_total(), MAX_SKIPPED_KEPT + 5);
    }

    #[test]
    fn an_all_invalid_list_says_why() {
        let list = load("not a name\nbad*.example\n-a.example\nalso bad\n", false).unwrap();
        let why = list.rejection_summary().unwrap();
        assert!(why.starts_with("4 input line(s) rejected"), "{why}");
        assert!(why.contains("2 whitespace inside a target"), "{why}");
        assert!(
            why.contains("list.txt:1: \"not a name\": whitespace inside a target"),
            "{why}"
        );
        assert!(why.contains("list.txt:3:"), "{why}");
        assert!(!why.contains("list.txt:4:"), "only the first three: {why}");
        assert!(why.ends_with("; ..."), "{why}");
        assert!(load("", false).unwrap().rejection_summary().is_none());
    }

    #[test]
    fn last_line_without_newline_and_empty_input() {
        let list = load("example.com\nexample.org", false).unwrap();
        assert_eq!(list.targets.len(), 2);
        assert_eq!(list.targets.target(1).sources[0].line, Some(2));
        let empty = load("", false).unwrap();
        assert!(empty.targets.is_empty() && empty.skipped.is_empty());
    }

    /// The plain-name shortcut of `normalize_host` judges every name it takes exactly as
    /// the URL parser path does (names drawn from the characters it accepts and the
    /// shapes that must fall through to the parser: numeric last labels, `xn--`).
    #[test]
    fn plain_names_are_judged_as_the_url_parser_judges_them() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 4000,
            ..Config::default()
        });
        let label = "([a-z0-9-]{0,6}|xn--[a-z0-9]{1,6}|xn--ls8h|0x[0-9a-f]{1,3}|[0-9]{1,3})";
        let names = proptest::string::string_regex(&format!("{label}(\\.{label}){{0,4}}\\.?"))
            .expect("a valid pattern");
        let shortcut_taken = std::cell::Cell::new(0);
        runner
            .run(&names, |name| {
                // `normalize_host` refuses an empty input before either path.
                if name.is_empty() {
                    return Ok(());
                }
                if is_plain_lowercase_name(&name) {
                    shortcut_taken.set(shortcut_taken.get() + 1);
                }
                prop_assert_eq!(normalize_host(&name), host_by_url(&name), "{}", name);
                Ok(())
            })
            .expect("the shortcut agrees with the URL parser");
        let taken = shortcut_taken.get();
        assert!(taken > 100, "the shortcut was taken {taken} times");
        // Fall through to the parser: an address, a number, an IDNA label, a capital.
        for name in [
            "1.2.3.4",
            "a.123",
            "a.0x1f",
            "xn--ls8h.example",
            "Example.com",
        ] {
            assert!(!is_plain_lowercase_name(name), "{name}");
        }
        assert!(is_plain_lowercase_name("n1.bench.test."));
    }

    /// Every name `validate_domain` takes, the DNS library takes too, unchanged (the
    /// probe asks exactly this name): labels of any length up to the limits, names up
    /// to and past the 253-character limit.
    #[test]
    fn every_valid_domain_is_a_dns_name() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 3000,
            ..Config::default()
        });
        let label = "[a-z0-9_-]{1,63}";
        let names = proptest::string::string_regex(&format!("{label}(\\.{label}){{1,5}}\\.?"))
            .expect("a valid pattern");
        let taken = std::cell::Cell::new(0);
        runner
            .run(&names, |name| {
                if let Ok(domain) = validate_domain(&name) {
                    taken.set(taken.get() + 1);
                    let dns = hickory_proto::rr::Name::from_ascii(format!("{domain}."));
                    prop_assert!(dns.is_ok(), "{} refused: {:?}", domain, dns);
                    let dns = dns.unwrap();
                    prop_assert_eq!(dns.to_ascii(), format!("{domain}."));
                }
                Ok(())
            })
            .expect("the DNS library takes every valid domain");
        assert!(taken.get() > 300, "only {} names were valid", taken.get());
        // At the limits: 63-byte labels, a 253-byte name.
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        assert!(validate_domain(&long).is_ok());
        assert!(hickory_proto::rr::Name::from_ascii(format!("{long}.")).is_ok());
        assert!(validate_domain(&format!("x{long}")).is_err());
    }
}
