//! What a running lab records about itself (`state.json` in its state directory): enough
//! for `lab status`, `lab down`, the roles it runs, and a probe pointed at it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{LabError, LabResult};
use super::plan;
use super::topology::{Namespaces, RUN_DIR};

pub const STATE_FILE: &str = "state.json";
pub const SCENARIO_FILE: &str = "scenario.toml";
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The scenario's names, one a line: a target list for the probe.
pub const NAMES_FILE: &str = "names.txt";

/// A running lab, as written to its state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabInfo {
    pub id: String,
    pub state_dir: PathBuf,
    /// The scenario file the lab was started from.
    pub scenario_source: PathBuf,
    pub namespaces: Namespaces,
    pub vantage_ip: Ipv4Addr,
    /// The resolver under test (plain DNS, censored path).
    pub resolver: SocketAddr,
    /// An address with no DNS service (`--dns-sink`).
    pub sink: Ipv4Addr,
    /// The resolver over `DoT`, which the censor does not touch (`--control dot:...`).
    pub dot: SocketAddr,
    pub dot_name: String,
    /// The resolver over `DoH` (`--control doh:...`), untouched by the censor too.
    #[serde(default)]
    pub doh_url: String,
    /// The lab CA certificate (`--ca`).
    pub ca_cert: PathBuf,
    /// The scenario's names as a target list (`--targets`).
    #[serde(default)]
    pub targets: PathBuf,
    /// A benign name for control probes.
    pub control_name: String,
    /// Daemon processes, for labs started with `lab up` (empty for in-process labs).
    #[serde(default)]
    pub pids: Vec<RolePid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolePid {
    pub role: String,
    pub pid: i32,
}

impl LabInfo {
    pub fn new(id: &str, state_dir: &Path, scenario_source: &Path, control_name: &str) -> LabInfo {
        LabInfo {
            id: id.to_owned(),
            state_dir: state_dir.to_owned(),
            scenario_source: scenario_source.to_owned(),
            namespaces: Namespaces::for_id(id),
            vantage_ip: plan::VANTAGE_IP,
            resolver: SocketAddr::from((plan::RESOLVER_IP, 53)),
            sink: plan::SINK_IP,
            dot: SocketAddr::from((plan::RESOLVER_IP, plan::DOT_PORT)),
            dot_name: plan::DOT_NAME.to_owned(),
            // DOH_PORT is HTTPS's own port: the URL needs none.
            doh_url: format!(
                "https://{}{}",
                plan::RESOLVER_IP,
                crate::servers::dns::DOH_PATH
            ),
            ca_cert: state_dir.join(CA_CERT_FILE),
            targets: state_dir.join(NAMES_FILE),
            control_name: control_name.to_owned(),
            pids: Vec::new(),
        }
    }

    /// The `--control` value for a probe in this lab.
    pub fn control_spec(&self) -> String {
        format!("dot:{}#{}", self.dot, self.dot_name)
    }

    pub fn write(&self) -> LabResult<()> {
        let path = self.state_dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).expect("lab state serialises");
        std::fs::write(&path, text).map_err(|e| LabError::State {
            path,
            message: e.to_string(),
        })
    }

    pub fn read(state_dir: &Path) -> LabResult<LabInfo> {
        let path = state_dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| LabError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| LabError::State {
            path,
            message: e.to_string(),
        })
    }
}

/// The default state directory of lab `id`.
pub fn default_state_dir(id: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("lab-{id}"))
}

/// State directories of the labs started with the default location.
pub fn list_default_state_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(RUN_DIR)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("lab-"))
                        && p.join(STATE_FILE).is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}
