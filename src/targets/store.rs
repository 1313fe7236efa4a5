//! The loaded list in compact form.
//!
//! A list of a million names must not cost a `Target` (several `String`s and `Vec`s,
//! ~0.5 KB) per name before the first query. [`TargetStore`] keeps every name in one
//! arena of bytes and a fixed 20-byte slot per target holding its first source in
//! compact form (the source's name interned once, the line, the category as a legend
//! number, and the input only when it is written otherwise than the name). What few
//! targets have beyond that (pinned addresses, further sources, counted lines) lives in
//! a side table. A [`Target`] is made only when asked for ([`TargetStore::target`]), as
//! the scan's dispatcher does for the targets it starts.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::{CITIZENLAB_CATEGORIES, Target, TargetSource};

/// Targets in first-seen order, stored compactly; see the module documentation.
#[derive(Clone, Default)]
pub struct TargetStore {
    /// Every name, back to back, in target order.
    names: String,
    slots: Vec<Slot>,
    /// Inputs written otherwise than their name (URLs, upper case, a trailing dot): a
    /// little-endian `u16` length, then the bytes.
    inputs: Vec<u8>,
    /// Source names (file paths, `-`, `cli`), each kept once.
    source_names: Vec<Arc<str>>,
    /// Slot index -> what does not fit the slot.
    extras: HashMap<u32, Extra>,
}

/// One target's fixed part.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// End of the name in `names` (it starts where the previous slot's ends).
    name_end: u32,
    /// The first source (when `FIRST_SOURCE_IN_SLOT`): index in `source_names`.
    source: u32,
    /// Its line, 0 for none.
    line: u32,
    /// Its input: offset in `inputs`, or `SAME_AS_NAME`.
    input: u32,
    /// Its category: 0 for none, else 1 + its index in [`CITIZENLAB_CATEGORIES`].
    category: u8,
    flags: u8,
}

/// The name is the text of an IP address, and the target that address.
const ADDRESS: u8 = 1;
/// The slot holds the first source (else every source is in the extras).
const FIRST_SOURCE_IN_SLOT: u8 = 2;
/// The target has an entry in `extras`.
const HAS_EXTRA: u8 = 4;
const SAME_AS_NAME: u32 = u32::MAX;

/// What a target has beyond its slot.
#[derive(Debug, Clone, Default)]
struct Extra {
    pinned_ips: Vec<IpAddr>,
    /// Sources after the slot's (all of them when the slot holds none).
    sources: Vec<StoredSource>,
    sources_omitted: usize,
    /// An address that is not the parse of the name (only from [`TargetStore::from`]).
    address: Option<IpAddr>,
}

#[derive(Debug, Clone)]
struct StoredSource {
    source: u32,
    line: Option<usize>,
    /// `None` when written as the name.
    input: Option<Box<str>>,
    category: Option<Box<str>>,
}

/// A source to add: the interned source name, the line, the input as kept, the category.
#[derive(Debug, Clone, Copy)]
pub(super) struct NewSource<'a> {
    pub(super) source: u32,
    pub(super) line: Option<usize>,
    pub(super) input: &'a str,
    pub(super) category: Option<&'a str>,
}

/// The store cannot take more: a `u32` index or arena offset would overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StoreFull;

impl fmt::Debug for TargetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetStore")
            .field("targets", &self.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish_non_exhaustive()
    }
}

fn category_number(code: &str) -> Option<u8> {
    CITIZENLAB_CATEGORIES
        .iter()
        .position(|c| *c == code)
        .map(|i| i as u8 + 1)
}

impl TargetStore {
    /// Targets held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The normalised name of target `index` (its [`Target::domain`]), without making
    /// the target.
    pub fn domain(&self, index: usize) -> &str {
        let start = match index {
            0 => 0,
            _ => self.slots[index - 1].name_end as usize,
        };
        let end = self.slots[index].name_end as usize;
        // A `str` slice: every bound is the end of a whole name, so only the bounds are
        // checked, not the bytes (this runs for every name the scan starts).
        &self.names[start..end]
    }

