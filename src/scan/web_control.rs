//! What a scan asks its web control about a target: the name, the addresses the probe
//! tests or saw (so that the helper connects to the same ones) and the ports of the web
//! stages that run.

use std::net::IpAddr;

use crate::observation::web::AddressPlan;
use crate::observation::web_control::WebControlQuery;
use crate::observation::{ControlObservation, ControlOutcome};
use crate::probe::web::stage::WebStageConfig;
use crate::targets::Target;

/// The query for `target`: the plan's addresses first (those the web stage probes), then
/// the resolver's and the control's answers. `None` for an address target: it has no
/// name for the helper to resolve or send as Host/SNI.
pub(super) fn query(
    web: Option<&WebStageConfig>,
    target: &Target,
    plan: Option<&AddressPlan>,
    resolver_ips: &[IpAddr],
    control: Option<&ControlObservation>,
) -> Option<WebControlQuery> {
    if target.address.is_some() {
        return None;
    }
    let control_ips = control
        .into_iter()
        .flat_map(|c| &c.answers)
        .filter_map(|a| match &a.outcome {
            ControlOutcome::Resolved { ips, .. } => Some(ips.iter().copied()),
            _ => None,
        })
        .flatten();
    let addresses = plan
        .into_iter()
        .flat_map(|p| p.ips.iter().copied())
        .chain(resolver_ips.iter().copied())
        .chain(control_ips);
    Some(crate::probe::web_control::query(
        &target.domain,
        addresses,
        web.filter(|w| w.run_http).map(|w| w.http_port),
        web.filter(|w| w.run_tls).map(|w| w.tls_port),
    ))
}
