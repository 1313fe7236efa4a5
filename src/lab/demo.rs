//! `lab demo`: bring a lab up from a scenario (the demo by default), scan every name from
//! the vantage point with the real binary and every stage on, compare the report with the
//! scenario's expectations, tear down.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::{LabError, LabResult};
use super::expect::{self, Comparison};
use super::instance::{Lab, LabOptions};
use super::scenario::{self, Scenario};
use super::state::LabInfo;

/// The report `lab demo` writes by default (the example report shipped in the repo).
pub const DEFAULT_REPORT: &str = "reports/examples/lab-demo.jsonl";

/// The demo scenario: `targets/lab/demo.toml` under the working directory, else the one
/// of the source tree censorprobe was built from.
pub fn default_scenario() -> PathBuf {
    let local = Path::new("targets/lab/demo.toml");
    if local.is_file() {
        local.to_owned()
    } else {
        scenario::scenario_dir().join("demo.toml")
    }
}

/// The `censorprobe scan` arguments that point a probe at a lab.
pub fn scan_args(info: &LabInfo, report: &Path) -> Vec<String> {
    vec![
        "scan".to_owned(),
        "--targets".to_owned(),
        info.targets.display().to_string(),
        "--resolver".to_owned(),
        info.resolver.to_string(),
        "--dns-sink".to_owned(),
        info.sink.to_string(),
        "--control".to_owned(),
        info.control_spec(),
        "--ca".to_owned(),
        info.ca_cert.display().to_string(),
        "--control-name".to_owned(),
        info.control_name.clone(),
        "--vantage".to_owned(),
        format!("censorprobe-lab-{}", info.id),
        "--out".to_owned(),
        report.display().to_string(),
    ]
}

/// Run the demo: lab up, `exe scan ...` inside the vantage namespace, compare, lab down.
pub fn run(scenario_path: &Path, report: &Path, exe: &Path) -> LabResult<Comparison> {
    let scenario = Scenario::load(scenario_path)?;
    if let Some(dir) = report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
    }
    let report = std::path::absolute(report)
        .map_err(|e| LabError::io(format!("resolve {}", report.display()), e))?;
    let lab = Lab::start(scenario.clone(), scenario_path, &LabOptions::default())?;
    let info = lab.info().clone();
    let status = Command::new("ip")
        .args(["netns", "exec", &info.namespaces.vantage])
        .arg(exe)
        .args(scan_args(&info, &report))
        .stdin(Stdio::null())
        .status();
    lab.stop()?;
    let status = status.map_err(|e| LabError::Command {
        command: format!(
            "ip netns exec {} {} scan",
            info.namespaces.vantage,
            exe.display()
        ),
        message: e.to_string(),
    })?;
    if !status.success() {
        return Err(LabError::Command {
            command: format!("{} scan", exe.display()),
            message: format!("the scan of the lab failed ({status})"),
        });
    }
    let text = std::fs::read_to_string(&report)
        .map_err(|e| LabError::io(format!("read {}", report.display()), e))?;
    Ok(expect::compare(&scenario, &text))
}
