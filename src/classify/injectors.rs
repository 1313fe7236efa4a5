//! Injector fingerprints (`targets/injectors.toml`, `--injectors FILE`): the packet
//! patterns of known injectors (GFW types I–III, provincial firewalls).
//!
//! ROUND-12 CONTRACT: `InjectorSet::builtin()` and `InjectorSet::load(path)`.

use std::path::Path;

/// Why an injector file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InjectorError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// A set of injector fingerprints.
#[derive(Debug, Clone, Default)]
pub struct InjectorSet {}

impl InjectorSet {
    /// The fingerprints shipped with censorprobe.
    pub fn builtin() -> InjectorSet {
        InjectorSet {}
    }

    /// Fingerprints from a TOML file.
    pub fn load(path: &Path) -> Result<InjectorSet, InjectorError> {
        std::fs::read_to_string(path).map_err(|source| InjectorError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(InjectorSet {})
    }
}
