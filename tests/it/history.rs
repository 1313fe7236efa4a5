//! Compressed reports, `--shard auto` and `history`, through the binary.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use censorprobe::compress::{Compression, detect_file, open_report_reader};

use crate::support::{BIN, Behaviour, Report, args, fake_dns, run_binary};

/// The decompressed text of a report (plain, `.zst` or `.gz`).
fn decompressed(path: &Path) -> String {
    let mut text = String::new();
    open_report_reader(path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Target records in a report being written (complete lines only).
fn complete_targets(path: &Path) -> usize {
    let Ok(reader) = open_report_reader(path) else {
        return 0;
    };
    let mut text = String::new();
    let _ = { reader }.read_to_string(&mut text);
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && l.starts_with(r#"{"record":"target""#))
        .count()
}

fn dns_scan_args(resolver: &str, out: &Path, rate: &str) -> Vec<String> {
    args(&[
        "scan",
        "--tests",
        "dns",
        "--resolver",
        resolver,
        "--control",
        "none",
        "--qtype",
        "A",
        "--dns-wait",
        "10ms",
        "--rate",
        rate,
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ])
}

/// `kill -9` mid-scan with `--out report.jsonl.zst` (and `.gz`): every record the scan
/// had written reads back (each is flushed through the compressor as it is written),
/// `summary` and `history` read the cut stream, and `--resume` finishes the scan into
/// the same compressed report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_report_killed_mid_scan_keeps_every_written_record() {
    let resolver = fake_dns(&[], Behaviour::a([198, 18, 8, 8]))
        .await
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..120).map(|i| format!("n{i}.kill.test")).collect();
    for (name, compression) in [
        ("r.jsonl.zst", Compression::Zstd),
        ("r.jsonl.gz", Compression::Gzip),
    ] {
        let out = dir.path().join(name);
        let mut argv = dns_scan_args(&resolver, &out, "20");
        argv.extend(names.iter().cloned());
        let mut child = tokio::process::Command::new(BIN)
            .args(&argv)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // While the scan runs, records appear in the compressed file one by one.
        let mut seen = 0;
        for _ in 0..400 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            seen = complete_targets(&out);
            if seen > 5 {
                break;
            }
        }
        assert!(
            seen > 5,
            "{name}: records reach the file as they are written ({seen})"
        );
        let before_kill = complete_targets(&out);
        child.start_kill().unwrap(); // SIGKILL: no handler, no summary, no frame end
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), None, "{name}: killed by a signal");
        assert_eq!(detect_file(&out).unwrap(), compression);
        let text = decompressed(&out);
        let lines: Vec<&str> = text.lines().collect();
        let complete = lines
            .iter()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .count();
        assert!(
            complete >= lines.len().saturating_sub(1),
            "{name}: only a last line may be cut short"
        );
        let after_kill = complete_targets(&out);
        assert!(
            after_kill >= before_kill && after_kill < names.len(),
            "{name}: {after_kill} records after the kill, {before_kill} seen before it"
        );

        let summary = run_binary(&args(&[
            "summary",
            "--format",
            "json",
            out.to_str().unwrap(),
        ]))
        .await;
        assert!(summary.status.success(), "{summary:#?}");
        assert!(
            summary.stderr.contains("no summary record"),
            "{}",
            summary.stderr
        );
        let history = run_binary(&args(&[
            "history",
            "--format",
            "json",
            out.to_str().unwrap(),
        ]))
        .await;
        assert!(history.status.success(), "{history:#?}");
        assert_eq!(history.stdout.lines().count(), after_kill);

        // --resume finishes the scan into the same compressed stream.
        let mut argv = dns_scan_args(&resolver, &out, "0");
        argv.extend(["--resume".to_owned(), out.to_str().unwrap().to_owned()]);
        argv.extend(names.iter().cloned());
        let resumed = run_binary(&argv).await;
        assert!(resumed.status.success(), "{resumed:#?}");
        assert_eq!(detect_file(&out).unwrap(), compression, "{name}");
        let report = Report::parse(&decompressed(&out));
        let mut domains: Vec<&str> = report.targets.iter().map(|t| t.domain.as_str()).collect();
        domains.sort_unstable();
        domains.dedup();
        assert_eq!(domains.len(), names.len(), "{name}: every name once");
        assert_eq!(
            report.targets.len(),
            names.len(),
            "{name}: none measured twice"
        );
    }
}

/// `--shard auto`: the index from `JOB_COMPLETION_INDEX`, the count from
/// `CENSORPROBE_SHARD_COUNT` (or `--shard-count`); the shards are disjoint and cover the
/// list, and `history` merges their reports (plain, zstd, gzip) into one vantage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_shards_of_an_indexed_job_cover_the_list_and_history_merges_them() {
    let resolver = fake_dns(&[], Behaviour::a([198, 18, 4, 4]))
        .await
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..30).map(|i| format!("n{i}.shard.test")).collect();
    let mut seen = std::collections::BTreeSet::new();
    let files = ["shard-0.jsonl", "shard-1.jsonl.zst", "shard-2.jsonl.gz"];
    for (index, file) in files.iter().enumerate() {
        let out = dir.path().join(file);
        let mut argv = dns_scan_args(&resolver, &out, "0");
        argv.extend(args(&["--shard", "auto", "--vantage", "k8s"]));
        if index == 2 {
            argv.extend(args(&["--shard-count", "3"]));
        }
        argv.extend(names.iter().cloned());
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(&argv)
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env_remove("CENSORPROBE_SHARD_COUNT");
        if index != 2 {
            command.env("CENSORPROBE_SHARD_COUNT", "3");
        }
        let run = command.output().await.unwrap();
        assert!(run.status.success(), "{run:#?}");
        let report = Report::parse(&decompressed(&out));
        assert_eq!(
            report.header.options.shard.as_deref(),
            Some(format!("{index}/3").as_str())
        );
        for target in &report.targets {
            assert!(
                seen.insert(target.domain.clone()),
                "{} in two shards",
                target.domain
            );
        }
    }
    assert_eq!(seen.len(), names.len());

    // Without the Job's index, auto is refused.
    let mut argv = dns_scan_args(&resolver, &dir.path().join("x.jsonl"), "0");
    argv.extend(args(&["--shard", "auto", "--shard-count", "3", "x.test"]));
    let run = tokio::process::Command::new(BIN)
        .args(&argv)
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .await
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("JOB_COMPLETION_INDEX"));

    // diff reads compressed reports (a zstd shard against itself: nothing changed).
    let shard1 = dir.path().join(files[1]);
    let diff = run_binary(&args(&[
        "diff",
        shard1.to_str().unwrap(),
        shard1.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(diff.status.code(), Some(0), "{diff:#?}");

    // history over the directory of shard reports: one vantage, every name once.
    let daily = dir.path().join("daily");
    let history = run_binary(&args(&[
        "history",
        "--format",
        "csv",
        "--daily-dir",
        daily.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]))
    .await;
    assert!(history.status.success(), "{history:#?}");
    let rows: Vec<&str> = history.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), names.len(), "{}", history.stdout);
    assert!(
        rows.iter().all(|r| r.contains(",k8s,")),
        "{}",
        history.stdout
    );
    assert!(
        !daily.exists() || std::fs::read_dir(&daily).unwrap().next().is_none(),
        "nothing blocked"
    );
}
