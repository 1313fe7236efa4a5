//! Target lists: parsing, normalisation, de-duplication.
//! (API fixed; implementation being written.)

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Where one input line for a target came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSource {
    /// File path as given, `-` for stdin, `cli` for command-line arguments.
    pub source: String,
    /// 1-based line number in the source (None for command-line arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The input as written (URL or domain).
    pub input: String,
    /// Citizen Lab category code, when the source gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_code: Option<String>,
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
    /// Every input line that named this target.
    pub sources: Vec<TargetSource>,
}

/// An input line that was not a target, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedInput {
    pub source: String,
    pub line: usize,
    pub input: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct TargetList {
    pub targets: Vec<Target>,
    pub skipped: Vec<SkippedInput>,
}

#[derive(Debug, Default)]
pub struct TargetLoader {
    strict: bool,
    list: TargetList,
}

impl TargetLoader {
    pub fn new(strict: bool) -> Self {
        TargetLoader {
            strict,
            list: TargetList::default(),
        }
    }

    pub fn add_cli(&mut self, _arg: &str) -> Result<()> {
        let _ = self.strict;
        unimplemented!()
    }

    pub fn add_file(&mut self, _path: &Path) -> Result<()> {
        unimplemented!()
    }

    pub fn add_reader(&mut self, _source: &str, _reader: impl BufRead) -> Result<()> {
        unimplemented!()
    }

    pub fn finish(self) -> TargetList {
        self.list
    }
}
