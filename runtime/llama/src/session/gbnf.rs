//! What llama.cpp's grammar set-up will cost, counted before it runs.
//!
//! When llama.cpp builds a grammar it checks every rule for left recursion
//! (`llama_grammar_detect_left_recursion`), recursing into each rule that can start a rule's
//! alternative without remembering the rules it has already checked. A chain of rules that
//! each start twice with the next (`a0 ::= a1 | a1 "x"`, `a1 ::= a2 | a2 "x"`, ...) so costs
//! 2^N visits: 60 such rules (~1 KB) would keep the session's thread, and every lane with it,
//! busy for longer than the universe is old. The set-up cannot be interrupted, so the visits
//! are counted here (with memoisation, in time linear in the grammar) and a grammar past
//! [`MAX_SETUP_VISITS`] is refused before llama.cpp parses it.
//!
//! The parser follows llama.cpp's GBNF (`llama-grammar.cpp`): rules `name ::= alternatives`,
//! a newline ending a rule outside parentheses, literals, character classes, `.`, tokens
//! (`<...>`), groups and the repetitions `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`. What it cannot
//! read counts nothing: llama.cpp's own parser then reports the error.

use std::collections::HashMap;

/// The most rule visits llama.cpp's left-recursion check may make (~tens of ms).
pub const MAX_SETUP_VISITS: u64 = 1_000_000;

/// The most parses a grammar may start with: matching checks each against the candidate
/// tokens at every token (a household turn's grammar, one alternative an admissible action,
/// starts with a few hundred; 65 536 made one token take 37 s with SmolLM2).
pub const MAX_INITIAL_STACKS: u64 = 4_096;

/// The longest chain of rules that each start with the next that is counted; a longer one
/// counts as too costly (llama.cpp's check would recurse as deep on the session's stack).
const MAX_START_DEPTH: usize = 4_096;

/// One element of a sequence.
#[derive(Debug, Clone)]
enum Kind {
    /// Characters, a class, `.` or a token: recursion stops here.
    Terminal,
    /// An empty literal (`""`): no element at all.
    Nothing,
    /// A named rule.
    Ref(String),
    /// A parenthesised group: a rule of its own (an index into `Grammar::rules`).
    Group(usize),
}

#[derive(Debug, Clone)]
struct Item {
    kind: Kind,
    /// The repetition's least count and the optional copies after it (`*`: 0 and 1, as
    /// llama.cpp writes one recursive rule; none: 1 and 0).
    min: u64,
    optional: u64,
}

type Alternatives = Vec<Vec<Item>>;

#[derive(Default)]
struct Grammar {
    /// Every rule, named ones and groups.
    rules: Vec<Alternatives>,
    names: HashMap<String, usize>,
}

/// The visits llama.cpp's left-recursion check would make over `g`'s rules (saturating).
fn setup_visits_of(g: &Grammar) -> u64 {
    let mut memo = vec![None; g.rules.len()];
    // The rules llama.cpp writes for repetitions, each checked on its own too.
    let mut repetitions = 0u64;
    (0..g.rules.len())
        .fold(0u64, |total, id| {
            total.saturating_add(visits(g, id, &mut memo, &mut repetitions, 0))
        })
        .saturating_add(repetitions)
}

