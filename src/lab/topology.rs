//! The lab's network: six namespaces (vantage point, three routers, censor, Internet)
//! joined by veth pairs, addresses and routes from [`super::plan`], the censor's nftables
//! ruleset, and the host's `prohibit` route.
//!
//! [`Topology`] is a guard: dropping it removes everything it created, best effort on
//! every step; [`Topology::teardown`] does the same and reports what failed.

use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;

use nix::fcntl::{Flock, FlockArg};

use super::error::{LabError, LabResult};
use super::netns;
use super::nft;
use super::plan::{self, mac_string};
use super::scenario::Scenario;

/// What makes a namespace a router: forwarding, no IPv6, and ICMP time-exceeded from the
/// interface a packet came in on, never rate-limited (TTL-limited probing sends many).
const ROUTER_SYSCTLS: [(&str, &str); 8] = [
    ("net/ipv6/conf/all/disable_ipv6", "1"),
    ("net/ipv6/conf/default/disable_ipv6", "1"),
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/all/send_redirects", "0"),
    ("net/ipv4/icmp_ratelimit", "0"),
    ("net/ipv4/icmp_msgs_per_sec", "100000"),
    ("net/ipv4/icmp_errors_use_inbound_ifaddr", "1"),
];

/// Every lab namespace name starts with this.
pub const NAMESPACE_PREFIX: &str = "cp-";
/// Directory for lab state and the host-route lock.
pub const RUN_DIR: &str = "/run/censorprobe";

/// The namespace names of one lab instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Namespaces {
    pub vantage: String,
    pub censor: String,
    pub internet: String,
    /// The plain routers, in the order of [`plan::ROUTERS`].
    #[serde(default)]
    pub routers: Vec<String>,
    /// The web-control helper's namespace, behind the Internet namespace (empty in the
    /// state of labs from older versions).
    #[serde(default)]
    pub helper: String,
}

impl Namespaces {
    pub fn for_id(id: &str) -> Namespaces {
        Namespaces {
            vantage: format!("{NAMESPACE_PREFIX}{id}-vp"),
            censor: format!("{NAMESPACE_PREFIX}{id}-censor"),
            internet: format!("{NAMESPACE_PREFIX}{id}-net"),
            routers: plan::ROUTERS
                .iter()
                .map(|r| format!("{NAMESPACE_PREFIX}{id}-{}", r.name))
                .collect(),
            helper: format!("{NAMESPACE_PREFIX}{id}-helper"),
        }
    }

    pub fn all(&self) -> Vec<&str> {
        let mut all = vec![
            self.vantage.as_str(),
            self.censor.as_str(),
            self.internet.as_str(),
        ];
        all.extend(self.routers.iter().map(String::as_str));
        if !self.helper.is_empty() {
            all.push(self.helper.as_str());
        }
        all
    }
}

/// Check a lab id: short, lowercase letters, digits and dashes (it goes into names).
pub fn check_id(id: &str) -> LabResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 24
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LabError::Namespace {
            namespace: id.to_owned(),
            message: "a lab id is 1-24 characters of a-z, 0-9 and -".to_owned(),
        })
    }
}

