//! `lab demo`: bring a lab up from a scenario (the demo by default), scan every name from
//! the vantage point with the real binary and every stage on, compare the report with the
//! scenario's expectations, tear down.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::{LabError, LabResult};
use super::expect::{self, Comparison};
use super::instance::{Lab, LabOptions};
use super::scenario::{self, KeywordRule, Scenario};
use super::signals::StopSignals;
use super::stale;
use super::state::LabInfo;

/// The example report shipped in the repo: `lab demo --out` regenerates it; by default
/// the demo writes a fresh file in the temporary directory and leaves the checkout alone.
pub const EXAMPLE_REPORT: &str = "reports/examples/lab-demo.jsonl";

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

/// Probe timing for a lab: nothing in a lab is far away, so deadlines can be short, but
/// never shorter than the slowest server of the scenario; residual blocking is waited
/// out from just after the longest residual window of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabTiming {
    pub dns_timeout: Duration,
    pub dns_wait: Duration,
    pub connect_timeout: Duration,
    pub web_timeout: Duration,
    pub residual_wait: Duration,
    pub residual_recheck: Duration,
}

impl LabTiming {
    pub fn for_scenario(scenario: &Scenario) -> LabTiming {
        let longest_residual = scenario
            .http_rules
            .iter()
            .chain(&scenario.tls_rules)
            .filter_map(KeywordRule::longest_residual)
            .map(|r| Duration::from_secs(u64::from(r.secs)))
            .max()
            .unwrap_or(Duration::ZERO);
        LabTiming {
            dns_timeout: Duration::from_secs(1),
            dns_wait: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            web_timeout: scenario.web_step_timeout(),
            // A cap, reached only by a path that stays blocked: generous, so that a
            // target queued behind many residual windows on one path still waits them
            // out instead of being measured inside one.
            residual_wait: Duration::from_secs(60).max(longest_residual * 20),
            residual_recheck: Duration::from_secs(1).max(longest_residual + Duration::from_secs(1)),
        }
    }
}

fn duration_arg(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The `censorprobe scan` arguments that point a probe at a lab, every stage on, with
/// the lab's helper as its web control.
pub fn scan_args(info: &LabInfo, timing: &LabTiming, report: &Path) -> Vec<String> {
    let mut args = scan_args_without_web_control(info, timing, report);
    args.extend([
        "--web-control".to_owned(),
        info.web_control_url.clone(),
        "--web-control-token".to_owned(),
        info.web_control_token.display().to_string(),
        "--web-control-ca".to_owned(),
        info.ca_cert.display().to_string(),
    ]);
    args
}

/// The `censorprobe scan` arguments that point a probe at a lab, every stage on, no
/// web control.
pub fn scan_args_without_web_control(
    info: &LabInfo,
    timing: &LabTiming,
    report: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "scan",
        "--tests",
        "dns,http,tls",
        "--targets",
        &info.targets.display().to_string(),
        "--resolver",
        &info.resolver.to_string(),
        "--dns-sink",
        &info.sink.to_string(),
        "--control",
        &info.control_spec(),
        "--ca",
        &info.ca_cert.display().to_string(),
        "--control-name",
        &info.control_name,
        "--vantage",
        &format!("censorprobe-lab-{}", info.id),
        "--out",
        &report.display().to_string(),
        // The example report shows every observation, `ok` targets' too.
        "--observations",
        "full",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for (flag, value) in [
        ("--dns-timeout", timing.dns_timeout),
        ("--dns-wait", timing.dns_wait),
        ("--connect-timeout", timing.connect_timeout),
        ("--web-timeout", timing.web_timeout),
        ("--residual-wait", timing.residual_wait),
        ("--residual-recheck", timing.residual_recheck),
    ] {
        args.push(flag.to_owned());
        args.push(duration_arg(value));
    }
    args
}

/// What a demo run found, and how long each part took.
#[derive(Debug)]
pub struct DemoOutcome {
    /// Where the report went.
    pub report: PathBuf,
    pub comparison: Comparison,
    pub lab_up: Duration,
    pub scan: Duration,
    pub teardown: Duration,
}

impl DemoOutcome {
    pub fn total(&self) -> Duration {
        self.lab_up + self.scan + self.teardown
    }
}

/// Where the report goes: `report` (its directory created), or a new file in the
/// temporary directory.
fn report_path(report: Option<&Path>) -> LabResult<PathBuf> {
    let Some(report) = report else {
        let file = tempfile::Builder::new()
            .prefix("censorprobe-lab-demo-")
            .suffix(".jsonl")
            .tempfile()
            .map_err(|e| LabError::io("create a report file in the temporary directory", e))?;
        return file
            .keep()
            .map(|(_, path)| path)
            .map_err(|e| LabError::io("keep the report file", e.error));
    };
    if let Some(dir) = report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
    }
    std::path::absolute(report)
        .map_err(|e| LabError::io(format!("resolve {}", report.display()), e))
}

