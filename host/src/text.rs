//! Guest-controlled text made safe to keep and to show: bounded in size, and with control
//! characters escaped before a terminal or a log line sees them.
//!
//! A plugin chooses its task names, descriptions, error messages, log lines and output. None
//! of that may move a terminal's cursor, recolour it, forge a log line with a newline, or grow
//! a result row without bound. The crate applies these rules to everything it keeps and logs
//! (a [`TaskFailure`](crate::TaskFailure)'s message is cut at [`MAX_MESSAGE_BYTES`], a guest
//! log line is escaped); they are public so that an embedder who shows guest text itself — a
//! failure's message in a terminal, a task name in a web page's log view, a value in a
//! table — applies the same ones:
//!
//! ```
//! use osiiso_host::text::{escape_control, for_display};
//!
//! // A task name a hostile plugin chose, shown in a table cell of at most 20 bytes.
//! let name = "score\x1b[2J\u{202e}evil";
//! assert_eq!(for_display(name, 20), "score\\e[2J\\u{202e}evil");
//! assert_eq!(escape_control("fine"), "fine");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most bytes kept of a failure message (longer ones end with a truncation marker).
pub const MAX_MESSAGE_BYTES: usize = 8 << 10;
/// The most bytes kept of a failure's detail (a wasm backtrace, an error chain).
pub const MAX_DETAIL_BYTES: usize = 64 << 10;
/// The most bytes kept of one guest log line.
pub const MAX_LOG_BYTES: usize = 8 << 10;

/// Cuts `text` to at most `max` bytes (on a character boundary) and, when it cut, appends a
/// marker that says how long the text was: `… [truncated: 104857600 bytes in all]`.
///
/// ```
/// use osiiso_host::text::truncate;
/// assert_eq!(truncate("short", 10), "short");
/// assert_eq!(truncate("abcdefghij", 4), "abcd… [truncated: 10 bytes in all]");
/// ```
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [truncated: {} bytes in all]",
        &text[..end],
        text.len()
    ))
}

/// [`truncate`] for an owned string, without copying when it fits.
///
/// ```
/// use osiiso_host::text::truncate_owned;
/// assert_eq!(truncate_owned("abc".to_string(), 3), "abc");
/// assert!(truncate_owned("abcd".to_string(), 3).starts_with("abc…"));
/// ```
pub fn truncate_owned(text: String, max: usize) -> String {
    match truncate(&text, max) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cut) => cut,
    }
}

/// Shows control characters visibly: `\n`, `\r`, `\t`, `\e` for escape and `\u{7f}` for the
/// others, so that text from a guest cannot act on a terminal or split a log line. A
/// backslash is doubled, so the escaped form cannot be forged either.
///
/// ```
/// use osiiso_host::text::escape_control;
/// assert_eq!(escape_control("plain"), "plain");
/// assert_eq!(escape_control("red\x1b[31m\r\nline"), "red\\e[31m\\r\\nline");
/// ```
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            c if c.is_control() || is_invisible_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape_control`] that keeps line breaks, for multi-line text shown on its own lines
/// (a failure message in the run summary). Carriage returns are still escaped.
///
/// ```
/// use osiiso_host::text::escape_control_keep_newlines;
/// assert_eq!(escape_control_keep_newlines("line 1\nline 2\r\x1b"), "line 1\nline 2\\r\\e");
/// ```
pub fn escape_control_keep_newlines(text: &str) -> String {
    text.split('\n')
        .map(|line| escape_control(line).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Escapes only what acts on a terminal — control characters other than line breaks,
/// bidirectional and zero-width characters — and leaves backslashes as they are: for a
/// message that may quote guest text already escaped with [`escape_control`], which must not
/// be escaped twice (`\e` shown as `\\e`).
///
/// ```
/// use osiiso_host::text::{escape_control, escape_terminal_keep_newlines};
/// let name = escape_control("evil\x1b[2Jname");
/// let message = format!("unknown task '{name}'\nand a \x1b raw escape");
/// assert_eq!(
///     escape_terminal_keep_newlines(&message),
///     "unknown task 'evil\\e[2Jname'\nand a \\e raw escape"
/// );
/// ```
pub fn escape_terminal_keep_newlines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            c if c.is_control() || is_invisible_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || is_invisible_format(c)
}

/// Characters that reorder or hide text (bidirectional overrides, zero-width joiners): a
/// guest could make a name read as another one.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A bounded, escaped rendering of guest text for a log line or a terminal: [`truncate`] to
/// `max` bytes, then [`escape_control`] (so the result may be a little longer than `max`).
///
/// ```
/// use osiiso_host::text::for_display;
/// assert_eq!(for_display("a\nb", 10), "a\\nb");
/// assert!(for_display(&"x".repeat(1000), 8).starts_with("xxxxxxxx… [truncated"));
/// ```
pub fn for_display(text: &str, max: usize) -> String {
    escape_control(&truncate(text, max)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_control_character_and_backslashes() {
        assert_eq!(escape_control("a\\b"), "a\\\\b");
        assert_eq!(escape_control("\u{7}\u{0}"), "\\u{7}\\u{0}");
        assert_eq!(escape_control("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(escape_control("ünïcödé ok"), "ünïcödé ok");
        assert_eq!(escape_control_keep_newlines("a\nb\x1b"), "a\nb\\e");
    }

    #[test]
    fn truncates_on_a_character_boundary() {
        let text = "é".repeat(10);
        let cut = truncate(&text, 5);
        assert!(cut.starts_with("éé…"), "{cut}");
        assert!(cut.ends_with("[truncated: 20 bytes in all]"));
        assert_eq!(truncate_owned("abc".into(), 3), "abc");
    }
}
