//! Visible tests out of a prompt's docstring: the examples its author wrote, turned into
//! `assert` statements that compare the call's value with the evaluated expected value.
//!
//! Only forms that parse without guessing become tests, and only from the docstring of the
//! function under test:
//! - doctest: `>>> f(x)` (with `...` continuation lines) and the expected value on the lines
//!   after it, up to a blank line or the next `>>>` (no lines: `None`, as doctest reads it), or
//!   `>>> f(x) == y` alone; the expression may wrap the call in a builtin (`round(f(x), 2)`);
//! - one line, `f(x) SEP y`, with SEP one of `==`, `==>`, `=>`, `->`, `➞`, `→`, `returns`,
//!   `should return`, `# returns`, `# =>`, or `=` (a docstring that also writes `f(n) = ...`
//!   with something other than values, a recurrence, gets no `=` tests); a call that spans
//!   lines is joined;
//! - `For a = x, b = y the output should be z` (or `the result should be`);
//! - `Input: a = x, b = y` (or a single value for a function of one parameter) followed by
//!   `Output: z`.
//!
//! The arguments and the expected value must be Python literals (numbers, strings, `True`,
//! `False`, `None`, lists, tuples, dicts, sets of them; prose forms also take `true`/`false`);
//! anything else (a name, an expression such as `1 + 2 = 3`, a parenthesised single value,
//! which is ambiguous between a value and a tuple) leaves the example out. A float expected at
//! the top is compared within 1e-6 (`assert abs(f(x) - y) < 1e-6`), everything else with `==`.

/// Builtins an example may wrap the call in (`round(find_zero(xs), 2)`).
const WRAPPERS: [&str; 14] = [
    "round", "abs", "len", "sorted", "list", "tuple", "set", "str", "int", "float", "bool", "sum",
    "min", "max",
];

/// The separators of one-line examples, longest first where one begins another.
const SEPARATORS: [&str; 11] = [
    "# =>",
    "# returns",
    "==>",
    "==",
    "=>",
    "->",
    "➞",
    "→",
    "should return",
    "returns",
    "=",
];

/// The visible tests of a prompt: its docstring examples of `entry_point` as asserts, in the
/// order they appear, without duplicates; empty when it has none that parse.
pub fn docstring_tests(prompt: &str, entry_point: &str) -> Vec<String> {
    let Some(doc) = docstring(prompt, entry_point) else {
        return Vec::new();
    };
    let params = parameters(prompt, entry_point);
    let lines: Vec<&str> = doc.lines().collect();
    // Each test, and whether it was written with a single `=`.
    let mut tests: Vec<(String, bool)> = Vec::new();
    let mut eq_broken = false;
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        let (found, used) = if t.starts_with(">>>") {
            let (test, used) = doctest(&lines, i, entry_point);
            (test.map(|t| (t, false)), used)
        } else if let Some(p) = call_start(t, entry_point) {
            let (text, used) = joined_call(&lines, i, p);
            match prose(&text, entry_point) {
                Prose::Example { test, eq_sign } => (Some((test, eq_sign)), used),
                Prose::Broken { eq_sign } => {
                    eq_broken |= eq_sign;
                    (None, used)
                }
                Prose::NotAnExample => (None, 1),
            }
        } else if t.starts_with("For ") {
            (
                for_example(t, entry_point, params.as_deref()).map(|t| (t, false)),
                1,
            )
        } else if t.starts_with("Input:") {
            let (test, used) = input_output(&lines, i, entry_point, params.as_deref());
            (test.map(|t| (t, false)), used)
        } else {
            (None, 1)
        };
        if let Some(test) = found {
            tests.push(test);
        }
        i += used.max(1);
    }
    let mut out: Vec<String> = Vec::new();
    for (t, eq_sign) in tests {
        let distrusted = eq_sign && eq_broken;
        if !distrusted && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// The body of `entry_point`'s docstring (between its triple quotes).
pub fn docstring<'a>(prompt: &'a str, entry_point: &str) -> Option<&'a str> {
    let def = def_at(prompt, entry_point)?;
    let after = &prompt[def..];
    let (open, quote) = ["\"\"\"", "'''"]
        .iter()
        .filter_map(|q| after.find(q).map(|i| (i, *q)))
        .min()?;
    let body = &after[open + 3..];
    let close = body.find(quote)?;
    Some(&body[..close])
}