    /// Whether target `index` is an address (its [`Target::address`] is set), without
    /// making the target.
    pub fn is_address(&self, index: usize) -> bool {
        self.slots[index].flags & ADDRESS != 0
            || self.extra(index).is_some_and(|e| e.address.is_some())
    }

    /// Target `index`, made in full. Panics when out of range, as slice indexing does.
    pub fn target(&self, index: usize) -> Target {
        let slot = self.slots[index];
        let domain = self.domain(index).to_owned();
        let extra = self.extra(index);
        let address = match extra.and_then(|e| e.address) {
            Some(ip) => Some(ip),
            None if slot.flags & ADDRESS != 0 => Some(
                domain
                    .parse()
                    .expect("an address target is named by its address"),
            ),
            None => None,
        };
        let mut sources = Vec::with_capacity(1 + extra.map_or(0, |e| e.sources.len()));
        if slot.flags & FIRST_SOURCE_IN_SLOT != 0 {
            sources.push(TargetSource {
                source: Arc::clone(&self.source_names[slot.source as usize]),
                line: (slot.line != 0).then_some(slot.line as usize),
                input: match slot.input {
                    SAME_AS_NAME => domain.clone(),
                    offset => self.input(offset).to_owned(),
                },
                category_code: (slot.category != 0)
                    .then(|| CITIZENLAB_CATEGORIES[usize::from(slot.category) - 1].to_owned()),
            });
        }
        if let Some(extra) = extra {
            sources.extend(extra.sources.iter().map(|s| TargetSource {
                source: Arc::clone(&self.source_names[s.source as usize]),
                line: s.line,
                input: s.input.as_deref().unwrap_or(&domain).to_owned(),
                category_code: s.category.as_deref().map(str::to_owned),
            }));
        }
        Target {
            address,
            pinned_ips: extra.map(|e| e.pinned_ips.clone()).unwrap_or_default(),
            sources,
            sources_omitted: extra.map_or(0, |e| e.sources_omitted),
            domain,
        }
    }

