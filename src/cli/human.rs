//! The short human summary printed on stderr at the end of a run.

use crate::record::SummaryRecord;

pub(super) fn human_summary(summary: &SummaryRecord) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "censorprobe: {} of {} target(s) measured in {:.1} s{}",
        summary.targets_measured,
        summary.targets_scheduled,
        summary.duration_s,
        if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    if summary.skipped_inputs > 0 {
        let _ = writeln!(text, "  skipped input lines: {}", summary.skipped_inputs);
    }
    let counts: Vec<String> = summary
        .dns
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(v, n)| format!("{v} {n}"))
        .collect();
    let _ = writeln!(
        text,
        "  dns: {}",
        if counts.is_empty() {
            "-".to_owned()
        } else {
            counts.join(", ")
        }
    );
    for (stage, counts) in [
        ("http", &summary.http),
        ("tls", &summary.tls),
        ("blocking", &summary.blocking),
    ] {
        if !counts.is_empty() {
            let counts: Vec<String> = counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            let _ = writeln!(text, "  {stage}: {}", counts.join(", "));
        }
    }
    if !summary.dns_methods.is_empty() {
        let methods: Vec<String> = summary
            .dns_methods
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        let _ = writeln!(text, "  poisoning methods: {}", methods.join(", "));
    }
    if let Some(rate) = summary.dns_rate.as_ref().filter(|r| r.queries_sent > 0) {
        // The costs a verdict count hides: how fast the scan really went, and what the
        // resolver lost on the way.
        let _ = writeln!(
            text,
            "  dns queries: {} sent at {:.0} q/s, {} retries, {:.2} % of resolver attempts lost, at most {} names in flight",
            rate.queries_sent,
            rate.achieved_qps,
            rate.retries,
            rate.loss_rate * 100.0,
            rate.max_names_in_flight
        );
    }
    if let Some(rate) = summary.dns_rate.as_ref().filter(|r| r.backoffs > 0) {
        let _ = writeln!(
            text,
            "  dns rate: the resolver dropped queries; backed off {} time(s) from {:.0} to {:.0} q/s (ended at {:.0}); {} of {} attempts lost",
            rate.backoffs,
            rate.max_qps,
            rate.lowest_qps,
            rate.final_qps,
            rate.attempts_lost,
            rate.attempts_lost + rate.attempts_answered
        );
    }
    if !summary.censored.is_empty() {
        const SHOWN: usize = 20;
        let mut shown: Vec<&str> = summary
            .censored
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        if summary.censored.len() > SHOWN {
            shown.push("…");
        }
        let _ = writeln!(
            text,
            "  censored ({}): {}",
            summary.censored.len(),
            shown.join(" ")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::DnsRateReport;

    #[test]
    fn the_summary_states_the_query_rate_loss_retries_and_names_in_flight() {
        let summary = SummaryRecord {
            dns_rate: Some(DnsRateReport {
                queries_sent: 300_000,
                retries: 1_200,
                loss_rate: 0.0125,
                achieved_qps: 51_234.4,
                max_names_in_flight: 61_000,
                ..DnsRateReport::default()
            }),
            ..SummaryRecord::default()
        };
        let text = human_summary(&summary);
        assert!(
            text.contains(
                "dns queries: 300000 sent at 51234 q/s, 1200 retries, 1.25 % of resolver \
                 attempts lost, at most 61000 names in flight"
            ),
            "{text}"
        );
        let quiet = human_summary(&SummaryRecord::default());
        assert!(!quiet.contains("dns queries"), "{quiet}");
    }
}
