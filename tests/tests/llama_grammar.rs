//! Grammars with the real SmolLM2-135M-Instruct: the output stays inside the grammar, a bad
//! grammar is an error, and the sampler's shortcut (the drawn token checked alone, the grammar
//! applied to the whole vocabulary only when it refuses it) gives grammar-first's greedy tokens.

use retroformer_e2e::{chat, opts, run, smollm2};
use retroformer_llm::{GenerateRequest, Grammar, LanguageModel};

#[test]
fn a_grammar_constrains_the_output_and_a_bad_grammar_is_an_error() {
    let model = smollm2();
    let mut s = model.session(&opts()).unwrap();
    let mut req = GenerateRequest::new(chat(&model, "Is water wet? Answer yes or no."), 8);
    req.grammar = Some(Grammar {
        text: "root ::= (\"yes\" | \"no\") \".\"".into(),
        root: "root".into(),
        origin: "inline".into(),
    });
    let g = run(s.as_mut(), &req);
    assert!(g.text == "yes." || g.text == "no.", "{:?}", g.text);

    req.grammar = Some(Grammar {
        text: "root ::= (\"unclosed\"".into(),
        root: "root".into(),
        origin: "broken.gbnf".into(),
    });
    let e = s.generate(&req, &mut |_| true).unwrap_err().to_string();
    assert!(e.contains("broken.gbnf"), "{e}");
    // The session still works afterwards.
    req.grammar = None;
    assert!(s.generate(&req, &mut |_| true).is_ok());
}

/// llama.cpp's matcher keeps a parse stack for every reading of the text so far: here they
/// double with each `x`, and without the session's limit on grammar work a token would soon
/// take minutes (and the memory) while every lane waited.
#[test]
fn an_ambiguous_grammar_ends_its_request_with_an_error_instead_of_stalling_the_session() {
    let model = smollm2();
    let mut s = model.session(&opts()).unwrap();
    let mut req = GenerateRequest::new(chat(&model, "Write the letter x."), 400);
    req.grammar = Some(Grammar {
        text: "root ::= s\ns ::= \"x\" s \"y\" | \"x\" s \"z\"".into(),
        root: "root".into(),
        origin: "ambiguous.gbnf".into(),
    });
    let t = std::time::Instant::now();
    let e = s.generate(&req, &mut |_| true).unwrap_err().to_string();
    assert!(
        e.contains("ambiguous.gbnf") && e.contains("too ambiguous"),
        "{e}"
    );
    eprintln!("ended after {:.1} s: {e}", t.elapsed().as_secs_f64());
    // The session still works afterwards.
    req.grammar = None;
    req.max_tokens = 4;
    assert!(s.generate(&req, &mut |_| true).is_ok());
}

/// `n` rules, each starting twice with the next: llama.cpp's left-recursion check visits them
/// 2^n times, with nothing that could interrupt it.
fn chain(n: usize) -> Grammar {
    let mut text = String::from("root ::= a0\n");
    for i in 0..n {
        text.push_str(&format!("a{i} ::= a{0} \"0\" | a{0} \"1\"\n", i + 1));
    }
    text.push_str(&format!("a{n} ::= \"x\"\n"));
    Grammar {
        text,
        root: "root".into(),
        origin: format!("chain{n}.gbnf"),
    }
}

#[test]
fn a_grammar_whose_set_up_would_take_exponential_time_is_refused_before_llama_cpp_sees_it() {
    let model = smollm2();
    let mut s = model.session(&opts()).unwrap();
    let mut req = GenerateRequest::new(chat(&model, "Say x."), 4);
    // 2^9 visits, 256 parses: llama.cpp sets it up and the output follows it.
    req.grammar = Some(chain(8));
    let t = std::time::Instant::now();
    let g = run(s.as_mut(), &req);
    eprintln!("chain8: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    assert!(g.text.starts_with('x'), "{:?}", g.text);
    // 2^15 visits but 8 192 parses at the start (65 536 made one token take 37 s): refused.
    req.grammar = Some(chain(13));
    let e = s.generate(&req, &mut |_| true).unwrap_err().to_string();
    assert!(
        e.contains("chain13.gbnf") && e.contains("8192 parses"),
        "{e}"
    );
    // 2^61 visits: refused at once.
    req.grammar = Some(chain(60));
    let t = std::time::Instant::now();
    let e = s.generate(&req, &mut |_| true).unwrap_err().to_string();
    assert!(
        e.contains("chain60.gbnf") && e.contains("too costly"),
        "{e}"
    );
    assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
}

/// Household-like actions, most of which SmolLM2 would not write unconstrained.
const ACTIONS: [&str; 6] = [
    "go to cabinet 1",
    "go to countertop 2",
    "take apple 1 from countertop 2",
    "open fridge 1",
    "examine microwave 1",
    "put apple 1 in/on fridge 1",
];

fn actions_request(model: &dyn LanguageModel, task: &str) -> GenerateRequest {
    let alternatives: Vec<String> = ACTIONS.iter().map(|a| format!("\"{a}\"")).collect();
    let mut req = GenerateRequest::new(chat(model, task), 24);
    req.grammar = Some(Grammar {
        text: format!("root ::= ({}) \"\\n\"", alternatives.join(" | ")),
        root: "root".into(),
        origin: "actions".into(),
    });
    req.logprobs = Some(1);
    req
}

const TASKS: [&str; 4] = [
    "Your task is to: cool some apple and put it in the fridge. Your next action:",
    "You are in the kitchen. What do you do first? Answer with one action.",
    "Write a haiku about the sea.",
    "What is 17 times 3?",
];

#[test]
fn under_a_grammar_greedy_decoding_takes_the_likeliest_allowed_token_whether_or_not_the_grammar_comes_first(
) {
    let model = smollm2();
    let mut s = model.session(&opts()).unwrap();
    let (mut kept, mut redrawn) = (0, 0);
    for task in TASKS {
        let mut req = actions_request(&model, task);
        let checked = run(s.as_mut(), &req);
        req.sampling.grammar_first = true;
        let masked = run(s.as_mut(), &req);
        assert_eq!(checked.text, masked.text, "{task}");
        let ids =
            |g: &retroformer_llm::Generation| g.tokens.iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(ids(&checked), ids(&masked), "{task}");
        assert!(
            ACTIONS.iter().any(|a| checked.text == format!("{a}\n")),
            "{task}: {:?}",
            checked.text
        );
        // Whether the model's own likeliest token was allowed (kept) or the grammar made it
        // draw again among the allowed ones (redrawn).
        for t in &checked.tokens {
            if t.top[0].id == t.id {
                kept += 1;
            } else {
                redrawn += 1;
            }
        }
    }
    assert!(
        kept > 0 && redrawn > 0,
        "kept {kept}, redrawn {redrawn}: both ways must be tested"
    );
}

#[test]
fn under_a_grammar_a_sampled_reply_is_always_one_the_grammar_allows() {
    let model = smollm2();
    let mut s = model.session(&opts()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (i, task) in TASKS.iter().enumerate() {
        for seed in 0..4 {
            let mut req = actions_request(&model, task);
            req.sampling.temperature = 1.0;
            req.sampling.top_p = 0.95;
            req.sampling.seed = seed + 10 * i as u32;
            let g = run(s.as_mut(), &req);
            assert!(
                ACTIONS.iter().any(|a| g.text == format!("{a}\n")),
                "{task}, seed {seed}: {:?}",
                g.text
            );
            seen.insert(g.text);
        }
    }
    // Sampling, not one fixed reply.
    assert!(seen.len() > 1, "{seen:?}");
}
