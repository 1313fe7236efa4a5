//! A targets file (plain list or Citizen Lab CSV), loaded leniently and strictly.
#![no_main]

use censorprobe::targets::TargetLoader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut lenient = TargetLoader::new(false);
    lenient
        .add_reader("fuzz", data)
        .expect("a lenient loader skips bad lines");
    let list = lenient.finish();
    for target in &list.targets {
        assert!(target.domain.is_ascii());
    }
    let mut strict = TargetLoader::new(true);
    assert_eq!(
        strict.add_reader("fuzz", data).is_err(),
        !list.skipped.is_empty()
    );
});
