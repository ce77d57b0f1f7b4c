use super::*;
use retroformer::agent::reflect::LlmReflector;
use retroformer_core::records::RatingRecord;
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::{LanguageModel, SessionOptions};

fn problem(id: &str, question: &str, answer: &str) -> MathProblem {
    MathProblem {
        id: id.into(),
        dataset: Dataset::Gsm8k,
        question: question.into(),
        answer: answer.into(),
        solution: None,
    }
}

fn cfg(strategy: &str) -> RunConfig {
    RunConfig {
        agent: "gsm8k-retry".into(),
        trials: 2,
        strategy: strategy.into(),
        memory: 3,
        max_steps: 1,
        actor: "a".into(),
        reflector: "actor".into(),
        env: RetrySettings { max_tokens: 64 }.into_env(),
        ..Default::default()
    }
}

/// Runs two trials over `problems` with one scripted model as actor and reflector: the model
/// (for its requests) and the rating records.
fn run_scripted(
    strategy: &str,
    problems: &[MathProblem],
    replies: &[&str],
) -> (ScriptedModel, Vec<RatingRecord>) {
    let model = ScriptedModel::new(replies.iter().copied());
    let dir = tempfile::tempdir().unwrap();
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let mut reflector = LlmReflector::new(
        model.session(&SessionOptions::default()).unwrap(),
        Box::new(RetryReflection {
            frame: ChatFrame::of(&model),
        }),
        100,
    );
    let models = RetryModels {
        actor: &model,
        session: session.as_mut(),
        reflector: &mut reflector,
        parallel: 1,
    };
    run(problems, models, &cfg(strategy), dir.path(), &mut |_| {}).unwrap();
    let text = std::fs::read_to_string(dir.path().join("records.jsonl")).unwrap_or_default();
    let records = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (model, records)
}

#[test]
fn a_retry_under_reflexion_is_told_the_wrong_answer_and_shown_the_reflection_and_rated() {
    let p = [problem(
        "test-1",
        "Ann has 2 apples and buys 3. How many?",
        "5",
    )];
    let (model, records) = run_scripted(
        "reflexion",
        &p,
        &[
            "2 + 3 = 6\n\\boxed{6}",
            "I added wrongly. Next time I will add step by step.\nProblem: more",
            "2 + 3 = 5\n\\boxed{5}",
        ],
    );
    let reqs = model.requests();
    assert_eq!(reqs.len(), 3);
    // The reflection prompt: the attempt and the fact, in the chat template.
    assert!(reqs[1]
        .prompt
        .starts_with("<user>You are an advanced reasoning agent"));
    assert!(
        reqs[1].prompt.contains("Problem: Ann has 2 apples and buys 3. How many?\nPrevious attempt:\n2 + 3 = 6\n\\boxed{6}\n\nYour final answer 6 was judged incorrect.\n\nReflection:"),
        "{}",
        reqs[1].prompt
    );
    // The retry: the rejected answer and the cleaned reflection (cut at the invented line).
    assert!(
        reqs[2].prompt.contains("Your earlier answers to this problem were judged incorrect: 6.\nYour notes on your earlier attempts:\n- I added wrongly. Next time I will add step by step.\nSolve the problem again."),
        "{}",
        reqs[2].prompt
    );
    assert!(!reqs[2].prompt.contains("Problem: more"));
    assert!(
        reqs[1].parse_special,
        "the template's tokens are read as such"
    );
    assert_eq!(records.len(), 1);
    assert!((records[0].rating - 1.0).abs() < 1e-6, "{:?}", records[0]);
    // The record carries the message without the reflector's template, for a trainer that
    // templates it with its own model.
    let m = records[0].messages.as_ref().expect("a chat reflection");
    assert_eq!(
        (m[0].role.as_str(), m[1].role.as_str()),
        ("user", "assistant")
    );
    assert!(m[0]
        .content
        .starts_with("You are an advanced reasoning agent"));
    assert!(m[0].content.ends_with("Reflection:"));
    assert_eq!(
        m[1].content,
        "I added wrongly. Next time I will add step by step."
    );
}

#[test]
fn a_sampled_retry_without_reflection_is_told_the_wrong_answer_only() {
    let p = [problem("test-1", "Q one?", "5")];
    let (model, records) = run_scripted("none", &p, &["\\boxed{6}", "\\boxed{7}"]);
    let reqs = model.requests();
    assert_eq!(reqs.len(), 2, "no reflection is written");
    assert!(reqs[1]
        .prompt
        .contains("Q one?\n\nYour earlier answers to this problem were judged incorrect: 6.\nSolve the problem again."));
    assert!(!reqs[1].prompt.contains("notes"));
    assert!(records.is_empty());
}

#[test]
fn the_placebo_shows_another_problems_reflection_and_its_own_wrong_answer() {
    let p = [
        problem("test-1", "Q one?", "5"),
        problem("test-2", "Q two?", "9"),
    ];
    let (model, records) = run_scripted(
        "placebo",
        &p,
        &[
            // The trial's attempts, then its reflections.
            "\\boxed{6}",
            "\\boxed{8}",
            "Note on one.",
            "Note on two.",
            "\\boxed{5}",
            "\\boxed{9}",
        ],
    );
    let retry: Vec<_> = model.requests()[4..].to_vec();
    assert!(retry[0].prompt.contains("Q one?\n\nYour earlier answers to this problem were judged incorrect: 6.\nYour notes on your earlier attempts:\n- Note on two."), "{}", retry[0].prompt);
    assert!(
        retry[1]
            .prompt
            .contains("incorrect: 8.\nYour notes on your earlier attempts:\n- Note on one."),
        "{}",
        retry[1].prompt
    );
    assert!(records.is_empty(), "a placebo's reflections are not rated");
}

#[test]
fn the_failure_fact_names_the_answer_or_its_absence() {
    assert_eq!(
        failure_fact("so \\boxed{1,200}"),
        "Your final answer 1200 was judged incorrect."
    );
    assert_eq!(
        failure_fact("no box"),
        "Your attempt gave no final answer in \\boxed{}."
    );
}

#[test]
fn a_long_attempt_is_cut_to_its_end_in_the_reflection_prompt() {
    let long = format!("{} \\boxed{{4}}", "step ".repeat(1000));
    let p = reflection_prompt("Q?", &long);
    assert!(p.contains("Previous attempt:\n[...] "));
    assert!(p.contains("\\boxed{4}\n\nYour final answer 4 was judged incorrect."));
    assert!(p.len() < REFLECT_INSTRUCTION.len() + REFLECT_EXAMPLES.len() + ATTEMPT_CHARS + 300);
}

#[test]
fn the_examples_hold_no_digit_a_reflector_could_copy() {
    assert!(!REFLECT_EXAMPLES.chars().any(|c| c.is_ascii_digit()));
    assert!(!REFLECT_INSTRUCTION.chars().any(|c| c.is_ascii_digit()));
}

#[test]
fn settings_round_trip_and_a_zero_budget_is_refused() {
    let c = cfg("none");
    assert_eq!(RetrySettings::of(&c).unwrap().max_tokens, 64);
    let mut bad = c.clone();
    bad.env.insert("max_tokens".into(), 0.into());
    assert!(RetrySettings::of(&bad).is_err());
    bad.env.clear();
    assert_eq!(
        RetrySettings::of(&bad).unwrap().max_tokens,
        DEFAULT_MAX_TOKENS
    );
}
