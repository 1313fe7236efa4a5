//! The lab's fixed address plan. Every lab instance uses the same addresses: each lives in
//! its own namespaces, so instances never see one another.
//!
//! ```text
//!  vantage ns            censor ns                          Internet ns
//!  vp0 198.18.0.2 <-> cvp0 198.18.0.1 | cnet0 198.18.1.1 <-> net0 198.18.1.2
//!                      insp0 198.18.2.1 <-> insp1 (read by the censor process)
//!                                                            + 198.19.0.53 resolver (DNS, DoT, DoH)
//!                                                            + 198.19.0.54 sink (no DNS)
//!                                                            + 198.19.x.y  servers of the scenario
//! ```
//!
//! All of it is inside 198.18.0.0/15 (RFC 2544 benchmarking space), which the host namespace
//! answers with a `prohibit` route while a lab is up.

use std::net::Ipv4Addr;

/// The whole lab range, blocked in the host namespace while a lab is up.
pub const LAB_RANGE: &str = "198.18.0.0/15";

pub const VANTAGE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const CENSOR_VANTAGE_SIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CENSOR_INTERNET_SIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const INTERNET_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The censor routes the vantage point's DNS queries and TCP segments out of `insp0`;
/// its process reads them from the peer `insp1` and forwards, drops or answers them.
pub const INSPECT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// Next hop (no host: a static neighbour entry) of the inspection route.
pub const INSPECT_NEXT_HOP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// The DNS resolver under test (authoritative for every scenario name), also on `DoT`.
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 53);
/// An address with no DNS service: only an injector answers queries sent there.
pub const SINK_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 54);
/// The name in the resolver's `DoT` certificate.
pub const DOT_NAME: &str = "resolver.lab.example";
pub const DOT_PORT: u16 = 853;
/// The resolver's `DoH` port (path [`crate::servers::dns::DOH_PATH`]).
pub const DOH_PORT: u16 = 443;

/// Interface names inside the namespaces (fixed: each namespace has its own).
pub const VANTAGE_IF: &str = "vp0";
pub const CENSOR_VANTAGE_IF: &str = "cvp0";
pub const CENSOR_INTERNET_IF: &str = "cnet0";
pub const INTERNET_IF: &str = "net0";
pub const INSPECT_IF: &str = "insp0";
pub const INSPECT_PEER_IF: &str = "insp1";

/// Fixed MAC addresses (locally administered) so the censor addresses forged frames
/// without ARP.
pub const VANTAGE_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 0, 0x02];
pub const CENSOR_VANTAGE_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 0, 0x01];
pub const CENSOR_INTERNET_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 1, 0x01];
pub const INTERNET_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 1, 0x02];
pub const INSPECT_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 2, 0x01];
pub const INSPECT_PEER_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 2, 0x02];
/// Firewall mark and routing table of the inspection route.
pub const INSPECT_MARK: u32 = 0xcb;
pub const INSPECT_TABLE: u32 = 203;

/// Whether a scenario may put a server (or an IP rule) at `ip`: 198.19.1.0 and up;
/// 198.19.0.0/24 belongs to the lab's own hosts.
pub fn is_server_address(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 198 && b == 19 && c >= 1
}

/// Whether `ip` lies on the lab's Internet side (198.19.0.0/16).
pub fn is_internet_address(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    a == 198 && b == 19
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_hosts_are_not_in_the_scenario_server_range() {
        assert!(!is_server_address(RESOLVER_IP));
        assert!(!is_server_address(SINK_IP));
        assert!(is_internet_address(RESOLVER_IP));
        assert!(is_server_address(Ipv4Addr::new(198, 19, 1, 1)));
        assert!(!is_server_address(Ipv4Addr::new(10, 19, 1, 1)));
        assert_eq!(mac_string(VANTAGE_MAC), "02:cb:00:00:00:02");
    }
}