/// Run the demo: stale labs removed, lab up, `exe scan ...` inside the vantage namespace
/// (killed by the kernel if this process dies), lab down, compare. A stop signal
/// (`signals`) interrupts the scan and tears the lab down.
pub fn run(
    scenario_path: &Path,
    report: Option<&Path>,
    exe: &Path,
    options: &LabOptions,
    signals: &StopSignals,
) -> LabResult<DemoOutcome> {
    let scenario = Scenario::load(scenario_path)?;
    // A path of the user's is checked before the lab comes up; a file of our own is only
    // made once there is a scan to write it.
    let chosen_report = report.map(|r| report_path(Some(r))).transpose()?;
    let timing = LabTiming::for_scenario(&scenario);
    stale::clean_stale_labs_reporting();
    signals.check()?;
    let started = Instant::now();
    let mut lab = Lab::start(scenario.clone(), scenario_path, options)?;
    lab.start_helper(exe)?;
    let lab_up = started.elapsed();
    signals.check()?;
    let report = match chosen_report {
        Some(path) => path,
        None => report_path(None)?,
    };
    let info = lab.info().clone();
    eprintln!(
        "censorprobe lab: lab {} is up ({:.1} s); scanning {} names from {}",
        info.id,
        lab_up.as_secs_f64(),
        scenario.names.len(),
        info.namespaces.vantage
    );
    let scan_started = Instant::now();
    let status = Command::new("ip")
        .args(["netns", "exec", &info.namespaces.vantage])
        .arg(exe)
        .args(["lab", "exec-child", "--parent-pid"])
        .arg(std::process::id().to_string())
        .arg("--")
        .args(scan_args(&info, &timing, &report))
        .stdin(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            signals.watch_child(child.id());
            let status = child.wait();
            signals.forget_child();
            status
        });
    let scan = scan_started.elapsed();
    let teardown_started = Instant::now();
    lab.stop()?;
    let teardown = teardown_started.elapsed();
    if signals.received().is_some() {
        eprintln!(
            "censorprobe lab: what the scan wrote before it stopped is in {}",
            report.display()
        );
    }
    signals.check()?;
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
    Ok(DemoOutcome {
        comparison: expect::compare(&scenario, &text),
        report,
        lab_up,
        scan,
        teardown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_follows_the_scenario() {
        let demo = Scenario::load(&default_scenario()).unwrap();
        let timing = LabTiming::for_scenario(&demo);
        let slowest = demo
            .servers
            .iter()
            .filter_map(|s| s.delay_ms)
            .max()
            .unwrap();
        assert!(timing.web_timeout > Duration::from_millis(slowest));
        let longest = demo
            .http_rules
            .iter()
            .chain(&demo.tls_rules)
            .filter_map(KeywordRule::longest_residual)
            .map(|r| u64::from(r.secs))
            .max()
            .unwrap();
        assert!(timing.residual_recheck > Duration::from_secs(longest));
        assert!(timing.residual_wait > timing.residual_recheck);
    }
}