/// A fresh random lab id.
pub fn random_id() -> String {
    format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

/// The lab network, torn down when dropped.
#[derive(Debug)]
pub struct Topology {
    namespaces: Namespaces,
    created: Vec<String>,
    torn_down: bool,
}

impl Topology {
    /// Build the network for `scenario` under lab id `id`.
    pub fn create(id: &str, scenario: &Scenario) -> LabResult<Topology> {
        check_id(id)?;
        if !netns::is_root() {
            return Err(LabError::NotRoot);
        }
        let namespaces = Namespaces::for_id(id);
        let mut topology = Topology {
            namespaces: namespaces.clone(),
            created: Vec::new(),
            torn_down: false,
        };
        {
            let _lock = host_lock()?;
            let existing = netns::list();
            for name in namespaces.all() {
                if existing.iter().any(|n| n == name) {
                    return Err(LabError::Namespace {
                        namespace: name.to_owned(),
                        message: "already exists (is a lab with this id up?)".to_owned(),
                    });
                }
            }
            // Recorded first: a batch that fails half-way leaves some made, and teardown
            // removes whichever exist.
            topology
                .created
                .extend(namespaces.all().iter().map(|n| (*n).to_owned()));
            // One `ip` process for all of them: lab start-up is mostly process spawns.
            let batch: Vec<String> = namespaces
                .all()
                .iter()
                .map(|n| format!("netns add {n}"))
                .collect();
            let mut input = batch.join("\n");
            input.push('\n');
            netns::run("ip", &["-batch", "-"], Some(&input))?;
            add_host_route()?;
        }
        topology.configure(scenario)?;
        Ok(topology)
    }

    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// Keep the network after this guard is dropped (a daemonised lab; `lab down` removes it).
    pub fn persist(mut self) {
        self.torn_down = true;
    }

    fn configure(&self, scenario: &Scenario) -> LabResult<()> {
        let ns = &self.namespaces;
        let mac = mac_string;
        let [r1, r2, r3] = plan::ROUTERS;
        netns::ip_batch(
            &ns.vantage,
            &[
                format!(
                    "link add {} address {} type veth peer name {} address {} netns {}",
                    plan::VANTAGE_IF,
                    mac(plan::VANTAGE_MAC),
                    plan::ROUTER_UP_IF,
                    mac(r1.up_mac),
                    ns.routers[0]
                ),
                // One segment per skb: the censor process forwards frames as read, and a
                // TSO super-frame would exceed the MTU of the link it is written to.
                format!("link set {} gso_max_segs 1", plan::VANTAGE_IF),
                format!("addr add {}/24 dev {}", plan::VANTAGE_IP, plan::VANTAGE_IF),
                "link set lo up".to_owned(),
                format!("link set {} up", plan::VANTAGE_IF),
                format!("route add default via {}", plan::VANTAGE_GATEWAY_IP),
            ],
        )?;
        // Links are made from the vantage point outward, each namespace creating its link
        // toward the Internet with the peer end moved into the next namespace; so each
        // router's batch finds its up link made and configures both.
        self.configure_router(0)?;
        self.configure_router(1)?;
        netns::ip_batch(
            &ns.censor,
            &[
                format!(
                    "link add {} address {} type veth peer name {} address {} netns {}",
                    plan::CENSOR_INTERNET_IF,
                    mac(plan::CENSOR_INTERNET_MAC),
                    plan::ROUTER_UP_IF,
                    mac(r3.up_mac),
                    ns.routers[2]
                ),
                format!(
                    "link add {} address {} type veth peer name {} address {}",
                    plan::INSPECT_IF,
                    mac(plan::INSPECT_MAC),
                    plan::INSPECT_PEER_IF,
                    mac(plan::INSPECT_PEER_MAC),
                ),
                format!(
                    "addr add {}/24 dev {}",
                    plan::CENSOR_VANTAGE_SIDE_IP,
                    plan::CENSOR_VANTAGE_IF
                ),
                format!(
                    "addr add {}/24 dev {}",
                    plan::CENSOR_INTERNET_SIDE_IP,
                    plan::CENSOR_INTERNET_IF
                ),
                format!("addr add {}/24 dev {}", plan::INSPECT_IP, plan::INSPECT_IF),
                "link set lo up".to_owned(),
                format!("link set {} up", plan::CENSOR_VANTAGE_IF),
                format!("link set {} up", plan::CENSOR_INTERNET_IF),
                format!("link set {} up", plan::INSPECT_IF),
                format!("link set {} up", plan::INSPECT_PEER_IF),
                format!("route add 198.19.0.0/16 via {}", r3.up_ip),
                format!("route add 198.18.5.0/24 via {}", r3.up_ip),
                format!("route add default via {}", r2.down_ip),
                format!(
                    "neigh add {} lladdr {} dev {} nud permanent",
                    plan::INSPECT_NEXT_HOP,
                    mac(plan::INSPECT_PEER_MAC),
                    plan::INSPECT_IF
                ),
                format!(
                    "neigh add {} lladdr {} dev {} nud permanent",
                    plan::INSPECT_EXPIRING_NEXT_HOP,
                    mac(plan::INSPECT_EXPIRING_MAC),
                    plan::INSPECT_IF
                ),
                format!(
                    "route add default via {} dev {} table {}",
                    plan::INSPECT_NEXT_HOP,
                    plan::INSPECT_IF,
                    plan::INSPECT_TABLE
                ),
                format!(
                    "route add default via {} dev {} table {}",
                    plan::INSPECT_EXPIRING_NEXT_HOP,
                    plan::INSPECT_IF,
                    plan::INSPECT_EXPIRING_TABLE
                ),
                format!(
                    "rule add fwmark {:#x} lookup {} pref 100",
                    plan::INSPECT_MARK,
                    plan::INSPECT_TABLE
                ),
                format!(
                    "rule add fwmark {:#x} lookup {} pref 101",
                    plan::INSPECT_EXPIRING_MARK,
                    plan::INSPECT_EXPIRING_TABLE
                ),
            ],
        )?;
        self.configure_router(2)?;
        let mut internet = vec![
            format!(
                "addr add {}/24 dev {}",
                plan::INTERNET_LINK_IP,
                plan::INTERNET_IF
            ),
            format!(
                "addr add {}/32 dev {}",
                plan::RESOLVER_IP,
                plan::INTERNET_IF
            ),
            format!("addr add {}/32 dev {}", plan::SINK_IP, plan::INTERNET_IF),
            format!(
                "addr add {}/32 dev {}",
                plan::HELPER_RESOLVER_IP,
                plan::INTERNET_IF
            ),
        ];
        for ip in scenario.server_addresses() {
            internet.push(format!("addr add {ip}/32 dev {}", plan::INTERNET_IF));
        }
        internet.extend([
            // The servers' segments now pass through the censor process too (see vp0).
            format!("link set {} gso_max_segs 1", plan::INTERNET_IF),
            "link set lo up".to_owned(),
            format!("link set {} up", plan::INTERNET_IF),
            format!("route add default via {}", r3.down_ip),
        ]);
        internet.extend(internet_helper_link(&ns.helper));
        netns::ip_batch(&ns.internet, &internet)?;
        netns::ip_batch(&ns.helper, &helper_namespace())?;
        // Plain routers: forward, answer expiring packets with ICMP time-exceeded from the
        // interface they came in on, never rate-limited (TTL-limited probing sends many).
        for router in &ns.routers {
            netns::sysctls(router, &ROUTER_SYSCTLS)?;
        }

        let no_ipv6 = [
            ("net/ipv6/conf/all/disable_ipv6", "1"),
            ("net/ipv6/conf/default/disable_ipv6", "1"),
        ];
        netns::sysctls(&ns.vantage, &no_ipv6)?;
        netns::sysctls(&ns.helper, &no_ipv6)?;
        // The Internet namespace forwards between the censored path and the helper.
        netns::sysctls(
            &ns.internet,
            &[no_ipv6.as_slice(), &[("net/ipv4/ip_forward", "1")]].concat(),
        )?;
        let insp1 = plan::INSPECT_PEER_IF;
        let forwarding = format!("net/ipv4/conf/{insp1}/forwarding");
        let rp_insp1 = format!("net/ipv4/conf/{insp1}/rp_filter");
        netns::sysctls(
            &ns.censor,
            &[
                ROUTER_SYSCTLS.as_slice(),
                &[
                    // insp1 is read by the censor process; the kernel must not route what
                    // arrives there.
                    (forwarding.as_str(), "0"),
                    (rp_insp1.as_str(), "0"),
                ],
            ]
            .concat(),
        )?;
        netns::run(
            "ip",
            &["netns", "exec", &ns.censor, "nft", "-f", "-"],
            Some(&nft::ruleset(scenario)),
        )?;
        Ok(())
    }

    /// One router namespace: its link toward the Internet (peer moved into the next
    /// namespace), both addresses, and routes.
    fn configure_router(&self, index: usize) -> LabResult<()> {
        let ns = &self.namespaces;
        let mac = mac_string;
        let router = plan::ROUTERS[index];
        let (next_ns, peer_if, peer_mac) = match index {
            0 => (
                ns.routers[1].as_str(),
                plan::ROUTER_UP_IF,
                plan::ROUTERS[1].up_mac,
            ),
            1 => (
                ns.censor.as_str(),
                plan::CENSOR_VANTAGE_IF,
                plan::CENSOR_VANTAGE_MAC,
            ),
            _ => (ns.internet.as_str(), plan::INTERNET_IF, plan::INTERNET_MAC),
        };
        let mut lines = vec![
            format!(
                "link add {} address {} type veth peer name {peer_if} address {} netns {next_ns}",
                plan::ROUTER_DOWN_IF,
                mac(router.down_mac),
                mac(peer_mac),
            ),
            "link set lo up".to_owned(),
        ];
        for (interface, ip) in [
            (plan::ROUTER_UP_IF, router.up_ip),
            (plan::ROUTER_DOWN_IF, router.down_ip),
        ] {
            lines.extend([
                // One segment per skb, as on every link the censor process writes to.
                format!("link set {interface} gso_max_segs 1"),
                format!("addr add {ip}/24 dev {interface}"),
                format!("link set {interface} up"),
            ]);
        }
        lines.push(format!("route add default via {}", router.toward_vantage));
        lines.extend(
            networks_beyond(&router)
                .iter()
                .map(|net| format!("route add {net} via {}", router.toward_internet)),
        );
        netns::ip_batch(&ns.routers[index], &lines)
    }

    /// Remove the namespaces (and with them every link, address, route and rule), then the
    /// host route if no lab is left. Best effort on every step; the failures are returned.
    pub fn teardown(mut self) -> LabResult<()> {
        let failures = self.teardown_steps();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(LabError::Teardown { failures })
        }
    }

    fn teardown_steps(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let names: Vec<String> = if self.created.is_empty() {
            Vec::new()
        } else {
            self.namespaces
                .all()
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        };
        remove_namespaces(&names)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for failure in self.teardown_steps() {
            eprintln!("censorprobe lab: teardown: {failure}");
        }
    }
}

