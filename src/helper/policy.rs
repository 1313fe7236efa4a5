//! Which addresses the helper may connect to: public ones only, unless an operator's
//! `--allow` list says otherwise. A helper on a VPS measures whatever a client names;
//! without this it would let any token holder reach the VPS's own loopback services, its
//! provider's private network or the cloud metadata address (server-side request forgery).

use std::net::IpAddr;
use std::sync::LazyLock;

use ipnet::IpNet;

use crate::ipclass::bogon_range;

/// Ranges refused in addition to [`crate::ipclass`]'s bogons: translation and tunnel
/// prefixes that reach IPv4 space (NAT64, 6to4, Teredo) and so could carry a private
/// IPv4 address, and the other IETF special-purpose IPv6 blocks.
static EXTRA_REFUSED: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "192.88.99.0/24",
        "64:ff9b::/96",
        "2001::/23",
        "2002::/16",
        "3fff::/20",
        "5f00::/16",
    ]
    .iter()
    .map(|s| s.parse().expect("static refused range parses"))
    .collect()
});

/// The special-purpose range `ip` is in, if any (IPv4-mapped IPv6 judged as IPv4).
pub fn special_range(ip: IpAddr) -> Option<IpNet> {
    let canonical = ip.to_canonical();
    bogon_range(canonical)
        .or_else(|| bogon_range(ip))
        .or_else(|| {
            EXTRA_REFUSED
                .iter()
                .copied()
                .find(|net| net.contains(&canonical))
        })
}

/// The helper's connect policy: public addresses, plus the `--allow` prefixes.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(allow: Vec<IpNet>) -> Self {
        AddressPolicy { allow }
    }

    pub fn allowed_prefixes(&self) -> &[IpNet] {
        &self.allow
    }

    /// `Ok` when the helper may connect to `ip`; otherwise why not (for
    /// [`crate::observation::web_control::RefusedAddress`]).
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let canonical = ip.to_canonical();
        if self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return Ok(());
        }
        match special_range(ip) {
            None => Ok(()),
            Some(net) => Err(format!(
                "{ip} is in the special-purpose range {net} and not in the helper's --allow list"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn refuses_every_kind_of_non_public_address() {
        let policy = AddressPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "198.19.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001::1",
        ] {
            let reason = policy.check(ip(refused)).unwrap_err();
            assert!(reason.contains("--allow"), "{refused}: {reason}");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn the_allow_list_opens_only_its_prefixes() {
        let policy = AddressPolicy::new(vec!["198.18.0.0/15".parse().unwrap()]);
        assert_eq!(policy.check(ip("198.18.0.10")), Ok(()));
        assert_eq!(policy.check(ip("198.19.1.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:198.18.0.10")), Ok(()));
        assert!(policy.check(ip("127.0.0.1")).is_err());
        assert!(policy.check(ip("10.0.0.1")).is_err());
    }
}
