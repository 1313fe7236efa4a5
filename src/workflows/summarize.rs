//! `censorprobe summary REPORT`: counts per verdict and method, per stage and per
//! category, as text, Markdown, CSV or JSON; and `--format blocklist`, what GFW
//! researchers publish: the censored domains with stage and method, and the forged
//! addresses observed with how many domains got each.
//!
//! Counting is per domain: the consensus of its attempts when the report has one
//! (`--repeat`), else its latest record.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::report::outcome::{TargetOutcome, accessible_key};

use super::sanitize::{markdown_cell, sanitize_csv_cell, sanitize_field, sanitize_text};
use crate::report::read::LoadedReport;
use crate::vocab::Blocking;
use crate::vocab::{BlockingKey, PoisoningMethod, Stage, StageName};

/// `--format` of `summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SummaryFormat {
    #[default]
    Text,
    Markdown,
    Csv,
    Json,
    Blocklist,
}

/// The category of domains without one.
pub const UNCATEGORIZED: &str = "uncategorized";

/// Counts of one stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StageCounts {
    pub verdicts: BTreeMap<String, usize>,
    pub methods: BTreeMap<String, usize>,
}

/// Counts over a set of domains.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub domains: usize,
    /// Per blocking value (`false`, a stage, `null`).
    pub blocking: BTreeMap<String, usize>,
    /// Per accessibility (`true`, `false`, `null`).
    pub accessible: BTreeMap<String, usize>,
    pub stages: BTreeMap<String, StageCounts>,
    /// Per injector the packet capture named (`gfw_type_ii`, `unknown_injector`...):
    /// domains whose HTTP or TLS verdict carries it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub injectors: BTreeMap<String, usize>,
    /// Domains blocked at some layer.
    #[serde(skip)]
    blocked: usize,
}

impl Counts {
    fn add(&mut self, outcome: &TargetOutcome) {
        self.domains += 1;
        let blocking = BlockingKey::from(outcome.blocking).as_str();
        *self.blocking.entry(blocking.to_owned()).or_default() += 1;
        if matches!(outcome.blocking, Blocking::At(_)) {
            self.blocked += 1;
        }
        let accessible = accessible_key(outcome.accessible);
        *self.accessible.entry(accessible.to_owned()).or_default() += 1;
        self.add_injectors(outcome);
        for stage in outcome.stages.iter() {
            let counts = self.stages.entry(stage.name().to_string()).or_default();
            *counts
                .verdicts
                .entry(stage.verdict_name().to_owned())
                .or_default() += 1;
            if let Some(method) = stage.method() {
                *counts
                    .methods
                    .entry(method.as_str().to_owned())
                    .or_default() += 1;
            }
        }
    }

    fn add_injectors(&mut self, outcome: &TargetOutcome) {
        for name in &outcome.injectors {
            *self.injectors.entry(name.clone()).or_default() += 1;
        }
    }

    pub fn blocked(&self) -> usize {
        self.blocked
    }
}

/// A censored domain as a blocklist line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Censored {
    pub domain: String,
    /// The blocking stage (`dns`, `tcp_ip`, `http`, `tls`).
    pub stage: String,
    /// The verdict of the stage that shows it.
    pub verdict: String,
    /// The stage's method (DNS), else where it happened (HTTP/TLS), else `-`.
    pub method: String,
}

/// Everything `summary` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportSummary {
    pub report: String,
    pub target_records: usize,
    pub consensus_records: usize,
    pub unparsed_lines: usize,
    /// False when the report has no summary record or says it was interrupted.
    pub complete: bool,
    pub all: Counts,
    pub categories: BTreeMap<String, Counts>,
    pub censored: Vec<Censored>,
    /// Forged address → number of domains that got it.
    pub forged_ips: BTreeMap<String, usize>,
}

