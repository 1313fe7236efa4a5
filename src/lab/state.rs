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
/// The web-control helper's bearer token (`--web-control-token`), owner-only.
pub const WEB_CONTROL_TOKEN_FILE: &str = "web-control-token";
/// The helper's certificate chain (issued by the lab CA) and key.
pub const WEB_CONTROL_CERT_FILE: &str = "web-control-cert.pem";
pub const WEB_CONTROL_KEY_FILE: &str = "web-control-key.pem";
/// Every file a lab writes to its state directory (the daemons' logs and readiness
/// marks included): teardown removes these and nothing else.
pub const LAB_FILES: &[&str] = &[
    SCENARIO_FILE,
    CA_CERT_FILE,
    CA_KEY_FILE,
    NAMES_FILE,
    WEB_CONTROL_TOKEN_FILE,
    WEB_CONTROL_CERT_FILE,
    WEB_CONTROL_KEY_FILE,
    "helper.log",
    "internet.log",
    "censor.log",
    "internet.ready",
    "censor.ready",
    // Last: while it exists, the directory is still known as a lab's.
    STATE_FILE,
];
/// One entry per lab (`ID.json`, a copy of its state) wherever its state directory is,
/// so that `lab status`, `lab down --id` and the stale-lab cleanup find every lab.
pub const REGISTRY_DIR: &str = "/run/censorprobe/labs";

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
    /// The web-control helper (`--web-control`), out of the censor's reach; its
    /// certificate is issued by the lab CA (`--web-control-ca` is [`Self::ca_cert`]).
    #[serde(default)]
    pub web_control_url: String,
    /// The helper's bearer token (`--web-control-token`).
    #[serde(default)]
    pub web_control_token: PathBuf,
    /// Daemon processes, for labs started with `lab up` (empty for in-process labs).
    #[serde(default)]
    pub pids: Vec<RolePid>,
    /// The process that brought the lab up (`lab demo`, `lab up` while it starts the
    /// roles, a test). Absent in the state of labs from older versions.
    #[serde(default)]
    pub owner: Option<ProcessStamp>,
    /// Whether the lab created its state directory (else it was empty and is kept).
    #[serde(default)]
    pub state_dir_created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolePid {
    pub role: String,
    pub pid: i32,
    /// Start time of the process (`/proc/PID/stat`), against pid reuse.
    #[serde(default)]
    pub start_time: Option<u64>,
}

impl RolePid {
    pub fn stamp(&self) -> Option<ProcessStamp> {
        self.start_time.map(|start_time| ProcessStamp {
            pid: self.pid,
            start_time,
        })
    }
}

/// A process as it was when recorded: its pid and its start time (clock ticks after
/// boot, field 22 of `/proc/PID/stat`), so a reused pid is not taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStamp {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessStamp {
    /// The calling process.
    pub fn current() -> LabResult<ProcessStamp> {
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        ProcessStamp::of(pid).ok_or_else(|| LabError::State {
            path: PathBuf::from("/proc/self/stat"),
            message: "cannot read this process's start time".to_owned(),
        })
    }

    /// Process `pid` as it is now; `None` when there is none (or only a zombie).
    pub fn of(pid: i32) -> Option<ProcessStamp> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let start_time = parse_start_time(&stat)?;
        Some(ProcessStamp { pid, start_time })
    }

    /// Whether this very process still runs.
    pub fn is_alive(&self) -> bool {
        ProcessStamp::of(self.pid) == Some(*self)
    }
}

/// The start time in a `/proc/PID/stat` line, `None` for a zombie. The fields follow
/// the parenthesised command name (which may hold spaces and parentheses): state is
/// field 3, starttime field 22.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(22 - 4)?.parse().ok()
}

