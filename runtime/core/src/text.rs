//! Text from files and programs made safe to show: control characters (an escape sequence can
//! move the cursor, hide a line or fake one) become visible escapes.

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt::Write;

/// `s` with every control character written as `\u{..}`; with `keep_lines`, newlines and tabs
/// stay (a program's output keeps its lines).
pub fn printable(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let shown = |c: char| !c.is_control() || (keep_lines && (c == '\n' || c == '\t'));
    if s.chars().all(shown) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if shown(c) {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_and_plain_text_is_untouched() {
        assert!(matches!(printable("plain name", false), Cow::Borrowed(_)));
        assert_eq!(printable("a\x1b[2Kb", false), "a\\u{1b}[2Kb");
        assert_eq!(printable("line\nnext\r", false), "line\\u{a}next\\u{d}");
        assert_eq!(
            printable("line\n\tnext\r\x07", true),
            "line\n\tnext\\u{d}\\u{7}"
        );
    }
}
