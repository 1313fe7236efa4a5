//! The lab's web-control helper: `censorprobe helper` run in the helper namespace (see
//! [`super::plan`]), out of the censor's reach, so that a scan of the lab can ask it how
//! each target looks from an uncensored network (`scan --web-control`).
//!
//! The lab writes what the helper needs into its state directory before starting it: a
//! bearer token, and a certificate for [`plan::HELPER_IP`] issued by the lab CA (the probe
//! trusts the CA with `--web-control-ca`). The helper may contact the lab's addresses
//! (`--allow` the lab range: they are benchmarking space, which a helper refuses by
//! default) and resolves with the resolver of its own network, [`plan::HELPER_RESOLVER_IP`].

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::error::{LabError, LabResult};
use super::netns;
use super::plan;
use super::state::{LabInfo, WEB_CONTROL_CERT_FILE, WEB_CONTROL_KEY_FILE};
use crate::servers::ca::LabCa;

/// The helper's address, as the scan's `--web-control` URL names it.
pub fn url() -> String {
    format!("https://{}:{}", plan::HELPER_IP, plan::HELPER_PORT)
}

/// Where the helper listens.
pub fn listen_address() -> SocketAddr {
    SocketAddr::from((plan::HELPER_IP, plan::HELPER_PORT))
}

/// Write the helper's token (owner-only) and its certificate and key, issued by `ca`,
/// into the lab's state directory.
pub fn write_files(info: &LabInfo, ca: &LabCa) -> LabResult<()> {
    let token = hex::encode(rand::random::<[u8; 32]>());
    super::instance::write_file(&info.web_control_token, &format!("{token}\n"), 0o600)?;
    let (chain, key) = ca
        .issue(&[plan::HELPER_NAME], &[IpAddr::V4(plan::HELPER_IP)])
        .map_err(|e| LabError::Ca(super::error::error_chain(&e)))?;
    let chain_pem = pem::encode_many(
        &chain
            .iter()
            .map(|cert| pem::Pem::new("CERTIFICATE", cert.as_ref()))
            .collect::<Vec<_>>(),
    );
    let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", key.secret_der()));
    super::instance::write_file(
        &info.state_dir.join(WEB_CONTROL_CERT_FILE),
        &chain_pem,
        0o644,
    )?;
    super::instance::write_file(&info.state_dir.join(WEB_CONTROL_KEY_FILE), &key_pem, 0o600)
}

/// The `censorprobe` arguments that run the lab's helper (written against the helper's
/// command line: `helper --listen --token-file --cert --key --ca --allow --resolver
/// --timeout`). `step_timeout` bounds each of its steps (connect, handshake, response):
/// nothing in a lab is far away, but a slow server must not look down.
pub fn helper_args(info: &LabInfo, step_timeout: Duration) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["helper", "--listen", &listen_address().to_string()]
        .iter()
        .map(OsString::from)
        .collect();
    let path_args: [(&str, PathBuf); 4] = [
        ("--token-file", info.web_control_token.clone()),
        ("--cert", info.state_dir.join(WEB_CONTROL_CERT_FILE)),
        ("--key", info.state_dir.join(WEB_CONTROL_KEY_FILE)),
        // The lab's servers present certificates of the lab CA.
        ("--ca", info.ca_cert.clone()),
    ];
    for (flag, path) in path_args {
        args.push(flag.into());
        args.push(path.into());
    }
    for (flag, value) in [
        ("--allow", plan::LAB_RANGE.to_owned()),
        (
            "--resolver",
            SocketAddr::from((plan::HELPER_RESOLVER_IP, 53)).to_string(),
        ),
        ("--timeout", format!("{}ms", step_timeout.as_millis())),
    ] {
        args.push(flag.into());
        args.push(value.into());
    }
    args
}

/// `ip netns exec HELPER-NS EXE ARGS` with the helper's log as its output.
pub fn command(info: &LabInfo, exe: &Path, args: &[OsString]) -> LabResult<Command> {
    let log_path = info.state_dir.join(HELPER_LOG_FILE);
    let log = std::fs::File::create(&log_path)
        .map_err(|e| LabError::io(format!("create {}", log_path.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| LabError::io("duplicate log handle", e))?;
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &info.namespaces.helper])
        .arg(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    Ok(command)
}

/// The helper's log in the state directory.
pub const HELPER_LOG_FILE: &str = "helper.log";

/// Wait until the helper accepts connections on its address (tried from its own
/// namespace), or fail with its log if it exits or takes longer than `limit`.
pub fn wait_listening(info: &LabInfo, child: &mut Child, limit: Duration) -> LabResult<()> {
    let deadline = Instant::now() + limit;
    loop {
        let listening = netns::within(&info.namespaces.helper, || {
            TcpStream::connect_timeout(&listen_address(), Duration::from_millis(200)).is_ok()
        })?;
        if listening {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log =
                std::fs::read_to_string(info.state_dir.join(HELPER_LOG_FILE)).unwrap_or_default();
            return Err(LabError::RoleStart {
                role: "helper".to_owned(),
                message: format!("exited with {status}: {}", log.trim()),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::RoleStart {
                role: "helper".to_owned(),
                message: format!("not listening on {} within {limit:?}", listen_address()),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stop a helper this process started (SIGTERM, then SIGKILL), and reap it.
pub fn stop(child: &mut Child) -> Result<(), String> {
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child
        .wait()
        .map(drop)
        .map_err(|e| format!("helper (pid {}) does not stop: {e}", child.id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_is_told_its_address_files_allow_list_and_resolver() {
        let info = LabInfo::new(
            "t1",
            Path::new("/run/censorprobe/lab-t1"),
            Path::new("demo.toml"),
            "control.lab.example",
        );
        let args: Vec<String> = helper_args(&info, Duration::from_secs(3))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "helper",
                "--listen",
                "198.19.0.80:443",
                "--token-file",
                "/run/censorprobe/lab-t1/web-control-token",
                "--cert",
                "/run/censorprobe/lab-t1/web-control-cert.pem",
                "--key",
                "/run/censorprobe/lab-t1/web-control-key.pem",
                "--ca",
                "/run/censorprobe/lab-t1/ca.pem",
                "--allow",
                "198.18.0.0/15",
                "--resolver",
                "198.19.0.55:53",
                "--timeout",
                "3000ms",
            ]
        );
        assert_eq!(url(), "https://198.19.0.80:443");
        assert_eq!(info.web_control_url, url());
    }

    #[test]
    fn the_token_is_private_and_the_certificate_is_for_the_helper_address() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let info = LabInfo::new("t2", dir.path(), Path::new("demo.toml"), "c.example");
        let ca = LabCa::new("test CA").unwrap();
        write_files(&info, &ca).unwrap();
        let token = std::fs::read_to_string(&info.web_control_token).unwrap();
        assert_eq!(token.trim().len(), 64);
        let mode = std::fs::metadata(&info.web_control_token)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let chain = std::fs::read(dir.path().join(WEB_CONTROL_CERT_FILE)).unwrap();
        let certs = pem::parse_many(&chain).unwrap();
        assert_eq!(certs.len(), 2, "leaf and the lab CA");
        let (_, leaf) = x509_parser::parse_x509_certificate(certs[0].contents()).unwrap();
        let sans = leaf.subject_alternative_name().unwrap().unwrap();
        let text = format!("{:?}", sans.value.general_names);
        assert!(text.contains("helper.lab.example"), "{text}");
        assert!(text.contains("[198, 19, 0, 80]"), "{text}");
        let key = std::fs::read_to_string(dir.path().join(WEB_CONTROL_KEY_FILE)).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    }
}
