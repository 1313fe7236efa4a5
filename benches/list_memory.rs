//! Memory of a large target list: loads a generated list of `NAMES` names (default
//! 1,000,000; first argument), schedules it (seed 1, no shard) and walks the scheduled
//! order once, materialising every target as a scan's dispatcher would. Prints the load
//! time, the walk time, the peak RSS and the bytes the list costs per name. Asserts
//! nothing (memory and time goals live here, not in tests).
//!
//! The list is written to a temporary file (removed at the end), never to the repo.
//!
//! Run with `cargo bench --bench list_memory [-- NAMES]`.

mod common;
use common::peak_rss_kib;

use std::io::{BufWriter, Write as _};
use std::time::Instant;

use censorprobe::scan::Passes;
use censorprobe::targets::TargetLoader;

/// CPU time of this process so far (user + system): on a shared machine a better
/// measure of the work than wall time.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    seconds(usage.user_time()) + seconds(usage.system_time())
}

fn main() {
    let names: usize = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);

    // Names of realistic length (20-30 octets), written out without holding the list.
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    {
        let mut out = BufWriter::new(file.as_file());
        for i in 0..names {
            writeln!(out, "www{}.site{i}.example{}.com", i % 7, i % 1000).unwrap();
        }
        out.flush().unwrap();
    }
    let list_bytes = file.as_file().metadata().unwrap().len();
    let baseline_kib = peak_rss_kib();

    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let mut loader = TargetLoader::new(false);
    loader.add_file(file.path()).expect("the list loads");
    let list = loader.finish();
    let load_seconds = started.elapsed().as_secs_f64();
    let load_cpu = cpu_seconds() - cpu_started;
    let loaded_kib = peak_rss_kib();

    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let passes = Passes::once(list, 1, None);
    let scheduled = passes.targets_scheduled;
    let mut walked = 0usize;
    let mut domain_bytes = 0usize;
    for pass in passes.passes {
        for attempt in pass {
            // The scan makes each target in full once, when its record is made.
            let target = attempt.target.to_target();
            walked += 1;
            domain_bytes += target.domain.len();
        }
    }
    let walk_seconds = started.elapsed().as_secs_f64();
    let walk_cpu = cpu_seconds() - cpu_started;
    let peak_kib = peak_rss_kib();

    let per_name = |kib: u64| (kib.saturating_sub(baseline_kib) * 1024) as f64 / names as f64;
    println!("list_memory: {names} names, {list_bytes} bytes of list file");
    println!(
        "  load + normalise + de-duplicate: {load_seconds:.2} s wall, {load_cpu:.2} s CPU ({:.2} us CPU/name)",
        load_cpu * 1e6 / names as f64
    );
    println!(
        "  schedule + walk the order:       {walk_seconds:.2} s wall, {walk_cpu:.2} s CPU ({walked} of {scheduled} targets made, {domain_bytes} name bytes)"
    );
    println!(
        "  peak RSS: {:.1} MiB before the list, {:.1} MiB after loading, {:.1} MiB after the walk",
        baseline_kib as f64 / 1024.0,
        loaded_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
    println!(
        "  bytes per name (peak over the baseline): {:.1} after loading, {:.1} in all",
        per_name(loaded_kib),
        per_name(peak_kib)
    );
}
