//! The lab's fixed address plan. Every lab instance uses the same addresses: each lives in
//! its own namespaces, so instances never see one another.
//!
//! ```text
//!  hop:   0           1                2                3 (censor)                  4               5
//!  vantage ns     router 1 ns      router 2 ns      censor ns                   router 3 ns     Internet ns
//!  vp0 .0.2 <-> up0 .0.1|down0 .3.1 <-> up0 .3.2|down0 .4.1 <-> cvp0 .4.2|cnet0 .1.1 <-> up0 .1.2|down0 .5.1 <-> net0 .5.2
//!                                                   insp0 198.18.2.1 <-> insp1 (read by the censor process)
//!                                                                                 + 198.19.0.53 resolver (DNS, DoT, DoH)
//!                                                                                 + 198.19.0.54 sink (no DNS)
//!                                                                                 + 198.19.x.y  servers of the scenario
//!                                                                                 + 198.19.0.55 the helper's resolver (DNS)
//!                                                                                 hlp0 198.18.6.1
//!                                                                                   <-> hlp1 198.18.6.2 helper ns
//!                                                                                       + 198.19.0.80 web-control helper
//! ```
//! (addresses 198.18.x.y, each link a /24.) The routers are plain Linux forwarding
//! namespaces: they decrement the TTL and answer an expiring packet with an ICMP
//! time-exceeded from the address facing the vantage point ([`HOP_ADDRESSES`]). So does
//! the censor (see [`crate::lab::censor`]), which still inspects such a packet first: a
//! trigger sent with TTL [`CENSOR_HOP`] draws the injection without reaching a server.
//!
//! The web-control helper (`censorprobe helper`) sits in a namespace of its own behind
//! the Internet namespace, out of the censor's reach: its own probes of the servers go
//! helper -> Internet namespace and never cross the censor, while the vantage point
//! reaches it like any server, through the censor (which has no rule for it).
//!
//! All of it is inside 198.18.0.0/15 (RFC 2544 benchmarking space), which the host namespace
//! answers with a `prohibit` route while a lab is up.

use std::net::Ipv4Addr;

/// The whole lab range, blocked in the host namespace while a lab is up.
pub const LAB_RANGE: &str = "198.18.0.0/15";

pub const VANTAGE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The vantage point's gateway: router 1.
pub const VANTAGE_GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CENSOR_VANTAGE_SIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 2);
pub const CENSOR_INTERNET_SIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The Internet namespace's address on its link to router 3.
pub const INTERNET_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 2);

/// The hop at which the censor sits, counted from the vantage point (hop 1 is the first
/// router): a packet sent with this IP TTL expires at the censor, which still inspects it.
pub const CENSOR_HOP: u8 = 3;
/// The hop of every server (resolver, sink, the scenario's servers): a packet needs this
/// TTL to reach one.
pub const SERVER_HOP: u8 = 5;
/// Who answers a packet that expires at hop `n` with an ICMP time-exceeded:
/// `HOP_ADDRESSES[n - 1]` (routers 1 and 2, the censor, router 3).
pub const HOP_ADDRESSES: [Ipv4Addr; SERVER_HOP as usize - 1] = [
    VANTAGE_GATEWAY_IP,
    Ipv4Addr::new(198, 18, 3, 2),
    CENSOR_VANTAGE_SIDE_IP,
    Ipv4Addr::new(198, 18, 1, 2),
];
/// The TTL the vantage point sees on the servers' packets (Linux sends 64; every hop
/// between takes one).
pub const SERVER_TTL_SEEN: u8 = 64 - (SERVER_HOP - 1);

/// One plain router namespace of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Router {
    /// Suffix of its namespace name.
    pub name: &'static str,
    /// Address toward the vantage point (ICMP errors come from it) and its peer's.
    pub up_ip: Ipv4Addr,
    pub up_mac: [u8; 6],
    /// Address toward the Internet and its peer's.
    pub down_ip: Ipv4Addr,
    pub down_mac: [u8; 6],
    /// The next hop toward the vantage point and toward the Internet.
    pub toward_vantage: Ipv4Addr,
    pub toward_internet: Ipv4Addr,
}

/// Router interface names (each router namespace has its own).
pub const ROUTER_UP_IF: &str = "up0";
pub const ROUTER_DOWN_IF: &str = "down0";

