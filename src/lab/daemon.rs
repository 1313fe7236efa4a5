//! A lab that outlives the command that started it: `lab up` prepares the network and
//! state, then starts each role as `ip netns exec NS censorprobe lab serve --role R
//! --state DIR` (the current binary), waits for it to report ready, and records the pids;
//! `lab down` stops them and removes everything; `lab status` reads the state. The
//! web-control helper runs as a third process, `censorprobe helper ...` in the helper
//! namespace ([`super::helper`]).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SigSet, Signal};
use nix::unistd::Pid;

use super::censor;
use super::error::{LabError, LabResult};
use super::helper;
use super::instance::{self, LabOptions, Prepared, ROLE_START_TIMEOUT};
use super::netns;
use super::scenario::Scenario;
use super::signals::StopSignals;
use super::stale;
use super::state::{self, LabInfo, Liveness, ProcessStamp, RolePid, SCENARIO_FILE};
use super::topology;

/// The two processes of a daemonised lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The Internet side: resolver, `DoT`, web servers.
    Internet,
    /// The censor.
    Censor,
    /// The web-control helper (`censorprobe helper`, not a `lab serve` role).
    Helper,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Internet => "internet",
            Role::Censor => "censor",
            Role::Helper => HELPER_ROLE,
        }
    }

    fn namespace(self, info: &LabInfo) -> &str {
        match self {
            Role::Internet => &info.namespaces.internet,
            Role::Censor => &info.namespaces.censor,
            Role::Helper => &info.namespaces.helper,
        }
    }
}

fn ready_file(state_dir: &Path, role: Role) -> PathBuf {
    state_dir.join(format!("{}.ready", role.as_str()))
}

fn log_file(state_dir: &Path, role: Role) -> PathBuf {
    state_dir.join(format!("{}.log", role.as_str()))
}

/// Bring a lab up with its roles as daemons running `exe` (normally the current binary).
/// Stale labs are removed first; a stop signal while the roles start tears down what
/// was built.
pub fn up(
    scenario_path: &Path,
    options: &LabOptions,
    exe: &Path,
    signals: &StopSignals,
) -> LabResult<LabInfo> {
    let scenario = Scenario::load(scenario_path)?;
    stale::clean_stale_labs_reporting();
    let prepared = Prepared::new(&scenario, scenario_path, options)?;
    let mut children: Vec<(Role, Child)> = Vec::new();
    let helper_timeout = scenario.web_step_timeout();
    let started = signals
        .check()
        .and_then(|()| start_roles(&prepared.info, exe, helper_timeout, &mut children, signals));
    if let Err(e) = started {
        for (_, child) in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        return Err(e);
    }
    let mut info = prepared.info.clone();
    info.pids = children
        .iter()
        .map(|(role, child)| {
            let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
            RolePid {
                role: role.as_str().to_owned(),
                pid,
                start_time: ProcessStamp::of(pid).map(|p| p.start_time),
            }
        })
        .collect();
    if let Err(e) = info.write() {
        for (_, child) in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        return Err(e);
    }
    prepared.persist();
    Ok(info)
}

