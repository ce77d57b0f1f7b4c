use super::*;
use retroformer_llm::Grammar;

fn g(text: &str) -> Grammar {
    Grammar {
        text: text.into(),
        root: "root".into(),
        origin: "t.gbnf".into(),
    }
}

#[test]
fn deeply_nested_grammars_are_rejected_before_llama_cpp_parses_them() {
    let deep = format!("root ::= {}\"x\"{}", "(".repeat(1000), ")".repeat(1000));
    let e = check_grammar_depth(&g(&deep)).unwrap_err().to_string();
    assert!(e.contains("t.gbnf") && e.contains("1000 deep"), "{e}");
    let ok = format!("root ::= {}\"x\"{}", "(".repeat(10), ")".repeat(10));
    assert!(check_grammar_depth(&g(&ok)).is_ok());
    // Parentheses inside strings, character classes and comments do not count.
    let quoted = format!(
        "root ::= \"{}\" [(((] # {}\n",
        "(".repeat(500),
        "(".repeat(500)
    );
    assert!(check_grammar_depth(&g(&quoted)).is_ok());
}