/// Routers 1 and 2 (between the vantage point and the censor) and router 3 (between the
/// censor and the Internet), in hop order.
pub const ROUTERS: [Router; 3] = [
    Router {
        name: "r1",
        up_ip: VANTAGE_GATEWAY_IP,
        up_mac: [0x02, 0xcb, 0, 0, 0, 0x01],
        down_ip: Ipv4Addr::new(198, 18, 3, 1),
        down_mac: [0x02, 0xcb, 0, 0, 3, 0x01],
        toward_vantage: VANTAGE_IP,
        toward_internet: Ipv4Addr::new(198, 18, 3, 2),
    },
    Router {
        name: "r2",
        up_ip: Ipv4Addr::new(198, 18, 3, 2),
        up_mac: [0x02, 0xcb, 0, 0, 3, 0x02],
        down_ip: Ipv4Addr::new(198, 18, 4, 1),
        down_mac: CENSOR_CLIENT_PEER_MAC,
        toward_vantage: Ipv4Addr::new(198, 18, 3, 1),
        toward_internet: CENSOR_VANTAGE_SIDE_IP,
    },
    Router {
        name: "r3",
        up_ip: Ipv4Addr::new(198, 18, 1, 2),
        up_mac: CENSOR_SERVER_PEER_MAC,
        down_ip: Ipv4Addr::new(198, 18, 5, 1),
        down_mac: [0x02, 0xcb, 0, 0, 5, 0x01],
        toward_vantage: CENSOR_INTERNET_SIDE_IP,
        toward_internet: INTERNET_LINK_IP,
    },
];
/// How many of [`ROUTERS`] stand between the vantage point and the censor.
pub const ROUTERS_BEFORE_CENSOR: usize = CENSOR_HOP as usize - 1;
/// The censor routes the vantage point's DNS queries and TCP segments out of `insp0`;
/// its process reads them from the peer `insp1` and forwards, drops or answers them.
pub const INSPECT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// Next hop (no host: a static neighbour entry) of the inspection route.
pub const INSPECT_NEXT_HOP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// Next hop of the inspection route for packets that arrived with TTL 1: the censor
/// process tells them by this neighbour's MAC ([`INSPECT_EXPIRING_MAC`]), inspects them,
/// and answers with an ICMP time-exceeded instead of forwarding them.
pub const INSPECT_EXPIRING_NEXT_HOP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 3);
/// The DNS resolver under test (authoritative for every scenario name), also on `DoT`.
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 53);
/// An address with no DNS service: only an injector answers queries sent there.
pub const SINK_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 54);
/// The resolver of the helper's network: the web-control helper's `--resolver`. It
/// answers a scenario name's `geo.helper` addresses where the scenario gives them (the
/// resolver under test and its `DoT`/`DoH` have views of their own: see
/// [`crate::lab::internet`]).
pub const HELPER_RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 55);
/// The web-control helper's address (on `HELPER_IF`, in the helper namespace).
pub const HELPER_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 80);
/// The helper's HTTPS port.
pub const HELPER_PORT: u16 = 443;
/// The link between the Internet namespace (`INTERNET_HELPER_IF`) and the helper
/// namespace (`HELPER_IF`): a /24 of its own, 198.18.6.0/24.
pub const INTERNET_HELPER_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 6, 1);
pub const HELPER_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 6, 2);
/// The name (besides [`HELPER_IP`]) in the helper's certificate, issued by the lab CA.
pub const HELPER_NAME: &str = "helper.lab.example";
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
pub const INTERNET_HELPER_IF: &str = "hlp0";
pub const HELPER_IF: &str = "hlp1";

/// Fixed MAC addresses (locally administered) so the censor addresses forged frames
/// without ARP.
pub const VANTAGE_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 0, 0x02];
pub const CENSOR_VANTAGE_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 4, 0x02];
pub const CENSOR_INTERNET_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 1, 0x01];
/// The censor's neighbours: router 2's `down0` (toward the vantage point) and router 3's
/// `up0` (toward the Internet); the censor process addresses its frames to them.
pub const CENSOR_CLIENT_PEER_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 4, 0x01];
pub const CENSOR_SERVER_PEER_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 1, 0x02];
pub const INTERNET_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 5, 0x02];
pub const INSPECT_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 2, 0x01];
pub const INSPECT_PEER_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 2, 0x02];
pub const INSPECT_EXPIRING_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 2, 0x03];
pub const INTERNET_HELPER_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 6, 0x01];
pub const HELPER_MAC: [u8; 6] = [0x02, 0xcb, 0, 0, 6, 0x02];
/// Firewall mark and routing table of the inspection route.
pub const INSPECT_MARK: u32 = 0xcb;
pub const INSPECT_TABLE: u32 = 203;
/// Firewall mark and routing table of the inspection route for expiring packets.
pub const INSPECT_EXPIRING_MARK: u32 = 0xcc;
pub const INSPECT_EXPIRING_TABLE: u32 = 204;

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
        assert!(!is_server_address(HELPER_IP));
        assert!(!is_server_address(HELPER_RESOLVER_IP));
        assert!(
            is_internet_address(HELPER_IP),
            "the censor routes it outward"
        );
        assert!(is_internet_address(RESOLVER_IP));
        assert!(is_server_address(Ipv4Addr::new(198, 19, 1, 1)));
        assert!(!is_server_address(Ipv4Addr::new(10, 19, 1, 1)));
        assert_eq!(mac_string(VANTAGE_MAC), "02:cb:00:00:00:02");
    }

    #[test]
    fn hops_are_consistent_with_the_router_chain() {
        assert_eq!(ROUTERS.len() + 1, usize::from(SERVER_HOP) - 1);
        assert_eq!(
            HOP_ADDRESSES[usize::from(CENSOR_HOP) - 1],
            CENSOR_VANTAGE_SIDE_IP
        );
        let routers: Vec<Ipv4Addr> = ROUTERS.iter().map(|r| r.up_ip).collect();
        let mut expected = HOP_ADDRESSES.to_vec();
        expected.remove(usize::from(CENSOR_HOP) - 1);
        assert_eq!(routers, expected);
        assert_eq!(SERVER_TTL_SEEN, 60);
    }
}
