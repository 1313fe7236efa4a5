//! The censor namespace's nftables ruleset.
//!
//! Two jobs are left to the kernel: steering the vantage point's DNS queries and the TCP
//! segments of its connections (both ways) to the censor process (a firewall mark picks
//! the inspection route), and IP blocking, which drops or rejects at connect every packet
//! to a blocked address whatever its protocol. Everything that depends on names (DNS, Host, SNI) and on state (flows,
//! residual censorship) is decided by the censor process.

use std::fmt::Write;

use super::plan;
use super::scenario::{IpAction, Scenario};

/// Name of the nftables table the lab installs in the censor namespace.
pub const TABLE: &str = "censorprobe_lab";

/// The ruleset text for `nft -f -`.
pub fn ruleset(scenario: &Scenario) -> String {
    let mut rules = String::new();
    let vantage_if = plan::CENSOR_VANTAGE_IF;
    let mark = plan::INSPECT_MARK;
    let _ = writeln!(rules, "table ip {TABLE} {{");
    let _ = writeln!(
        rules,
        "  chain steer {{\n    type filter hook prerouting priority mangle; policy accept;"
    );
    // A packet that arrives with TTL 1 would expire in the kernel's forwarding before
    // the censor process saw it. The censor inspects it anyway (a trigger whose TTL
    // reaches the censor draws the injection): it goes the other inspection route, with
    // TTL 2 so the kernel lets it through; the censor process knows it by that route's
    // next-hop MAC and answers with the time-exceeded itself.
    let expiring = plan::INSPECT_EXPIRING_MARK;
    for what in ["udp dport 53", "meta l4proto tcp"] {
        let _ = writeln!(
            rules,
            "    iifname \"{vantage_if}\" ip ttl 1 {what} meta mark set {expiring:#x} ip ttl set 2 accept"
        );
    }
    let _ = writeln!(
        rules,
        "    iifname \"{vantage_if}\" udp dport 53 meta mark set {mark:#x}"
    );
    let _ = writeln!(
        rules,
        "    iifname \"{vantage_if}\" meta l4proto tcp meta mark set {mark:#x}"
    );
    // The servers' side of those connections too: a flow the censor drops is dropped
    // both ways, as in-path equipment does.
    let _ = writeln!(
        rules,
        "    iifname \"{}\" ip daddr {} meta l4proto tcp meta mark set {mark:#x}\n  }}",
        plan::CENSOR_INTERNET_IF,
        plan::VANTAGE_IP
    );
    let _ = writeln!(
        rules,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;"
    );
    // Frames the censor process reads arrive on insp1; the kernel must never forward
    // them a second time.
    let _ = writeln!(rules, "    iifname \"{}\" drop", plan::INSPECT_PEER_IF);
    for rule in &scenario.ip_rules {
        let ports = if rule.ports.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = rule.ports.iter().map(u16::to_string).collect();
            format!(" tcp dport {{ {} }}", list.join(", "))
        };
        match rule.action {
            IpAction::Drop => {
                let _ = writeln!(rules, "    ip daddr {}{ports} drop", rule.ip);
            }
            IpAction::Reset => {
                let proto = if ports.is_empty() {
                    " meta l4proto tcp".to_owned()
                } else {
                    ports
                };
                let _ = writeln!(
                    rules,
                    "    ip daddr {}{proto} tcp flags & (syn | ack) == syn reject with tcp reset",
                    rule.ip
                );
            }
        }
    }
    let _ = writeln!(rules, "  }}\n}}");
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn ip_rules_become_kernel_rules() {
        let scenario = Scenario::parse(
            r#"
[[ip_rules]]
ip = "198.19.3.1"
action = "drop"

[[ip_rules]]
ip = "198.19.3.2"
ports = [80, 443]
action = "reset"
"#,
            Path::new("t.toml"),
        )
        .unwrap();
        let text = ruleset(&scenario);
        assert!(text.contains("ip daddr 198.19.3.1 drop"), "{text}");
        assert!(
            text.contains(
                "ip daddr 198.19.3.2 tcp dport { 80, 443 } tcp flags & (syn | ack) == syn reject with tcp reset"
            ),
            "{text}"
        );
        assert!(text.contains("meta mark set 0xcb"), "{text}");
        assert!(
            text.contains("ip ttl 1 meta l4proto tcp meta mark set 0xcc ip ttl set 2 accept"),
            "{text}"
        );
    }
}