/// The Internet namespace's side of the helper: the link into the helper namespace, the
/// route to the helper's address, and a blackhole for the rest of the Internet range so
/// that forwarding (on for the helper) never sends a packet for an address nobody holds
/// back toward the censor: such packets vanish, as before.
fn internet_helper_link(helper_ns: &str) -> Vec<String> {
    let mac = mac_string;
    vec![
        format!(
            "link add {} address {} type veth peer name {} address {} netns {helper_ns}",
            plan::INTERNET_HELPER_IF,
            mac(plan::INTERNET_HELPER_MAC),
            plan::HELPER_IF,
            mac(plan::HELPER_MAC),
        ),
        format!(
            "addr add {}/24 dev {}",
            plan::INTERNET_HELPER_LINK_IP,
            plan::INTERNET_HELPER_IF
        ),
        format!("link set {} up", plan::INTERNET_HELPER_IF),
        format!(
            "route add {}/32 via {}",
            plan::HELPER_IP,
            plan::HELPER_LINK_IP
        ),
        format!("route add blackhole {}", INTERNET_RANGE),
    ]
}

/// The Internet side's range (the lab's hosts and the scenario's servers).
const INTERNET_RANGE: &str = "198.19.0.0/16";

/// The helper namespace: its link address and its own address, and every packet out
/// through the Internet namespace from its own address.
fn helper_namespace() -> Vec<String> {
    vec![
        format!(
            "addr add {}/24 dev {}",
            plan::HELPER_LINK_IP,
            plan::HELPER_IF
        ),
        format!("addr add {}/32 dev {}", plan::HELPER_IP, plan::HELPER_IF),
        "link set lo up".to_owned(),
        format!("link set {} up", plan::HELPER_IF),
        format!(
            "route add default via {} src {}",
            plan::INTERNET_HELPER_LINK_IP,
            plan::HELPER_IP
        ),
    ]
}