impl ReportSummary {
    pub fn of(report: &LoadedReport) -> ReportSummary {
        let mut all = Counts::default();
        let mut categories: BTreeMap<String, Counts> = BTreeMap::new();
        let mut censored = Vec::new();
        let mut forged_ips: BTreeMap<String, usize> = BTreeMap::new();
        for outcome in &report.outcomes {
            all.add(outcome);
            if outcome.categories.is_empty() {
                categories
                    .entry(UNCATEGORIZED.to_owned())
                    .or_default()
                    .add(outcome);
            }
            for category in &outcome.categories {
                categories.entry(category.clone()).or_default().add(outcome);
            }
            if let Blocking::At(layer) = outcome.blocking {
                let stage = layer.as_str().to_owned();
                let (verdict, method) = match outcome.blocking_stage() {
                    Some(s) => (
                        s.verdict_name().to_owned(),
                        s.method()
                            .map(PoisoningMethod::as_str)
                            .or_else(|| s.place().map(Stage::as_str))
                            .unwrap_or("-")
                            .to_owned(),
                    ),
                    None => ("-".to_owned(), "-".to_owned()),
                };
                censored.push(Censored {
                    domain: outcome.domain.clone(),
                    stage,
                    verdict,
                    method,
                });
            }
            for ip in &outcome.forged_ips {
                *forged_ips.entry(ip.clone()).or_default() += 1;
            }
        }
        censored.sort_by(|a, b| a.domain.cmp(&b.domain));
        ReportSummary {
            report: report.path.display().to_string(),
            target_records: report.target_records,
            consensus_records: report.consensus_records,
            unparsed_lines: report.stats.unparsed.len(),
            complete: report.complete(),
            all,
            categories,
            censored,
            forged_ips,
        }
    }

    /// Forged addresses, most domains first.
    fn forged_by_count(&self) -> Vec<(&String, &usize)> {
        let mut list: Vec<_> = self.forged_ips.iter().collect();
        list.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        list
    }

    pub fn render(&self, format: SummaryFormat) -> String {
        match format {
            SummaryFormat::Text => sanitize_text(&self.text()).into_owned(),
            SummaryFormat::Markdown => sanitize_text(&self.markdown()).into_owned(),
            SummaryFormat::Csv => self.csv(),
            SummaryFormat::Json => {
                let mut text = serde_json::to_string_pretty(self).expect("plain data");
                text.push('\n');
                text
            }
            SummaryFormat::Blocklist => self.blocklist(),
        }
    }