/// Whether the processes a lab recorded still run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Its owner or one of its role processes runs.
    Alive,
    /// Every process it recorded is gone: nothing will ever tear it down; it is stale.
    Dead,
    /// It recorded no process that can be checked (a lab from an older version).
    Unknown,
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
            web_control_url: format!("https://{}:{}", plan::HELPER_IP, plan::HELPER_PORT),
            web_control_token: state_dir.join(WEB_CONTROL_TOKEN_FILE),
            pids: Vec::new(),
            owner: None,
            state_dir_created: false,
        }
    }

    /// The `--control` value for a probe in this lab.
    pub fn control_spec(&self) -> String {
        format!("dot:{}#{}", self.dot, self.dot_name)
    }

    /// Whether the owner or a role process of the lab still runs.
    pub fn liveness(&self) -> Liveness {
        let stamps: Vec<ProcessStamp> = self
            .owner
            .iter()
            .copied()
            .chain(self.pids.iter().filter_map(RolePid::stamp))
            .collect();
        if stamps.is_empty() {
            Liveness::Unknown
        } else if stamps.iter().any(ProcessStamp::is_alive) {
            Liveness::Alive
        } else {
            Liveness::Dead
        }
    }

    /// Write `state.json` and the lab's registry entry.
    pub fn write(&self) -> LabResult<()> {
        let path = self.state_dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).expect("lab state serialises");
        std::fs::write(&path, &text).map_err(|e| LabError::State {
            path,
            message: e.to_string(),
        })?;
        let entry = registry_entry(&self.id);
        std::fs::write(&entry, text).map_err(|e| LabError::State {
            path: entry,
            message: e.to_string(),
        })
    }

    /// Create the lab's registry entry; fails if a lab with this id has one.
    pub fn register(&self) -> LabResult<()> {
        std::fs::create_dir_all(REGISTRY_DIR)
            .map_err(|e| LabError::io(format!("create {REGISTRY_DIR}"), e))?;
        let entry = registry_entry(&self.id);
        let text = serde_json::to_string_pretty(self).expect("lab state serialises");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&entry);
        match file {
            Ok(mut file) => std::io::Write::write_all(&mut file, text.as_bytes())
                .map_err(|e| LabError::io(format!("write {}", entry.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(LabError::State {
                path: entry,
                message: format!("a lab with id {} is up", self.id),
            }),
            Err(e) => Err(LabError::io(format!("create {}", entry.display()), e)),
        }
    }

    /// Remove the lab's registry entry (the last step of a teardown).
    pub fn unregister(&self) -> Result<(), String> {
        let entry = registry_entry(&self.id);
        match std::fs::remove_file(&entry) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("remove {}: {e}", entry.display())),
        }
    }

    /// Remove the files the lab wrote to its state directory, and the directory if the
    /// lab created it and nothing else is in it; a user's file is never removed.
    /// Returns what failed, and notes what was kept.
    pub fn remove_files(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for name in LAB_FILES {
            let path = self.state_dir.join(name);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                failures.push(format!("remove {}: {e}", path.display()));
            }
        }
        // The default directory is the lab's own even in the state of an older version,
        // which did not record who created it.
        if self.state_dir_created || self.state_dir == default_state_dir(&self.id) {
            match std::fs::remove_dir(&self.state_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => eprintln!(
                    "censorprobe lab: kept {}: it holds files the lab did not write",
                    self.state_dir.display()
                ),
                Err(e) => failures.push(format!("remove {}: {e}", self.state_dir.display())),
            }
        }
        failures
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

/// Where lab `id` is registered.
pub fn registry_entry(id: &str) -> PathBuf {
    Path::new(REGISTRY_DIR).join(format!("{id}.json"))
}

/// The labs that are registered or have a state directory in the default location (labs
/// of older versions are only there), by id.
pub fn known_labs() -> Vec<LabInfo> {
    let mut labs: Vec<LabInfo> = std::fs::read_dir(REGISTRY_DIR)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .filter_map(|text| serde_json::from_str::<LabInfo>(&text).ok())
                .collect()
        })
        .unwrap_or_default();
    for dir in list_default_state_dirs() {
        if let Ok(info) = LabInfo::read(&dir)
            && !labs.iter().any(|l| l.id == info.id)
        {
            labs.push(info);
        }
    }
    labs.sort_by(|a, b| a.id.cmp(&b.id));
    labs
}

/// The lab with this id: its registry entry, else its default state directory.
pub fn find_lab(id: &str) -> LabResult<LabInfo> {
    super::topology::check_id(id)?;
    let entry = registry_entry(id);
    if let Ok(text) = std::fs::read_to_string(&entry) {
        return serde_json::from_str(&text).map_err(|e| LabError::State {
            path: entry,
            message: e.to_string(),
        });
    }
    let dir = default_state_dir(id);
    if dir.join(STATE_FILE).is_file() {
        return LabInfo::read(&dir);
    }
    Err(LabError::NoSuchLab(id.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_after_a_command_name_with_spaces() {
        let stat =
            "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987_654));
        let zombie =
            "4242 (x) Z 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(zombie), None);
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not_it() {
        let me = ProcessStamp::current().unwrap();
        assert!(me.is_alive());
        let reused = ProcessStamp {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive());
    }

    #[test]
    fn a_lab_whose_processes_are_gone_is_dead() {
        let mut info = LabInfo::new("t1", Path::new("/nonexistent"), Path::new("s.toml"), "c");
        assert_eq!(info.liveness(), Liveness::Unknown);
        let me = ProcessStamp::current().unwrap();
        info.owner = Some(ProcessStamp {
            start_time: me.start_time + 1,
            ..me
        });
        assert_eq!(info.liveness(), Liveness::Dead);
        info.pids.push(RolePid {
            role: "censor".to_owned(),
            pid: me.pid,
            start_time: Some(me.start_time),
        });
        assert_eq!(info.liveness(), Liveness::Alive);
    }

    #[test]
    fn teardown_removes_only_what_the_lab_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let mut info = LabInfo::new("t2", &state, Path::new("s.toml"), "c");
        info.state_dir_created = true;
        for name in LAB_FILES {
            std::fs::write(state.join(name), "x").unwrap();
        }
        std::fs::write(state.join("notes.txt"), "mine").unwrap();
        assert!(info.remove_files().is_empty());
        assert_eq!(
            std::fs::read_to_string(state.join("notes.txt")).unwrap(),
            "mine"
        );
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1);
        std::fs::remove_file(state.join("notes.txt")).unwrap();
        assert!(info.remove_files().is_empty());
        assert!(!state.exists(), "the lab's own empty directory goes");
    }
}
