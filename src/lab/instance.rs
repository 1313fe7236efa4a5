//! A lab instance: state directory, CA, network, and the two roles (Internet-side servers,
//! censor). [`Lab`] runs the roles on threads of the calling process (tests, `lab demo`);
//! [`daemon`](super::daemon) runs them as processes that outlive `lab up`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use super::censor::{self, CensorStats};
use super::error::{LabError, LabResult};
use super::helper;
use super::internet::InternetServers;
use super::netns;
use super::scenario::Scenario;
use super::state::{self, CA_CERT_FILE, CA_KEY_FILE, LabInfo, ProcessStamp, SCENARIO_FILE};
use super::topology::{self, Topology};
use crate::servers::ca::LabCa;

/// How long a role may take to open its sockets.
pub const ROLE_START_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and under which id a lab runs.
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// Lab id (goes into namespace names); random when absent.
    pub id: Option<String>,
    /// State directory; `/run/censorprobe/lab-<id>` when absent.
    pub state_dir: Option<PathBuf>,
}

/// The parts of a lab that exist before its roles run. Dropping it removes them.
pub(crate) struct Prepared {
    pub info: LabInfo,
    pub topology: Option<Topology>,
    /// Whether the files, the registry entry (and maybe the directory) are ours to remove.
    registered: bool,
}

impl Prepared {
    /// Make the state directory (CA, scenario copy, state.json), register the lab with
    /// this process as its owner, and build the network.
    pub(crate) fn new(
        scenario: &Scenario,
        source: &Path,
        options: &LabOptions,
    ) -> LabResult<Prepared> {
        if !netns::is_root() {
            return Err(LabError::NotRoot);
        }
        let id = options.id.clone().unwrap_or_else(topology::random_id);
        topology::check_id(&id)?;
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| state::default_state_dir(&id));
        let state_dir_created = claim_state_dir(&state_dir)?;
        let mut info = LabInfo::new(&id, &state_dir, source, &scenario.lab.control_name);
        info.owner = Some(ProcessStamp::current()?);
        info.state_dir_created = state_dir_created;
        if let Err(e) = info.register() {
            if state_dir_created {
                let _ = std::fs::remove_dir(&state_dir);
            }
            return Err(e);
        }
        let mut prepared = Prepared {
            info,
            topology: None,
            registered: true,
        };
        let ca = LabCa::new(&format!("censorprobe lab {id} CA")).map_err(|e| ca_error(&e))?;
        ca.write_pem(&state_dir.join(CA_CERT_FILE))
            .map_err(|e| ca_error(&e))?;
        ca.write_key_pem(&state_dir.join(CA_KEY_FILE))
            .map_err(|e| ca_error(&e))?;
        helper::write_files(&prepared.info, &ca)?;
        write_file(&state_dir.join(SCENARIO_FILE), &scenario.to_toml(), 0o644)?;
        let mut names =
            String::from("# every name of the lab's scenario, for `censorprobe scan --targets`\n");
        for entry in &scenario.names {
            names.push_str(&entry.name);
            names.push('\n');
        }
        write_file(&state_dir.join(state::NAMES_FILE), &names, 0o644)?;
        prepared.info.write()?;
        prepared.topology = Some(Topology::create(&id, scenario)?);
        Ok(prepared)
    }

    /// Remove the network, the files the lab wrote and its registry entry; report what
    /// failed.
    pub(crate) fn remove(mut self) -> Vec<String> {
        self.remove_steps()
    }

    fn remove_steps(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(topology) = self.topology.take()
            && let Err(e) = topology.teardown()
        {
            failures.push(e.to_string());
        }
        if self.registered {
            self.registered = false;
            failures.extend(self.info.remove_files());
            if let Err(e) = self.info.unregister() {
                failures.push(e);
            }
        }
        failures
    }

    /// Keep everything (a daemonised lab: `lab down` removes it).
    pub(crate) fn persist(mut self) {
        if let Some(topology) = self.topology.take() {
            topology.persist();
        }
        self.registered = false;
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for failure in self.remove_steps() {
            eprintln!("censorprobe lab: cleanup: {failure}");
        }
    }
}

