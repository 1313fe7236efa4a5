//! Report text is untrusted: a report may come from anywhere, and its domains, categories
//! and verdicts are strings. What the workflows print for a terminal or write for a
//! spreadsheet is made harmless here.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` may not reach a terminal as is: control characters (ESC starts cursor
/// moves, colour changes and hyperlinks; BEL; CR rewrites a line) and the bidirectional
/// overrides that reorder what is shown.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character written as an escape (`\u{1b}`); newlines stay.
pub fn sanitize_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One field of a line-oriented output (a tab-separated blocklist): also no newline.
pub fn sanitize_field(text: &str) -> Cow<'_, str> {
    if text.contains('\n') {
        Cow::Owned(sanitize_text(&text.replace('\n', "\\n")).into_owned())
    } else {
        sanitize_text(text)
    }
}

/// A CSV cell a spreadsheet will not run: a cell starting with `=`, `+`, `-`, `@`, tab
/// or CR is a formula there (`=HYPERLINK(...)`), so it gets a leading `'` (the OWASP
/// advice); control characters are escaped as in [`sanitize_text`].
pub fn sanitize_csv_cell(text: &str) -> Cow<'_, str> {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let clean = sanitize_field(text);
    if formula {
        Cow::Owned(format!("'{clean}"))
    } else {
        clean
    }
}

/// A Markdown table cell: one line, a `|` that cannot end the cell, and control
/// characters escaped as in [`sanitize_text`].
pub fn markdown_cell(text: &str) -> String {
    sanitize_field(
        &text
            .replace('\\', "\\\\")
            .replace('|', "\\|")
            .replace('\r', " "),
    )
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_become_visible_text() {
        assert_eq!(sanitize_text("plain\nlines"), "plain\nlines");
        assert_eq!(
            sanitize_text("a\u{1b}[2Jb\u{7}c\rd\u{202e}"),
            "a\\u{1b}[2Jb\\u{7}c\\u{d}d\\u{202e}"
        );
        assert_eq!(sanitize_field("two\nlines\t"), "two\\nlines\\u{9}");
    }

    #[test]
    fn formulas_are_quoted() {
        assert_eq!(sanitize_csv_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(sanitize_csv_cell("+1"), "'+1");
        assert_eq!(sanitize_csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(sanitize_csv_cell("-2+3"), "'-2+3");
        assert_eq!(sanitize_csv_cell("NEWS"), "NEWS");
        assert_eq!(sanitize_csv_cell("dns_poisoning"), "dns_poisoning");
    }

    #[test]
    fn markdown_cells_stay_one_cell() {
        assert_eq!(markdown_cell("a|b"), "a\\|b");
        assert_eq!(markdown_cell("two\nlines"), "two\\nlines");
        assert_eq!(markdown_cell("back\\slash"), "back\\\\slash");
        assert_eq!(markdown_cell("x\u{1b}[2J"), "x\\u{1b}[2J");
    }
}
