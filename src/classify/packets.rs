//! Judging a connection's captured packets: which packets toward the client were injected
//! (and by which injector), from the facts in [`ConnectionPackets`].
//!
//! ROUND-12 CONTRACT (the analysis is filled in by its owner; the signatures and the
//! fields below are what the capture, the web classifier and the pcap workflow use).

use serde::{Deserialize, Serialize};

use crate::classify::injectors::InjectorSet;
use crate::observation::packets::ConnectionPackets;

/// Which injector the injected packets match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectorMatch {
    /// The fingerprint's name from the injector file (`gfw_type_ii`, `henan`), or
    /// `unknown_injector` when injected packets match no fingerprint.
    pub name: String,
    /// The facts that matched, with their values ("3 identical RST+ACK within 0.3 ms",
    /// "IP DF set").
    pub facts: Vec<String>,
}

/// What the packets of one connection show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketJudgement {
    /// At least one RST/FIN toward the client was judged injected.
    pub injected: bool,
    /// Set when `injected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injector: Option<InjectorMatch>,
}

impl PacketJudgement {
    /// One sentence with the values, for evidence.
    pub fn describe(&self) -> String {
        if self.injected {
            "the capture shows injected packets".to_owned()
        } else {
            "the capture shows no injected packet".to_owned()
        }
    }
}

/// Judge one connection's packets against the injector fingerprints.
pub fn judge_connection(packets: &ConnectionPackets, injectors: &InjectorSet) -> PacketJudgement {
    let _ = (packets, injectors);
    PacketJudgement {
        injected: false,
        injector: None,
    }
}
