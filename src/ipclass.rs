//! Address classes: bogon ranges and the `--forged-ips` list.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use ipnet::IpNet;

/// Why a `--forged-ips` file gives no list. The cause is the
/// [`source`](std::error::Error::source), not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForgedIpListError {
    #[error("cannot read forged-IP list {path}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read forged-IP list {path}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: BadForgedIpLine,
    },
}

/// A line of a forged-IP list that is neither an address nor a CIDR prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {text:?} is neither an address nor a CIDR prefix")]
pub struct BadForgedIpLine {
    /// 1-based.
    pub line: usize,
    pub text: String,
}

/// Special-purpose and unroutable ranges (RFC 6890 and the usual bogon lists) that a
/// public name has no business resolving to.
///
/// 198.18.0.0/15 is included: fake-IP proxies and some DNS filters hand out addresses
/// there. The censor lab uses the same range for its "Internet", which is why the
/// classifier compares bogon ranges with the control's answers instead of flagging any
/// bogon outright (see [`bogon_range`]).
static BOGON_RANGES: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ]
    .iter()
    .map(|s| s.parse().expect("static bogon range parses"))
    .collect()
});

/// The bogon range `ip` falls in, if any.
pub fn bogon_range(ip: IpAddr) -> Option<IpNet> {
    BOGON_RANGES.iter().copied().find(|net| net.contains(&ip))
}

pub fn is_bogon(ip: IpAddr) -> bool {
    bogon_range(ip).is_some()
}

/// Addresses known to be handed out by an injector (`--forged-ips FILE`): one address
/// or CIDR prefix a line, `#` comments.
#[derive(Debug, Clone, Default)]
pub struct ForgedIpList {
    nets: Vec<IpNet>,
}

impl ForgedIpList {
    pub fn load(path: &Path) -> Result<Self, ForgedIpListError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ForgedIpListError::Unreadable {
                path: path.to_owned(),
                source,
            })?;
        Self::parse(&text).map_err(|source| ForgedIpListError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Self, BadForgedIpLine> {
        let mut nets = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let net = match line.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match line.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(BadForgedIpLine {
                            line: index + 1,
                            text: line.to_owned(),
                        });
                    }
                },
            };
            nets.push(net);
        }
        Ok(ForgedIpList { nets })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    pub fn len(&self) -> usize {
        self.nets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bogons_are_recognised() {
        for ip in ["127.0.0.2", "10.10.34.34", "198.18.1.1", "::1", "fd00::1"] {
            assert!(is_bogon(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "93.184.216.34", "2606:4700::1111"] {
            assert!(!is_bogon(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn forged_list_parses_addresses_prefixes_and_comments() {
        let list =
            ForgedIpList::parse("# pool\n10.10.34.34\n\n31.13.64.0/18 # facebook\n").unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains("10.10.34.34".parse().unwrap()));
        assert!(list.contains("31.13.70.1".parse().unwrap()));
        assert!(!list.contains("31.13.128.1".parse().unwrap()));
        let err = ForgedIpList::parse("1.2.3.4\nnot-an-ip\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn loading_keeps_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.txt");
        let err = ForgedIpList::load(&missing).unwrap_err();
        assert!(
            matches!(err, ForgedIpListError::Unreadable { .. }),
            "{err:?}"
        );
        let source = std::error::Error::source(&err).expect("the I/O error is kept");
        assert!(source.is::<std::io::Error>(), "{source:?}");

        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "1.2.3.4\nnot-an-ip\n").unwrap();
        let err = ForgedIpList::load(&bad).unwrap_err();
        let source = std::error::Error::source(&err).expect("the bad line is kept");
        let line = source
            .downcast_ref::<BadForgedIpLine>()
            .expect("a BadForgedIpLine");
        assert_eq!(line.line, 2);
        assert!(!err.to_string().contains("line 2"), "not repeated: {err}");
    }
}
