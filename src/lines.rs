//! Reading lines of untrusted input with a bound on the memory one line may take.
//!
//! `BufRead::read_until` keeps a whole line in memory, so one 1 GB line without a
//! newline costs a gigabyte or more. [`read_line_bounded`] keeps at most a given number
//! of bytes of a line and reads past the rest, so callers can skip and count it.

use std::io::{self, BufRead};

/// One line as [`read_line_bounded`] read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineLength {
    /// Bytes the line had in the input, newline included (0 at the end of the input).
    pub total: u64,
    /// Whether the line was longer than the bound: only its start is in the buffer.
    pub truncated: bool,
    /// Whether the line ended with a newline (only the last line of the input may not).
    pub terminated: bool,
}

impl LineLength {
    pub(crate) fn at_end(self) -> bool {
        self.total == 0
    }
}

/// Appends the next line (newline included) to `buf`, at most `max` bytes of it; the
/// rest of a longer line is consumed and dropped.
pub(crate) fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineLength> {
    let start = buf.len();
    let mut total: u64 = 0;
    let mut truncated = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(LineLength {
                total,
                truncated,
                terminated: false,
            });
        }
        let (chunk, complete) = match memchr::memchr(b'\n', available) {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let room = max.saturating_sub(buf.len() - start);
        if chunk.len() > room {
            truncated = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let consumed = chunk.len();
        total += consumed as u64;
        reader.consume(consumed);
        if complete {
            return Ok(LineLength {
                total,
                truncated,
                terminated: true,
            });
        }
    }
}

/// `text` cut to at most `max` bytes (on a character boundary) with a marker saying how
/// long it was, for echoing untrusted input on a terminal or in a report.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(Vec<u8>, LineLength)> {
        let mut reader = io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let length = read_line_bounded(&mut reader, &mut buf, max).unwrap();
            if length.at_end() {
                return out;
            }
            out.push((buf, length));
        }
    }

    #[test]
    fn short_lines_are_whole_and_long_ones_are_cut_and_measured() {
        let got = lines(b"ab\nabcdefghij\n\nxyz", 5);
        let texts: Vec<&[u8]> = got.iter().map(|(b, _)| b.as_slice()).collect();
        assert_eq!(texts, [&b"ab\n"[..], b"abcde", b"\n", b"xyz"]);
        let lengths: Vec<(u64, bool, bool)> = got
            .iter()
            .map(|(_, l)| (l.total, l.truncated, l.terminated))
            .collect();
        assert_eq!(
            lengths,
            [
                (3, false, true),
                (11, true, true),
                (1, false, true),
                (3, false, false)
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_the_bound_is_not_truncated() {
        let got = lines(b"abcd\n", 5);
        assert_eq!(got[0].0, b"abcd\n");
        assert!(!got[0].1.truncated);
    }

    #[test]
    fn shorten_marks_what_it_cut() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("abcdef", 3), "abc... (6 bytes in all)");
        // Never splits a character.
        assert_eq!(shorten("ééé", 3), "é... (6 bytes in all)");
    }
}
