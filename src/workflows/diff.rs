//! `censorprobe diff OLD NEW`: what changed between two reports, per domain.
//!
//! Each domain measured in both falls in one class: newly blocked (blocked now, not
//! before), newly unblocked (blocked before, not blocked now), changed (any other change
//! of blocking, accessibility, or a stage's verdict, method or place), or unchanged.
//! Domains measured in only one report are listed apart and do not count as changes
//! (comparing a full list with a partial run is not a finding).

use serde::Serialize;

use crate::report::outcome::{AnyStage, TargetOutcome, accessible_key};

use crate::report::read::LoadedReport;
use crate::vocab::{Blocking, BlockingKey, StageName};

/// One difference of one aspect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `blocking`, `accessible`, or a stage name.
    pub field: String,
    pub old: String,
    pub new: String,
}

/// A domain whose outcome differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainDiff {
    pub domain: String,
    pub old: TargetOutcome,
    pub new: TargetOutcome,
    pub changes: Vec<Change>,
}

/// The differences between two reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportDiff {
    pub old: String,
    pub new: String,
    /// True when any domain measured in both changed.
    pub changed: bool,
    pub newly_blocked: Vec<DomainDiff>,
    pub newly_unblocked: Vec<DomainDiff>,
    pub changed_verdict: Vec<DomainDiff>,
    pub only_in_old: Vec<String>,
    pub only_in_new: Vec<String>,
    pub unchanged: usize,
}

fn stage_text(stage: Option<AnyStage<'_>>) -> String {
    stage.map_or_else(|| "not measured".to_owned(), |s| s.to_string())
}

/// What differs between two outcomes of one domain.
pub fn changes(old: &TargetOutcome, new: &TargetOutcome) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.blocking != new.blocking {
        changes.push(Change {
            field: "blocking".to_owned(),
            old: BlockingKey::from(old.blocking).to_string(),
            new: BlockingKey::from(new.blocking).to_string(),
        });
    }
    if old.accessible != new.accessible {
        changes.push(Change {
            field: "accessible".to_owned(),
            old: accessible_key(old.accessible).to_owned(),
            new: accessible_key(new.accessible).to_owned(),
        });
    }
    for &stage in StageName::ALL {
        let (before, after) = (old.stage(stage), new.stage(stage));
        // A stage one report did not run at all is a difference of coverage, not of
        // outcome: the DNS-only report of last month against today's full one.
        if before.is_none() || after.is_none() {
            continue;
        }
        if before != after {
            changes.push(Change {
                field: stage.to_string(),
                old: stage_text(before),
                new: stage_text(after),
            });
        }
    }
    changes
}

/// Compares two reports.
pub fn diff(old: &LoadedReport, new: &LoadedReport) -> ReportDiff {
    let mut result = ReportDiff {
        old: old.path.display().to_string(),
        new: new.path.display().to_string(),
        changed: false,
        newly_blocked: Vec::new(),
        newly_unblocked: Vec::new(),
        changed_verdict: Vec::new(),
        only_in_old: Vec::new(),
        only_in_new: Vec::new(),
        unchanged: 0,
    };
    for before in &old.outcomes {
        let Some(after) = new.outcome(&before.domain) else {
            result.only_in_old.push(before.domain.clone());
            continue;
        };
        let changes = changes(before, after);
        if changes.is_empty() {
            result.unchanged += 1;
            continue;
        }
        let entry = DomainDiff {
            domain: before.domain.clone(),
            old: before.clone(),
            new: after.clone(),
            changes,
        };
        match (&before.blocking, &after.blocking) {
            (Blocking::No | Blocking::Inconclusive, Blocking::At(_)) => {
                result.newly_blocked.push(entry);
            }
            (Blocking::At(_), Blocking::No) => result.newly_unblocked.push(entry),
            _ => result.changed_verdict.push(entry),
        }
    }
    for after in &new.outcomes {
        if old.outcome(&after.domain).is_none() {
            result.only_in_new.push(after.domain.clone());
        }
    }
    for list in [
        &mut result.newly_blocked,
        &mut result.newly_unblocked,
        &mut result.changed_verdict,
    ] {
        list.sort_by(|a, b| a.domain.cmp(&b.domain));
    }
    result.only_in_old.sort();
    result.only_in_new.sort();
    result.changed = !(result.newly_blocked.is_empty()
        && result.newly_unblocked.is_empty()
        && result.changed_verdict.is_empty());
    result
}

impl ReportDiff {
    /// The human-readable form.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let section = |out: &mut String, title: &str, list: &[DomainDiff]| {
            let _ = writeln!(out, "{title} ({}):", list.len());
            for entry in list {
                let changes: Vec<String> = entry
                    .changes
                    .iter()
                    .map(|c| format!("{}: {} -> {}", c.field, c.old, c.new))
                    .collect();
                let _ = writeln!(out, "  {}  {}", entry.domain, changes.join("; "));
            }
        };
        section(&mut out, "newly blocked", &self.newly_blocked);
        section(&mut out, "newly unblocked", &self.newly_unblocked);
        section(&mut out, "changed verdict or method", &self.changed_verdict);
        for (title, list) in [
            ("only in OLD", &self.only_in_old),
            ("only in NEW", &self.only_in_new),
        ] {
            if !list.is_empty() {
                let _ = writeln!(out, "{title} ({}): {}", list.len(), list.join(" "));
            }
        }
        let _ = writeln!(out, "unchanged: {}", self.unchanged);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(value: &serde_json::Value) -> TargetOutcome {
        TargetOutcome::from_value(value).unwrap()
    }

    #[test]
    fn stage_changes_and_coverage() {
        let old = outcome(
            &json!({"domain": "a.test", "dns": {"verdict": "dns_poisoning", "method": "injection"}}),
        );
        let new = outcome(
            &json!({"domain": "a.test", "dns": {"verdict": "dns_poisoning", "method": "inconsistent"}}),
        );
        let list = changes(&old, &new);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].field, "dns");
        assert_eq!(list[0].old, "dns_poisoning (injection)");
        assert_eq!(list[0].new, "dns_poisoning (inconsistent)");

        let fuller = outcome(
            &json!({"domain": "a.test", "dns": {"verdict": "dns_poisoning", "method": "injection"},
            "http": {"verdict": "ok"}, "blocking": "dns", "accessible": false}),
        );
        assert!(
            changes(&old, &fuller).is_empty(),
            "a stage only one report ran is not a change"
        );
    }
}
