//! A JSONL report file, read as `check`, `diff` and `summary` read it, as `--resume`
//! reads it, and as the lab compares it with a scenario's expectations.
#![no_main]

use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use censorprobe::lab::Scenario;
use censorprobe::report::read::LoadedReport;
use censorprobe::scan::resume::PriorRun;
use libfuzzer_sys::fuzz_target;

const SCENARIO: &str = r#"
[[names]]
name = "a.example"
a = ["198.19.1.1"]
expect = { dns = "dns_poisoning", dns_method = "injection", http = "ok", blocking = "dns" }
"#;

fn scenario() -> &'static Scenario {
    static SCENARIO_PARSED: OnceLock<Scenario> = OnceLock::new();
    SCENARIO_PARSED
        .get_or_init(|| Scenario::parse(SCENARIO, Path::new("fuzz.toml")).expect("valid scenario"))
}

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    file.write_all(data).expect("write the report");
    let report = LoadedReport::load(file.path()).expect("a readable file loads");
    assert!(report.stats.complete_len <= data.len() as u64);
    let _ = report.warning();
    let _ = PriorRun::load(file.path(), 3).expect("a readable file loads");
    let comparison = censorprobe::lab::expect::compare(scenario(), &String::from_utf8_lossy(data));
    let _ = comparison.to_string();
});