    /// Every target, made one at a time, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            store: self,
            next: 0..self.len(),
        }
    }

    /// Every name, in order, without making the targets.
    pub fn domains(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.domain(i))
    }

    /// Every target made in full (for small lists and tests).
    pub fn to_vec(&self) -> Vec<Target> {
        self.iter().collect()
    }

    /// Heap bytes the store holds (capacity, not length), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        let extras: usize = self
            .extras
            .values()
            .map(|e| {
                e.pinned_ips.capacity() * size_of::<IpAddr>()
                    + e.sources.capacity() * size_of::<StoredSource>()
                    + e.sources
                        .iter()
                        .map(|s| {
                            s.input.as_ref().map_or(0, |i| i.len())
                                + s.category.as_ref().map_or(0, |c| c.len())
                        })
                        .sum::<usize>()
            })
            .sum();
        self.names.capacity()
            + self.slots.capacity() * size_of::<Slot>()
            + self.inputs.capacity()
            + self
                .source_names
                .iter()
                .map(|s| s.len() + size_of::<Arc<str>>() + 2 * size_of::<usize>())
                .sum::<usize>()
            + self.extras.capacity() * (size_of::<u32>() + size_of::<Extra>() + 1)
            + extras
    }

    /// Gives back what the arenas over-allocated while growing.
    pub(super) fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.slots.shrink_to_fit();
        self.inputs.shrink_to_fit();
        self.extras.shrink_to_fit();
    }

    fn input(&self, offset: u32) -> &str {
        let offset = offset as usize;
        let length = usize::from(u16::from_le_bytes([
            self.inputs[offset],
            self.inputs[offset + 1],
        ]));
        std::str::from_utf8(&self.inputs[offset + 2..offset + 2 + length])
            .expect("inputs are stored from &str")
    }

    fn extra(&self, index: usize) -> Option<&Extra> {
        if self.slots[index].flags & HAS_EXTRA == 0 {
            return None;
        }
        self.extras.get(&(index as u32))
    }

    fn extra_mut(&mut self, index: usize) -> &mut Extra {
        self.slots[index].flags |= HAS_EXTRA;
        self.extras.entry(index as u32).or_default()
    }

    /// The index of source name `name`, added if new. `known` maps names to indices
    /// (kept by the loader, so that lookups cost no scan).
    pub(super) fn intern_source(
        &mut self,
        name: &str,
        known: &mut HashMap<String, u32>,
    ) -> Result<u32, StoreFull> {
        if let Some(&id) = known.get(name) {
            return Ok(id);
        }
        let id = u32::try_from(self.source_names.len()).map_err(|_| StoreFull)?;
        self.source_names.push(name.into());
        known.insert(name.to_owned(), id);
        Ok(id)
    }

    /// Adds a target (no de-duplication here) and returns its index.
    pub(super) fn push(
        &mut self,
        name: &str,
        address: bool,
        pinned_ips: Vec<IpAddr>,
        source: NewSource<'_>,
    ) -> Result<u32, StoreFull> {
        let index = u32::try_from(self.slots.len())
            .ok()
            .filter(|&i| i != u32::MAX)
            .ok_or(StoreFull)?;
        let name_end = u32::try_from(self.names.len() + name.len()).map_err(|_| StoreFull)?;
        self.names.push_str(name);
        let mut slot = Slot {
            name_end,
            source: 0,
            line: 0,
            input: SAME_AS_NAME,
            category: 0,
            flags: if address { ADDRESS } else { 0 },
        };
        let fits = self.fill_slot(&mut slot, name, source);
        self.slots.push(slot);
        if !fits {
            self.add_source(index as usize, source);
        }
        if !pinned_ips.is_empty() {
            self.extra_mut(index as usize).pinned_ips = pinned_ips;
        }
        Ok(index)
    }

    /// Puts `source` in `slot` when it fits the compact form.
    fn fill_slot(&mut self, slot: &mut Slot, name: &str, source: NewSource<'_>) -> bool {
        let line = match source.line {
            None => 0,
            Some(line) => match u32::try_from(line) {
                Ok(line) if line != 0 => line,
                _ => return false,
            },
        };
        let category = match source.category {
            None => 0,
            Some(code) => match category_number(code) {
                Some(number) => number,
                None => return false,
            },
        };
        let input = if source.input == name {
            SAME_AS_NAME
        } else {
            let (Ok(offset), Ok(length)) = (
                u32::try_from(self.inputs.len()),
                u16::try_from(source.input.len()),
            ) else {
                return false;
            };
            if offset == SAME_AS_NAME
                || u32::try_from(self.inputs.len() + 2 + source.input.len()).is_err()
            {
                return false;
            }
            self.inputs.extend_from_slice(&length.to_le_bytes());
            self.inputs.extend_from_slice(source.input.as_bytes());
            offset
        };
        *slot = Slot {
            source: source.source,
            line,
            input,
            category,
            flags: slot.flags | FIRST_SOURCE_IN_SLOT,
            ..*slot
        };
        true
    }

    /// Adds a further source to target `index`.
    pub(super) fn add_source(&mut self, index: usize, source: NewSource<'_>) {
        let input = (source.input != self.domain(index)).then(|| source.input.into());
        self.extra_mut(index).sources.push(StoredSource {
            source: source.source,
            line: source.line,
            input,
            category: source.category.map(Into::into),
        });
    }

    /// Counts a line that named target `index` but is not kept as a source.
    pub(super) fn count_omitted(&mut self, index: usize) {
        self.extra_mut(index).sources_omitted += 1;
    }

    pub(super) fn pinned_ips(&self, index: usize) -> &[IpAddr] {
        self.extra(index).map_or(&[], |e| e.pinned_ips.as_slice())
    }

    pub(super) fn add_pins(&mut self, index: usize, pins: Vec<IpAddr>) {
        if !pins.is_empty() {
            self.extra_mut(index).pinned_ips.extend(pins);
        }
    }

    /// Sources kept for target `index`.
    pub(super) fn source_count(&self, index: usize) -> usize {
        usize::from(self.slots[index].flags & FIRST_SOURCE_IN_SLOT != 0)
            + self.extra(index).map_or(0, |e| e.sources.len())
    }

    /// Whether a kept source of target `index` gives category `code`.
    pub(super) fn has_category(&self, index: usize, code: &str) -> bool {
        let slot = self.slots[index];
        (slot.flags & FIRST_SOURCE_IN_SLOT != 0
            && slot.category != 0
            && CITIZENLAB_CATEGORIES[usize::from(slot.category) - 1] == code)
            || self.extra(index).is_some_and(|e| {
                e.sources
                    .iter()
                    .any(|s| s.category.as_deref() == Some(code))
            })
    }
}