/// Where `def entry_point(` starts (at the start of a line).
fn def_at(prompt: &str, entry_point: &str) -> Option<usize> {
    let def = format!("def {entry_point}(");
    prompt
        .match_indices(&def)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || prompt[..i].ends_with('\n'))
}

/// One parameter of the function under test.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Param {
    name: String,
    has_default: bool,
}

/// The parameters of `entry_point`'s signature; `None` when it takes `*args`/`**kwargs` or
/// does not parse.
fn parameters(prompt: &str, entry_point: &str) -> Option<Vec<Param>> {
    let def = def_at(prompt, entry_point)?;
    let open = def + "def ".len() + entry_point.len();
    let end = call_extent(&prompt[open..])?;
    let inner = &prompt[open + 1..open + end - 1];
    let mut out = Vec::new();
    for part in split_top_level(inner) {
        let p = part.trim();
        if p.is_empty() || p == "/" {
            continue;
        }
        if p.starts_with('*') {
            return None;
        }
        let name: String = p
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            return None;
        }
        out.push(Param {
            has_default: p.contains('='),
            name,
        });
    }
    Some(out)
}

// ---- the forms ------------------------------------------------------------------------------

/// A `>>>` example at `lines[at]`: the test, if it parses, and the lines it used.
fn doctest(lines: &[&str], at: usize, entry_point: &str) -> (Option<String>, usize) {
    let mut source = lines[at].trim()[3..].trim().to_string();
    let mut i = at + 1;
    while i < lines.len() && lines[i].trim_start().starts_with("...") {
        source.push(' ');
        source.push_str(lines[i].trim_start()[3..].trim());
        i += 1;
    }
    let mut expected: Vec<&str> = Vec::new();
    while i < lines.len() {
        let t = lines[i].trim();
        if t.is_empty() || t.starts_with(">>>") {
            break;
        }
        expected.push(t);
        i += 1;
    }
    let used = i - at;
    let source = strip_comment(&source);
    let mut c = Cursor::new(source);
    let Some((call, mentions)) = c.call(entry_point, false) else {
        return (None, used);
    };
    if !mentions {
        return (None, used);
    }
    c.ws();
    if c.eat("==") {
        // `>>> f(x) == y`, with no output or `True`.
        let Some((lit, kind)) = c.literal(false) else {
            return (None, used);
        };
        c.ws();
        let ok = c.done() && (expected.is_empty() || expected == ["True"]);
        return (ok.then(|| render(&call, &lit, kind)), used);
    }
    if !c.done() {
        return (None, used);
    }
    if expected.is_empty() {
        return (Some(render(&call, "None", Kind::Other)), used);
    }
    let text = expected.join(" ");
    let mut e = Cursor::new(&text);
    let test = e.literal(false).and_then(|(lit, kind)| {
        e.ws();
        e.done().then(|| render(&call, &lit, kind))
    });
    (test, used)
}

/// What a line that starts with a call of the function turned out to be.
#[derive(Debug, PartialEq)]
enum Prose {
    /// Not an example (no separator after the call: prose that names the function).
    NotAnExample,
    /// An example; `eq_sign`: written with a single `=`.
    Example { test: String, eq_sign: bool },
    /// Written like an example, but it does not parse.
    Broken { eq_sign: bool },
}