fn start_roles(
    info: &LabInfo,
    exe: &Path,
    helper_timeout: Duration,
    children: &mut Vec<(Role, Child)>,
    signals: &StopSignals,
) -> LabResult<()> {
    for role in [Role::Internet, Role::Censor] {
        let log_path = log_file(&info.state_dir, role);
        let log = File::create(&log_path)
            .map_err(|e| LabError::io(format!("create {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| LabError::io("duplicate log handle", e))?;
        let child = Command::new("ip")
            .args(["netns", "exec", role.namespace(info)])
            .arg(exe)
            .args(["lab", "serve", "--role", role.as_str(), "--state"])
            .arg(&info.state_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C meant for `lab up` does not stop the lab.
            .process_group(0)
            .spawn()
            .map_err(|e| LabError::RoleStart {
                role: role.as_str().to_owned(),
                message: format!("cannot run ip netns exec: {e}"),
            })?;
        children.push((role, child));
        let (_, child) = children.last_mut().expect("just pushed");
        wait_ready_file(info, role, child, signals)?;
    }
    signals.check()?;
    let mut child = helper::command(info, exe, &helper::helper_args(info, helper_timeout))?
        // Its own process group, as the roles'.
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::RoleStart {
            role: HELPER_ROLE.to_owned(),
            message: format!("cannot run ip netns exec: {e}"),
        })?;
    let ready = helper::wait_listening(info, &mut child, ROLE_START_TIMEOUT);
    children.push((Role::Helper, child));
    ready?;
    signals.check()
}

/// The helper's name among a lab's recorded processes.
pub const HELPER_ROLE: &str = "helper";

fn wait_ready_file(
    info: &LabInfo,
    role: Role,
    child: &mut Child,
    signals: &StopSignals,
) -> LabResult<()> {
    let deadline = Instant::now() + ROLE_START_TIMEOUT;
    let ready = ready_file(&info.state_dir, role);
    loop {
        signals.check()?;
        if ready.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log_file(&info.state_dir, role)).unwrap_or_default();
            return Err(LabError::RoleStart {
                role: role.as_str().to_owned(),
                message: format!("exited with {status}: {}", log.trim()),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::RoleStart {
                role: role.as_str().to_owned(),
                message: format!("not ready within {ROLE_START_TIMEOUT:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The hidden `lab serve` entry point: run one role of the lab in `state_dir` until
/// SIGTERM or SIGINT. The process must already be in the role's namespace.
pub fn serve(role: Role, state_dir: &Path) -> LabResult<()> {
    // Block the stop signals in every thread; one thread waits for them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|e| LabError::io("block signals", e.into()))?;
    let scenario = Scenario::load(&state_dir.join(SCENARIO_FILE))?;
    let ready_path = ready_file(state_dir, role);
    let mark_ready = {
        let path = ready_path.clone();
        move || {
            let _ = std::fs::write(&path, std::process::id().to_string());
        }
    };
    let result = match role {
        Role::Internet => {
            let ca = instance::load_ca(state_dir)?;
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let _ = signals.wait();
                let _ = stop_tx.send(());
            });
            instance::run_internet_role(
                &scenario,
                ca,
                async {
                    let _ = stop_rx.await;
                },
                |r| {
                    if r.is_ok() {
                        mark_ready();
                    }
                },
            )
        }
        Role::Helper => Err(LabError::RoleStart {
            role: HELPER_ROLE.to_owned(),
            message: "the helper is `censorprobe helper`, not a lab role".to_owned(),
        }),
        Role::Censor => {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let _ = signals.wait();
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            censor::run(&scenario, &stop, mark_ready).map(|stats| {
                eprintln!("censor stopped: {stats:?}");
            })
        }
    };
    let _ = std::fs::remove_file(&ready_path);
    result
}

/// Whether process `pid` is a `lab serve` of the lab in `state_dir`, or its helper (whose
/// token file is in it) (guards against pid reuse before signalling it).
fn is_our_role(pid: i32, state_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let dir = state_dir.as_os_str().as_encoded_bytes();
    let token = state_dir.join(super::state::WEB_CONTROL_TOKEN_FILE);
    let token = token.as_os_str().as_encoded_bytes();
    (args.contains(&b"serve".as_slice()) && args.contains(&dir))
        || (args.contains(&HELPER_ROLE.as_bytes()) && args.contains(&token))
}

fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name; a zombie is gone.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Stop the roles of a lab and remove everything it created (only the files it wrote in
/// its state directory).
pub fn down(info: &LabInfo) -> LabResult<()> {
    let state_dir = &info.state_dir;
    let mut failures = Vec::new();
    for role in &info.pids {
        if !is_alive(role.pid) || !is_our_role(role.pid, state_dir) {
            continue;
        }
        let pid = Pid::from_raw(role.pid);
        let _ = signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_alive(role.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if is_alive(role.pid) {
            let _ = signal::kill(pid, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(50));
            if is_alive(role.pid) {
                failures.push(format!(
                    "{} role (pid {}) does not stop",
                    role.role, role.pid
                ));
            }
        }
    }
    let lock = topology::host_lock();
    if let Err(e) = &lock {
        failures.push(e.to_string());
    }
    // A stale lab may have left orphans in its namespaces; a live one has only its roles.
    let is_stale = info.liveness() == Liveness::Dead;
    failures.extend(stale::remove_lab(info, lock.as_ref().ok(), is_stale));
    drop(lock);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(LabError::Teardown { failures })
    }
}

/// How a lab is doing, for `lab status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LabStatus {
    pub info: LabInfo,
    pub namespaces_present: Vec<String>,
    pub roles_running: Vec<String>,
    /// Whether the lab's owner or roles run: `dead` means stale (nothing will tear it
    /// down; the next `lab up` or `lab demo` removes it).
    pub liveness: Liveness,
    pub stale: bool,
    pub healthy: bool,
}

pub fn status(info: LabInfo) -> LabStatus {
    let state_dir = &info.state_dir;
    let existing = netns::list();
    let namespaces_present: Vec<String> = info
        .namespaces
        .all()
        .iter()
        .filter(|n| existing.iter().any(|e| e == *n))
        .map(|n| (*n).to_owned())
        .collect();
    let roles_running: Vec<String> = info
        .pids
        .iter()
        .filter(|r| is_alive(r.pid) && is_our_role(r.pid, state_dir))
        .map(|r| r.role.clone())
        .collect();
    let liveness = info.liveness();
    // A lab without role processes runs its roles on threads of its owner.
    let roles_healthy = if info.pids.is_empty() {
        liveness == Liveness::Alive
    } else {
        roles_running.len() == info.pids.len()
    };
    let healthy = namespaces_present.len() == info.namespaces.all().len()
        && liveness == Liveness::Alive
        && roles_healthy;
    LabStatus {
        info,
        namespaces_present,
        roles_running,
        liveness,
        stale: liveness == Liveness::Dead,
        healthy,
    }
}

/// The labs that are up (or were, and are stale).
pub fn labs_up() -> Vec<LabInfo> {
    state::known_labs()
}
