//! Where a TTL-limited trace puts the censor: a pure function from per-TTL observations
//! ([`TtlObservation`]) to a [`CensorLocation`], shared by live traces and by anything
//! that rebuilds per-TTL observations from recorded packets.

use crate::record::location::{
    CensorLocation, CensorPlacement, ResidualFacts, TraceObservation, TraceRecord, TriggerOutcome,
    TtlObservation, server_hop,
};

/// A trace and where it puts the censor.
pub fn judge_trace(trace: TraceObservation) -> TraceRecord {
    let location = locate_censor(
        trace
            .control
            .as_ref()
            .map(|control| control.hops.as_slice()),
        &trace.hops,
    );
    TraceRecord { trace, location }
}

/// Where the trace of the test name (`test`) puts the censor, with the benign control's
/// trace (`control`, same server) giving the server's hop distance when it has one.
///
/// Residual censorship: traces run in increasing TTL, so every TTL before the first
/// interference was probed before the censor could have started blocking; a handshake
/// failing after it is reported as residual and does not move the injection hop.
/// A handshake failing before any interference leaves the trace inconclusive.
pub fn locate_censor(
    control: Option<&[TtlObservation]>,
    test: &[TtlObservation],
) -> CensorLocation {
    let server_distance = control.and_then(server_hop).or_else(|| server_hop(test));
    let first_interference = test.iter().find(|hop| hop.outcome.is_interference());
    let first_failed_handshake = test
        .iter()
        .find(|hop| matches!(hop.outcome, TriggerOutcome::HandshakeFailed { .. }));
    let mut location = CensorLocation {
        placement: CensorPlacement::None,
        injection_hop: None,
        injection: None,
        injection_router: None,
        server_hop: server_distance,
        residual: None,
        reason: None,
    };
    if let Some(failed) = first_failed_handshake
        && first_interference.is_none_or(|hop| failed.ttl < hop.ttl)
    {
        let TriggerOutcome::HandshakeFailed { reason } = &failed.outcome else {
            unreachable!("matched above");
        };
        location.placement = CensorPlacement::Inconclusive;
        location.reason = Some(format!(
            "the handshake failed at TTL {} before any trigger drew an answer ({reason}): \
             residual censorship from an earlier probe, IP blocking or a server that is down",
            failed.ttl
        ));
        return location;
    }
    let Some(injected) = first_interference else {
        if server_hop(test).is_none() {
            location.placement = CensorPlacement::Inconclusive;
            location.reason = Some(
                "no interference, yet the server never answered the test name \
                 (a censor that drops, or the trace stopped too early)"
                    .to_owned(),
            );
        }
        return location;
    };
    location.injection_hop = Some(injected.ttl);
    location.injection = Some(injected.outcome.clone());
    location.injection_router = injected.router.or_else(|| {
        control
            .unwrap_or_default()
            .iter()
            .find(|hop| hop.ttl == injected.ttl)
            .and_then(|hop| hop.router)
    });
    location.residual = first_failed_handshake.map(|failed| ResidualFacts {
        from_ttl: failed.ttl,
        reason: match &failed.outcome {
            TriggerOutcome::HandshakeFailed { reason } => reason.clone(),
            _ => String::new(),
        },
    });
    location.placement = match server_distance {
        Some(server) if injected.ttl < server => CensorPlacement::OnPath,
        Some(_) => CensorPlacement::Endpoint,
        None => {
            location.reason = Some(
                "the server's hop distance is unknown (it never answered the benign control)"
                    .to_owned(),
            );
            CensorPlacement::Inconclusive
        }
    };
    location
}

#[cfg(test)]
mod tests {

    use super::*;

    use crate::record::location::fixtures::{data, hop, refused, router};

    /// A path of routers 1..server_hop-1, the server answering from `server_hop` on.
    fn control_trace(server_hop: u8) -> Vec<TtlObservation> {
        (1..=server_hop + 1)
            .map(|ttl| {
                if ttl < server_hop {
                    hop(ttl, router(ttl), TriggerOutcome::Silence)
                } else {
                    hop(ttl, None, data())
                }
            })
            .collect()
    }

