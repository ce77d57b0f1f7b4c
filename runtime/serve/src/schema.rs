//! Grammars for `response_format`: any JSON object, or a JSON schema turned into GBNF.
//!
//! The schema subset is the one OpenAI's structured outputs accept: `object` (with
//! `properties`; every property is written, in name order (JSON objects are unordered; the
//! body is parsed into sorted maps), which satisfies `required` whatever it lists), `array` (`items`, `minItems`/`maxItems` up to 32), `string`, `number`, `integer`,
//! `boolean`, `null`, `enum`, `const`, `anyOf`, a `type` list, and local `$ref`s to `$defs`.
//! Anything else is refused with the schema path at fault.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// The most grammar text a schema may become. Each schema node is written once (a named rule,
/// referred to by name), so this bounds what a request's schema may cost, not its nesting.
pub const MAX_GRAMMAR_BYTES: usize = 1 << 20;

/// Why a schema has no grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The part of the schema at `path` (`#.properties.x.type`) is outside the subset.
    #[error("{path}: {reason}")]
    Unsupported { path: String, reason: String },
    /// The grammar would pass [`MAX_GRAMMAR_BYTES`].
    #[error("the schema's grammar passes {MAX_GRAMMAR_BYTES} bytes")]
    TooBig,
}

fn unsupported(path: impl Into<String>, reason: impl Into<String>) -> SchemaError {
    SchemaError::Unsupported {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Any JSON object (llama.cpp's `grammars/json.gbnf`).
pub const JSON_GBNF: &str = r#"root ::= object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
"#;

/// Rules every schema grammar may use.
const PRIMITIVES: &str = r#"ws ::= | " " | "\n" [ \t]{0,20}
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,3})? ws
integer ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) ws
boolean ::= ("true" | "false") ws
null ::= "null" ws
value ::= object | array | string | number | boolean | null
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
"#;

/// The GBNF of `schema`, root rule `root`.
pub fn to_gbnf(schema: &Value) -> Result<String, SchemaError> {
    let mut g = Builder::new(schema.get("$defs").or_else(|| schema.get("definitions")));
    let root = g.expression(schema, "#")?;
    g.finish(&root)
}

/// A grammar for one call of one of `functions` (name, parameters schema):
/// `{"name": NAME, "arguments": {...}}`, the name first so that a model picks the function
/// before its arguments.
pub fn tool_call_gbnf(functions: &[(String, Value)]) -> Result<String, SchemaError> {
    let mut g = Builder::new(None);
    let mut alternatives = Vec::new();
    for (i, (name, params)) in functions.iter().enumerate() {
        let path = format!("tools[{name}].function.parameters");
        g.defs = params.get("$defs").or_else(|| params.get("definitions"));
        g.defs_scope = format!("t{i}-");
        g.defs_path = format!("{path}.$defs");
        let args = g.rule(params, &path)?;
        alternatives.push(format!(
            "\"{{\" ws \"\\\"name\\\"\" ws \":\" ws {} \",\" ws \"\\\"arguments\\\"\" ws \":\" ws {args} \"}}\" ws",
            literal(&Value::String(name.clone()))
        ));
    }
    g.finish(&alternatives.join(" | "))
}

struct Builder<'a> {
    defs: Option<&'a Value>,
    /// The `$defs` in scope: its rules' name prefix and its schema path. Each tool has its own
    /// (two tools may define the same name differently).
    defs_scope: String,
    defs_path: String,
    rules: BTreeMap<String, String>,
    /// The rule already written for a schema node, by the node's address: a node reached
    /// twice (an array's item, each entry of a `type` list) is written once, so the grammar
    /// grows with the schema, never with its nesting.
    named: HashMap<usize, String>,
    /// The rule already written for a body: two nodes alike share one rule, so that alike
    /// alternatives of an `anyOf` become one (each would double llama.cpp's parse stacks).
    by_body: HashMap<String, String>,
    /// The grammar text written so far.
    bytes: usize,
    depth: u32,
}

/// A JSON text as a GBNF literal.
fn literal(v: &Value) -> String {
    let json = v.to_string();
    let escaped = json.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\" ws")
}

/// GBNF alternatives, each once (llama.cpp keeps a parse for each alternative that matches).
fn alternatives(parts: impl IntoIterator<Item = String>) -> String {
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<String> = parts
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect();
    format!("({})", distinct.join(" | "))
}

