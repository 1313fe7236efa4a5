//! The whole probe at scale where censorship is dense: the built-in lab (network
//! namespaces, the censor, real servers) with a generated scenario, every stage on,
//! `--rate 0`, scanned by the release binary from the vantage point. Prints names/s end
//! to end, how many names got every expected verdict, the path-guard figures (share of
//! attempts re-run alone, waits) and the scan's peak RSS; with residual blocking, also
//! the lower bound on the wall time (the residual windows that cannot be avoided on the
//! busiest path) and the ratio of the wall time to it. Asserts nothing. Needs root.
//!
//! `cargo bench --bench lab_scale -- a [NAMES]`: NAMES (default 20000) on 2 shared
//! addresses, the default mix, no residual blocking.
//! `cargo bench --bench lab_scale -- b [NAMES]`: NAMES (default 500) on 8 addresses, the
//! default mix, a 10 s residual window after every trigger.
//! `cargo bench --bench lab_scale -- custom NAMES SERVERS RESIDUAL_SECS [MIX]`.
//! Set `CENSORPROBE_BENCH_EXE` to measure another build of the binary, and
//! `CENSORPROBE_BENCH_KEEP=FILE` to keep the report, and
//! `CENSORPROBE_BENCH_SCAN_ARGS="--capture off"` (split on spaces) to add scan options,
//! e.g. to compare a scan with and without its packet capture.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use censorprobe::lab::demo::{LabTiming, scan_args};
use censorprobe::lab::generate::{GenOptions, Kind, Mix, generate_with};
use censorprobe::lab::instance::{Lab, LabOptions};
use censorprobe::lab::scenario::Scenario;

struct Setup {
    options: GenOptions,
}

