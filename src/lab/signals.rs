//! Stop signals for the commands that bring a lab up and own it (`lab demo`, `lab up`
//! while it starts the roles): SIGINT, SIGTERM and SIGHUP are blocked and waited for on
//! a watcher thread, which records them and interrupts the running child (the scan); the
//! command then tears the lab down itself. A child that must not outlive the command
//! (the scan, which would otherwise go on writing verdicts about a dead lab) is started
//! through `lab exec-child`, which asks the kernel to kill it when its parent dies
//! (`PR_SET_PDEATHSIG`), even after a `kill -9`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::prctl;
use nix::sys::signal::{self, SigSet, Signal};
use nix::unistd::{Pid, getppid};

use super::error::{LabError, LabResult};
use super::state::ProcessStamp;

/// How long an interrupted child may take to write what it has before it is killed.
pub const CHILD_GRACE: Duration = Duration::from_secs(5);

/// The signals that stop a lab command.
pub fn stop_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

/// Stop signals received so far, and the child they interrupt.
#[derive(Debug, Clone)]
pub struct StopSignals {
    received: Arc<AtomicI32>,
    child: Arc<Mutex<Option<ProcessStamp>>>,
}

impl StopSignals {
    /// Block the stop signals in this thread, and so in every thread it starts from now
    /// on (call it before any), and wait for them on a watcher thread.
    pub fn install() -> LabResult<StopSignals> {
        let set = stop_set();
        set.thread_block()
            .map_err(|e| LabError::io("block the stop signals", e.into()))?;
        let signals = StopSignals {
            received: Arc::new(AtomicI32::new(0)),
            child: Arc::new(Mutex::new(None)),
        };
        let watcher = signals.clone();
        std::thread::Builder::new()
            .name("lab-signals".to_owned())
            .spawn(move || {
                while let Ok(signal) = set.wait() {
                    watcher.received.store(signal as i32, Ordering::SeqCst);
                    watcher.interrupt_child();
                }
            })
            .map_err(|e| LabError::io("spawn the signal watcher", e))?;
        Ok(signals)
    }

    /// The first stop signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            n => Signal::try_from(n).ok(),
        }
    }

    /// The error a command returns once interrupted, if it was.
    pub fn check(&self) -> LabResult<()> {
        match self.received() {
            None => Ok(()),
            Some(signal) => Err(LabError::Interrupted {
                signal: signal.as_str().to_owned(),
            }),
        }
    }

    /// From now on a stop signal interrupts `pid` (at once if one came already).
    pub fn watch_child(&self, pid: u32) {
        let stamp = i32::try_from(pid).ok().and_then(ProcessStamp::of);
        *self.child.lock().expect("child lock") = stamp;
        if self.received().is_some() {
            self.interrupt_child();
        }
    }

    pub fn forget_child(&self) {
        *self.child.lock().expect("child lock") = None;
    }

    /// SIGINT to the child (a scan writes what it has and its summary), SIGKILL if it is
    /// still there after [`CHILD_GRACE`].
    fn interrupt_child(&self) {
        let Some(child) = *self.child.lock().expect("child lock") else {
            return;
        };
        if !child.is_alive() {
            return;
        }
        let pid = Pid::from_raw(child.pid);
        let _ = signal::kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + CHILD_GRACE;
        while child.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.is_alive() {
            let _ = signal::kill(pid, Signal::SIGKILL);
        }
    }
}

/// The hidden `lab exec-child`: become `censorprobe ARGS` (same process), killed by the
/// kernel when the process `parent_pid` that started it dies. Returns only on failure.
pub fn exec_child(parent_pid: i32, args: &[OsString]) -> LabError {
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGKILL) {
        return LabError::io("set the parent-death signal", e.into());
    }
    // The parent may have died before the line above: then nobody waits for us.
    if getppid().as_raw() != parent_pid {
        return LabError::Interrupted {
            signal: "the exit of its parent".to_owned(),
        };
    }
    // Blocked signals survive exec: the parent blocked the stop signals.
    if let Err(e) = stop_set().thread_unblock() {
        return LabError::io("unblock the stop signals", e.into());
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return LabError::io("find the censorprobe binary", e),
    };
    let error = Command::new(&exe).args(args).exec();
    LabError::io(format!("exec {}", exe.display()), error)
}
