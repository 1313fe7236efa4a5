//! `--shard I/N` or `--shard auto`: which part of the list this run measures.
//!
//! `auto` is for a Kubernetes Indexed Job: every pod runs the same command, and
//! Kubernetes gives each its index in `JOB_COMPLETION_INDEX`; the count (the Job's
//! `completions`) comes from `--shard-count N` or `CENSORPROBE_SHARD_COUNT`.

use std::fmt;
use std::str::FromStr;

use super::ConfigError;
use crate::scheduler::{Shard, ShardError};

/// The variable Kubernetes sets to a pod's index in an Indexed Job.
pub(crate) const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
/// The variable that gives `--shard auto` its count when `--shard-count` does not.
pub(crate) const SHARD_COUNT_ENV: &str = "CENSORPROBE_SHARD_COUNT";

/// `--shard` as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    /// `I/N`.
    Fixed(Shard),
    /// `auto`: the index from [`JOB_COMPLETION_INDEX`], the count from the flag or env.
    Auto,
}

impl FromStr for ShardSpec {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        if s.trim() == "auto" {
            Ok(ShardSpec::Auto)
        } else {
            Shard::from_str(s).map(ShardSpec::Fixed)
        }
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardSpec::Fixed(shard) => shard.fmt(f),
            ShardSpec::Auto => f.write_str("auto"),
        }
    }
}

impl ShardSpec {
    /// The shard this run measures. `index` is the value of [`JOB_COMPLETION_INDEX`]
    /// and `count` that of `--shard-count` (or [`SHARD_COUNT_ENV`], which clap reads).
    pub fn resolve(self, index: Option<&str>, count: Option<u32>) -> Result<Shard, ConfigError> {
        if let ShardSpec::Fixed(shard) = self {
            return Ok(shard);
        }
        let bad = |reason: String| ConfigError::BadOption {
            option: "--shard",
            reason,
        };
        let index = index.ok_or_else(|| {
            bad(format!(
                "auto takes the index from {JOB_COMPLETION_INDEX}, which is not set (run as a Kubernetes Indexed Job, or give --shard I/N)"
            ))
        })?;
        let count = count.ok_or_else(|| {
            bad(format!(
                "auto needs the number of shards: --shard-count N or {SHARD_COUNT_ENV}"
            ))
        })?;
        let index: u32 = index
            .trim()
            .parse()
            .map_err(|_| bad(format!("{JOB_COMPLETION_INDEX}={index:?} is not a number")))?;
        Shard::from_str(&format!("{index}/{count}")).map_err(|e| {
            bad(format!(
                "auto ({JOB_COMPLETION_INDEX}={index}, count {count}): {e}"
            ))
        })
    }

    /// The shard from the environment of this process.
    pub fn resolve_from_env(self, count: Option<u32>) -> Result<Shard, ConfigError> {
        let index = std::env::var(JOB_COMPLETION_INDEX).ok();
        self.resolve(index.as_deref(), count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_shards_need_no_environment() {
        let spec: ShardSpec = "2/5".parse().unwrap();
        assert_eq!(
            spec.resolve(None, None).unwrap(),
            Shard { index: 2, count: 5 }
        );
        assert_eq!(
            spec.resolve(Some("0"), Some(9)).unwrap(),
            Shard { index: 2, count: 5 },
            "an explicit I/N wins over the environment"
        );
        assert!("5/5".parse::<ShardSpec>().is_err());
    }

    #[test]
    fn auto_takes_the_job_index_and_the_count() {
        let spec: ShardSpec = "auto".parse().unwrap();
        assert_eq!(spec, ShardSpec::Auto);
        assert_eq!(
            spec.resolve(Some("3"), Some(4)).unwrap(),
            Shard { index: 3, count: 4 }
        );
        let err = |index, count| spec.resolve(index, count).unwrap_err().to_string();
        assert!(err(None, Some(4)).contains("JOB_COMPLETION_INDEX, which is not set"));
        assert!(err(Some("1"), None).contains("--shard-count N or CENSORPROBE_SHARD_COUNT"));
        assert!(err(Some("x"), Some(4)).contains("\"x\" is not a number"));
        assert!(
            err(Some("4"), Some(4)).contains("must be below N"),
            "{}",
            err(Some("4"), Some(4))
        );
        assert!(err(Some("0"), Some(0)).contains("at least 1"));
    }
}