/// Whether a GBNF expression is already a single rule's name.
fn is_name(expr: &str) -> bool {
    !expr.is_empty() && expr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl<'a> Builder<'a> {
    fn new(defs: Option<&'a Value>) -> Self {
        Self {
            defs,
            defs_scope: String::new(),
            defs_path: "#.$defs".into(),
            rules: BTreeMap::new(),
            named: HashMap::new(),
            by_body: HashMap::new(),
            bytes: 0,
            depth: 0,
        }
    }

    /// The grammar: `root` and every named rule, then the primitives.
    fn finish(self, root: &str) -> Result<String, SchemaError> {
        let mut out = format!("root ::= {root}\n");
        for (name, body) in &self.rules {
            out.push_str(&format!("{name} ::= {body}\n"));
        }
        out.push_str(PRIMITIVES);
        if out.len() > MAX_GRAMMAR_BYTES {
            return Err(SchemaError::TooBig);
        }
        Ok(out)
    }

    /// A rule's name for `schema` at `path`: a named rule written once per schema node.
    fn rule(&mut self, schema: &'a Value, path: &str) -> Result<String, SchemaError> {
        let node = schema as *const Value as usize;
        if let Some(name) = self.named.get(&node) {
            return Ok(name.clone());
        }
        let expr = self.expression(schema, path)?;
        if is_name(&expr) {
            return Ok(expr);
        }
        if let Some(name) = self.by_body.get(&expr) {
            let name = name.clone();
            self.named.insert(node, name.clone());
            return Ok(name);
        }
        self.bytes += expr.len();
        if self.bytes > MAX_GRAMMAR_BYTES {
            return Err(SchemaError::TooBig);
        }
        let name = format!("n-{}", self.by_body.len());
        self.by_body.insert(expr.clone(), name.clone());
        self.rules.insert(name.clone(), expr);
        self.named.insert(node, name.clone());
        Ok(name)
    }

    /// A GBNF expression for `schema` at `path`, adding named rules as needed.
    fn expression(&mut self, schema: &'a Value, path: &str) -> Result<String, SchemaError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(unsupported(path, "the schema nests deeper than 64 levels"));
        }
        let r = self.rule_inner(schema, path);
        self.depth -= 1;
        r
    }

    fn rule_inner(&mut self, schema: &'a Value, path: &str) -> Result<String, SchemaError> {
        let Some(obj) = schema.as_object() else {
            return match schema {
                Value::Bool(true) => Ok("value".into()),
                _ => Err(unsupported(path, "a schema must be an object")),
            };
        };
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            return self.reference(r, path);
        }
        if let Some(c) = obj.get("const") {
            return Ok(literal(c));
        }
        if let Some(e) = obj.get("enum") {
            let values = e
                .as_array()
                .ok_or_else(|| unsupported(format!("{path}.enum"), "must be a list"))?;
            return Ok(alternatives(values.iter().map(literal)));
        }
        if let Some(any) = obj.get("anyOf").or_else(|| obj.get("oneOf")) {
            let alts = any
                .as_array()
                .ok_or_else(|| unsupported(format!("{path}.anyOf"), "must be a list"))?;
            let parts = alts
                .iter()
                .enumerate()
                .map(|(i, s)| self.rule(s, &format!("{path}.anyOf[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(alternatives(parts));
        }
        match obj.get("type") {
            None => Ok("value".into()),
            Some(Value::String(t)) => self.typed(t, obj, path),
            Some(Value::Array(ts)) => {
                let mut names = Vec::new();
                for t in ts {
                    let t = t
                        .as_str()
                        .ok_or_else(|| unsupported(format!("{path}.type"), "must name types"))?;
                    // Each type once: a repeated "object" would write its properties again.
                    if !names.contains(&t) {
                        names.push(t);
                    }
                }
                let parts = names
                    .into_iter()
                    .map(|t| self.typed(t, obj, path))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(alternatives(parts))
            }
            Some(_) => Err(unsupported(
                format!("{path}.type"),
                "must be a string or a list",
            )),
        }
    }

    fn typed(
        &mut self,
        t: &str,
        obj: &'a serde_json::Map<String, Value>,
        path: &str,
    ) -> Result<String, SchemaError> {
        match t {
            "string" | "number" | "integer" | "boolean" | "null" => Ok(t.to_string()),
            "object" => self.object(obj, path),
            "array" => self.array(obj, path),
            other => Err(unsupported(
                format!("{path}.type"),
                format!("{other:?} is not a JSON schema type"),
            )),
        }
    }

    fn object(
        &mut self,
        obj: &'a serde_json::Map<String, Value>,
        path: &str,
    ) -> Result<String, SchemaError> {
        let Some(props) = obj.get("properties").and_then(Value::as_object) else {
            return Ok("object".into());
        };
        if props.is_empty() {
            return Ok("\"{\" ws \"}\" ws".into());
        }
        let mut fields = Vec::new();
        for (k, s) in props {
            let v = self.rule(s, &format!("{path}.properties.{k}"))?;
            fields.push(format!(
                "{} \":\" ws {v}",
                literal(&Value::String(k.clone()))
            ));
        }
        Ok(format!("\"{{\" ws {} \"}}\" ws", fields.join(" \",\" ws ")))
    }

    fn array(
        &mut self,
        obj: &'a serde_json::Map<String, Value>,
        path: &str,
    ) -> Result<String, SchemaError> {
        let item = match obj.get("items") {
            Some(s) => self.rule(s, &format!("{path}.items"))?,
            None => "value".into(),
        };
        let bound = |k: &str| obj.get(k).and_then(Value::as_u64);
        let (min, max) = (bound("minItems").unwrap_or(0), bound("maxItems"));
        if min > 32 || max.is_some_and(|m| m > 32 || m < min) {
            let why = "minItems/maxItems must be at most 32 and in order";
            return Err(unsupported(path, why));
        }
        let rest = format!("(\",\" ws {item})");
        let body = match (min, max) {
            (0, None) => format!("({item} {rest}*)?"),
            (0, Some(0)) => String::new(),
            (0, Some(m)) => format!("({item} {rest}{{0,{}}})?", m - 1),
            (n, None) => format!("{item} {rest}{{{},}}", n - 1),
            (n, Some(m)) => format!("{item} {rest}{{{},{}}}", n - 1, m - 1),
        };
        Ok(format!("\"[\" ws {body} \"]\" ws"))
    }

    /// A `#/$defs/NAME` reference, as a named rule (so recursive schemas terminate).
    fn reference(&mut self, r: &str, path: &str) -> Result<String, SchemaError> {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"))
            .ok_or_else(|| {
                let why = format!("only local #/$defs/NAME references are supported; got {r:?}");
                unsupported(format!("{path}.$ref"), why)
            })?;
        let rule = def_rule_name(&self.defs_scope, name);
        if !self.rules.contains_key(&rule) {
            let def = self.defs.and_then(|d| d.get(name)).ok_or_else(|| {
                unsupported(format!("{path}.$ref"), format!("{r:?} is not in $defs"))
            })?;
            self.rules.insert(rule.clone(), String::new());
            let body = self.expression(def, &format!("{}.{name}", self.defs_path))?;
            self.bytes += body.len();
            if self.bytes > MAX_GRAMMAR_BYTES {
                return Err(SchemaError::TooBig);
            }
            self.rules.insert(rule.clone(), body);
        }
        Ok(rule)
    }
}

/// The rule of a `$defs` entry: its name with every character but ASCII letters and digits
/// written as `-HEX-` (GBNF names allow letters, digits and `-`), so that two names never
/// share a rule (`a_b` and `a-b`, `A` and `a`). `scope` (`t0-`: a tool's own `$defs`) ends in
/// the only `-` not from an escape, so two scopes never share a rule either.
fn def_rule_name(scope: &str, name: &str) -> String {
    let mut rule = format!("def-{scope}");
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            rule.push(c);
        } else {
            rule.push_str(&format!("-{:x}-", u32::from(c)));
        }
    }
    rule
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_schema_writes_every_property_in_name_order() {
        let g = to_gbnf(&json!({"type": "object", "properties": {
            "name": {"type": "string"}, "age": {"type": "integer"}}}))
        .unwrap();
        let root = g.lines().next().unwrap();
        assert!(root.contains(r#""\"name\"" ws ":" ws string"#), "{root}");
        assert!(
            root.find("age").unwrap() < root.find("name").unwrap(),
            "{root}"
        );
    }

    #[test]
    fn enums_arrays_and_refs_become_rules() {
        let g = to_gbnf(
            &json!({"type": "array", "items": {"$ref": "#/$defs/c"}, "maxItems": 3,
            "$defs": {"c": {"enum": ["red", "blue"]}}}),
        )
        .unwrap();
        assert!(
            g.contains("def-c ::= (\"\\\"red\\\"\" ws | \"\\\"blue\\\"\" ws)"),
            "{g}"
        );
        assert!(g.contains("{0,2}"), "{g}");
    }

    #[test]
    fn a_deeply_nested_schema_writes_each_node_once_so_its_grammar_stays_small() {
        let (mut arrays, mut typed) = (json!({"type": "string"}), json!({"type": "string"}));
        for _ in 0..60 {
            arrays = json!({"type": "array", "items": arrays, "minItems": 2, "maxItems": 32});
            typed = json!({"type": ["object", "object"], "properties": {"a": typed}});
        }
        for schema in [arrays, typed] {
            let g = to_gbnf(&schema).unwrap();
            assert!(g.len() < 20_000, "{} bytes", g.len());
        }
    }

    #[test]
    fn a_type_list_that_repeats_object_writes_its_many_properties_once() {
        let props: serde_json::Map<String, Value> =
            (0..2_000).map(|i| (format!("k{i}"), json!(true))).collect();
        let schema = json!({"type": vec!["object"; 2_000], "properties": props});
        let t = std::time::Instant::now();
        let g = to_gbnf(&schema).unwrap();
        // Once: 2 000 properties of ~20 bytes, not 2 000 times that.
        assert!(g.len() < 100_000, "{} bytes", g.len());
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    }

    #[test]
    fn alike_alternatives_become_one_so_the_matcher_does_not_keep_a_parse_for_each() {
        let item = json!({"type": "array", "items": {"$ref": "#/$defs/n"}, "minItems": 1});
        let g = to_gbnf(&json!({"$ref": "#/$defs/n",
            "$defs": {"n": {"anyOf": [item.clone(), item]}}}))
        .unwrap();
        let def = g.lines().find(|l| l.starts_with("def-n ::=")).unwrap();
        assert!(!def.contains('|'), "{g}");
        let g = to_gbnf(&json!({"enum": ["a", "b", "a"]})).unwrap();
        assert_eq!(g.lines().next().unwrap().matches('|').count(), 1, "{g}");
    }

    #[test]
    fn defs_whose_names_differ_only_in_punctuation_or_case_keep_their_own_rules() {
        let g = to_gbnf(&json!({"type": "object", "properties": {
            "p": {"$ref": "#/$defs/a_b"}, "q": {"$ref": "#/$defs/a-b"},
            "r": {"$ref": "#/$defs/A"}, "s": {"$ref": "#/$defs/a"}},
            "$defs": {"a_b": {"const": 1}, "a-b": {"const": 2}, "A": {"const": 3},
                "a": {"const": 4}}}))
        .unwrap();
        let rules: Vec<&str> = g.lines().filter(|l| l.starts_with("def-")).collect();
        assert_eq!(rules.len(), 4, "{g}");
        for v in 1..=4 {
            assert_eq!(
                rules
                    .iter()
                    .filter(|r| r.contains(&format!("\"{v}\"")))
                    .count(),
                1,
                "{g}"
            );
        }
    }

    #[test]
    fn two_tools_that_define_the_same_name_differently_each_keep_their_own_definition() {
        let tool = |v: i64| {
            json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/Item"}},
                "$defs": {"Item": {"const": v}}})
        };
        let g = tool_call_gbnf(&[("a".into(), tool(1)), ("b".into(), tool(2))]).unwrap();
        let rules: Vec<&str> = g.lines().filter(|l| l.starts_with("def-")).collect();
        assert_eq!(rules.len(), 2, "{g}");
        assert!(rules.iter().any(|r| r.contains("\"1\"")), "{g}");
        assert!(rules.iter().any(|r| r.contains("\"2\"")), "{g}");
    }

    #[test]
    fn a_fault_inside_a_tools_definition_is_named_with_the_tool() {
        let bad = json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/D"}},
            "$defs": {"D": {"type": "date"}}});
        let e = tool_call_gbnf(&[("when".into(), bad.clone())]).unwrap_err();
        assert!(
            matches!(&e, SchemaError::Unsupported { path, .. }
                if path == "tools[when].function.parameters.$defs.D.type"),
            "{e:?}"
        );
        let e = to_gbnf(&bad).unwrap_err();
        assert!(
            matches!(&e, SchemaError::Unsupported { path, .. } if path == "#.$defs.D.type"),
            "{e:?}"
        );
    }

    #[test]
    fn a_schema_whose_grammar_would_pass_the_limit_is_refused() {
        let big: Vec<String> = (0..40_000).map(|i| format!("value number {i}")).collect();
        let e = to_gbnf(&json!({"enum": big})).unwrap_err();
        assert_eq!(e, SchemaError::TooBig);
    }

    #[test]
    fn unsupported_schemas_are_refused_with_their_path() {
        let path_of = |schema: Value| match to_gbnf(&schema) {
            Err(SchemaError::Unsupported { path, reason }) => (path, reason),
            other => panic!("{schema}: {other:?}"),
        };
        let (path, reason) =
            path_of(json!({"type": "object", "properties": {"x": {"type": "date"}}}));
        assert_eq!(path, "#.properties.x.type", "{reason}");
        let (path, reason) = path_of(json!({"$ref": "https://example.com/s.json"}));
        assert_eq!(path, "#.$ref");
        assert!(reason.contains("local"), "{reason}");
    }
}