/// Visits of `id`'s check: itself and the rules its alternatives can start with. The checks
/// of the rules its repetitions add are added to `repetitions`.
fn visits(
    g: &Grammar,
    id: usize,
    memo: &mut Vec<Option<u64>>,
    repetitions: &mut u64,
    depth: usize,
) -> u64 {
    if let Some(v) = memo[id] {
        return v;
    }
    if depth > MAX_START_DEPTH {
        // llama.cpp's check recurses as deep, on the session thread's stack.
        return u64::MAX;
    }
    // In progress: left recursion, which llama.cpp refuses after this visit.
    memo[id] = Some(1);
    let mut total = 1u64;
    for alt in &g.rules[id] {
        for item in alt {
            let target = match &item.kind {
                Kind::Nothing => continue,
                Kind::Terminal if item.min == 0 => {
                    // Replaced by a rule of its repetition, which starts with the terminal.
                    total = total.saturating_add(1);
                    continue;
                }
                Kind::Terminal => break,
                Kind::Ref(name) => match g.names.get(name) {
                    Some(&t) => t,
                    None => break,
                },
                Kind::Group(t) => *t,
            };
            let v = visits(g, target, memo, repetitions, depth + 1);
            if item.optional > 0 {
                // `S'(x) ::= S S'(x-1) |`, one rule an optional copy, each starting with S.
                let each = v.saturating_add(1);
                *repetitions = repetitions.saturating_add(item.optional.saturating_mul(each));
            }
            let repeated = item.min != 1 || item.optional != 0;
            if empty_alternative(g, target) && !repeated {
                total = total.saturating_add(v);
                continue;
            }
            if empty_alternative(g, target) {
                // Each copy and each repetition rule is checked: count them all.
                let copies = item.min.max(1).saturating_add(item.optional);
                total = total.saturating_add(copies.saturating_mul(v.saturating_add(1)));
                continue;
            }
            if item.min >= 1 {
                total = total.saturating_add(v);
                break;
            }
            // `S*`, `S?`: a rule that starts with S and may be empty.
            total = total.saturating_add(v.saturating_add(1));
        }
    }
    memo[id] = Some(total);
    total
}

/// The parses llama.cpp's matcher starts `g` with from `root`: one stack for each way to
/// reach a first character (saturating; 0 without that rule). Each is checked
/// against every candidate token, at every token while it lives.
fn initial_stacks_of(g: &Grammar, root: &str) -> u64 {
    let Some(&id) = g.names.get(root) else {
        return 0;
    };
    let mut memo = vec![None; g.rules.len()];
    stacks(g, id, &mut memo, 0)
}

/// What llama.cpp will spend on a grammar, both counted from one reading of its text (zero
/// when the text does not parse).
#[derive(Debug, Default, Clone, Copy)]
pub struct Cost {
    /// The visits of llama.cpp's left-recursion check (saturating).
    pub visits: u64,
    /// The parses its matcher starts with (saturating).
    pub stacks: u64,
}

/// `text`'s [`Cost`], its matching starting from `root`.
pub fn cost(text: &str, root: &str) -> Cost {
    parse(text).map_or_else(Cost::default, |g| Cost {
        visits: setup_visits_of(&g),
        stacks: initial_stacks_of(&g, root),
    })
}

/// The visits llama.cpp's left-recursion check would make over `text`'s rules.
#[cfg(test)]
fn setup_visits(text: &str) -> u64 {
    cost(text, "root").visits
}

/// The parses llama.cpp's matcher starts `text` with from `root`.
#[cfg(test)]
fn initial_stacks(text: &str, root: &str) -> u64 {
    cost(text, root).stacks
}

/// The stacks a rule's alternatives expand to that reach a character (the empty completion
/// of a rule that may be empty is its caller's next element).
fn stacks(g: &Grammar, id: usize, memo: &mut Vec<Option<u64>>, depth: usize) -> u64 {
    if let Some(v) = memo[id] {
        return v;
    }
    if depth > MAX_START_DEPTH {
        return u64::MAX;
    }
    memo[id] = Some(1);
    let mut total = 0u64;
    for alt in &g.rules[id] {
        for item in alt {
            let (n, nullable) = match &item.kind {
                Kind::Nothing => continue,
                Kind::Terminal => (1, item.min == 0),
                Kind::Ref(name) => match g.names.get(name) {
                    Some(&t) => (
                        stacks(g, t, memo, depth + 1),
                        item.min == 0 || empty_alternative(g, t),
                    ),
                    None => (1, false),
                },
                Kind::Group(t) => (
                    stacks(g, *t, memo, depth + 1),
                    item.min == 0 || empty_alternative(g, *t),
                ),
            };
            total = total.saturating_add(n);
            if !nullable {
                break;
            }
        }
    }
    memo[id] = Some(total);
    total
}

