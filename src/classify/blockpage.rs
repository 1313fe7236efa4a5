//! Block-page fingerprints: documented patterns of censors' answer pages, loaded from
//! TOML (`targets/blockpages.toml` is built in) and matched against HTTP responses.

use std::path::Path;

use serde::Deserialize;

use crate::observation::web::HttpResponse;

/// Why a block-page fingerprint file cannot be used. The cause is the
/// [`source`](std::error::Error::source) where there is one, not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockpageError {
    #[error("cannot load block-page fingerprints from {source_name}")]
    Unreadable {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load block-page fingerprints from {source_name}")]
    Syntax {
        source_name: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("cannot load block-page fingerprints from {source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
}

/// The fingerprint file shipped with censorprobe.
pub const BUILTIN_FINGERPRINTS: &str = include_str!("../../targets/blockpages.toml");

/// One block-page pattern. Every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    pub name: String,
    pub description: String,
    pub source: String,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub title_contains: Option<String>,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub header_prefix: Option<String>,
    #[serde(default)]
    pub header_equals: Option<String>,
    #[serde(default)]
    pub header_contains: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FingerprintFile {
    #[serde(default)]
    fingerprint: Vec<Fingerprint>,
}

impl Fingerprint {
    fn validate(&self) -> std::result::Result<(), String> {
        let header_tests = [
            &self.header_prefix,
            &self.header_equals,
            &self.header_contains,
        ]
        .iter()
        .filter(|t| t.is_some())
        .count();
        match (&self.header, header_tests) {
            (Some(_), 1) | (None, 0) => {}
            (Some(_), _) => {
                return Err(format!(
                    "fingerprint {:?}: `header` needs exactly one of header_prefix, header_equals, header_contains",
                    self.name
                ));
            }
            (None, _) => {
                return Err(format!(
                    "fingerprint {:?}: header_* given without `header`",
                    self.name
                ));
            }
        }
        let has_condition = self.status.is_some()
            || self.title_contains.is_some()
            || self.body_contains.is_some()
            || self.header.is_some();
        if !has_condition {
            return Err(format!("fingerprint {:?} has no condition", self.name));
        }
        let empty_pattern = [
            &self.title_contains,
            &self.body_contains,
            &self.header_prefix,
            &self.header_equals,
            &self.header_contains,
        ]
        .iter()
        .any(|p| p.as_deref() == Some(""));
        if empty_pattern {
            return Err(format!(
                "fingerprint {:?} has an empty pattern (it would match everything)",
                self.name
            ));
        }
        Ok(())
    }

    /// Whether `response` matches every condition of this fingerprint.
    pub fn matches(&self, response: &HttpResponse) -> bool {
        if self.status.is_some_and(|s| s != response.status) {
            return false;
        }
        if let Some(needle) = &self.title_contains
            && !response
                .title
                .as_deref()
                .is_some_and(|t| t.contains(needle.as_str()))
        {
            return false;
        }
        if let Some(needle) = &self.body_contains
            && !contains_bytes(&response.body_prefix, needle.as_bytes())
        {
            return false;
        }
        if let Some(name) = &self.header {
            let Some(value) = response.header(name) else {
                return false;
            };
            let ok = if let Some(prefix) = &self.header_prefix {
                value.starts_with(prefix.as_str())
            } else if let Some(exact) = &self.header_equals {
                value == exact
            } else if let Some(part) = &self.header_contains {
                value.contains(part.as_str())
            } else {
                true
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// The conditions, for evidence text.
    pub fn conditions(&self) -> String {
        let mut parts = Vec::new();
        if let Some(status) = self.status {
            parts.push(format!("status {status}"));
        }
        if let Some(t) = &self.title_contains {
            parts.push(format!("title contains {t:?}"));
        }
        if let Some(b) = &self.body_contains {
            parts.push(format!("body contains {b:?}"));
        }
        if let Some(h) = &self.header {
            if let Some(p) = &self.header_prefix {
                parts.push(format!("{h} starts with {p:?}"));
            } else if let Some(e) = &self.header_equals {
                parts.push(format!("{h} is {e:?}"));
            } else if let Some(c) = &self.header_contains {
                parts.push(format!("{h} contains {c:?}"));
            }
        }
        parts.join(", ")
    }
}

/// Substring search with memchr's memmem: every fingerprint is tried on every
/// response body kept (up to `body_keep`, 16 KiB), and a byte-by-byte window compare
/// made block-page matching the largest cost of an HTTP probe of a real-sized page.
fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}

/// A set of fingerprints, tried in file order.
#[derive(Debug, Clone, Default)]
pub struct BlockpageSet {
    fingerprints: Vec<Fingerprint>,
}

impl BlockpageSet {
    /// The fingerprints shipped in `targets/blockpages.toml`.
    pub fn builtin() -> Self {
        Self::from_toml("builtin blockpages.toml", BUILTIN_FINGERPRINTS)
            .expect("the built-in fingerprint file is valid (tested)")
    }

    pub fn from_file(path: &Path) -> Result<Self, BlockpageError> {
        let text = std::fs::read_to_string(path).map_err(|source| BlockpageError::Unreadable {
            source_name: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&path.display().to_string(), &text)
    }

    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, BlockpageError> {
        let bad = |reason: String| BlockpageError::Invalid {
            source_name: source_name.to_owned(),
            reason,
        };
        let file: FingerprintFile =
            toml::from_str(text).map_err(|source| BlockpageError::Syntax {
                source_name: source_name.to_owned(),
                source,
            })?;
        let mut seen = std::collections::HashSet::new();
        for fp in &file.fingerprint {
            fp.validate().map_err(bad)?;
            if !seen.insert(fp.name.as_str()) {
                return Err(bad(format!("fingerprint name {:?} appears twice", fp.name)));
            }
        }
        Ok(BlockpageSet {
            fingerprints: file.fingerprint,
        })
    }

    pub fn fingerprints(&self) -> &[Fingerprint] {
        &self.fingerprints
    }

    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    /// The first fingerprint `response` matches.
    pub fn find(&self, response: &HttpResponse) -> Option<&Fingerprint> {
        self.fingerprints.iter().find(|fp| fp.matches(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::web::HttpHeader;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            version: "HTTP/1.1".into(),
            status,
            reason: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| HttpHeader {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            header_bytes: 0,
            content_length: None,
            chunked: false,
            body_length: body.len() as u64,
            body_capped: false,
            body_sha256: String::new(),
            title: crate::probe::web::http::extract_title(body.as_bytes()),
            body_prefix: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn builtin_file_loads_and_has_the_lab_fingerprint() {
        let set = BlockpageSet::builtin();
        assert!(set.len() >= 5);
        assert!(
            set.fingerprints()
                .iter()
                .any(|f| f.name == "censorprobe-lab")
        );
    }

    #[test]
    fn lab_blockpage_matches_and_the_good_page_does_not() {
        let set = BlockpageSet::builtin();
        let blocked = crate::servers::web::lab_blockpage();
        let text = String::from_utf8(blocked).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            set.find(&response(403, &[], body)).unwrap().name,
            "censorprobe-lab"
        );
        // Same marker with another status: all conditions must hold.
        assert!(set.find(&response(200, &[], body)).is_none());
        let good = String::from_utf8(crate::servers::web::lab_page("a.test")).unwrap();
        let body = good.split_once("\r\n\r\n").unwrap().1;
        assert!(set.find(&response(200, &[], body)).is_none());
    }

    #[test]
    fn header_and_body_patterns() {
        let set = BlockpageSet::builtin();
        let r = response(302, &[("location", "http://internet-positif.org/?u=x")], "");
        assert_eq!(set.find(&r).unwrap().name, "ooni.id_0");
        let r = response(
            302,
            &[("Location", "http://example.org/internet-positif.org")],
            "",
        );
        assert!(set.find(&r).is_none(), "prefix, not substring");
        let r = response(
            200,
            &[],
            r#"<html><iframe src="http://10.10.34.34/?type=Invalid"></html>"#,
        );
        assert_eq!(set.find(&r).unwrap().name, "ooni.ir_0");
    }

    #[test]
    fn invalid_files_are_rejected_with_the_reason() {
        let no_condition = "[[fingerprint]]\nname='x'\ndescription='d'\nsource='s'\n";
        assert!(BlockpageSet::from_toml("t", no_condition).is_err());
        let empty = "[[fingerprint]]\nname='x'\ndescription='d'\nsource='s'\nbody_contains=''\n";
        assert!(BlockpageSet::from_toml("t", empty).is_err());
        let header_without_test =
            "[[fingerprint]]\nname='x'\ndescription='d'\nsource='s'\nheader='Server'\n";
        assert!(BlockpageSet::from_toml("t", header_without_test).is_err());
        let unknown =
            "[[fingerprint]]\nname='x'\ndescription='d'\nsource='s'\nstatus=403\nbodyy='a'\n";
        assert!(BlockpageSet::from_toml("t", unknown).is_err());
        let dup = "[[fingerprint]]\nname='x'\ndescription='d'\nsource='s'\nstatus=1\n\
                   [[fingerprint]]\nname='x'\ndescription='d'\nsource='s'\nstatus=2\n";
        let err = BlockpageSet::from_toml("t", dup).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn load_errors_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let err = BlockpageSet::from_file(&missing).unwrap_err();
        assert!(matches!(err, BlockpageError::Unreadable { .. }), "{err:?}");
        let source = std::error::Error::source(&err).expect("the I/O error is kept");
        assert!(source.is::<std::io::Error>(), "{source:?}");

        let garbled = dir.path().join("garbled.toml");
        std::fs::write(&garbled, "[[fingerprint]\nname = \n").unwrap();
        let err = BlockpageSet::from_file(&garbled).unwrap_err();
        let source = std::error::Error::source(&err).expect("the TOML error is kept");
        let toml_error = source
            .downcast_ref::<toml::de::Error>()
            .expect("a toml::de::Error");
        assert!(
            !err.to_string().contains(toml_error.message()),
            "not repeated: {err}"
        );
    }
}