/// Make sure `dir` can hold a new lab's state: create it, or accept an existing empty
/// directory (a user's non-empty directory is refused: teardown would have to tell its
/// files from the lab's). Returns whether the directory was created.
fn claim_state_dir(dir: &Path) -> LabResult<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(LabError::StateDirInUse(dir.to_owned()))
            } else {
                Ok(false)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
            Ok(true)
        }
        Err(e) => Err(LabError::io(format!("read {}", dir.display()), e)),
    }
}

/// Write a lab file with these permissions (the token and keys are private).
pub(super) fn write_file(path: &Path, text: &str, mode: u32) -> LabResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| LabError::io(format!("write {}", path.display()), e))
}

/// Load the CA a lab wrote to its state directory.
pub fn load_ca(state_dir: &Path) -> LabResult<LabCa> {
    let read = |name: &str| {
        let path = state_dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| LabError::io(format!("read {}", path.display()), e))
    };
    LabCa::from_pem(&read(CA_CERT_FILE)?, &read(CA_KEY_FILE)?).map_err(|e| ca_error(&e))
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(|e| ca_error(&e))
fn ca_error(e: &crate::servers::ServerError) -> LabError {
    LabError::Ca(super::error::error_chain(e))
}

/// Run the Internet-side servers on the current thread (already in the Internet
/// namespace) until `stop` resolves. `ready` reports the outcome of binding.
pub fn run_internet_role(
    scenario: &Scenario,
    ca: LabCa,
    stop: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(LabResult<()>),
) -> LabResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lab-internet")
        .enable_all()
        .build()
        .map_err(|e| LabError::io("tokio runtime for the Internet side", e))?;
    runtime.block_on(async {
        match InternetServers::start(scenario, Arc::new(ca)).await {
            Ok(servers) => {
                ready(Ok(()));
                stop.await;
                servers.shutdown().await
            }
            Err(e) => {
                let message = e.to_string();
                ready(Err(e));
                Err(LabError::Servers(message))
            }
        }
    })
}

struct RoleThread<T> {
    name: &'static str,
    handle: JoinHandle<LabResult<T>>,
}

/// A lab whose roles run on threads of this process; torn down when dropped.
pub struct Lab {
    scenario: Scenario,
    prepared: Option<Prepared>,
    censor_stop: Arc<AtomicBool>,
    internet_stop: Option<tokio::sync::oneshot::Sender<()>>,
    censor: Option<RoleThread<CensorStats>>,
    internet: Option<RoleThread<()>>,
    /// The web-control helper process, once [`Lab::start_helper`] started it.
    helper: Option<std::process::Child>,
}

impl Lab {
    /// Bring a lab up for `scenario` (read from `source`, recorded in the state).
    pub fn start(scenario: Scenario, source: &Path, options: &LabOptions) -> LabResult<Lab> {
        let prepared = Prepared::new(&scenario, source, options)?;
        let mut lab = Lab {
            scenario,
            prepared: Some(prepared),
            censor_stop: Arc::new(AtomicBool::new(false)),
            internet_stop: None,
            censor: None,
            internet: None,
            helper: None,
        };
        lab.start_roles()?;
        Ok(lab)
    }

    fn start_roles(&mut self) -> LabResult<()> {
        let info = self.info().clone();
        let ca = load_ca(&info.state_dir)?;

        let (ready_tx, ready_rx) = mpsc::channel::<LabResult<()>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        self.internet_stop = Some(stop_tx);
        let scenario = self.scenario.clone();
        let namespace = info.namespaces.internet.clone();
        let tx = ready_tx.clone();
        let handle = spawn_role("lab-internet", move || {
            if let Err(e) = netns::enter(&namespace) {
                let _ = tx.send(Err(LabError::Servers(e.to_string())));
                return Err(e);
            }
            run_internet_role(
                &scenario,
                ca,
                async {
                    let _ = stop_rx.await;
                },
                move |r| {
                    let _ = tx.send(r);
                },
            )
        })?;
        self.internet = Some(RoleThread {
            name: "internet",
            handle,
        });
        wait_ready("internet", &ready_rx)?;

        let scenario = self.scenario.clone();
        let namespace = info.namespaces.censor.clone();
        let stop = Arc::clone(&self.censor_stop);
        let tx = ready_tx;
        let handle = spawn_role("lab-censor", move || {
            if let Err(e) = netns::enter(&namespace) {
                let _ = tx.send(Err(LabError::Censor(e.to_string())));
                return Err(e);
            }
            let result = censor::run(&scenario, &stop, || {
                let _ = tx.send(Ok(()));
            });
            if let Err(e) = &result {
                let _ = tx.send(Err(LabError::Censor(e.to_string())));
            }
            result
        })?;
        self.censor = Some(RoleThread {
            name: "censor",
            handle,
        });
        wait_ready("censor", &ready_rx)
    }