/// Whether a rule has an alternative without any element (llama.cpp's "may be empty").
fn empty_alternative(g: &Grammar, id: usize) -> bool {
    g.rules[id]
        .iter()
        .any(|alt| alt.iter().all(|i| matches!(i.kind, Kind::Nothing)))
}

fn parse(text: &str) -> Option<Grammar> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
        g: Grammar::default(),
    };
    loop {
        p.space(true);
        if p.pos >= p.s.len() {
            return Some(p.g);
        }
        let name = p.name()?;
        p.space(false);
        if !p.eat(b"::=") {
            return None;
        }
        p.space(true);
        let alts = p.alternatives(false)?;
        let id = p.g.rules.len();
        p.g.rules.push(alts);
        p.g.names.insert(name, id);
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    g: Grammar,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, what: &[u8]) -> bool {
        // An escape at the very end leaves `pos` one past the text.
        let found = self.s.get(self.pos..).is_some_and(|r| r.starts_with(what));
        if found {
            self.pos += what.len();
        }
        found
    }

    /// Skips blanks and comments, and newlines when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => self.pos += 1,
                b'\r' | b'\n' if newlines => self.pos += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\r' && c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn name(&mut self) -> Option<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into())
    }

    fn alternatives(&mut self, nested: bool) -> Option<Alternatives> {
        let mut alts = vec![self.sequence(nested)?];
        while self.eat(b"|") {
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Some(alts)
    }

    fn sequence(&mut self, nested: bool) -> Option<Vec<Item>> {
        let mut items: Vec<Item> = Vec::new();
        while let Some(c) = self.peek() {
            let kind = match c {
                b'"' => self.literal()?,
                b'[' => self.skip_past(b']').map(|()| Kind::Terminal)?,
                b'<' | b'!' => self.skip_past(b'>').map(|()| Kind::Terminal)?,
                b'.' => {
                    self.pos += 1;
                    Kind::Terminal
                }
                b'(' => {
                    self.pos += 1;
                    self.space(true);
                    let alts = self.alternatives(true)?;
                    if !self.eat(b")") {
                        return None;
                    }
                    self.g.rules.push(alts);
                    Kind::Group(self.g.rules.len() - 1)
                }
                b'*' | b'+' | b'?' | b'{' => {
                    let (min, optional) = self.repetition()?;
                    let last = items.last_mut()?;
                    last.min = last.min.saturating_mul(min);
                    last.optional = optional;
                    self.space(nested);
                    continue;
                }
                c if c.is_ascii_alphanumeric() || c == b'-' => Kind::Ref(self.name()?),
                _ => return Some(items),
            };
            items.push(Item {
                kind,
                min: 1,
                optional: 0,
            });
            self.space(nested);
        }
        Some(items)
    }

    /// A string literal: nothing when empty.
    fn literal(&mut self) -> Option<Kind> {
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek()? {
                b'\\' => self.pos += 2,
                b'"' => break,
                _ => self.pos += 1,
            }
        }
        let empty = self.pos == start;
        self.pos += 1;
        Some(if empty { Kind::Nothing } else { Kind::Terminal })
    }

    /// Skips to just past `end`, honouring escapes.
    fn skip_past(&mut self, end: u8) -> Option<()> {
        self.pos += 1;
        loop {
            match self.peek()? {
                b'\\' => self.pos += 2,
                c if c == end => {
                    self.pos += 1;
                    return Some(());
                }
                _ => self.pos += 1,
            }
        }
    }

    /// A repetition operator: the least count and the optional copies llama.cpp writes.
    fn repetition(&mut self) -> Option<(u64, u64)> {
        let c = self.peek()?;
        self.pos += 1;
        Some(match c {
            b'*' => (0, 1),
            b'+' => (1, 1),
            b'?' => (0, 1),
            _ => {
                self.space(false);
                let min = self.number()?;
                self.space(false);
                let max = if self.eat(b",") {
                    self.space(false);
                    if self.peek() == Some(b'}') {
                        None
                    } else {
                        Some(self.number()?)
                    }
                } else {
                    Some(min)
                };
                self.space(false);
                if !self.eat(b"}") {
                    return None;
                }
                match max {
                    None => (min, 1),
                    Some(max) => (min, max.checked_sub(min)?),
                }
            }
        })
    }

    fn number(&mut self) -> Option<u64> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos])
            .ok()?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` rules, each starting `k` times with the next.
    fn chain(n: usize, k: usize) -> String {
        let mut g = String::from("root ::= a0\n");
        for i in 0..n {
            let alts: Vec<String> = (0..k).map(|j| format!("a{} \"{j}\"", i + 1)).collect();
            g.push_str(&format!("a{i} ::= {}\n", alts.join(" | ")));
        }
        g.push_str(&format!("a{n} ::= \"x\"\n"));
        g
    }

    #[test]
    fn a_chain_of_rules_that_each_start_twice_with_the_next_costs_exponentially_many_visits() {
        assert!(setup_visits(&chain(10, 2)) < 10_000);
        assert!(setup_visits(&chain(60, 2)) > MAX_SETUP_VISITS);
        assert_eq!(setup_visits(&chain(70, 4)), u64::MAX);
    }

    #[test]
    fn ordinary_grammars_cost_about_one_visit_a_rule() {
        let json = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}   # a comment
"#;
        let v = setup_visits(json);
        assert!((7..200).contains(&v), "{v}");
        let actions: Vec<String> = (0..500).map(|i| format!("\"go to shelf {i}\"")).collect();
        let v = setup_visits(&format!("root ::= {}", actions.join(" | ")));
        assert_eq!(v, 1);
    }

    #[test]
    fn nullable_starts_let_the_check_go_on_to_the_next_element() {
        // `e` may be empty, so each alternative of `a` also starts with `b`.
        let g = "root ::= a\na ::= e b | e b \"y\"\ne ::= \"\" | \"z\"\nb ::= \"x\"\n";
        // root 1 + a (1 + 2 * (e + b)) = 1 + 5; then a 5, e 1, b 1.
        assert_eq!(setup_visits(g), 6 + 5 + 1 + 1);
    }

    #[test]
    fn a_chain_of_rules_deeper_than_the_limit_counts_as_too_costly() {
        // Each rule of a chain checks all those below it: n^2 / 2 visits.
        let v = setup_visits(&chain(1_000, 1));
        assert!((500_000..510_000).contains(&v), "{v}");
        assert_eq!(setup_visits(&chain(MAX_START_DEPTH + 10, 1)), u64::MAX);
    }

    #[test]
    fn the_initial_parses_multiply_down_a_chain_and_add_across_alternatives() {
        assert_eq!(initial_stacks(&chain(12, 2), "root"), 4_096);
        assert_eq!(initial_stacks(&chain(70, 4), "root"), u64::MAX);
        let actions: Vec<String> = (0..500).map(|i| format!("\"go to shelf {i}\"")).collect();
        let g = format!("root ::= {}", actions.join(" | "));
        assert_eq!(initial_stacks(&g, "root"), 500);
        // `ws` may be empty: "x" ws "y" | ws "z" starts as "x", or " " or "z".
        let g = "root ::= \"x\" ws \"y\" | ws \"z\"\nws ::= | \" \"\n";
        assert_eq!(initial_stacks(g, "root"), 3);
    }

    #[test]
    fn what_does_not_parse_counts_nothing_and_is_left_to_llama_cpp() {
        assert_eq!(setup_visits("root ::= (\"unclosed\""), 0);
        assert_eq!(setup_visits("no rule here"), 0);
        assert_eq!(setup_visits("root ::= \"x\\"), 0);
        assert_eq!(initial_stacks("root ::= [a\\", "root"), 0);
    }
}
