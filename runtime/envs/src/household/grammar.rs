//! The actor's replies constrained to what the world accepts: a GBNF grammar (llama.cpp's
//! grammar language) over the admissible actions of the current state
//! ([`HouseholdEnv::admissible_actions`](super::HouseholdEnv::admissible_actions)) and, while
//! the episode still allows one, `think: ` with a bounded free text.
//!
//! A reply is what follows the prompt's `>`: a space, one action, a newline (the newline is
//! the request's stop string, so it never shows). Ending on the newline, not on the model's
//! end-of-generation token, lets the model choose between `go to cabinet 1` and
//! `go to cabinet 10` by its own likelihoods of `\n` and `0`.

use retroformer_llm::Grammar;

/// The most characters of a `think:` text (a line of the prompt examples' thoughts is 40-200).
pub const MAX_THINK_CHARS: usize = 200;

/// Where the grammar comes from, for error messages.
pub const ORIGIN: &str = "household admissible actions";

/// `s` as a GBNF string literal: quoted, with `"` and `\` escaped, and control characters
/// written as escapes (`\n`, `\r`, `\t`, else `\xNN`), so that no action text can end the
/// literal or the rule early. Other characters stand for themselves (GBNF literals are UTF-8).
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The grammar of one reply: ` ACTION\n` for each of `actions`, and, when `think` is true,
/// ` think: TEXT\n` with TEXT 1 to [`MAX_THINK_CHARS`] characters other than a newline.
/// Duplicate and empty actions are left out. With no action and no think, the grammar allows
/// only ` look\n` (always valid in the world), so that it never matches nothing.
pub fn actions_grammar<S: AsRef<str>>(actions: &[S], think: bool) -> Grammar {
    let mut alts: Vec<String> = Vec::with_capacity(actions.len() + 1);
    let mut seen = std::collections::HashSet::new();
    for a in actions {
        let a = a.as_ref();
        if !a.is_empty() && seen.insert(a) {
            alts.push(literal(a));
        }
    }
    if think {
        alts.push("think".into());
    }
    if alts.is_empty() {
        alts.push(literal("look"));
    }
    let mut text = format!(
        "root ::= \" \" action \"\\n\"\naction ::= {}\n",
        alts.join(" | ")
    );
    if think {
        text.push_str(&format!(
            "think ::= \"think: \" [^\\n\\r]{{1,{MAX_THINK_CHARS}}}\n"
        ));
    }
    Grammar {
        text,
        root: "root".into(),
        origin: ORIGIN.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(literal("go to cabinet 1"), "\"go to cabinet 1\"");
        assert_eq!(literal("put a in/on b"), "\"put a in/on b\"");
        assert_eq!(literal("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(literal("a\\b"), "\"a\\\\b\"");
        assert_eq!(literal("a\nb\r\tc"), "\"a\\nb\\r\\tc\"");
        assert_eq!(literal("\u{0}\u{1b}\u{7f}"), "\"\\x00\\x1B\\x7F\"");
        assert_eq!(literal("café ☃"), "\"café ☃\"");
    }

    #[test]
    fn the_grammar_lists_each_action_once_and_a_bounded_think_when_allowed() {
        let g = actions_grammar(&["look", "go to cabinet 1", "look", ""], true);
        assert_eq!(g.root, "root");
        assert_eq!(g.origin, ORIGIN);
        assert_eq!(
            g.text,
            "root ::= \" \" action \"\\n\"\naction ::= \"look\" | \"go to cabinet 1\" | think\nthink ::= \"think: \" [^\\n\\r]{1,200}\n"
        );
        let no_think = actions_grammar(&["look"], false);
        assert!(!no_think.text.contains("think"), "{}", no_think.text);
        let nothing = actions_grammar::<&str>(&[], false);
        assert!(nothing.text.contains("action ::= \"look\"\n"));
    }
}