/// The lab's networks from the vantage point outward (the censor's inspection link is
/// its own business).
const NETWORKS_OUTWARD: [&str; 6] = [
    "198.18.0.0/24",
    "198.18.3.0/24",
    "198.18.4.0/24",
    "198.18.1.0/24",
    "198.18.5.0/24",
    "198.19.0.0/16",
];

/// The networks a router reaches through its Internet-side neighbour (the others are
/// attached or behind its default route toward the vantage point).
fn networks_beyond(router: &plan::Router) -> &'static [&'static str] {
    let [a, b, c, _] = router.down_ip.octets();
    let down = format!("{a}.{b}.{c}.0/24");
    let at = NETWORKS_OUTWARD
        .iter()
        .position(|n| *n == down)
        .expect("every router's down link is a lab network");
    &NETWORKS_OUTWARD[at + 1..]
}

/// Delete namespaces (those that exist), then drop the host route if no lab namespace is
/// left. Returns what failed.
pub fn remove_namespaces(names: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    let lock = match host_lock() {
        Ok(lock) => Some(lock),
        Err(e) => {
            failures.push(e.to_string());
            None
        }
    };
    failures.extend(remove_namespaces_locked(names, lock.as_ref()));
    drop(lock);
    failures
}

/// [`remove_namespaces`] for a caller that holds the host lock already (`None`: taking
/// it failed, and the caller goes on best effort).
pub(crate) fn remove_namespaces_locked(
    names: &[String],
    _lock: Option<&Flock<File>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let existing = netns::list();
    for name in names {
        if existing.contains(name)
            && let Err(e) = netns::run("ip", &["netns", "del", name], None)
        {
            failures.push(e.to_string());
        }
    }
    let labs_left = netns::list()
        .iter()
        .any(|n| n.starts_with(NAMESPACE_PREFIX));
    if !labs_left && let Err(e) = remove_host_route() {
        failures.push(e.to_string());
    }
    failures
}

