//! Text from files and programs made safe to show: control characters (an escape sequence can
//! move the cursor, hide a line or fake one) become visible escapes.

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
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

/// `e` and its causes joined by `: `, each cause left out when the text before already says
/// it: many errors name their source in their own message (so that `to_string` alone is
/// complete), which a plain walk of the chain (anyhow's `{:#}`) would print twice.
pub fn error_chain(e: &(dyn core::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(text.as_str()) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Failure(&'static str, Option<&'static Failure>);

    impl core::fmt::Display for Failure {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl core::error::Error for Failure {
        fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
            self.1.map(|c| c as &(dyn core::error::Error + 'static))
        }
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        static IO: Failure = Failure("No such file or directory (os error 2)", None);
        // The message already names its source: not again.
        static NAMED: Failure =
            Failure("a.gguf: No such file or directory (os error 2)", Some(&IO));
        assert_eq!(
            error_chain(&NAMED),
            "a.gguf: No such file or directory (os error 2)"
        );
        // A context that does not: its cause follows.
        static CONTEXT: Failure = Failure("round 1", Some(&NAMED));
        assert_eq!(
            error_chain(&CONTEXT),
            "round 1: a.gguf: No such file or directory (os error 2)"
        );
    }

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
