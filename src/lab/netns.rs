//! Small helpers around network namespaces: running `ip`/`nft` commands, and running code
//! on a thread that has entered a namespace (sockets it creates live in that namespace).

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns};

use super::error::{LabError, LabResult};

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// Run a command to completion, feeding `stdin` if given; a non-zero exit is an error
/// carrying the command line and its stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> LabResult<String> {
    let command_line = || format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Command {
            command: command_line(),
            message: format!("cannot start: {e}"),
        })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes())
            .map_err(|e| LabError::Command {
                command: command_line(),
                message: format!("cannot write its input: {e}"),
            })?;
    }
    let output = child.wait_with_output().map_err(|e| LabError::Command {
        command: command_line(),
        message: e.to_string(),
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: command_line(),
            message: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// Run `ip -n NS -batch -` with the given lines (one `ip` command per line).
pub fn ip_batch(namespace: &str, lines: &[String]) -> LabResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut input = lines.join("\n");
    input.push('\n');
    run("ip", &["-n", namespace, "-batch", "-"], Some(&input)).map(drop)
}

/// Enter the network namespace `name` on the current thread.
pub fn enter(name: &str) -> LabResult<()> {
    let path = format!("{NETNS_DIR}/{name}");
    let handle = File::open(&path).map_err(|e| LabError::Namespace {
        namespace: name.to_owned(),
        message: format!("cannot open {path}: {e}"),
    })?;
    setns(&handle, CloneFlags::CLONE_NEWNET).map_err(|e| LabError::Namespace {
        namespace: name.to_owned(),
        message: format!("setns: {e}"),
    })
}

/// Run `f` on a fresh thread inside namespace `name` and return its result.
pub fn within<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> LabResult<T> {
    let owned = name.to_owned();
    std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || {
            enter(&owned)?;
            Ok(f())
        })
        .map_err(|e| LabError::io("cannot spawn a namespace thread", e))?
        .join()
        .map_err(|_| LabError::Namespace {
            namespace: name.to_owned(),
            message: "thread panicked".to_owned(),
        })?
}

/// Set sysctls (`net/ipv4/ip_forward` style paths under /proc/sys) inside a namespace.
pub fn sysctls(namespace: &str, settings: &[(&str, &str)]) -> LabResult<()> {
    let owned: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let ns = namespace.to_owned();
    within(namespace, move || -> LabResult<()> {
        for (key, value) in owned {
            let path = format!("/proc/sys/{key}");
            std::fs::write(&path, &value).map_err(|e| LabError::Namespace {
                namespace: ns.clone(),
                message: format!("cannot set {key} = {value}: {e}"),
            })?;
        }
        Ok(())
    })?
}

/// Names of the network namespaces that exist now.
pub fn list() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the process runs as root (the lab needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
