//! `censorprobe pcap FILE…`: offline analysis of capture files.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{EXIT_OK, write_output};
use crate::classify::injectors::InjectorSet;
use crate::record::pcap::{PcapCaptureRecord, TtlTrace};
use crate::workflows::pcap::{PcapOptions, analyse_file, describe_group, share_server_hops};
use crate::workflows::sanitize::sanitize_text;

/// `censorprobe pcap`.
#[derive(Debug, Clone, Args)]
pub struct PcapArgs {
    /// Capture files (pcap or pcapng). Captures of the same server given together share
    /// the server's hop distance (a CenTrace test capture and its control).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Output: jsonl (one `pcap_capture` record per file) or text.
    #[arg(long, value_enum, default_value_t = PcapFormat::Jsonl)]
    pub format: PcapFormat,
    /// The control domain of paired captures (CenTrace sends example.com to the same
    /// server): a test capture's server answer is compared with the control's.
    #[arg(long, value_name = "NAME", default_value = "example.com")]
    pub control: String,
    /// Injector fingerprints (TOML) that name the injector of injected packets; extends
    /// the built-in set (targets/injectors.toml), see README "Injectors".
    #[arg(long, value_name = "FILE")]
    pub injectors: Option<PathBuf>,
    /// Put every packet of every flow in the records (for re-judging).
    #[arg(long)]
    pub packets: bool,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--format` of `pcap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PcapFormat {
    #[default]
    Jsonl,
    Text,
}

/// Runs `pcap`.
pub(super) fn run_pcap(args: &PcapArgs) -> anyhow::Result<ExitCode> {
    let injectors = match &args.injectors {
        Some(path) => InjectorSet::load(path)?,
        None => InjectorSet::builtin(),
    };
    let options = PcapOptions {
        keep_packets: args.packets,
    };
    let mut records = Vec::with_capacity(args.files.len());
    for file in &args.files {
        records.push(analyse_file(file, &injectors, options)?);
    }
    share_server_hops(&mut records, &args.control);
    let mut text = String::new();
    for record in &records {
        match args.format {
            PcapFormat::Jsonl => {
                text.push_str(
                    &serde_json::to_string(record).context("cannot encode a pcap record")?,
                );
                text.push('\n');
            }
            PcapFormat::Text => text.push_str(&sanitize_text(&human(record))),
        }
    }
    write_output(args.out.as_deref(), &text)?;
    Ok(ExitCode::from(EXIT_OK))
}

/// The text form: one paragraph per file, one line per flow, the trace's hops.
fn human(record: &PcapCaptureRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} frames, {} flows",
        record.file,
        record.frames,
        record.flows.len()
    );
    if record.traces.is_empty() {
        for flow in &record.flows {
            let name = flow
                .trigger
                .as_ref()
                .and_then(|t| t.name.as_deref())
                .unwrap_or("-");
            let _ = writeln!(
                out,
                "  {} -> {} {name}: {:?}; {}",
                flow.client, flow.server, flow.outcome, flow.judgement.summary
            );
        }
    }
    for trace in &record.traces {
        human_trace(&mut out, trace);
    }
    out
}

fn human_trace(out: &mut String, trace: &TtlTrace) {
    let _ = writeln!(
        out,
        "  trace to {} ({}): {}",
        trace.server,
        trace.trigger_name.as_deref().unwrap_or("-"),
        trace.placement.describe()
    );
    for hop in &trace.hops {
        let mut what = Vec::new();
        for router in &hop.routers {
            what.push(format!("time exceeded from {router}"));
        }
        for group in &hop.blocking {
            what.push(describe_group(group));
        }
        if hop.server_data {
            what.push("server data".to_owned());
        }
        if hop.silent {
            what.push("nothing".to_owned());
        }
        let _ = writeln!(out, "    TTL {:>3}: {}", hop.ttl, what.join("; "));
    }
    for sentence in &trace.evidence {
        let _ = writeln!(out, "  - {sentence}");
    }
}
