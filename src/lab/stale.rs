//! Labs nobody will tear down: their owner (`lab demo`, a test, `lab up` while starting)
//! and every role process are provably gone (pid and start time no longer match a
//! running process), e.g. after a `kill -9`. `lab up` and `lab demo` remove them before
//! bringing a new lab up; a lab whose owner or roles still run is never touched, since
//! other people's labs run on the same machine.

use std::fs::File;
use std::time::{Duration, Instant};

use nix::fcntl::Flock;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::netns;
use super::state::{self, LabInfo, Liveness};
use super::topology;

/// A stale lab that was removed, and what could not be.
#[derive(Debug)]
pub struct CleanedLab {
    pub id: String,
    pub failures: Vec<String>,
}

/// Remove every stale lab: processes left in its namespaces, the namespaces (and with
/// them its nftables table), the host route if it was the last lab, the files it wrote,
/// its registry entry.
pub fn clean_stale_labs() -> Vec<CleanedLab> {
    let mut cleaned = Vec::new();
    for candidate in state::known_labs() {
        if candidate.liveness() != Liveness::Dead {
            continue;
        }
        let lock = topology::host_lock();
        // Another process may have cleaned it, or reused the id, meanwhile.
        let Ok(info) = state::find_lab(&candidate.id) else {
            continue;
        };
        if info.liveness() != Liveness::Dead || info.state_dir != candidate.state_dir {
            continue;
        }
        let mut failures = Vec::new();
        if let Err(e) = &lock {
            failures.push(e.to_string());
        }
        failures.extend(remove_lab(&info, lock.as_ref().ok(), true));
        cleaned.push(CleanedLab {
            id: info.id,
            failures,
        });
    }
    cleaned
}

/// [`clean_stale_labs`], saying on stderr what was removed.
pub fn clean_stale_labs_reporting() {
    for lab in clean_stale_labs() {
        if lab.failures.is_empty() {
            eprintln!(
                "censorprobe lab: removed stale lab {} (its owner and roles are gone)",
                lab.id
            );
        } else {
            eprintln!(
                "censorprobe lab: stale lab {} only partly removed: {}",
                lab.id,
                lab.failures.join("; ")
            );
        }
    }
}

/// Remove what a lab created (its processes are stopped already, or, with
/// `kill_leftovers`, killed here): namespaces, host route if no lab is left, files,
/// registry entry. Returns what failed.
pub(crate) fn remove_lab(
    info: &LabInfo,
    lock: Option<&Flock<File>>,
    kill_leftovers: bool,
) -> Vec<String> {
    let names: Vec<String> = info
        .namespaces
        .all()
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut failures = Vec::new();
    if kill_leftovers {
        failures.extend(kill_processes_in(&names));
    }
    failures.extend(topology::remove_namespaces_locked(&names, lock));
    failures.extend(info.remove_files());
    if let Err(e) = info.unregister() {
        failures.push(e);
    }
    failures
}

/// Kill every process inside these namespaces (an orphaned role or scan of a dead lab
/// would go on measuring a network nobody runs).
fn kill_processes_in(namespaces: &[String]) -> Vec<String> {
    let existing = netns::list();
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let mut pids = Vec::new();
    for name in namespaces.iter().filter(|n| existing.contains(n)) {
        match netns::run("ip", &["netns", "pids", name], None) {
            Ok(out) => pids.extend(
                out.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                    .filter(|p| *p != me),
            ),
            Err(e) => return vec![e.to_string()],
        }
    }
    for pid in &pids {
        let _ = signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| state::ProcessStamp::of(*p).is_some()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    pids.iter()
        .filter(|p| state::ProcessStamp::of(**p).is_some())
        .map(|p| format!("process {p} of a stale lab does not die"))
        .collect()
}