/// `f(x) SEP y [# comment]` (`text` starts at the call).
fn prose(text: &str, entry_point: &str) -> Prose {
    let Some(end) = call_extent(&text[entry_point.len()..]).map(|e| e + entry_point.len()) else {
        return Prose::Broken { eq_sign: false };
    };
    let after = text[end..].trim_start();
    let Some(sep) = SEPARATORS.iter().find(|s| after.starts_with(**s)) else {
        return Prose::NotAnExample;
    };
    let eq_sign = *sep == "=";
    let broken = Prose::Broken { eq_sign };
    let mut c = Cursor::new(&text[..end]);
    let Some((call, _)) = c.call(entry_point, true) else {
        return broken;
    };
    if !c.done() {
        return broken;
    }
    match expected_value(&after[sep.len()..]) {
        Some((lit, kind)) => Prose::Example {
            test: render(&call, &lit, kind),
            eq_sign,
        },
        None => broken,
    }
}

/// The expected value of a prose example: a literal, then nothing, a `#` comment or a
/// parenthesised remark; a sentence's final period is dropped.
fn expected_value(text: &str) -> Option<(String, Kind)> {
    let t = text.trim();
    let t = t.strip_suffix('.').unwrap_or(t);
    let mut c = Cursor::new(t);
    let (lit, kind) = c.literal(true)?;
    let rest = c.rest();
    let r = rest.trim();
    let remark = rest.starts_with(char::is_whitespace) && r.starts_with('(') && r.ends_with(')');
    (r.is_empty() || r.starts_with('#') || remark).then_some((lit, kind))
}

/// `For a = x, b = y the output should be z`.
fn for_example(line: &str, entry_point: &str, params: Option<&[Param]>) -> Option<String> {
    let rest = line.strip_prefix("For ")?;
    let (head, tail) = [" the output should be ", " the result should be "]
        .iter()
        .find_map(|m| rest.find(m).map(|i| (&rest[..i], &rest[i + m.len()..])))?;
    let args = assignments(head, params?)?;
    let (lit, kind) = expected_value(tail)?;
    Some(render(&format!("{entry_point}({args})"), &lit, kind))
}

/// `Input: ...` at `lines[at]` and `Output: ...` on the next line that is not blank.
fn input_output(
    lines: &[&str],
    at: usize,
    entry_point: &str,
    params: Option<&[Param]>,
) -> (Option<String>, usize) {
    let input = lines[at].trim()["Input:".len()..].trim();
    let Some(out_at) = (at + 1..lines.len()).find(|&j| !lines[j].trim().is_empty()) else {
        return (None, 1);
    };
    let Some(output) = lines[out_at].trim().strip_prefix("Output:") else {
        return (None, 1);
    };
    let Some(params) = params else {
        return (None, out_at + 1 - at);
    };
    let args = assignments(input, params).or_else(|| {
        let mut c = Cursor::new(input);
        let (lit, _) = c.literal(true)?;
        c.ws();
        (c.done() && params.len() == 1).then_some(lit)
    });
    let test = args.and_then(|args| {
        let (lit, kind) = expected_value(output)?;
        Some(render(&format!("{entry_point}({args})"), &lit, kind))
    });
    (test, out_at + 1 - at)
}

/// `a = x, b = y` (a trailing comma allowed) as positional arguments in the signature's order:
/// every name a parameter, every parameter without a default given.
fn assignments(text: &str, params: &[Param]) -> Option<String> {
    let mut c = Cursor::new(text);
    let mut given: Vec<(String, String)> = Vec::new();
    loop {
        c.ws();
        if c.done() {
            break;
        }
        let name = c.ident()?.to_string();
        c.ws();
        if !c.eat("=") || c.rest().starts_with('=') {
            return None;
        }
        let (value, _) = c.literal(true)?;
        if !params.iter().any(|p| p.name == name) || given.iter().any(|(n, _)| *n == name) {
            return None;
        }
        given.push((name, value));
        c.ws();
        if !c.eat(",") && !c.done() {
            return None;
        }
    }
    let mut args = Vec::new();
    for p in params {
        match given.iter().find(|(n, _)| *n == p.name) {
            Some((_, v)) => args.push(v.clone()),
            None if p.has_default => break,
            None => return None,
        }
    }
    (!given.is_empty() && args.len() == given.len()).then(|| args.join(", "))
}

