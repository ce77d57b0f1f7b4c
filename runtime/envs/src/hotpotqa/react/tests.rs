use super::*;
use crate::hotpotqa::context::context_for;
use crate::hotpotqa::{milhouse, Docstore, ANSWER_CORRECT};
use retroformer::agent::Strategy;
use retroformer_core::memory::ReflectionMemory;
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::SamplingParams;
use retroformer_llm::SessionOptions;

#[test]
fn a_scripted_episode_builds_the_exact_prompts_and_reuses_the_growing_prefix() {
    let q = milhouse();
    let store = Docstore::for_question(&q);
    let mut ep = Episode::new(&q, &store);
    let model = ScriptedModel::new([
        "I should search Milhouse.\nAction 1: Search[Milhouse Van Houten]",
        "Search[Milhouse Van Houten]",
        "Milhouse is voiced by Pamela Hayden.",
        "Finish[Pamela Hayden]",
    ]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let out = run_episode(
        &model,
        session.as_mut(),
        &mut ep,
        "",
        0,
        &ReactConfig::default(),
        &SamplingParams::greedy(),
    )
    .unwrap();

    assert!(!out.halted && out.trajectory.success);
    assert_eq!(model.remaining(), 0);
    let expected_pad = "\nThought 1: I should search Milhouse.\nAction 1: Search[Milhouse Van Houten]\nObservation 1: Milhouse is a character. He is voiced by Pamela Hayden.\nThought 2: Milhouse is voiced by Pamela Hayden.\nAction 2: Finish[Pamela Hayden]\nObservation 2: Answer is CORRECT";
    assert_eq!(out.scratchpad, expected_pad);
    let reqs = model.requests();
    assert_eq!(reqs.len(), 4);
    let head = format!("{INSTRUCTION}\nHere are some examples:\n{}\n(END OF EXAMPLES)\n\nQuestion: Who voices Milhouse?", EXAMPLES.trim_end());
    assert_eq!(reqs[0].prompt, format!("{head}\nThought 1:"));
    assert_eq!(
        reqs[1].prompt,
        format!("{head}\nThought 1: I should search Milhouse.\nAction 1:")
    );
    assert_eq!(
        reqs[3].prompt,
        format!("{head}\nThought 1: I should search Milhouse.\nAction 1: Search[Milhouse Van Houten]\nObservation 1: Milhouse is a character. He is voiced by Pamela Hayden.\nThought 2: Milhouse is voiced by Pamela Hayden.\nAction 2:")
    );
    assert!(reqs
        .iter()
        .all(|r| r.stop == vec!["\n".to_string()] && r.sampling.is_greedy()));

    let t = &out.trajectory;
    assert_eq!(t.steps.len(), 2);
    assert_eq!(t.steps[1].observation, ANSWER_CORRECT);
    assert_eq!(t.task_id, "q1");
    assert!((t.episode_return - 1.0).abs() < 1e-6);
    // Each call after the first re-evaluates only the words added since the previous one.
    let first = t.steps[0].evaluated_tokens;
    assert!(t.steps[1].evaluated_tokens < first / 10, "{:?}", t.steps);
    assert!(t.steps[1].reused_tokens > first);
}

#[test]
fn an_episode_without_finish_halts_at_the_step_limit() {
    let q = milhouse();
    let store = Docstore::for_question(&q);
    let mut ep = Episode::new(&q, &store);
    let model = ScriptedModel::new(["hmm", "Search[Nothing]", "hmm", "Dance[now]"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let cfg = ReactConfig {
        max_steps: 2,
        ..ReactConfig::default()
    };
    let out = run_episode(
        &model,
        session.as_mut(),
        &mut ep,
        "",
        3,
        &cfg,
        &SamplingParams::greedy(),
    )
    .unwrap();
    assert!(out.halted && !out.trajectory.success);
    assert_eq!(out.trajectory.trial, 3);
    assert!(out.scratchpad.ends_with("Observation 2: Invalid Action. Valid Actions are Lookup[<topic>] Search[<topic>] and Finish[<answer>]."), "{}", out.scratchpad);
    assert!(out
        .scratchpad
        .contains("Observation 1: Could not find [Nothing]. Similar: []"));
}

#[test]
fn an_episode_halts_before_a_call_that_would_exceed_the_prompt_budget() {
    let q = milhouse();
    let store = Docstore::for_question(&q);
    let mut ep = Episode::new(&q, &store);
    let model = ScriptedModel::new(["never used"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let cfg = ReactConfig {
        max_prompt_tokens: 50,
        ..ReactConfig::default()
    };
    let out = run_episode(
        &model,
        session.as_mut(),
        &mut ep,
        "",
        0,
        &cfg,
        &SamplingParams::greedy(),
    )
    .unwrap();
    assert!(out.halted);
    assert!(out.trajectory.steps.is_empty());
    assert_eq!(model.requests().len(), 0);
    // The label that did not fit stays in the scratchpad, as Reflexion's agent leaves it.
    assert_eq!(out.scratchpad, "\nThought 1:");
}

#[test]
fn a_budget_reached_at_the_action_drops_the_step_whose_thought_was_written() {
    let q = milhouse();
    let store = Docstore::for_question(&q);
    let mut ep = Episode::new(&q, &store);
    let model = ScriptedModel::new(["a b c", "never used"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    // The scripted tokenizer counts words: the first Thought's prompt fits exactly.
    let fits = model
        .tokenize(&prompt("", &q.question, "\nThought 1:"), true, false)
        .unwrap()
        .len();
    let cfg = ReactConfig {
        max_prompt_tokens: fits,
        ..ReactConfig::default()
    };
    let out = run_episode(
        &model,
        session.as_mut(),
        &mut ep,
        "",
        0,
        &cfg,
        &SamplingParams::greedy(),
    )
    .unwrap();
    assert!(out.halted && !out.trajectory.success);
    assert_eq!(model.requests().len(), 1);
    assert!(
        out.trajectory.steps.is_empty(),
        "{:?}",
        out.trajectory.steps
    );
    assert_eq!(out.scratchpad, "\nThought 1: a b c\nAction 1:");
}

#[test]
fn reflections_go_between_the_examples_and_the_question() {
    let q = milhouse();
    let store = Docstore::for_question(&q);
    let mut ep = Episode::new(&q, &store);
    let mut mem = ReflectionMemory::new(3).unwrap();
    mem.push("I searched the wrong page; search the character first.".into());
    let ctx = context_for(
        Strategy::Reflexion,
        &q.question,
        &mem,
        None,
        &[],
        &|s| s.split_whitespace().count(),
        1600,
    );
    let model = ScriptedModel::new(["x", "Finish[Nancy Cartwright]"]);
    let mut session = model.session(&SessionOptions::default()).unwrap();
    let out = run_episode(
        &model,
        session.as_mut(),
        &mut ep,
        &ctx,
        1,
        &ReactConfig::default(),
        &SamplingParams::greedy(),
    )
    .unwrap();
    assert!(!out.trajectory.success && !out.halted);
    let p = &model.requests()[0].prompt;
    assert!(
        p.contains("(END OF EXAMPLES)\n\nYou tried this question before and did not get it right. The notes below say what went wrong and how to do better; follow them this time.\nReflections:\n- I searched the wrong page; search the character first.\n\nQuestion: Who voices Milhouse?\nThought 1:"),
        "{p}"
    );
}