    /// Start the web-control helper in the helper namespace: `exe helper ...` (the
    /// censorprobe binary; see [`helper::helper_args`]), through `lab exec-child` so that
    /// the kernel kills it if this process dies without tearing the lab down. Call it
    /// from a thread that lives as long as the lab (the parent-death signal follows the
    /// thread that started the child). Returns once the helper accepts connections.
    pub fn start_helper(&mut self, exe: &Path) -> LabResult<()> {
        if self.helper.is_some() {
            return Ok(());
        }
        let info = self.info().clone();
        let mut args: Vec<std::ffi::OsString> = vec![
            "lab".into(),
            "exec-child".into(),
            "--parent-pid".into(),
            std::process::id().to_string().into(),
            "--".into(),
        ];
        args.extend(helper::helper_args(&info, self.scenario.web_step_timeout()));
        let mut child =
            helper::command(&info, exe, &args)?
                .spawn()
                .map_err(|e| LabError::RoleStart {
                    role: "helper".to_owned(),
                    message: format!("cannot run ip netns exec: {e}"),
                })?;
        if let Err(e) = helper::wait_listening(&info, &mut child, ROLE_START_TIMEOUT) {
            let _ = helper::stop(&mut child);
            return Err(e);
        }
        self.helper = Some(child);
        Ok(())
    }

    /// Whether [`Lab::start_helper`] started the helper.
    pub fn has_helper(&self) -> bool {
        self.helper.is_some()
    }

    pub fn info(&self) -> &LabInfo {
        &self.prepared.as_ref().expect("lab is up").info
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Run `f` on a thread inside the vantage point's namespace.
    pub fn in_vantage<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> LabResult<T> {
        netns::within(&self.info().namespaces.vantage, f)
    }

    /// Stop the roles and remove everything; report what failed.
    pub fn stop(mut self) -> LabResult<CensorStats> {
        let (stats, failures) = self.stop_steps();
        if failures.is_empty() {
            Ok(stats)
        } else {
            Err(LabError::Teardown { failures })
        }
    }

    fn stop_steps(&mut self) -> (CensorStats, Vec<String>) {
        let mut failures = Vec::new();
        let mut stats = CensorStats::default();
        if let Some(mut child) = self.helper.take()
            && let Err(e) = helper::stop(&mut child)
        {
            failures.push(e);
        }
        self.censor_stop.store(true, Ordering::Relaxed);
        drop(self.internet_stop.take());
        if let Some(role) = self.censor.take() {
            match join_role(role) {
                Ok(s) => stats = s,
                Err(e) => failures.push(e),
            }
        }
        if let Some(role) = self.internet.take()
            && let Err(e) = join_role(role)
        {
            failures.push(e);
        }
        if let Some(prepared) = self.prepared.take() {
            failures.extend(prepared.remove());
        }
        (stats, failures)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let (_, failures) = self.stop_steps();
        for failure in failures {
            eprintln!("censorprobe lab: teardown: {failure}");
        }
    }
}

fn spawn_role<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> LabResult<T> + Send + 'static,
) -> LabResult<JoinHandle<LabResult<T>>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|e| LabError::io(format!("spawn {name}"), e))
}

fn wait_ready(role: &str, ready: &mpsc::Receiver<LabResult<()>>) -> LabResult<()> {
    match ready.recv_timeout(ROLE_START_TIMEOUT) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(LabError::RoleStart {
            role: role.to_owned(),
            message: e.to_string(),
        }),
        Err(_) => Err(LabError::RoleStart {
            role: role.to_owned(),
            message: format!("not ready within {ROLE_START_TIMEOUT:?}"),
        }),
    }
}

fn join_role<T>(role: RoleThread<T>) -> Result<T, String> {
    match role.handle.join() {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{} role: {e}", role.name)),
        Err(_) => Err(format!("{} role panicked", role.name)),
    }
}
