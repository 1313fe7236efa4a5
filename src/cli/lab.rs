//! `censorprobe lab ...`: bring labs up and down, show them, run the demo, generate
//! scenarios; the hidden subcommands the lab's own processes run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::EXIT_INTERRUPTED;
use crate::lab::daemon::{self, Role};
use crate::lab::{LabError, LabInfo, LabOptions, demo, generate, signals, state};

/// `censorprobe lab ...`
#[derive(Debug, Clone, Subcommand)]
pub enum LabCommand {
    /// Bring a lab up from a scenario file and leave it running (needs root).
    Up {
        /// Scenario file (see targets/lab/demo.toml).
        scenario: PathBuf,
        /// Lab id, used in namespace names (cp-ID-vp, cp-ID-censor, cp-ID-net); random
        /// when absent.
        #[arg(long)]
        id: Option<String>,
        /// State directory, new or empty (default /run/censorprobe/lab-ID).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Stop a lab and remove everything it created.
    Down {
        /// Lab id (default: the only lab that is up).
        #[arg(long, conflicts_with_all = ["state", "all"])]
        id: Option<String>,
        /// State directory of the lab.
        #[arg(long, conflicts_with = "all")]
        state: Option<PathBuf>,
        /// Every lab that is up.
        #[arg(long)]
        all: bool,
    },
    /// Show the labs that are up: namespaces, roles, addresses, CA, probe options.
    Status {
        #[arg(long, conflicts_with = "state")]
        id: Option<String>,
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring up the demo lab, scan it, compare with the expectations, tear down.
    Demo {
        /// Scenario (default targets/lab/demo.toml).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Report path (default: a new file in the temporary directory; `--out
        /// reports/examples/lab-demo.jsonl` regenerates the example shipped in the repo).
        #[arg(long, alias = "report")]
        out: Option<PathBuf>,
        /// Lab id (namespace names); random when absent.
        #[arg(long)]
        id: Option<String>,
        /// State directory (default /run/censorprobe/lab-ID).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Write a synthetic scenario with N names and a known mix of behaviours.
    Gen {
        /// Number of names.
        n: usize,
        /// Seed of the mix.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How long residual censorship lasts after each HTTP/TLS match (GFW: 90-180 s);
        /// 0: none.
        #[arg(long, default_value_t = 90)]
        residual_secs: u32,
        /// Number of web servers (addresses) the names share.
        #[arg(long, default_value_t = generate::DEFAULT_SHARED_SERVERS)]
        servers: u8,
        /// Kinds of names and their weights, `KIND=WEIGHT,...` (`open`, `dns_injected`,
        /// `dns_hijack`, `http_reset`, `tls_reset`, `http_blackhole`, `tls_blackhole`,
        /// `http_tls_reset`, `dns_injected_http_reset`, `slow`, `nxdomain`).
        #[arg(long, default_value_t = generate::Mix::default())]
        mix: generate::Mix,
        /// Output file (default stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run one role of a lab inside its namespace (started by `lab up`).
    #[command(hide = true)]
    Serve {
        #[arg(long, value_enum)]
        role: RoleArg,
        #[arg(long)]
        state: PathBuf,
    },
    /// Become `censorprobe ARGS`, killed when process PARENT dies (started by `lab demo`).
    #[command(hide = true)]
    ExecChild {
        #[arg(long)]
        parent_pid: i32,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// `--role` of `lab serve` (the command line's face of [`Role`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// The Internet side: resolver, `DoT`, web servers.
    Internet,
    /// The censor.
    Censor,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Internet => Role::Internet,
            RoleArg::Censor => Role::Censor,
        }
    }
}

/// The exit status for a lab error: interrupted, or a user's error (status 2, as for
/// every other error the binary reports).
fn interrupted_or(error: LabError) -> anyhow::Result<ExitCode> {
    if let LabError::Interrupted { .. } = error {
        eprintln!("censorprobe lab: {error}");
        Ok(ExitCode::from(EXIT_INTERRUPTED))
    } else {
        Err(error.into())
    }
}

/// Run a `lab` subcommand.
pub(super) fn run_lab(cmd: LabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabCommand::Up {
            scenario,
            id,
            state,
        } => run_up(&scenario, id, state),
        LabCommand::Down { id, state, all } => run_down(id, state, all),
        LabCommand::Status { id, state, json } => run_status(id, state, json),
        LabCommand::Demo {
            scenario,
            out,
            id,
            state,
        } => run_demo(scenario, out.as_deref(), id, state),
        LabCommand::Gen {
            n,
            seed,
            residual_secs,
            servers,
            mix,
            out,
        } => run_gen(
            &generate::GenOptions {
                n,
                seed,
                residual_secs,
                shared_servers: servers,
                mix,
            },
            out.as_deref(),
        ),
        LabCommand::Serve { role, state } => {
            // Logging is set up by the command line (no colours: the log is a file).
            daemon::serve(role.into(), &state)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::ExecChild { parent_pid, args } => {
            Err(signals::exec_child(parent_pid, &args).into())
        }
    }
}

/// `lab up`: bring a lab up and print where it is.
fn run_up(scenario: &Path, id: Option<String>, state: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the censorprobe binary")?;
    let signals = signals::StopSignals::install()?;
    let options = LabOptions {
        id,
        state_dir: state,
    };
    match daemon::up(scenario, &options, &exe, &signals) {
        Ok(info) => {
            print_info(&info);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => interrupted_or(e),
    }
}

/// `lab down`: stop the named lab (or every lab); failure if one could not be removed.
fn run_down(id: Option<String>, state: Option<PathBuf>, all: bool) -> anyhow::Result<ExitCode> {
    let labs = if all {
        daemon::labs_up()
    } else {
        vec![select_lab(id, state)?]
    };
    let mut failed = false;
    for info in labs {
        match daemon::down(&info) {
            Ok(()) => eprintln!("lab {} is down", info.id),
            Err(e) => {
                failed = true;
                eprintln!("censorprobe: lab in {}: {e}", info.state_dir.display());
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `lab status`: the labs and their health; failure if one is not healthy.
fn run_status(id: Option<String>, state: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let labs = if id.is_some() || state.is_some() {
        vec![select_lab(id, state)?]
    } else {
        daemon::labs_up()
    };
    if labs.is_empty() && !json {
        println!("no lab is up");
    }
    let mut all_healthy = true;
    let mut statuses = Vec::new();
    for info in labs {
        let status = daemon::status(info);
        all_healthy &= status.healthy;
        statuses.push(status);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        for status in &statuses {
            print_info(&status.info);
            let health = match (status.healthy, status.liveness) {
                (true, _) => "ok",
                (false, state::Liveness::Dead) => {
                    "STALE: its owner and roles are gone; `lab down --id ID`, the next `lab up` or `lab demo` removes it"
                }
                (false, state::Liveness::Unknown) => {
                    "UNKNOWN: no owner recorded (a lab of an older version)"
                }
                (false, state::Liveness::Alive) => "DEGRADED",
            };
            println!(
                "  health:     {health} (namespaces {}/3, roles running: {})",
                status.namespaces_present.len(),
                status.roles_running.join(", ")
            );
        }
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `lab demo`: up, scan, compare, down; failure unless every expectation holds.
fn run_demo(
    scenario: Option<PathBuf>,
    out: Option<&Path>,
    id: Option<String>,
    state: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let scenario = scenario.unwrap_or_else(demo::default_scenario);
    let exe = std::env::current_exe().context("cannot find the censorprobe binary")?;
    let signals = signals::StopSignals::install()?;
    let options = LabOptions {
        id,
        state_dir: state,
    };
    let outcome = match demo::run(&scenario, out, &exe, &options, &signals) {
        Ok(outcome) => outcome,
        Err(e) => return interrupted_or(e),
    };
    println!("scenario: {}", scenario.display());
    println!("report:   {}", outcome.report.display());
    println!();
    print!("{}", outcome.comparison);
    println!(
        "time: {:.1} s (lab up {:.1} s, scan {:.1} s, teardown {:.1} s)",
        outcome.total().as_secs_f64(),
        outcome.lab_up.as_secs_f64(),
        outcome.scan.as_secs_f64(),
        outcome.teardown.as_secs_f64()
    );
    Ok(if outcome.comparison.is_perfect() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `lab gen`: write a synthetic scenario.
fn run_gen(options: &generate::GenOptions, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let text = generate::generate_with(options).to_toml();
    match out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The lab named by `--id` (a valid id, else a user error) or `--state`, or the only
/// lab that is up.
fn select_lab(id: Option<String>, state: Option<PathBuf>) -> anyhow::Result<LabInfo> {
    if let Some(state) = state {
        return Ok(LabInfo::read(&state)?);
    }
    if let Some(id) = id {
        return Ok(state::find_lab(&id)?);
    }
    let labs = daemon::labs_up();
    match labs.len() {
        0 => anyhow::bail!("no lab is up"),
        1 => Ok(labs.into_iter().next().expect("one lab")),
        _ => anyhow::bail!(
            "several labs are up ({}): name one with --id, or use --all",
            labs.iter()
                .map(|l| l.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn print_info(info: &LabInfo) {
    println!(
        "lab {} (scenario {})",
        info.id,
        info.scenario_source.display()
    );
    println!("  state:      {}", info.state_dir.display());
    println!(
        "  namespaces: {} (vantage point), {}, {}",
        info.namespaces.vantage, info.namespaces.censor, info.namespaces.internet
    );
    println!("  resolver:   {}", info.resolver);
    println!("  sink:       {}", info.sink);
    println!(
        "  control:    {} (or doh:{})",
        info.control_spec(),
        info.doh_url
    );
    println!("  CA:         {}", info.ca_cert.display());
    println!(
        "  helper:     {} (token {}, in {})",
        info.web_control_url,
        info.web_control_token.display(),
        info.namespaces.helper
    );
    println!(
        "  probe with: ip netns exec {} censorprobe scan --targets {} --resolver {} --dns-sink {} --control '{}' --ca {} --control-name {} --web-control {} --web-control-token {} --web-control-ca {}",
        info.namespaces.vantage,
        info.targets.display(),
        info.resolver,
        info.sink,
        info.control_spec(),
        info.ca_cert.display(),
        info.control_name,
        info.web_control_url,
        info.web_control_token.display(),
        info.ca_cert.display()
    );
}
