//! The `consensus` record (`--repeat`): the majority verdict of a target's attempts and
//! how consistent they were. Built by [`crate::report::consensus`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vocab::{
    Blocking, DnsVerdict, HttpVerdict, Majority, PoisoningMethod, Stage, StageVerdict, TlsVerdict,
};

/// The consensus of one stage over a target's attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "V: StageVerdict", deserialize = "V: StageVerdict"))]
pub struct StageConsensus<V> {
    /// The majority verdict, `no_majority`, or `none` when most attempts did not run
    /// the stage.
    pub verdict: Majority<V>,
    /// The majority method among the attempts with the majority verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<PoisoningMethod>,
    /// The majority `stage` (where) among the attempts with the majority verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Share of attempts with the most common verdict.
    pub consistency: f64,
    /// Attempts per verdict (`none` where the stage did not run).
    pub verdicts: BTreeMap<String, u32>,
    /// Attempts per method.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub methods: BTreeMap<String, u32>,
}

/// The consensus of each stage some attempt ran (written as a map from stage name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsensusStages {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<StageConsensus<DnsVerdict>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<StageConsensus<HttpVerdict>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<StageConsensus<TlsVerdict>>,
}

/// The consensus of a target-level value: `blocking` ([`Blocking`], inconclusive
/// without a majority) or `accessible` (`Option<bool>`, null without one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueConsensus<T> {
    /// The majority value, or null when there is none.
    pub majority: T,
    pub consistency: f64,
    /// Attempts per value (`false`, `true`, a layer, `null`).
    pub counts: BTreeMap<String, u32>,
}

/// The `consensus` record written after a target's last attempt with `--repeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsensusRecord {
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Attempts the consensus rests on.
    pub attempts: u32,
    /// Share of attempts agreeing with the most common blocking value.
    pub consistency: f64,
    pub blocking: ValueConsensus<Blocking>,
    pub accessible: ValueConsensus<Option<bool>>,
    pub stages: ConsensusStages,
    /// Every address the DNS stage judged forged, over all attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forged_ips: Vec<String>,
}
