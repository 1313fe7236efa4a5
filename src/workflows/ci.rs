//! What `check` hands a CI system: `JUnit` XML (one test case per expectation) and a
//! Markdown table for a job summary.

use std::io::Write;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::expect::CheckOutcome;
use super::sanitize::markdown_cell;

/// `JUnit` XML: one `<testsuite>`, one `<testcase>` per expectation; a failing case
/// carries a `<failure>` whose message is its first failure and whose text lists all.
pub fn junit_xml(outcome: &CheckOutcome, suite: &str, time_s: f64) -> std::io::Result<Vec<u8>> {
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let tests = outcome.results.len().to_string();
    let failures = outcome.failures().to_string();
    let time = format!("{time_s:.3}");
    writer
        .create_element("testsuites")
        .with_attribute(("name", suite))
        .with_attribute(("tests", tests.as_str()))
        .with_attribute(("failures", failures.as_str()))
        .with_attribute(("errors", "0"))
        .with_attribute(("time", time.as_str()))
        .write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attribute(("name", suite))
                .with_attribute(("tests", tests.as_str()))
                .with_attribute(("failures", failures.as_str()))
                .with_attribute(("errors", "0"))
                .with_attribute(("skipped", "0"))
                .with_attribute(("time", time.as_str()))
                .write_inner_content(|w| {
                    for result in &outcome.results {
                        let case = w
                            .create_element("testcase")
                            .with_attribute(("name", result.name.as_str()))
                            .with_attribute(("classname", "censorprobe.check"));
                        let lines = result.failure_lines();
                        let observed: Vec<String> = result
                            .cases
                            .iter()
                            .map(|c| {
                                format!("{}: {}", c.domain.as_deref().unwrap_or("-"), c.observed)
                            })
                            .collect();
                        if lines.is_empty() {
                            case.write_inner_content(|w| {
                                w.create_element("system-out")
                                    .write_text_content(BytesText::new(&observed.join("\n")))?;
                                Ok(())
                            })?;
                        } else {
                            let message = lines[0].clone();
                            case.write_inner_content(|w| {
                                w.create_element("failure")
                                    .with_attribute(("message", message.as_str()))
                                    .with_attribute(("type", "expectation"))
                                    .write_text_content(BytesText::new(&lines.join("\n")))?;
                                w.create_element("system-out")
                                    .write_text_content(BytesText::new(&observed.join("\n")))?;
                                Ok(())
                            })?;
                        }
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
    let mut bytes = writer.into_inner();
    bytes.push(b'\n');
    Ok(bytes)
}

/// A Markdown cell: pipes escaped, line breaks flattened.
/// A Markdown summary: a heading with the totals, then one row per expectation and
/// domain (✅ holds, ❌ does not).
pub fn markdown(outcome: &CheckOutcome, title: &str) -> String {
    let mut out = Vec::new();
    let total = outcome.results.len();
    let failed = outcome.failures();
    let _ = writeln!(
        out,
        "## {title}: {} of {total} expectation{} hold\n",
        total - failed,
        if total == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        out,
        "| Result | Expectation | Domain | Expected | Observed |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for result in &outcome.results {
        for case in &result.cases {
            let observed = if case.passed() {
                case.observed.clone()
            } else {
                case.failures.join("; ")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                if case.passed() { "✅" } else { "❌" },
                markdown_cell(&result.name),
                markdown_cell(case.domain.as_deref().unwrap_or("—")),
                markdown_cell(&result.expected),
                markdown_cell(&observed),
            );
        }
    }
    String::from_utf8(out).expect("written as UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflows::expect::{DomainCase, ExpectationResult};

    fn outcome() -> CheckOutcome {
        CheckOutcome {
            results: vec![
                ExpectationResult {
                    name: "a <&> \"b\"".into(),
                    expected: "blocked".into(),
                    cases: vec![DomainCase {
                        domain: Some("a.test".into()),
                        observed: "blocked (dns)".into(),
                        failures: vec![],
                    }],
                },
                ExpectationResult {
                    name: "pipes | here".into(),
                    expected: "accessible".into(),
                    cases: vec![DomainCase {
                        domain: Some("b.test".into()),
                        observed: "unknown".into(),
                        failures: vec!["expected accessible, observed accessible null".into()],
                    }],
                },
            ],
        }
    }

    #[test]
    fn junit_escapes_and_counts() {
        let xml =
            String::from_utf8(junit_xml(&outcome(), "censorprobe check", 1.5).unwrap()).unwrap();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{xml}"
        );
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(
            xml.contains("name=\"a &lt;&amp;&gt; &quot;b&quot;\""),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"FAIL pipes | here: b.test:"),
            "{xml}"
        );
    }

    #[test]
    fn markdown_escapes_pipes() {
        let md = markdown(&outcome(), "censorprobe check");
        assert!(
            md.starts_with("## censorprobe check: 1 of 2 expectations hold\n"),
            "{md}"
        );
        assert!(md.contains("| ❌ | pipes \\| here | b.test |"), "{md}");
        assert_eq!(md.lines().filter(|l| l.starts_with("| ✅")).count(), 1);
    }
}
