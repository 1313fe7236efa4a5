//! The `censorprobe` binary: everything is in the library; this only reports the outcome.

use std::process::ExitCode;

fn main() -> ExitCode {
    match censorprobe::cli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("censorprobe: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
