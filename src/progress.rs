//! Progress of a scan on stderr: a bar (indicatif) when stderr is a terminal, plain
//! periodic lines when it is not (CI logs, `2> file`), nothing with `--quiet`.
//!
//! Both show targets done/total, the rate, the ETA and the counts so far by blocking
//! outcome. The report writer drives it, once per record, so it costs no extra thread
//! beyond indicatif's ticker.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Nothing (`--quiet`).
    Off,
    /// A bar on a terminal, else a plain line at most every `every`.
    Auto { every: Duration },
}

enum Display {
    Bar(ProgressBar),
    Lines {
        every: Duration,
        last: Option<Instant>,
        out: Box<dyn Write + Send>,
    },
}

/// Progress of one run.
pub struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    counts: BTreeMap<String, u64>,
    display: Display,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("total", &self.total)
            .field("done", &self.done)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// Starts showing progress of `total` units of work, or returns `None` for `Off`.
    pub fn start(mode: ProgressMode, total: u64) -> Option<Progress> {
        let ProgressMode::Auto { every } = mode else {
            return None;
        };
        if std::io::stderr().is_terminal() {
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
            )
            .expect("the template is valid");
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            Some(Progress::with_display(total, Display::Bar(bar)))
        } else {
            Some(Progress::lines(total, every, Box::new(std::io::stderr())))
        }
    }

    /// Plain lines to `out`, at most one every `every` (and one at the end).
    pub fn lines(total: u64, every: Duration, out: Box<dyn Write + Send>) -> Progress {
        Progress::with_display(
            total,
            Display::Lines {
                every,
                last: None,
                out,
            },
        )
    }

    fn with_display(total: u64, display: Display) -> Progress {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            counts: BTreeMap::new(),
            display,
        }
    }

    /// One unit done, counted under `class`.
    pub fn record(&mut self, class: &str) {
        self.done += 1;
        match self.counts.get_mut(class) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(class.to_owned(), 1);
            }
        }
        let now = Instant::now();
        let counts = self.counts_text();
        match &mut self.display {
            Display::Bar(bar) => {
                bar.set_position(self.done);
                bar.set_message(counts);
            }
            Display::Lines { every, last, .. } => {
                if last.is_none_or(|at| now.duration_since(at) >= *every) {
                    *last = Some(now);
                    self.print_line();
                }
            }
        }
    }

    /// Clears the bar, or prints the last line if the latest state was not shown.
    pub fn finish(&mut self) {
        match &self.display {
            Display::Bar(bar) => bar.finish_and_clear(),
            Display::Lines { .. } => self.print_line(),
        }
    }

    fn print_line(&mut self) {
        let line = self.line();
        if let Display::Lines { out, .. } = &mut self.display {
            // Progress is best effort: a closed stderr must not stop the scan.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// `censorprobe: progress 120/500 (24%), 310.5/s, ETA 2s; not blocked 100, blocked:dns 20`
    pub fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            self.done as f64 / elapsed
        } else {
            0.0
        };
        let percent = if self.total > 0 {
            self.done as f64 * 100.0 / self.total as f64
        } else {
            100.0
        };
        let eta = if self.done >= self.total {
            "done".to_owned()
        } else if rate > 0.0 {
            format_eta(Duration::from_secs_f64(
                (self.total - self.done) as f64 / rate,
            ))
        } else {
            "?".to_owned()
        };
        let counts = self.counts_text();
        format!(
            "censorprobe: progress {}/{} ({percent:.0}%), {rate:.1}/s, ETA {eta}{}{counts}",
            self.done,
            self.total,
            if counts.is_empty() { "" } else { "; " },
        )
    }

    fn counts_text(&self) -> String {
        self.counts
            .iter()
            .map(|(class, n)| format!("{class} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn done(&self) -> u64 {
        self.done
    }
}

/// `45s`, `3m05s`, `2h07m`.
pub fn format_eta(eta: Duration) -> String {
    let secs = eta.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn lines_show_done_total_and_counts() {
        let out = Shared::default();
        let mut progress = Progress::lines(3, Duration::ZERO, Box::new(out.clone()));
        progress.record("not blocked");
        progress.record("blocked:dns");
        progress.record("not blocked");
        progress.finish();
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("censorprobe: progress 1/3 (33%)"),
            "{text}"
        );
        assert!(lines[2].contains("3/3 (100%)"), "{text}");
        assert!(lines[2].contains("ETA done"), "{text}");
        assert!(
            lines[3].ends_with("; blocked:dns 1, not blocked 2"),
            "{text}"
        );
        assert!(lines[1].contains("/s, ETA "), "{text}");
    }

    #[test]
    fn lines_are_throttled() {
        let out = Shared::default();
        let mut progress = Progress::lines(1000, Duration::from_secs(3600), Box::new(out.clone()));
        for _ in 0..500 {
            progress.record("unknown");
        }
        assert_eq!(
            out.text().lines().count(),
            1,
            "only the first within the period"
        );
        progress.finish();
        let text = out.text();
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.lines().last().unwrap().contains("500/1000 (50%)"),
            "{text}"
        );
        assert_eq!(progress.done(), 500);
    }

    #[test]
    fn off_shows_nothing() {
        assert!(Progress::start(ProgressMode::Off, 10).is_none());
    }

    #[test]
    fn eta_formats() {
        assert_eq!(format_eta(Duration::from_secs(45)), "45s");
        assert_eq!(format_eta(Duration::from_secs(185)), "3m05s");
        assert_eq!(format_eta(Duration::from_secs(7620)), "2h07m");
    }
}