/// The targets of a [`TargetStore`], made one at a time.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    store: &'a TargetStore,
    next: std::ops::Range<usize>,
}

impl Iterator for Iter<'_> {
    type Item = Target;
    fn next(&mut self) -> Option<Target> {
        self.next.next().map(|i| self.store.target(i))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.next.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a TargetStore {
    type Item = Target;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<Target> for TargetStore {
    /// Stores `targets` as given: no validation and no de-duplication (the loader does
    /// both). Panics past `u32::MAX` targets or 4 GiB of names.
    fn from_iter<I: IntoIterator<Item = Target>>(targets: I) -> Self {
        let mut store = TargetStore::default();
        let mut known = HashMap::new();
        for target in targets {
            let ids: Vec<u32> = target
                .sources
                .iter()
                .map(|s| store.intern_source(&s.source, &mut known))
                .collect::<Result<_, _>>()
                .expect("room for the sources");
            let mut sources = target.sources.iter().zip(ids).map(|(s, id)| NewSource {
                source: id,
                line: s.line,
                input: &s.input,
                category: s.category_code.as_deref(),
            });
            let is_address = target
                .address
                .is_some_and(|ip| target.domain.parse() == Ok(ip));
            let index = match sources.next() {
                Some(first) => store.push(&target.domain, is_address, Vec::new(), first),
                None => store.push_without_source(&target.domain, is_address),
            }
            .expect("room for the target") as usize;
            for source in sources {
                store.add_source(index, source);
            }
            store.add_pins(index, target.pinned_ips);
            if target.sources_omitted > 0 {
                store.extra_mut(index).sources_omitted = target.sources_omitted;
            }
            if target.address.is_some() && !is_address {
                store.extra_mut(index).address = target.address;
            }
        }
        store
    }
}

impl From<Vec<Target>> for TargetStore {
    fn from(targets: Vec<Target>) -> Self {
        targets.into_iter().collect()
    }
}

impl TargetStore {
    fn push_without_source(&mut self, name: &str, address: bool) -> Result<u32, StoreFull> {
        let index = u32::try_from(self.slots.len())
            .ok()
            .filter(|&i| i != u32::MAX)
            .ok_or(StoreFull)?;
        let name_end = u32::try_from(self.names.len() + name.len()).map_err(|_| StoreFull)?;
        self.names.push_str(name);
        self.slots.push(Slot {
            name_end,
            source: 0,
            line: 0,
            input: SAME_AS_NAME,
            category: 0,
            flags: if address { ADDRESS } else { 0 },
        });
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::TargetLoader;

    fn source(
        name: &str,
        line: Option<usize>,
        input: &str,
        category: Option<&str>,
    ) -> TargetSource {
        TargetSource {
            source: name.into(),
            line,
            input: input.to_owned(),
            category_code: category.map(str::to_owned),
        }
    }

    #[test]
    fn targets_come_back_as_they_were_stored() {
        let targets = vec![
            Target {
                domain: "plain.example".into(),
                address: None,
                pinned_ips: Vec::new(),
                sources: vec![source("cli", None, "plain.example", None)],
                sources_omitted: 0,
            },
            Target {
                domain: "www.example.com".into(),
                address: None,
                pinned_ips: vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
                sources: vec![
                    source("a.csv", Some(2), "http://www.example.com/x", Some("NEWS")),
                    source("b.txt", Some(7), "www.example.com", Some("POLR")),
                    source("a.csv", Some(9), "HTTPS://WWW.example.com/", None),
                ],
                sources_omitted: 12,
            },
            Target {
                domain: "192.0.2.9".into(),
                address: Some("192.0.2.9".parse().unwrap()),
                pinned_ips: Vec::new(),
                sources: vec![source("list", Some(1), "http://192.0.2.9/", None)],
                sources_omitted: 0,
            },
            // What only a caller building targets by hand can make: kept as given too.
            Target {
                domain: "odd.example".into(),
                address: Some("2001:db8::9".parse().unwrap()),
                pinned_ips: Vec::new(),
                sources: vec![
                    source(
                        "huge",
                        Some(u32::MAX as usize + 5),
                        "odd.example",
                        Some("NOTALEGENDCODE"),
                    ),
                    source("zero", Some(0), &"é".repeat(40_000), None),
                ],
                sources_omitted: 0,
            },
            Target {
                domain: "no-source.example".into(),
                address: None,
                pinned_ips: Vec::new(),
                sources: Vec::new(),
                sources_omitted: 0,
            },
        ];
        let store: TargetStore = targets.clone().into();
        assert_eq!(store.len(), targets.len());
        assert_eq!(store.to_vec(), targets);
        let domains: Vec<&str> = store.domains().collect();
        assert_eq!(
            domains,
            [
                "plain.example",
                "www.example.com",
                "192.0.2.9",
                "odd.example",
                "no-source.example"
            ]
        );
        assert_eq!(store.target(1), targets[1]);
        // Without making the target: an address named by the name, one given by hand,
        // and names.
        let addresses: Vec<bool> = (0..store.len()).map(|i| store.is_address(i)).collect();
        assert_eq!(addresses, [false, false, true, true, false]);
        assert!(store.has_category(1, "POLR") && !store.has_category(1, "HUMR"));
        assert_eq!(store.source_count(1), 3);
        assert_eq!(store.pinned_ips(1).len(), 2);
    }

    /// A large list costs a few tens of bytes per name: the name and a 20-byte slot.
    #[test]
    fn a_list_costs_its_names_and_a_slot_per_target() {
        let names = 100_000;
        let mut text = String::new();
        for i in 0..names {
            use std::fmt::Write as _;
            writeln!(text, "www{}.site{i}.example.com", i % 7).unwrap();
        }
        let mut loader = TargetLoader::new(false);
        loader.add_reader("list.txt", text.as_bytes()).unwrap();
        let list = loader.finish();
        assert_eq!(list.targets.len(), names);
        let name_bytes: usize = list.targets.domains().map(str::len).sum();
        let stored = list.targets.heap_bytes();
        assert!(
            stored <= name_bytes + names * (size_of::<Slot>() + 1),
            "{stored} bytes for {names} names ({name_bytes} bytes of names)"
        );
        assert_eq!(size_of::<Slot>(), 20);

        // URLs keep their input (a length and the text) besides the name.
        let mut urls = String::new();
        for name in text.lines() {
            use std::fmt::Write as _;
            writeln!(urls, "https://{name}/page").unwrap();
        }
        let mut loader = TargetLoader::new(false);
        loader.add_reader("urls.txt", urls.as_bytes()).unwrap();
        let list = loader.finish();
        let stored = list.targets.heap_bytes();
        assert!(
            stored <= name_bytes + urls.len() + names * (size_of::<Slot>() + 3),
            "{stored} bytes for {names} URLs"
        );
        assert_eq!(
            list.targets.target(5).sources[0].input,
            format!("https://{}/page", list.targets.domain(5))
        );
    }

    #[test]
    fn merged_duplicates_stay_compact_and_complete() {
        let mut loader = TargetLoader::new(false);
        loader
            .add_reader("a.txt", "a.example\nb.example\n".as_bytes())
            .unwrap();
        loader
            .add_reader(
                "b.txt",
                "B.example.,198.18.0.1,category=news\nhttps://a.example/\n".as_bytes(),
            )
            .unwrap();
        let list = loader.finish();
        let targets = list.targets.to_vec();
        assert_eq!(targets.len(), 2);
        assert_eq!(
            targets[1].sources,
            [
                source("a.txt", Some(2), "b.example", None),
                source("b.txt", Some(1), "B.example.", Some("NEWS")),
            ]
        );
        assert_eq!(
            targets[1].pinned_ips,
            ["198.18.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            targets[0].sources,
            [
                source("a.txt", Some(1), "a.example", None),
                source("b.txt", Some(2), "https://a.example/", None),
            ]
        );
        // Two source names, each kept once however many lines name them.
        assert_eq!(list.targets.source_names.len(), 2);
    }
}