    #[test]
    fn injection_before_the_server_is_on_path() {
        // Censor at hop 3 on a tap: the trigger expiring at router 3 still draws resets.
        let test = vec![
            hop(1, router(1), TriggerOutcome::Silence),
            hop(2, router(2), TriggerOutcome::Silence),
            hop(3, router(3), TriggerOutcome::Reset),
            hop(4, router(4), TriggerOutcome::Reset),
        ];
        let location = locate_censor(Some(&control_trace(5)), &test);
        assert_eq!(location.placement, CensorPlacement::OnPath);
        assert_eq!(location.injection_hop, Some(3));
        assert_eq!(location.injection, Some(TriggerOutcome::Reset));
        assert_eq!(location.injection_router, router(3));
        assert_eq!(location.server_hop, Some(5));
        assert_eq!(location.residual, None);
    }

    #[test]
    fn injection_only_at_the_servers_hop_is_the_endpoint() {
        let test = vec![
            hop(1, router(1), TriggerOutcome::Silence),
            hop(2, None, TriggerOutcome::Closed),
            hop(3, None, TriggerOutcome::Closed),
        ];
        let location = locate_censor(Some(&control_trace(2)), &test);
        assert_eq!(location.placement, CensorPlacement::Endpoint);
        assert_eq!(location.injection_hop, Some(2));
        assert_eq!(location.injection, Some(TriggerOutcome::Closed));
        assert_eq!(location.server_hop, Some(2));
    }

    #[test]
    fn a_benign_trace_locates_nothing() {
        let location = locate_censor(Some(&control_trace(4)), &control_trace(4));
        assert_eq!(location.placement, CensorPlacement::None);
        assert_eq!(location.injection_hop, None);
        assert_eq!(location.server_hop, Some(4));
        assert_eq!(location.reason, None);
    }

    #[test]
    fn residual_after_the_injection_is_reported_not_mislocated() {
        let test = vec![
            hop(1, router(1), TriggerOutcome::Silence),
            hop(2, None, TriggerOutcome::Reset),
            hop(3, None, refused()),
        ];
        let location = locate_censor(Some(&control_trace(4)), &test);
        assert_eq!(location.placement, CensorPlacement::OnPath);
        assert_eq!(location.injection_hop, Some(2));
        let residual = location.residual.expect("residual reported");
        assert_eq!(residual.from_ttl, 3);
        assert!(residual.reason.contains("refused"));
    }

    #[test]
    fn a_handshake_failing_before_any_trigger_is_inconclusive() {
        let test = vec![hop(1, None, refused())];
        let location = locate_censor(Some(&control_trace(3)), &test);
        assert_eq!(location.placement, CensorPlacement::Inconclusive);
        assert_eq!(location.injection_hop, None);
        assert!(location.reason.unwrap().contains("residual"));
    }

    #[test]
    fn without_the_servers_distance_an_injection_is_inconclusive() {
        let test = vec![
            hop(1, None, TriggerOutcome::Silence),
            hop(2, None, TriggerOutcome::Reset),
            hop(3, None, TriggerOutcome::Reset),
        ];
        let location = locate_censor(None, &test);
        assert_eq!(location.placement, CensorPlacement::Inconclusive);
        assert_eq!(location.injection_hop, Some(2));
        assert!(location.reason.unwrap().contains("hop distance"));
    }

    #[test]
    fn silence_everywhere_on_the_test_name_is_inconclusive() {
        let test: Vec<_> = (1..=4)
            .map(|ttl| hop(ttl, router(ttl), TriggerOutcome::Silence))
            .collect();
        let location = locate_censor(Some(&control_trace(2)), &test);
        assert_eq!(location.placement, CensorPlacement::Inconclusive);
        assert_eq!(location.server_hop, Some(2));
    }
}