/// Serialises namespace creation/removal with the host route's reference count.
pub(crate) fn host_lock() -> LabResult<Flock<File>> {
    std::fs::create_dir_all(RUN_DIR).map_err(|e| LabError::io(format!("create {RUN_DIR}"), e))?;
    let path = format!("{RUN_DIR}/host-route.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LabError::io(format!("open {path}"), e))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| LabError::io(format!("lock {path}"), errno.into()))
}

fn host_route_present() -> bool {
    netns::run(
        "ip",
        &["route", "show", "type", "prohibit", plan::LAB_RANGE],
        None,
    )
    .is_ok_and(|out| !out.trim().is_empty())
}

fn add_host_route() -> LabResult<()> {
    if host_route_present() {
        return Ok(());
    }
    netns::run("ip", &["route", "add", "prohibit", plan::LAB_RANGE], None).map(drop)
}

fn remove_host_route() -> LabResult<()> {
    if !host_route_present() {
        return Ok(());
    }
    netns::run("ip", &["route", "del", "prohibit", plan::LAB_RANGE], None).map(drop)
}

/// Whether the host namespace holds the lab's `prohibit` route now.
pub fn host_route_exists() -> bool {
    host_route_present()
}

/// The addresses the Internet side answers on, besides the scenario's servers.
pub fn lab_host_addresses() -> [Ipv4Addr; 3] {
    [plan::RESOLVER_IP, plan::SINK_IP, plan::HELPER_RESOLVER_IP]
}
