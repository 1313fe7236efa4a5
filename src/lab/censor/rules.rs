//! The censor's name rules, indexed: the first rule (in scenario order) that matches a
//! name, found with a few hash look-ups per name instead of a pass over every rule.
//! Generated scenarios hold thousands of rules, and the censor matches the name of every
//! DNS query and every new flow; a linear pass (each rule lowercasing both strings) made
//! the censor the lab's bottleneck. The answer is the one of
//! [`MatchKind::matches`](crate::lab::scenario::MatchKind::matches) tried rule by rule.

use std::collections::HashMap;

use crate::lab::scenario::{DnsRule, KeywordRule, MatchKind};

/// A rule with a pattern and a way to match it.
pub trait NameRule {
    fn pattern(&self) -> &str;
    fn kind(&self) -> MatchKind;
}

impl NameRule for DnsRule {
    fn pattern(&self) -> &str {
        &self.pattern
    }
    fn kind(&self) -> MatchKind {
        self.kind
    }
}

impl NameRule for KeywordRule {
    fn pattern(&self) -> &str {
        &self.pattern
    }
    fn kind(&self) -> MatchKind {
        self.kind
    }
}

/// The canonical form both names and patterns are compared in.
fn canonical(text: &str) -> String {
    text.trim_end_matches('.').to_ascii_lowercase()
}

/// Rules in scenario order, with an index per match kind from canonical pattern to the
/// position of the first rule of that kind with it.
#[derive(Debug)]
pub struct RuleIndex<R> {
    rules: Vec<R>,
    exact: HashMap<String, usize>,
    subdomain: HashMap<String, usize>,
    suffix: HashMap<String, usize>,
    prefix: HashMap<String, usize>,
}

impl<R: NameRule> RuleIndex<R> {
    pub fn new(rules: Vec<R>) -> RuleIndex<R> {
        let mut index = RuleIndex {
            rules: Vec::new(),
            exact: HashMap::new(),
            subdomain: HashMap::new(),
            suffix: HashMap::new(),
            prefix: HashMap::new(),
        };
        for (position, rule) in rules.iter().enumerate() {
            let map = match rule.kind() {
                MatchKind::Exact => &mut index.exact,
                MatchKind::Subdomain => &mut index.subdomain,
                MatchKind::Suffix => &mut index.suffix,
                MatchKind::Prefix => &mut index.prefix,
            };
            map.entry(canonical(rule.pattern())).or_insert(position);
        }
        index.rules = rules;
        index
    }

    /// The first rule that matches `name` (any case, optional trailing dot).
    pub fn first_match(&self, name: &str) -> Option<&R> {
        let name = canonical(name);
        let mut first: Option<usize> = None;
        let mut consider = |map: &HashMap<String, usize>, key: &str| {
            if let Some(&position) = map.get(key) {
                first = Some(first.map_or(position, |f| f.min(position)));
            }
        };
        consider(&self.exact, &name);
        if !self.subdomain.is_empty() {
            // The name itself, and every part of it after a dot.
            consider(&self.subdomain, &name);
            for (at, byte) in name.bytes().enumerate() {
                if byte == b'.' {
                    consider(&self.subdomain, &name[at + 1..]);
                }
            }
        }
        if !self.suffix.is_empty() {
            for at in (0..=name.len()).filter(|at| name.is_char_boundary(*at)) {
                consider(&self.suffix, &name[at..]);
            }
        }
        if !self.prefix.is_empty() {
            for at in (0..=name.len()).filter(|at| name.is_char_boundary(*at)) {
                consider(&self.prefix, &name[..at]);
            }
        }
        first.map(|position| &self.rules[position])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::scenario::DnsAction;

    fn rule(pattern: &str, kind: MatchKind, pool: &str) -> DnsRule {
        DnsRule {
            pattern: pattern.to_owned(),
            kind,
            action: DnsAction::Inject,
            pool: Some(pool.to_owned()),
            ip_ttl: None,
            ip_id: None,
        }
    }

    /// The index agrees with trying every rule in order, on names that hit every kind,
    /// overlapping rules (the first in order wins) and near misses.
    #[test]
    fn the_index_finds_the_rule_a_pass_in_order_finds() {
        let rules = vec![
            rule("www.Exact.example.", MatchKind::Exact, "r0"),
            rule("sub.example", MatchKind::Subdomain, "r1"),
            rule("bad.example", MatchKind::Suffix, "r2"),
            rule("a.sub.example", MatchKind::Exact, "r3"),
            rule("pre.", MatchKind::Prefix, "r4"),
            rule("www.exact.example", MatchKind::Subdomain, "r5"),
            rule("example", MatchKind::Suffix, "r6"),
            rule("x.sub.example", MatchKind::Exact, "r7"),
        ];
        let names = [
            "www.exact.example",
            "WWW.EXACT.EXAMPLE.",
            "a.www.exact.example",
            "sub.example",
            "a.sub.example",
            "notsub.example",
            "bad.example",
            "notbad.example",
            "pre.bad.example",
            "pre.other.org",
            "prefix.org",
            "other.org",
            "example",
            "",
            ".",
            "x.sub.example",
            "xn--bcher-kva.example",
        ];
        let index = RuleIndex::new(rules.clone());
        for name in names {
            let linear = rules.iter().find(|r| r.matches(name));
            assert_eq!(
                index.first_match(name).map(|r| &r.pool),
                linear.map(|r| &r.pool),
                "{name:?}"
            );
        }
        assert_eq!(
            index
                .first_match("a.sub.example")
                .and_then(|r| r.pool.as_deref()),
            Some("r1"),
            "an earlier subdomain rule wins over a later exact one"
        );
        let empty: RuleIndex<DnsRule> = RuleIndex::new(Vec::new());
        assert!(empty.first_match("anything.example").is_none());
    }
}
