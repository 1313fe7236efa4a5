//! Where a target's web probes go: chosen by the scan from what the DNS stage found
//! (and judged), before the web stage observes.

use std::net::IpAddr;

use crate::observation::web::{AddressPlan, AddressSource};
use crate::observation::{ControlObservation, ControlOutcome};
use crate::targets::Target;

/// Choose the addresses to probe: an address literal, pinned addresses, the control's
/// answers, else the resolver's addresses judged genuine, else its answers minus those
/// judged forged; IPv4 first, at most `max_ips`. `Err` carries the reason when no
/// address can be trusted.
pub fn plan_addresses(
    target: &Target,
    control: Option<&ControlObservation>,
    genuine: &[IpAddr],
    forged: &[IpAddr],
    resolver_ips: &[IpAddr],
    max_ips: usize,
) -> Result<AddressPlan, String> {
    let finish = |source, mut ips: Vec<IpAddr>| {
        let mut seen = std::collections::HashSet::new();
        ips.retain(|ip| seen.insert(*ip));
        ips.sort_by_key(IpAddr::is_ipv6);
        ips.truncate(max_ips.max(1));
        AddressPlan { source, ips }
    };
    if let Some(ip) = target.address {
        return Ok(finish(AddressSource::Literal, vec![ip]));
    }
    if !target.pinned_ips.is_empty() {
        return Ok(finish(AddressSource::Pinned, target.pinned_ips.clone()));
    }
    let control_ips: Vec<IpAddr> = control
        .into_iter()
        .flat_map(|c| &c.answers)
        .filter_map(|a| match &a.outcome {
            ControlOutcome::Resolved { ips, .. } => Some(ips.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    if !control_ips.is_empty() {
        return Ok(finish(AddressSource::Control, control_ips));
    }
    let control_says_nxdomain = control.is_some_and(|c| {
        !c.answers.is_empty()
            && c.answers
                .iter()
                .all(|a| matches!(a.outcome, ControlOutcome::Nxdomain | ControlOutcome::NoData))
    });
    if control_says_nxdomain {
        return Err(format!(
            "the control resolution ({}) says the name has no address, and none is pinned",
            control.map_or("", |c| c.control.as_str())
        ));
    }
    let candidates: Vec<IpAddr> = if genuine.is_empty() {
        resolver_ips
            .iter()
            .copied()
            .filter(|ip| !forged.contains(ip))
            .collect()
    } else {
        genuine.to_vec()
    };
    if !candidates.is_empty() {
        return Ok(finish(AddressSource::Resolver, candidates));
    }
    if resolver_ips.is_empty() {
        Err(
            "no address: neither the control nor the resolver gave one, and none is pinned"
                .to_owned(),
        )
    } else {
        Err(
            "every address the resolver gave is judged forged, and the control gave none"
                .to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::ControlAnswer;
    use crate::targets::TargetSource;
    use std::net::Ipv4Addr;

    fn target(domain: &str) -> Target {
        Target {
            domain: domain.to_owned(),
            address: None,
            pinned_ips: Vec::new(),
            sources: vec![TargetSource {
                source: "cli".into(),
                line: None,
                input: domain.into(),
                category_code: None,
            }],
            sources_omitted: 0,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }

    fn control(outcomes: Vec<ControlOutcome>) -> ControlObservation {
        ControlObservation {
            control: "doh:https://lab/dns-query".into(),
            answers: outcomes
                .into_iter()
                .enumerate()
                .map(|(i, outcome)| ControlAnswer {
                    qtype: if i == 0 { "A".into() } else { "AAAA".into() },
                    outcome,
                    elapsed_ms: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn control_addresses_come_first_ipv4_first_capped() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let c = control(vec![
            ControlOutcome::Resolved {
                ips: vec![ip(1), ip(2), ip(3)],
                records: Vec::new(),
            },
            ControlOutcome::Resolved {
                ips: vec![v6],
                records: Vec::new(),
            },
        ]);
        let plan = plan_addresses(&target("a.test"), Some(&c), &[], &[], &[ip(9)], 2).unwrap();
        assert_eq!(plan.source, AddressSource::Control);
        assert_eq!(plan.ips, [ip(1), ip(2)]);
    }

    #[test]
    fn pinned_and_literal_addresses_win() {
        let mut t = target("a.test");
        t.pinned_ips = vec![ip(7)];
        let plan = plan_addresses(&t, None, &[], &[], &[ip(9)], 2).unwrap();
        assert_eq!(
            (plan.source, plan.ips),
            (AddressSource::Pinned, vec![ip(7)])
        );
        let mut t = target("198.18.0.5");
        t.address = Some(ip(5));
        let plan = plan_addresses(&t, None, &[], &[], &[], 2).unwrap();
        assert_eq!(
            (plan.source, plan.ips),
            (AddressSource::Literal, vec![ip(5)])
        );
    }

    #[test]
    fn resolver_addresses_without_forged_ones() {
        let forged = [ip(66)];
        let plan =
            plan_addresses(&target("a.test"), None, &[], &forged, &[ip(66), ip(4)], 2).unwrap();
        assert_eq!(
            (plan.source, plan.ips),
            (AddressSource::Resolver, vec![ip(4)])
        );
        let reason =
            plan_addresses(&target("a.test"), None, &[], &forged, &[ip(66)], 2).unwrap_err();
        assert!(reason.contains("forged"), "{reason}");
    }

    #[test]
    fn genuine_addresses_win_over_the_raw_answer() {
        let plan = plan_addresses(
            &target("a.test"),
            None,
            &[ip(5)],
            &[ip(66)],
            &[ip(66), ip(4), ip(5)],
            2,
        )
        .unwrap();
        assert_eq!(
            (plan.source, plan.ips),
            (AddressSource::Resolver, vec![ip(5)])
        );
    }

    #[test]
    fn control_nxdomain_means_skip_with_reason() {
        let c = control(vec![ControlOutcome::Nxdomain, ControlOutcome::Nxdomain]);
        let reason = plan_addresses(&target("gone.test"), Some(&c), &[], &[], &[], 2).unwrap_err();
        assert!(reason.contains("no address"), "{reason}");
        // A failing control falls back to the resolver.
        let c = control(vec![ControlOutcome::Error {
            message: "timeout".into(),
        }]);
        let plan = plan_addresses(&target("a.test"), Some(&c), &[], &[], &[ip(3)], 2).unwrap();
        assert_eq!(plan.source, AddressSource::Resolver);
    }
}
