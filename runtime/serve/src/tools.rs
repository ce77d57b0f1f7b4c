//! Tool calls in OpenAI's format. The functions are described to the model in a system
//! message, which asks for a call as one JSON object `{"name": ..., "arguments": {...}}`.
//! With `tool_choice` `"required"` or a named function, a grammar makes the reply such a call
//! (with arguments that match the function's parameters schema); with `"auto"` the model may
//! answer in text, and a reply that parses as a call of a listed function becomes one.
//! (llama.cpp's template engine, which the models' chat templates go through, takes no tools.)

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::schema;

/// What `tool_choice` allows.
#[derive(Clone, Debug, PartialEq)]
enum Choice {
    Auto,
    Required,
    Named(String),
}

/// The tools a chat request offers.
#[derive(Clone, Debug)]
pub struct Tools {
    functions: Vec<(String, String, Value)>,
    choice: Choice,
}

/// One call the model made.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub name: String,
    pub arguments: Value,
}

impl Tools {
    /// The request's `tools` and `tool_choice`; `None` when there are none or the choice is
    /// `"none"`.
    pub fn parse(tools: Option<&Value>, choice: Option<&Value>) -> Result<Option<Self>, ApiError> {
        let list = match tools {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(a)) if a.is_empty() => return Ok(None),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(ApiError::invalid("tools", "tools must be a list")),
        };
        let mut functions = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let f = &t["function"];
            let name = f["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid(
                        &format!("tools[{i}].function.name"),
                        "each tool needs a function name",
                    )
                })?;
            if t["type"] != "function" {
                return Err(ApiError::unsupported(
                    &format!("tools[{i}].type"),
                    "only tools of type \"function\" are supported",
                ));
            }
            let params = f
                .get("parameters")
                .cloned()
                .unwrap_or(json!({"type": "object"}));
            let description = f["description"].as_str().unwrap_or("").to_string();
            functions.push((name.to_string(), description, params));
        }
        let choice = match choice {
            None | Some(Value::Null) => Choice::Auto,
            Some(Value::String(s)) if s == "none" => return Ok(None),
            Some(Value::String(s)) if s == "auto" => Choice::Auto,
            Some(Value::String(s)) if s == "required" => Choice::Required,
            Some(v) => match v["function"]["name"].as_str() {
                Some(n) if functions.iter().any(|f| f.0 == n) => Choice::Named(n.to_string()),
                _ => {
                    return Err(ApiError::invalid(
                        "tool_choice",
                        "tool_choice must be none, auto, required or a listed function",
                    ))
                }
            },
        };
        Ok(Some(Self { functions, choice }))
    }

    /// The system message that describes the functions.
    pub fn instructions(&self) -> String {
        let mut s = String::from("You can call these functions:\n");
        for (name, description, params) in &self.functions {
            s.push_str(&format!(
                "- {name}: {description} Parameters (JSON schema): {params}\n"
            ));
        }
        s.push_str(match self.choice {
            Choice::Auto => "To call one, answer with only a JSON object {\"name\": FUNCTION, \"arguments\": {...}}; otherwise answer normally.",
            _ => "Call one now: answer with only a JSON object {\"name\": FUNCTION, \"arguments\": {...}}.",
        });
        s
    }

    /// The grammar a forced call must match (`None` with `"auto"`).
    pub fn grammar(&self) -> Result<Option<String>, ApiError> {
        let offered: Vec<(String, Value)> = self
            .functions
            .iter()
            .filter(|f| match &self.choice {
                Choice::Named(n) => &f.0 == n,
                _ => true,
            })
            .map(|f| (f.0.clone(), f.2.clone()))
            .collect();
        match self.choice {
            Choice::Auto => Ok(None),
            _ => schema::tool_call_gbnf(&offered)
                .map(Some)
                .map_err(|e| ApiError::invalid("tools", e.to_string())),
        }
    }

    /// The call in `reply`, if it is one of a listed function.
    pub fn call_in(&self, reply: &str) -> Option<Call> {
        let t = reply.trim();
        let t = t.strip_prefix("<tool_call>").unwrap_or(t).trim();
        let t = t.strip_suffix("</tool_call>").unwrap_or(t).trim();
        let v: Value = serde_json::from_str(t).ok()?;
        let name = v["name"].as_str()?;
        if !self.functions.iter().any(|f| f.0 == name) {
            return None;
        }
        let arguments = match &v["arguments"] {
            Value::Null => json!({}),
            Value::String(s) => serde_json::from_str(s).ok()?,
            a => a.clone(),
        };
        Some(Call {
            name: name.to_string(),
            arguments,
        })
    }
}

impl Call {
    /// OpenAI's `tool_calls` entry (`arguments` is a JSON text).
    pub fn to_openai(&self, id: &str) -> Value {
        json!({"id": id, "type": "function", "function": {"name": self.name, "arguments": self.arguments.to_string()}})
    }
}

/// How an earlier assistant turn's `tool_calls` reads in the prompt: the call as the model
/// was asked to write it.
pub fn call_text(tool_calls: &[Value]) -> String {
    tool_calls
        .iter()
        .map(|c| {
            let f = &c["function"];
            let args = f["arguments"]
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .unwrap_or_else(|| f["arguments"].clone());
            json!({"name": f["name"], "arguments": args}).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather now.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    }

    #[test]
    fn a_reply_that_calls_a_listed_function_is_a_call_and_others_are_text() {
        let t = Tools::parse(Some(&weather()), None).unwrap().unwrap();
        let c = t
            .call_in(r#" {"name": "get_weather", "arguments": {"city": "Paris"}} "#)
            .unwrap();
        assert_eq!(c.arguments["city"], "Paris");
        assert!(t.call_in(r#"<tool_call>{"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}</tool_call>"#).is_some());
        assert!(t.call_in(r#"{"name": "rm_rf", "arguments": {}}"#).is_none());
        assert!(t.call_in("It is sunny.").is_none());
        assert!(t.grammar().unwrap().is_none(), "auto forces nothing");
    }

    #[test]
    fn a_forced_call_gets_a_grammar_naming_the_function_first() {
        let t = Tools::parse(Some(&weather()), Some(&json!("required")))
            .unwrap()
            .unwrap();
        let g = t.grammar().unwrap().unwrap();
        let root = g.lines().next().unwrap();
        assert!(
            root.find("name").unwrap() < root.find("arguments").unwrap(),
            "{root}"
        );
        assert!(root.contains("get_weather"), "{root}");
        assert!(Tools::parse(Some(&weather()), Some(&json!("none")))
            .unwrap()
            .is_none());
        let bad = Tools::parse(
            Some(&weather()),
            Some(&json!({"type": "function", "function": {"name": "x"}})),
        );
        assert_eq!(bad.unwrap_err().param.as_deref(), Some("tool_choice"));
    }
}
