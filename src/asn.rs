//! Which autonomous system an address belongs to, from a table the user provides
//! (`--asn-db FILE`): used to judge a resolver's answer consistent with a web control's
//! when both point into the same network (geo-DNS and CDNs answer differently per
//! vantage, within one AS).
//!
//! The table is iptoasn.com's format (`ip2asn-v4.tsv`, `ip2asn-v6.tsv` or
//! `ip2asn-combined.tsv`, uncompressed): one range a line, tab separated,
//! `range_start range_end AS_number country_code AS_description`. Ranges with AS 0
//! ("Not routed") are kept out: an unrouted address belongs to no network, so two such
//! addresses are not "in the same AS". Lookups are a binary search over the ranges
//! sorted by their start.
//!
//! CONTRACT (owner: classify helper): `AsnTable::empty()`, `AsnTable::load(&Path)`,
//! `AsnTable::lookup(IpAddr) -> Option<AsnEntry>`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// One row of the table: the AS number and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsnEntry {
    pub asn: u32,
    pub name: String,
}

/// Why an AS table could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsnError {
    #[error("cannot read the AS table {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
}

/// One address range of one family, as integers (IPv4 in the low 32 bits).
#[derive(Debug, Clone)]
struct Range {
    start: u128,
    end: u128,
    asn: u32,
    name: Arc<str>,
}