fn parse_args() -> Setup {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let number = |i: usize, default: u64| -> u64 {
        args.get(i)
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let which = args.first().map_or("a", String::as_str);
    let (n, servers, residual, mix) = match which {
        "a" => (number(1, 20_000), 2, 0, Mix::default()),
        "b" => (number(1, 500), 8, 10, Mix::default()),
        "custom" => (
            number(1, 1000),
            number(2, 2),
            number(3, 0),
            args.get(4)
                .map_or_else(Mix::default, |m| m.parse().expect("a mix")),
        ),
        other => panic!("unknown setup {other:?}: a, b or custom"),
    };
    Setup {
        options: GenOptions {
            n: n as usize,
            seed: 1,
            residual_secs: residual as u32,
            shared_servers: servers as u8,
            mix,
        },
    }
}

/// The residual windows that cannot be avoided: every trigger closes its (server IP,
/// port) for the window, and no test can run on that path meanwhile, so the busiest
/// path needs at least (its triggers x the window).
fn lower_bound_secs(scenario: &Scenario, residual_secs: u32) -> (f64, String) {
    let mut triggers: BTreeMap<(IpAddr, u16), u64> = BTreeMap::new();
    for entry in &scenario.names {
        let Some(kind) = Kind::of_name(&entry.name) else {
            continue;
        };
        let Some(server) = entry
            .server
            .as_ref()
            .and_then(|id| scenario.servers.iter().find(|s| &s.id == id))
        else {
            continue;
        };
        for ip in &server.ips {
            if kind.triggers_http() {
                *triggers
                    .entry((IpAddr::V4(*ip), server.http_port))
                    .or_default() += 1;
            }
            if kind.triggers_tls() {
                *triggers
                    .entry((IpAddr::V4(*ip), server.tls_port))
                    .or_default() += 1;
            }
        }
    }
    let Some(((ip, port), most)) = triggers.iter().max_by_key(|(_, n)| **n) else {
        return (0.0, "no triggers".to_owned());
    };
    (
        (*most * u64::from(residual_secs)) as f64,
        format!(
            "{most} triggers on {ip}:{port} (the busiest of {} paths; {} triggers in all)",
            triggers.len(),
            triggers.values().sum::<u64>()
        ),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

/// Path-guard figures from the report's attempts.
fn path_figures(report: &str) {
    let mut attempts = 0usize;
    let mut exclusive = 0usize;
    let mut requeued = 0usize;
    let mut waits = Vec::new();
    let mut rules: BTreeMap<String, usize> = BTreeMap::new();
    for line in report.lines() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if record["record"] == "summary" {
            if let Some(paths) = record.get("residual_paths") {
                println!(
                    "  residual paths: {}",
                    serde_json::to_string(paths).unwrap_or_default()
                );
            }
            continue;
        }
        if record["record"] != "target" {
            continue;
        }
        for stage in ["http", "tls"] {
            let Some(list) = record[stage]["attempts"].as_array() else {
                continue;
            };
            for attempt in list {
                let path = &attempt["path"];
                if path.is_null() {
                    continue;
                }
                attempts += 1;
                if path["mode"] == "exclusive" {
                    exclusive += 1;
                }
                if path["requeues"].as_u64().unwrap_or(0) > 0 {
                    requeued += 1;
                }
                waits.push(path["waited_ms"].as_f64().unwrap_or(0.0) / 1000.0);
                if let Some(rule) = path["attribution"].as_str() {
                    *rules.entry(rule.to_owned()).or_default() += 1;
                }
            }
        }
    }
    waits.sort_by(f64::total_cmp);
    println!(
        "  attempts:       {attempts} ({exclusive} run alone, {requeued} re-queued); attribution rules {rules:?}"
    );
    println!(
        "  path waits:     median {:.2} s, p90 {:.2} s, max {:.2} s",
        percentile(&waits, 0.5),
        percentile(&waits, 0.9),
        waits.last().copied().unwrap_or(0.0)
    );
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("lab_scale: the lab needs root (network namespaces, nftables)");
        std::process::exit(1);
    }
    let setup = parse_args();
    let exe = std::env::var_os("CENSORPROBE_BENCH_EXE").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_censorprobe")),
        PathBuf::from,
    );
    let scenario = generate_with(&setup.options);
    let dir = tempfile::tempdir().expect("temporary directory");
    let scenario_path = dir.path().join("scenario.toml");
    std::fs::write(&scenario_path, scenario.to_toml()).expect("write the scenario");
    let report_path = dir.path().join("report.jsonl");
    let timing = LabTiming::for_scenario(&scenario);
    let (bound, bound_detail) = lower_bound_secs(&scenario, setup.options.residual_secs);
    println!(
        "lab_scale: {} names on {} addresses, residual {} s, mix {}; binary {}",
        setup.options.n,
        setup.options.shared_servers,
        setup.options.residual_secs,
        setup.options.mix,
        exe.display()
    );
    println!(
        "  load average before: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let up_started = Instant::now();
    let lab = Lab::start(scenario.clone(), &scenario_path, &LabOptions::default()).expect("lab up");
    let lab_up = up_started.elapsed();
    let info = lab.info().clone();
    let mut args = scan_args(&info, &timing, &report_path);
    args.extend(["--rate", "0", "--quiet"].map(str::to_owned));
    if let Ok(extra) = std::env::var("CENSORPROBE_BENCH_SCAN_ARGS") {
        args.extend(extra.split_whitespace().map(str::to_owned));
        println!("  extra scan options: {extra}");
    }
    let scan_started = Instant::now();
    let status = Command::new("ip")
        .args(["netns", "exec", &info.namespaces.vantage])
        .arg(&exe)
        .args(&args)
        .stdin(Stdio::null())
        .status();
    let wall = scan_started.elapsed().as_secs_f64();
    // The largest child waited for so far: the scan (`ip netns exec` execs it); the
    // lab's own roles are threads of this process.
    let children = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
    let peak_rss_kib = children
        .as_ref()
        .map_or(0, nix::sys::resource::Usage::max_rss);
    let cpu_secs = |u: &nix::sys::resource::Usage| {
        let t = u.user_time() + u.system_time();
        t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
    };
    let scan_cpu = children.as_ref().map_or(0.0, cpu_secs);
    // The lab's censor and servers are threads of this process.
    let roles_cpu = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .as_ref()
        .map_or(0.0, cpu_secs);
    let teardown = lab.stop();
    let status = status.expect("run the scan");
    println!(
        "  load average after:  {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if !status.success() {
        println!("  the scan failed: {status}");
    }
    if let Err(e) = teardown {
        println!("  lab teardown: {e}");
    }
    let report = std::fs::read_to_string(&report_path).unwrap_or_default();
    if let Some(keep) = std::env::var_os("CENSORPROBE_BENCH_KEEP") {
        let _ = std::fs::copy(&report_path, &keep);
    }
    let comparison = censorprobe::lab::expect::compare(&scenario, &report);
    let mut failed_names: std::collections::BTreeSet<&str> =
        comparison.failures().map(|c| c.name.as_str()).collect();
    failed_names.extend(comparison.missing.iter().map(String::as_str));
    let n = setup.options.n;
    let right = n - failed_names.len();
    println!("  lab up:         {:.1} s", lab_up.as_secs_f64());
    println!(
        "  scan wall:      {wall:.1} s, {:.1} names/s end to end",
        n as f64 / wall
    );
    println!(
        "  as expected:    {right} of {n} names ({:.2} %), {} cells wrong, {} names missing",
        100.0 * right as f64 / n as f64,
        comparison.failures().count(),
        comparison.missing.len()
    );
    let mut wrong_by_field: BTreeMap<&str, usize> = BTreeMap::new();
    for check in comparison.failures() {
        *wrong_by_field.entry(check.field).or_default() += 1;
    }
    if !wrong_by_field.is_empty() {
        println!("  wrong cells by field: {wrong_by_field:?}");
    }
    for check in comparison.failures().take(6) {
        println!(
            "    {} {}: expected {:?}, got {:?}",
            check.name, check.field, check.expected, check.actual
        );
    }
    println!("  scan peak RSS:  {:.1} MiB", peak_rss_kib as f64 / 1024.0);
    println!(
        "  CPU:            scan {scan_cpu:.1} s ({:.2} ms/name), lab (censor, servers) {roles_cpu:.1} s; \
         the machine has {} CPUs",
        1000.0 * scan_cpu / n as f64,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    if setup.options.residual_secs > 0 {
        println!("  lower bound:    {bound:.1} s ({bound_detail})");
        if bound > 0.0 {
            println!("  wall / bound:   {:.2}", wall / bound);
        }
    }
    path_figures(&report);
}