/// The test for `call` and its expected value.
fn render(call: &str, expected: &str, kind: Kind) -> String {
    match kind {
        Kind::Float if expected.starts_with('-') => {
            format!("assert abs({call} - ({expected})) < 1e-6")
        }
        Kind::Float => format!("assert abs({call} - {expected}) < 1e-6"),
        Kind::Other => format!("assert {call} == {expected}"),
    }
}

// ---- lines and brackets ---------------------------------------------------------------------

/// Where a prose example's call starts in `line` (trimmed): at the start, after a bullet
/// (`*`, `-`) or after `for`.
fn call_start(line: &str, entry_point: &str) -> Option<usize> {
    let call = format!("{entry_point}(");
    line.match_indices(&call).map(|(i, _)| i).find(|&i| {
        matches!(line[..i].trim(), "" | "*" | "-" | "for" | "For")
            && !line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.')
    })
}

/// The call at `lines[at]` from byte `from`, joined with the following lines while its
/// brackets are open (at most 20, never across a blank line), and how many lines it used.
fn joined_call(lines: &[&str], at: usize, from: usize) -> (String, usize) {
    let mut text = lines[at].trim()[from..].to_string();
    let mut used = 1;
    while call_extent_open(&text) && at + used < lines.len() && used < 20 {
        let next = lines[at + used].trim();
        if next.is_empty() {
            break;
        }
        text.push(' ');
        text.push_str(next);
        used += 1;
    }
    (text, used)
}

/// Whether the call that starts `text` leaves a bracket open at the end.
fn call_extent_open(text: &str) -> bool {
    text.find('(')
        .is_some_and(|i| call_extent(&text[i..]).is_none() && balance(&text[i..]) > 0)
}

/// The open-bracket depth at the end of `text` (strings skipped); negative when it closes
/// more than it opens.
fn balance(text: &str) -> i32 {
    let mut depth = 0;
    let mut it = text.char_indices().peekable();
    while let Some((i, ch)) = it.next() {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '"' | '\'' => match string_end(text, i) {
                Some(end) => {
                    while it.peek().is_some_and(|(j, _)| *j < end) {
                        it.next();
                    }
                }
                None => return depth,
            },
            _ => {}
        }
    }
    depth
}

/// With `text` starting at `(`: the byte just past the matching `)` (strings skipped).
fn call_extent(text: &str) -> Option<usize> {
    if !text.starts_with('(') {
        return None;
    }
    let mut stack: Vec<char> = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((i, ch)) = it.next() {
        match ch {
            '(' => stack.push(')'),
            '[' => stack.push(']'),
            '{' => stack.push('}'),
            ')' | ']' | '}' => {
                if stack.pop() != Some(ch) {
                    return None;
                }
                if stack.is_empty() {
                    return Some(i + 1);
                }
            }
            '"' | '\'' => {
                let end = string_end(text, i)?;
                while it.peek().is_some_and(|(j, _)| *j < end) {
                    it.next();
                }
            }
            _ => {}
        }
    }
    None
}

/// The byte just past the string literal whose quote is at `at` (backslash escapes; triple
/// quotes; a one-quote string ends at its line).
fn string_end(text: &str, at: usize) -> Option<usize> {
    let q = text[at..].chars().next()?;
    let triple = q.to_string().repeat(3);
    let (open, close): (usize, &str) = if text[at..].starts_with(&triple) {
        (3, &triple)
    } else {
        (1, &text[at..at + 1])
    };
    let mut i = at + open;
    while i < text.len() {
        let rest = &text[i..];
        if let Some(escaped) = rest.strip_prefix('\\') {
            i += 1 + escaped.chars().next().map_or(0, char::len_utf8);
            continue;
        }
        if rest.starts_with(close) {
            return Some(i + close.len());
        }
        let ch = rest.chars().next()?;
        if ch == '\n' && open == 1 {
            return None;
        }
        i += ch.len_utf8();
    }
    None
}

