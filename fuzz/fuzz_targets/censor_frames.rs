//! Frames read by the lab censor from its inspection link. The input is a sequence of
//! frames, each preceded by its length (one byte, times 8).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use censorprobe::lab::Scenario;
use censorprobe::lab::censor::engine::Engine;
use censorprobe::lab::censor::packet;
use libfuzzer_sys::fuzz_target;

const SCENARIO: &str = r#"
[pools]
bogon = ["10.10.34.34", "2001:db8::1"]

[[dns_rules]]
pattern = "inject.example"
action = "inject"
pool = "bogon"

[[dns_rules]]
pattern = "drop.example"
action = "drop"

[[http_rules]]
pattern = "rst.example"
match = "subdomain"
action = "rst_ack"
count = 16
direction = "both"
residual = { action = "reset", secs = 90 }

[[tls_rules]]
pattern = "sni.example"
match = "suffix"
action = "drop"
"#;

fn scenario() -> &'static Scenario {
    static SCENARIO_PARSED: OnceLock<Scenario> = OnceLock::new();
    SCENARIO_PARSED
        .get_or_init(|| Scenario::parse(SCENARIO, Path::new("fuzz.toml")).expect("valid scenario"))
}

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::new(scenario());
    let now = Instant::now();
    let mut rest = data;
    while let Some((&length, tail)) = rest.split_first() {
        let (frame, next) = tail.split_at((usize::from(length) * 8).min(tail.len()));
        rest = next;
        for emit in engine.handle(frame, now) {
            assert!(packet::ipv4_of(&emit.frame).is_some());
            assert!(emit.frame.len() <= frame.len().max(54) + 320);
        }
        let _ = engine.take_events();
    }
});
