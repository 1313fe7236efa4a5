//! The `censorprobe` binary: everything is in the library; this only reports the outcome.

use std::process::ExitCode;

/// A scan allocates and frees a few small buffers per name, from several threads; glibc's
/// allocator spent about a quarter of the probe's CPU on them (consolidating and
/// unlinking chunks). mimalloc's thread-local free lists do the same work for much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match censorprobe::cli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("censorprobe: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
