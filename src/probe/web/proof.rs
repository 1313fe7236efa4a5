//! "TLS as proof" of a DNS answer: which of the answer's addresses get a handshake.
//!
//! The answer comes from the resolver under test, that is possibly from the censor: its
//! addresses are the censor's choice. So the proof never contacts more than
//! [`MAX_PROOF_ADDRESSES`] of them per name (one answer of 2,000 addresses must not make
//! a volunteer's machine contact 2,000 hosts), and never an address that is not
//! public: bogon, private, loopback, link-local, multicast or otherwise reserved
//! ([`crate::ipclass::is_bogon`], plus IPv6 outside global unicast). The lab's
//! 198.18.0.0/15 is reserved too, so the lab never relies on TLS as proof; the
//! addresses left out are recorded as evidence, with the count and the reason.

use std::net::IpAddr;

use crate::ipclass::is_bogon;

/// Most addresses of one name's answer that get a TLS handshake as proof.
pub const MAX_PROOF_ADDRESSES: usize = 4;

/// The addresses to prove, and those left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProofPlan {
    /// In answer order, distinct, at most the cap.
    pub probe: Vec<IpAddr>,
    pub not_public: Vec<IpAddr>,
    pub over_cap: Vec<IpAddr>,
}

/// Whether an answer address may be contacted for proof: a public unicast address.
pub fn contactable(ip: IpAddr) -> bool {
    if is_bogon(ip) {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_broadcast(),
        // Only global unicast (2000::/3) is public, without the IETF protocol
        // assignments (2001::/23, Teredo among them), 6to4 (2002::/16), whose addresses
        // stand for other ones, and the documentation prefix 3fff::/20.
        IpAddr::V6(v6) => {
            let [first, second, ..] = v6.segments();
            let global_unicast = (first & 0xe000) == 0x2000;
            let ietf_assignments = first == 0x2001 && second < 0x0200;
            let six_to_four = first == 0x2002;
            let documentation = first == 0x3fff && second < 0x1000;
            global_unicast && !ietf_assignments && !six_to_four && !documentation
        }
    }
}

/// Choose the addresses of `answer` to prove, at most `cap`, skipping the ones that are
/// not public; repeated addresses count once.
pub fn plan_tls_proof(answer: &[IpAddr], cap: usize) -> ProofPlan {
    let mut plan = ProofPlan::default();
    let mut seen = std::collections::HashSet::new();
    for &ip in answer {
        if !seen.insert(ip) {
            continue;
        }
        if !contactable(ip) {
            plan.not_public.push(ip);
        } else if plan.probe.len() < cap {
            plan.probe.push(ip);
        } else {
            plan.over_cap.push(ip);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_unicast_is_contactable() {
        for public in [
            "11.0.0.1",
            "93.184.216.34",
            "2606:4700::1111",
            "2a00:1450::1",
        ] {
            assert!(contactable(ip(public)), "{public}");
        }
        for reserved in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "198.18.0.7",
            "198.19.255.1",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2002:c000:0204::1",
            "::ffff:11.0.0.1",
            "64:ff9b::1",
            "3fff::1",
            "4000::1",
        ] {
            assert!(!contactable(ip(reserved)), "{reserved}");
        }
    }

    #[test]
    fn an_answer_of_thousands_is_capped_and_bogons_are_never_tried() {
        let mut answer: Vec<IpAddr> = (0..2000u32)
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(0x0B00_0000 + i)))
            .collect();
        answer.insert(0, ip("127.0.0.1"));
        answer.insert(3, ip("198.18.0.7"));
        answer.push(ip("11.0.0.0")); // a repeat
        let plan = plan_tls_proof(&answer, MAX_PROOF_ADDRESSES);
        assert_eq!(
            plan.probe,
            [
                ip("11.0.0.0"),
                ip("11.0.0.1"),
                ip("11.0.0.2"),
                ip("11.0.0.3")
            ]
        );
        assert_eq!(plan.not_public, [ip("127.0.0.1"), ip("198.18.0.7")]);
        assert_eq!(plan.over_cap.len(), 1996);
    }
}
