use super::*;
use crate::household::{plan, train_split};
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::{LanguageModel, SessionOptions};

fn config(chains: u32, examples: &Examples) -> HouseholdExpertConfig {
    HouseholdExpertConfig {
        model: "scripted".into(),
        adapter_sha256: None,
        chains,
        temperature: 0.7,
        top_p: 0.95,
        seed: 0,
        episode: HouseholdConfig::default(),
        examples_sha256: examples.sha256(),
        format_version: FORMAT_VERSION,
    }
}

/// A model that solves the first task by the planner's actions and says `look` forever on
/// the second (a loop that ends the episode).
fn model(specs: &[TaskSpec]) -> ScriptedModel {
    let solved = HouseholdEnv::new(&specs[0]).task_text().to_string();
    let actions = plan(&HouseholdEnv::new(&specs[0])).unwrap();
    ScriptedModel::responder(move |prompt, _| {
        let task = prompt.rsplit("Here is the task:\n").next().unwrap();
        if !task.contains(&solved) {
            return " look\n".into();
        }
        let done = task.matches("\n> ").count();
        format!(" {}\n", actions[done])
    })
}

#[test]
fn collection_keeps_each_tasks_episodes_resumes_them_and_refuses_other_settings() {
    let specs: Vec<TaskSpec> = train_split(2);
    let examples = Examples::fixed("An example.\n");
    let cfg = config(2, &examples);
    let dir = tempfile::tempdir().unwrap();
    let m = model(&specs);
    let mut session = m.session(&SessionOptions::default()).unwrap();
    let mut seen = Vec::new();
    let all = collect(&specs, &cfg, &examples, dir.path(), session.as_mut(), |c| {
        seen.push(c.task_id.clone())
    })
    .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(seen.len(), 2);
    assert_eq!(all[0].task_id, specs[0].id());
    assert!(all[0].chains.iter().all(|e| e.success), "{:?}", all[0]);
    assert_eq!(all[1].chains.len(), 2);
    assert!(!all[1].solved());
    assert_eq!(all[1].chains[0].stopped.as_deref(), Some("repeated"));
    // Every request began with the examples' prefix: first attempts, no memory.
    let prefix = examples.prefix(&specs[0]);
    assert!(m.requests().iter().all(|r| r.prompt.starts_with(&prefix)));
    // A second run reads what was saved and asks the model nothing.
    let idle = ScriptedModel::new(Vec::<String>::new());
    let mut s2 = idle.session(&SessionOptions::default()).unwrap();
    let again = collect(&specs, &cfg, &examples, dir.path(), s2.as_mut(), |_| {}).unwrap();
    assert_eq!(again, all);
    assert!(idle.requests().is_empty());
    let err = collect(
        &specs,
        &config(3, &examples),
        &examples,
        dir.path(),
        s2.as_mut(),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("chains"), "{err}");
    // Examples other than the settings' are refused before anything runs.
    let other = Examples::fixed("Another.\n");
    let err = collect(&specs, &cfg, &other, dir.path(), s2.as_mut(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("examples_sha256"), "{err}");
}

#[test]
fn selection_keeps_distinct_successes_and_the_placebo_draws_regardless_of_success() {
    let specs: Vec<TaskSpec> = train_split(2);
    let examples = Examples::fixed("An example.\n");
    let dir = tempfile::tempdir().unwrap();
    let m = model(&specs);
    let mut session = m.session(&SessionOptions::default()).unwrap();
    let all = collect(
        &specs,
        &config(2, &examples),
        &examples,
        dir.path(),
        session.as_mut(),
        |_| {},
    )
    .unwrap();
    // The two successful chains acted alike: one example.
    let correct = select_correct(&all, 2);
    assert_eq!(correct.len(), 1);
    assert_eq!(
        (correct[0].task_id.as_str(), correct[0].success),
        (specs[0].id().as_str(), true)
    );
    // The placebo: one distinct episode a task, whatever its outcome.
    let placebo = select_placebo(&all, 5, 2, 7);
    assert_eq!(placebo.len(), 2);
    assert!(placebo.iter().any(|s| !s.success));
    assert_eq!(select_placebo(&all, 1, 2, 7).len(), 1);
    // The sample: the first request's prompt, then the actions with the loss.
    let sample = to_sample(&examples.prefix(&specs[0]), &all[0], &correct[0]).unwrap();
    assert_eq!(sample.reward, 1.0);
    assert!(sample.segments[0]
        .text
        .starts_with(&examples.prefix(&specs[0])));
    // It is the prompt of the episode's first request.
    let first = &sample.segments[0].text;
    assert!(m.requests().iter().any(|r| &r.prompt == first));
    let actions = plan(&HouseholdEnv::new(&specs[0])).unwrap();
    let loss: Vec<String> = sample
        .segments
        .iter()
        .filter(|g| g.loss)
        .map(|g| g.text.clone())
        .collect();
    assert_eq!(
        loss,
        actions
            .iter()
            .map(|a| format!(" {a}\n"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn chains_of_a_task_sample_with_seeds_that_do_not_repeat_a_step_apart() {
    let examples = Examples::fixed("");
    let cfg = config(4, &examples);
    let seeds: Vec<u32> = (0..4).map(|c| sampling(&cfg, "put-1", c).seed).collect();
    for (i, a) in seeds.iter().enumerate() {
        for b in &seeds[i + 1..] {
            assert!(a.abs_diff(*b) > 64, "{seeds:?}");
        }
    }
    let greedy = HouseholdExpertConfig {
        temperature: 0.0,
        ..cfg
    };
    assert!(sampling(&greedy, "put-1", 3).is_greedy());
}

#[test]
fn an_episode_whose_prompt_outgrows_the_lane_ends_as_context_and_the_collection_goes_on() {
    let specs: Vec<TaskSpec> = train_split(2);
    let examples = Examples::fixed("An example.\n");
    let cfg = config(2, &examples);
    // Distinct thoughts: never a repeat or a cycle, so only the step limit or the lane ends it.
    let thinker = || {
        ScriptedModel::responder(|prompt, _| {
            let task = prompt.rsplit("Here is the task:\n").next().unwrap();
            format!(" think: thought {}\n", task.matches("\n> ").count())
        })
    };
    let unbounded = thinker();
    let mut s = unbounded.session(&SessionOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let long = collect(&specs, &cfg, &examples, dir.path(), s.as_mut(), |_| {}).unwrap();
    assert!(long
        .iter()
        .flat_map(|c| &c.chains)
        .all(|e| e.stopped.as_deref() == Some("steps")));
    let words = |p: &str| p.split_whitespace().count() as u32;
    let opening = unbounded
        .requests()
        .iter()
        .map(|r| words(&r.prompt))
        .min()
        .unwrap();
    // A lane that holds the opening prompt and a few steps (the scripted model counts words).
    let small = SessionOptions {
        context_size: Some(opening + 12),
        ..SessionOptions::default()
    };
    let bounded = thinker();
    let mut s = bounded.session(&small).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let short = collect(&specs, &cfg, &examples, dir.path(), s.as_mut(), |_| {}).unwrap();
    assert_eq!(short.len(), 2);
    for e in short.iter().flat_map(|c| &c.chains) {
        assert_eq!(e.stopped.as_deref(), Some("context"), "{e:?}");
        assert!(!e.success);
        assert!(
            !e.steps.is_empty() && e.steps.len() < 30,
            "{} steps",
            e.steps.len()
        );
    }
}
