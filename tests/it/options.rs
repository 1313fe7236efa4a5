//! The header's options are the scan's configuration, serialised (issue 10, F2).

use censorprobe::cli::{Cli, Command, scan_config};
use censorprobe::record::{ReportRecord, ScanOptions};
use censorprobe::targets::TargetLoader;
use clap::Parser as _;

/// The example report's header reads into the typed options and writes back byte for
/// byte: every key it records is a field (a dropped key would fail here), in order.
#[test]
fn the_example_header_round_trips_byte_for_byte() {
    let text = std::fs::read_to_string("reports/examples/lab-demo.jsonl").unwrap();
    let line = text.lines().next().unwrap();
    let record: ReportRecord = serde_json::from_str(line).unwrap();
    let ReportRecord::Header(header) = &record else {
        panic!("the first line is the header")
    };
    // Regenerated since the option exists: it records the scan's socket count.
    assert_eq!(header.options.dns_sockets, Some(8), "lab-demo records it");
    assert_eq!(serde_json::to_string(&record).unwrap(), line);
}

/// Headers of other versions still read: missing keys take the defaults, unknown keys
/// are ignored.
#[test]
fn options_of_other_versions_still_read() {
    let options: ScanOptions =
        serde_json::from_str(r#"{"concurrency":3,"dns_wait_ms":250,"a_future_option":true}"#)
            .unwrap();
    assert_eq!(options.concurrency, 3);
    assert_eq!(options.dns_wait, std::time::Duration::from_millis(250));
    assert_eq!(
        ScanOptions {
            concurrency: 500,
            dns_wait: std::time::Duration::from_secs(1),
            ..options
        },
        ScanOptions::default()
    );
}

/// A scan's header records exactly the configuration's options: normalised query types
/// and stage names, and the DNS socket count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_records_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.jsonl");
    let cli = Cli::try_parse_from([
        "censorprobe",
        "scan",
        "--control",
        "none",
        "--tests",
        " DNS",
        "--qtype",
        "aaaa,a,AAAA",
        "--resolver",
        "127.0.0.1:9",
        "--dns-timeout",
        "50ms",
        "--dns-wait",
        "0s",
        "--retries",
        "0",
        "--seed",
        "7",
        "--dns-sockets",
        "3",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let Command::Scan(args) = cli.command else {
        panic!("a scan")
    };
    let config = scan_config(&args).unwrap();
    assert_eq!(config.options.qtypes, ["AAAA", "A"]);
    assert_eq!(config.options.tests, ["dns"]);
    assert_eq!(config.options.dns_sockets, Some(3));
    assert_eq!(config.dns.sockets, 3);
    let expected = serde_json::to_value(&config.options).unwrap();
    let mut loader = TargetLoader::new(false);
    loader.add_cli("a.test").unwrap();
    let passes = censorprobe::scan::Passes::once(loader.finish(), config.seed, config.shard);
    let sink = Box::new(censorprobe::output::JsonlSink::create(
        config.out.as_deref(),
    ));
    censorprobe::scan::run_scan(config, passes, sink, std::future::pending())
        .await
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let report = crate::support::Report::parse(&text);
    assert_eq!(report.header.options.dns_sockets, Some(3));
    assert_eq!(report.header.options.seed, 7);
    assert_eq!(report.header.options.repeat, None);
    // The options as written: the header line itself (the wire format).
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["options"], expected);
    assert_eq!(header["options"]["dns_sockets"], 3);
    assert_eq!(header["options"]["seed"], 7);
    assert!(header["options"].get("repeat").is_none());
}

/// The options are written with sorted keys, as headers always were, the optional ones
/// included.
#[test]
fn option_keys_are_written_in_sorted_order() {
    let options = ScanOptions {
        dns_sockets: Some(8),
        repeat: Some(3),
        repeat_interval_ms: Some(1000),
        resume: Some(censorprobe::record::ResumeInfo::default()),
        ..ScanOptions::default()
    };
    let text = serde_json::to_string(&options).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    // serde_json's map is sorted: writing it back gives the same text only if the
    // struct wrote its keys in sorted order too.
    assert_eq!(serde_json::to_string(&value).unwrap(), text);
    assert_eq!(keys.len(), 28, "{keys:?}");
}