/// Python source without its trailing `#` comment (a `#` inside a string stays).
fn strip_comment(source: &str) -> &str {
    let mut it = source.char_indices().peekable();
    while let Some((i, ch)) = it.next() {
        match ch {
            '#' => return source[..i].trim_end(),
            '"' | '\'' => match string_end(source, i) {
                Some(end) => {
                    while it.peek().is_some_and(|(j, _)| *j < end) {
                        it.next();
                    }
                }
                None => return source,
            },
            _ => {}
        }
    }
    source
}

/// Splits at the commas outside brackets and strings.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let mut it = text.char_indices().peekable();
    while let Some((i, ch)) = it.next() {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            '"' | '\'' => {
                if let Some(end) = string_end(text, i) {
                    while it.peek().is_some_and(|(j, _)| *j < end) {
                        it.next();
                    }
                }
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

// ---- Python literals ------------------------------------------------------------------------

/// What matters about a parsed value: whether it is a float at the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Other,
}

/// A cursor over Python source that reads literals and calls, writing them back normalised
/// (`[2,3]` as `[2, 3]`, `true` as `True`; strings and numbers as written).
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, i: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.i += c.len_utf8();
        }
    }

    fn eat(&mut self, t: &str) -> bool {
        let ok = self.rest().starts_with(t);
        if ok {
            self.i += t.len();
        }
        ok
    }

    fn ident(&mut self) -> Option<&'a str> {
        let start = self.i;
        let first = self.peek().filter(|c| c.is_alphabetic() || *c == '_')?;
        self.i += first.len_utf8();
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            self.i += c.len_utf8();
        }
        Some(&self.s[start..self.i])
    }

    /// A call of `entry_point` or of a [`WRAPPERS`] builtin, whose arguments are literals or
    /// such calls; or a literal. The text, and whether it calls `entry_point`.
    fn call(&mut self, entry_point: &str, lenient: bool) -> Option<(String, bool)> {
        self.ws();
        let save = self.i;
        if let Some(name) = self.ident() {
            if (name == entry_point || WRAPPERS.contains(&name)) && self.eat("(") {
                let mut args = Vec::new();
                let mut mentions = name == entry_point;
                loop {
                    self.ws();
                    if self.eat(")") {
                        break;
                    }
                    let (arg, m) = self.call(entry_point, lenient)?;
                    args.push(arg);
                    mentions |= m;
                    self.ws();
                    if !self.eat(",") && !self.rest().starts_with(')') {
                        return None;
                    }
                }
                return Some((format!("{name}({})", args.join(", ")), mentions));
            }
        }
        self.i = save;
        self.literal(lenient).map(|(text, _)| (text, false))
    }

    /// A Python literal; `lenient` also reads `true`/`false`.
    fn literal(&mut self, lenient: bool) -> Option<(String, Kind)> {
        self.ws();
        let c = self.peek()?;
        match c {
            '[' => {
                self.i += 1;
                let (items, _) = self.items(']', lenient)?;
                Some((format!("[{}]", items.join(", ")), Kind::Other))
            }
            '(' => {
                self.i += 1;
                let (items, trailing) = self.items(')', lenient)?;
                match items.len() {
                    0 => Some(("()".into(), Kind::Other)),
                    // `(x)` is a value, not a tuple: ambiguous in a docstring.
                    1 if !trailing => None,
                    1 => Some((format!("({},)", items[0]), Kind::Other)),
                    _ => Some((format!("({})", items.join(", ")), Kind::Other)),
                }
            }
            '{' => {
                self.i += 1;
                self.braces(lenient).map(|t| (t, Kind::Other))
            }
            '"' | '\'' => self.string(self.i),
            '-' | '+' => {
                self.i += 1;
                self.ws();
                let (n, kind) = self.number()?;
                Some((format!("{}{n}", if c == '-' { "-" } else { "" }), kind))
            }
            '0'..='9' | '.' => self.number(),
            _ => {
                let start = self.i;
                let word = self.ident()?;
                let is_prefix = ["r", "u", "b", "br", "rb"]
                    .contains(&word.to_ascii_lowercase().as_str())
                    && matches!(self.peek(), Some('"' | '\''));
                match word {
                    _ if is_prefix => self.string(start),
                    "True" | "False" | "None" => Some((word.to_string(), Kind::Other)),
                    "true" if lenient => Some(("True".into(), Kind::Other)),
                    "false" if lenient => Some(("False".into(), Kind::Other)),
                    _ => None,
                }
            }
        }
    }

    /// Comma-separated literals up to `close` (already past the opening bracket), and whether
    /// a comma ended them.
    fn items(&mut self, close: char, lenient: bool) -> Option<(Vec<String>, bool)> {
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Some((items, trailing));
            }
            items.push(self.literal(lenient)?.0);
            self.ws();
            trailing = self.eat(",");
            if !trailing && self.peek() != Some(close) {
                return None;
            }
        }
    }

    /// A dict or a set (already past `{`).
    fn braces(&mut self, lenient: bool) -> Option<String> {
        self.ws();
        if self.eat("}") {
            return Some("{}".into());
        }
        let (first, _) = self.literal(lenient)?;
        self.ws();
        if !self.eat(":") {
            if !self.eat(",") && self.peek() != Some('}') {
                return None;
            }
            let (mut rest, _) = self.items('}', lenient)?;
            rest.insert(0, first);
            return Some(format!("{{{}}}", rest.join(", ")));
        }
        let mut pairs = vec![format!("{first}: {}", self.literal(lenient)?.0)];
        loop {
            self.ws();
            if self.eat("}") {
                return Some(format!("{{{}}}", pairs.join(", ")));
            }
            if !self.eat(",") {
                return None;
            }
            self.ws();
            if self.eat("}") {
                return Some(format!("{{{}}}", pairs.join(", ")));
            }
            let (k, _) = self.literal(lenient)?;
            self.ws();
            if !self.eat(":") {
                return None;
            }
            let (v, _) = self.literal(lenient)?;
            pairs.push(format!("{k}: {v}"));
        }
    }

    /// A string literal starting at `start` (its prefix, if any, included), as written; two
    /// strings in a row (implicit concatenation, or a stray quote) are refused.
    fn string(&mut self, start: usize) -> Option<(String, Kind)> {
        let quote = self.i;
        let end = string_end(self.s, quote)?;
        self.i = end;
        let text = self.s[start..end].to_string();
        let save = self.i;
        self.ws();
        if matches!(self.peek(), Some('"' | '\'')) {
            return None;
        }
        self.i = save;
        Some((text, Kind::Other))
    }

    /// An int (decimal, hex, octal, binary) or a float, as written.
    fn number(&mut self) -> Option<(String, Kind)> {
        let start = self.i;
        let digits = |c: &mut Self, ok: fn(char) -> bool| {
            let from = c.i;
            while let Some(ch) = c.peek().filter(|ch| ok(*ch) || *ch == '_') {
                c.i += ch.len_utf8();
            }
            c.i > from
        };
        let mut kind = Kind::Other;
        let base: Option<fn(char) -> bool> = match self.rest().get(..2) {
            Some("0x" | "0X") => Some(|c| c.is_ascii_hexdigit()),
            Some("0o" | "0O") => Some(|c| ('0'..='7').contains(&c)),
            Some("0b" | "0B") => Some(|c| c == '0' || c == '1'),
            _ => None,
        };
        if let Some(ok) = base {
            self.i += 2;
            if !digits(self, ok) {
                return None;
            }
        } else {
            let whole = digits(self, |c| c.is_ascii_digit());
            let mut frac = false;
            if self.peek() == Some('.') {
                self.i += 1;
                kind = Kind::Float;
                frac = digits(self, |c| c.is_ascii_digit());
            }
            if !whole && !frac {
                return None;
            }
            if matches!(self.peek(), Some('e' | 'E')) {
                let save = self.i;
                self.i += 1;
                let _ = self.eat("+") || self.eat("-");
                if digits(self, |c| c.is_ascii_digit()) {
                    kind = Kind::Float;
                } else {
                    self.i = save;
                }
            }
        }
        if self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            return None;
        }
        Some((self.s[start..self.i].to_string(), kind))
    }
}

#[cfg(test)]
mod tests;