    fn counts_line(map: &BTreeMap<String, usize>) -> String {
        if map.is_empty() {
            return "-".to_owned();
        }
        map.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} domain(s), {} target record(s){}{}",
            self.report,
            self.all.domains,
            self.target_records,
            if self.consensus_records > 0 {
                format!(", {} consensus record(s)", self.consensus_records)
            } else {
                String::new()
            },
            if self.complete {
                ""
            } else {
                " (incomplete scan)"
            }
        );
        if self.unparsed_lines > 0 {
            let _ = writeln!(
                out,
                "  lines that could not be parsed: {}",
                self.unparsed_lines
            );
        }
        let _ = writeln!(out, "  blocking: {}", Self::counts_line(&self.all.blocking));
        let _ = writeln!(
            out,
            "  accessible: {}",
            Self::counts_line(&self.all.accessible)
        );
        for stage in StageName::ALL.iter().map(|s| s.as_str()) {
            if let Some(counts) = self.all.stages.get(stage) {
                let _ = writeln!(out, "  {stage}: {}", Self::counts_line(&counts.verdicts));
                if !counts.methods.is_empty() {
                    let _ = writeln!(
                        out,
                        "  {stage} methods: {}",
                        Self::counts_line(&counts.methods)
                    );
                }
            }
        }
        if !self.all.injectors.is_empty() {
            let _ = writeln!(
                out,
                "  injectors: {}",
                Self::counts_line(&self.all.injectors)
            );
        }
        if !self.categories.is_empty() {
            let _ = writeln!(out, "  per category (blocked/domains):");
            for (category, counts) in &self.categories {
                let _ = writeln!(
                    out,
                    "    {category}: {}/{}",
                    counts.blocked(),
                    counts.domains
                );
            }
        }
        if !self.censored.is_empty() {
            let _ = writeln!(out, "  censored ({}):", self.censored.len());
            for c in &self.censored {
                let _ = writeln!(
                    out,
                    "    {} {} {} {}",
                    c.domain, c.stage, c.verdict, c.method
                );
            }
        }
        if !self.forged_ips.is_empty() {
            let list: Vec<String> = self
                .forged_by_count()
                .iter()
                .map(|(ip, n)| format!("{ip} ({n})"))
                .collect();
            let _ = writeln!(out, "  forged addresses: {}", list.join(", "));
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## censorprobe summary: {} domain(s), {} blocked\n",
            self.all.domains,
            self.all.blocked()
        );
        if !self.complete {
            let _ = writeln!(
                out,
                "_The scan did not finish; counts cover what was measured._\n"
            );
        }
        if self.unparsed_lines > 0 {
            let _ = writeln!(
                out,
                "_{} line(s) of the report could not be parsed._\n",
                self.unparsed_lines
            );
        }
        let _ = writeln!(out, "| Stage | Verdict | Method | Domains |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for (value, n) in &self.all.blocking {
            let _ = writeln!(out, "| blocking | {value} | | {n} |");
        }
        for stage in StageName::ALL.iter().map(|s| s.as_str()) {
            if let Some(counts) = self.all.stages.get(stage) {
                for (verdict, n) in &counts.verdicts {
                    let _ = writeln!(out, "| {stage} | {verdict} | | {n} |");
                }
                for (method, n) in &counts.methods {
                    let _ = writeln!(out, "| {stage} | | {method} | {n} |");
                }
            }
        }
        for (name, n) in &self.all.injectors {
            let _ = writeln!(out, "| injector | {} | | {n} |", markdown_cell(name));
        }
        if !self.categories.is_empty() {
            let _ = writeln!(out, "\n| Category | Domains | Blocked | Accessible |");
            let _ = writeln!(out, "| --- | --- | --- | --- |");
            for (category, counts) in &self.categories {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    markdown_cell(category),
                    counts.domains,
                    counts.blocked(),
                    counts.accessible.get("true").copied().unwrap_or(0)
                );
            }
        }
        if !self.censored.is_empty() {
            let _ = writeln!(out, "\n| Censored domain | Stage | Verdict | Method |");
            let _ = writeln!(out, "| --- | --- | --- | --- |");
            for c in &self.censored {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    markdown_cell(&c.domain),
                    markdown_cell(&c.stage),
                    markdown_cell(&c.verdict),
                    markdown_cell(&c.method)
                );
            }
        }
        out
    }

    /// Long format, one count a row: `category,stage,field,value,count`; category `*`
    /// is every domain, stage is empty for the target-level fields.
    pub fn csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer
            .write_record(["category", "stage", "field", "value", "count"])
            .expect("writing to memory");
        let mut row = |category: &str, stage: &str, field: &str, value: &str, n: usize| {
            writer
                .write_record([
                    sanitize_csv_cell(category).as_ref(),
                    &sanitize_csv_cell(stage),
                    field,
                    &sanitize_csv_cell(value),
                    &n.to_string(),
                ])
                .expect("writing to memory");
        };
        let scopes = std::iter::once(("*", &self.all)).chain(
            self.categories
                .iter()
                .map(|(c, counts)| (c.as_str(), counts)),
        );
        for (category, counts) in scopes {
            row(category, "", "domains", "", counts.domains);
            for (value, n) in &counts.blocking {
                row(category, "", "blocking", value, *n);
            }
            for (value, n) in &counts.accessible {
                row(category, "", "accessible", value, *n);
            }
            for (name, n) in &counts.injectors {
                row(category, "", "injector", name, *n);
            }
            for (stage, stage_counts) in &counts.stages {
                for (verdict, n) in &stage_counts.verdicts {
                    row(category, stage, "verdict", verdict, *n);
                }
                for (method, n) in &stage_counts.methods {
                    row(category, stage, "method", method, *n);
                }
            }
        }
        let bytes = writer.into_inner().expect("writing to memory");
        String::from_utf8(bytes).expect("UTF-8 input")
    }

    /// Tab-separated: the censored domains with stage, verdict and method, then the
    /// forged addresses with the number of domains that got each.
    pub fn blocklist(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# censorprobe blocklist from {}: {} censored domain(s), {} forged address(es)",
            sanitize_field(&self.report),
            self.censored.len(),
            self.forged_ips.len()
        );
        let _ = writeln!(out, "# domain\tstage\tverdict\tmethod");
        for c in &self.censored {
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}",
                sanitize_field(&c.domain),
                sanitize_field(&c.stage),
                sanitize_field(&c.verdict),
                sanitize_field(&c.method)
            );
        }
        let _ = writeln!(out, "# forged address\tdomains");
        for (ip, n) in self.forged_by_count() {
            let _ = writeln!(out, "{}\t{n}", sanitize_field(ip));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn outcome(record: Value) -> TargetOutcome {
        TargetOutcome::from_value(record).unwrap()
    }

    #[test]
    fn injectors_are_counted_per_domain_in_text_json_csv_and_markdown() {
        let injector = |name: &str| json!({"name": name, "facts": ["1 RST", "IP DF clear"]});
        let records = [
            // Both web stages name it: one domain.
            json!({"domain": "a.test",
                   "http": {"verdict": "rst_injection", "stage": "request", "injector": injector("gfw_type_ii")},
                   "tls": {"verdict": "rst_injection", "stage": "handshake", "injector": injector("gfw_type_ii")},
                   "blocking": "http", "accessible": false}),
            json!({"domain": "b.test",
                   "tls": {"verdict": "rst_injection", "stage": "handshake", "injector": injector("unknown_injector")},
                   "blocking": "tls", "accessible": false}),
            json!({"domain": "c.test", "http": {"verdict": "ok"}, "blocking": false, "accessible": true}),
        ];
        let mut all = Counts::default();
        for record in records {
            all.add(&outcome(record));
        }
        assert_eq!(
            all.injectors,
            BTreeMap::from([
                ("gfw_type_ii".to_owned(), 1),
                ("unknown_injector".to_owned(), 1)
            ])
        );
        let summary = ReportSummary {
            report: "r.jsonl".into(),
            target_records: 3,
            consensus_records: 0,
            unparsed_lines: 0,
            complete: true,
            all,
            categories: BTreeMap::new(),
            censored: Vec::new(),
            forged_ips: BTreeMap::new(),
        };
        let text = summary.render(SummaryFormat::Text);
        assert!(
            text.contains("  injectors: gfw_type_ii 1, unknown_injector 1"),
            "{text}"
        );
        let json: Value = serde_json::from_str(&summary.render(SummaryFormat::Json)).unwrap();
        assert_eq!(json["all"]["injectors"]["gfw_type_ii"], 1);
        assert_eq!(json["all"]["injectors"]["unknown_injector"], 1);
        let csv = summary.render(SummaryFormat::Csv);
        assert!(csv.contains("*,,injector,gfw_type_ii,1"), "{csv}");
        let md = summary.render(SummaryFormat::Markdown);
        assert!(md.contains("| injector | gfw_type_ii | | 1 |"), "{md}");

        // No capture, no injector: the outputs have no injector key or line.
        let mut plain = Counts::default();
        plain.add(&outcome(
            json!({"domain": "c.test", "http": {"verdict": "ok"}}),
        ));
        assert!(plain.injectors.is_empty());
        assert!(
            serde_json::to_value(&plain)
                .unwrap()
                .get("injectors")
                .is_none()
        );
    }
}