/// Address ranges and their AS, searchable by address.
#[derive(Debug, Clone, Default)]
pub struct AsnTable {
    v4: Vec<Range>,
    v6: Vec<Range>,
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl AsnTable {
    /// No table: every lookup says nothing.
    pub fn empty() -> AsnTable {
        AsnTable::default()
    }

    /// Read a table file.
    pub fn load(path: &Path) -> Result<AsnTable, AsnError> {
        let text = std::fs::read_to_string(path).map_err(|source| AsnError::Read {
            path: path.display().to_string(),
            source,
        })?;
        AsnTable::parse(&text).map_err(|(line, reason)| AsnError::Parse {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    /// Read a table from its text; `Err((line, reason))` names the first bad line.
    pub fn parse(text: &str) -> Result<AsnTable, (usize, String)> {
        let mut table = AsnTable::default();
        // Many ranges share an AS: one copy of each name.
        let mut names: std::collections::HashMap<&str, Arc<str>> = std::collections::HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() < 5 {
                return Err((
                    number,
                    format!(
                        "expected 5 tab-separated fields (range_start range_end AS_number \
                         country_code AS_description), found {}",
                        fields.len()
                    ),
                ));
            }
            let address = |field: &str| {
                field
                    .trim()
                    .parse::<IpAddr>()
                    .map_err(|e| (number, format!("{field:?}: {e}")))
            };
            let (start, end) = (address(fields[0])?, address(fields[1])?);
            if start.is_ipv4() != end.is_ipv4() {
                return Err((
                    number,
                    format!("{start} and {end} are of different families"),
                ));
            }
            if key(start) > key(end) {
                return Err((
                    number,
                    format!("the range starts after it ends: {start} > {end}"),
                ));
            }
            let asn = fields[2]
                .trim()
                .trim_start_matches("AS")
                .parse::<u32>()
                .map_err(|e| (number, format!("AS number {:?}: {e}", fields[2])))?;
            if asn == 0 {
                continue;
            }
            let description = fields[4].trim();
            let name = names
                .entry(description)
                .or_insert_with(|| Arc::from(description))
                .clone();
            let range = Range {
                start: key(start),
                end: key(end),
                asn,
                name,
            };
            if start.is_ipv4() {
                table.v4.push(range);
            } else {
                table.v6.push(range);
            }
        }
        for ranges in [&mut table.v4, &mut table.v6] {
            ranges.sort_by_key(|r| r.start);
        }
        Ok(table)
    }

    /// Number of routed ranges in the table.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The AS of an address, when the table knows it.
    pub fn lookup(&self, ip: IpAddr) -> Option<AsnEntry> {
        // An IPv4-mapped IPv6 address is the IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let ranges = if ip.is_ipv4() { &self.v4 } else { &self.v6 };
        let at = key(ip);
        // The last range starting at or before the address; it holds it if it ends
        // at or after it (ranges do not overlap in iptoasn's table).
        let index = ranges.partition_point(|r| r.start <= at).checked_sub(1)?;
        let range = &ranges[index];
        (range.end >= at).then(|| AsnEntry {
            asn: range.asn,
            name: range.name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n\
                         1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
                         198.18.0.0\t198.18.0.255\t64500\tZZ\tLAB-ONE\n\
                         198.18.1.0\t198.18.2.255\t64501\tZZ\tLAB-TWO\n\
                         2001:db8::\t2001:db8:0:ffff:ffff:ffff:ffff:ffff\t64502\tZZ\tLAB-SIX\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookups_find_the_range_of_an_address_and_nothing_outside() {
        let table = AsnTable::parse(TABLE).unwrap();
        assert_eq!(table.len(), 4, "the unrouted range is left out");
        let asn = |s| table.lookup(ip(s)).map(|e| e.asn);
        assert_eq!(asn("1.0.0.0"), Some(13335));
        assert_eq!(asn("1.0.0.255"), Some(13335));
        assert_eq!(asn("1.0.1.1"), None, "AS 0: not routed");
        assert_eq!(asn("198.18.0.77"), Some(64500));
        assert_eq!(asn("198.18.2.255"), Some(64501));
        assert_eq!(asn("198.18.3.0"), None, "after the last range");
        assert_eq!(asn("0.255.255.255"), None, "before the first range");
        assert_eq!(asn("2001:db8::1"), Some(64502));
        assert_eq!(asn("2001:db8:1::1"), None);
        assert_eq!(asn("::ffff:198.18.1.9"), Some(64501), "IPv4-mapped");
        assert_eq!(
            table.lookup(ip("198.18.1.9")).unwrap().name,
            "LAB-TWO".to_owned()
        );
        assert_eq!(AsnTable::empty().lookup(ip("1.0.0.1")), None);
    }

    #[test]
    fn unsorted_rows_are_sorted() {
        let mut lines: Vec<&str> = TABLE.lines().collect();
        lines.reverse();
        let reversed = lines.join("\n");
        let table = AsnTable::parse(&reversed).unwrap();
        assert_eq!(table.lookup(ip("198.18.0.1")).unwrap().asn, 64500);
        assert_eq!(table.lookup(ip("1.0.0.1")).unwrap().asn, 13335);
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, what) in [
            ("1.0.0.0\t1.0.0.255\t13335\n", "5 tab-separated"),
            ("1.0.0.x\t1.0.0.255\t1\tUS\tX\n", "1.0.0.x"),
            ("1.0.0.9\t1.0.0.1\t1\tUS\tX\n", "starts after"),
            ("1.0.0.0\t2001:db8::\t1\tUS\tX\n", "families"),
            ("1.0.0.0\t1.0.0.1\tmany\tUS\tX\n", "AS number"),
        ] {
            let (line, reason) = AsnTable::parse(&format!("\n{text}")).unwrap_err();
            assert_eq!(line, 2, "{text}");
            assert!(reason.contains(what), "{reason}");
        }
    }

    #[test]
    fn load_reads_a_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ip2asn-combined.tsv");
        std::fs::write(&path, TABLE).unwrap();
        let table = AsnTable::load(&path).unwrap();
        assert_eq!(table.lookup(ip("2001:db8::9")).unwrap().name, "LAB-SIX");
        let error = AsnTable::load(&dir.path().join("missing.tsv")).unwrap_err();
        assert!(matches!(error, AsnError::Read { .. }), "{error}");
        std::fs::write(&path, "1.0.0.0\tjunk\n").unwrap();
        let error = AsnTable::load(&path).unwrap_err().to_string();
        assert!(error.contains("ip2asn-combined.tsv:1:"), "{error}");
    }
}
