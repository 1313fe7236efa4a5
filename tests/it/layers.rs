//! The module structure: no import circle, and no import that runs back up the layers
//! (targets → probes → observations → classifier → records → output → scan/workflows →
//! cli). `scripts/check-layers.py` reads `src/` and prints what it finds; this test runs it
//! so that a change that adds a circle or an upward import fails the suite.

use std::process::Command;

#[test]
fn no_import_cycles_and_no_upward_imports() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("python3")
        .arg(format!("{root}/scripts/check-layers.py"))
        .arg(format!("{root}/src"))
        .output()
        .expect(
            "python3 must be installed to check the module layers (.ci/install-deps installs it)",
        );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the module layers are broken:\n{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("cycles: 0"), "{text}");
    assert!(text.contains("layer violations: 0"), "{text}");
}
