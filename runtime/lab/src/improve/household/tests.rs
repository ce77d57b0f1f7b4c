use super::*;
use retroformer_envs::household::{plan, HouseholdEnv};
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::{LanguageModel, SessionOptions};

/// A model that solves `solved` by the planner's actions and says `look` forever on any other
/// task (a loop that ends the episode).
fn model(solved: &[TaskSpec]) -> ScriptedModel {
    let plans: Vec<(String, Vec<String>)> = solved
        .iter()
        .map(|s| {
            let env = HouseholdEnv::new(s);
            (env.task_text().to_string(), plan(&env).unwrap())
        })
        .collect();
    ScriptedModel::responder(move |prompt, _| {
        let task = prompt.rsplit("Here is the task:\n").next().unwrap();
        match plans.iter().find(|(text, _)| task.contains(text.as_str())) {
            Some((_, actions)) => format!(" {}\n", actions[task.matches("\n> ").count()]),
            None => " look\n".into(),
        }
    })
}

fn settings(placebo: bool) -> ImproveSettings {
    let mut s: ImproveSettings = serde_json::from_value(serde_json::json!({
        "model": "m", "env": "household", "train_data": null, "eval_data": null,
        "dev_problems": 1, "train_problems": 2, "chains": 2, "retries": 0, "per_problem": 2,
        "temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "seed": 0, "rank": 4,
        "alpha": 8.0, "lr": 0.0002, "epochs": 1.0, "batch": 1, "max_len": 3072,
        "backend": "native", "eval_every": 1, "patience": 1, "lora_seeds": [1],
        "placebo": false, "margin": 0.0, "eval_skip": 0, "eval_problems": 1,
        "eval_samples": 0, "eval_temperature": 0.7, "sampled_arms": []
    }))
    .unwrap();
    s.placebo = placebo;
    s
}

/// `specs` collected (2 chains each, sampled) into `out` by a model that solves `solved`.
fn collected(
    specs: &[TaskSpec],
    solved: &[TaskSpec],
    examples: &Examples,
    out: &Path,
) -> Vec<Collected> {
    let cfg = HouseholdExpertConfig {
        model: "scripted".into(),
        adapter_sha256: None,
        chains: 2,
        temperature: 0.7,
        top_p: 0.95,
        seed: 0,
        episode: HouseholdConfig::default(),
        examples_sha256: examples.sha256(),
        format_version: expert::FORMAT_VERSION,
    };
    let m = model(solved);
    let mut session = m.session(&SessionOptions::default()).unwrap();
    expert::collect(specs, &cfg, examples, out, session.as_mut(), |_| {}).unwrap()
}

/// Three train tasks, their examples and prompt prefixes, and a run folder.
fn fixture() -> (
    Vec<TaskSpec>,
    Examples,
    BTreeMap<String, String>,
    tempfile::TempDir,
) {
    let specs = train_split(3);
    let examples = Examples::fixed("An example.\n");
    let prefixes = specs.iter().map(|s| (s.id(), examples.prefix(s))).collect();
    (specs, examples, prefixes, tempfile::tempdir().unwrap())
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_rounds_training_sets_are_whole_successful_episodes_with_the_loss_on_the_actions() {
    let (specs, examples, prefixes, run) = fixture();
    let dir = run.path().join("round-1");
    // Dev: task 0 (solved); train: task 1 (solved), task 2 (never).
    let all = collected(&specs, &specs[..2], &examples, &dir.join("collect"));
    let d = data(
        &settings(true),
        run.path(),
        &dir,
        1,
        &prefixes,
        all.split_at(1),
    )
    .unwrap();
    // Task 1's two chains acted alike: one example; task 2 gave none.
    assert_eq!((d.samples, d.heldout), (1, 1));
    let train = lines(&dir.join("train.jsonl"));
    assert_eq!(train[0]["task_id"], specs[1].id().as_str());
    let segments = train[0]["segments"].as_array().unwrap();
    assert!(segments[0]["text"]
        .as_str()
        .unwrap()
        .starts_with(&prefixes[&specs[1].id()]));
    let actions = plan(&HouseholdEnv::new(&specs[1])).unwrap();
    let trained: Vec<&str> = segments
        .iter()
        .filter(|s| s["loss"] == true)
        .map(|s| s["text"].as_str().unwrap().trim())
        .collect();
    assert_eq!(trained, actions);
    assert!(d.tokens > 0);
    assert_eq!(
        lines(&dir.join("heldout.jsonl"))[0]["task_id"],
        specs[0].id().as_str()
    );
    // The placebo: as many episodes, drawn whatever their outcome.
    assert_eq!(d.placebo, 1);
    assert_eq!(lines(&dir.join("placebo.jsonl")).len(), 1);
    // Round 2 trains on round 1's successes too, read back from round 1's files.
    let dir2 = run.path().join("round-2");
    let all2 = collected(&specs, &specs[..2], &examples, &dir2.join("collect"));
    let d2 = data(
        &settings(true),
        run.path(),
        &dir2,
        2,
        &prefixes,
        all2.split_at(1),
    )
    .unwrap();
    assert_eq!((d2.samples, d2.placebo), (2, 0));
    assert_eq!(lines(&dir2.join("train.jsonl"))[0], train[0]);
}

#[test]
fn a_round_without_a_success_says_a_teacher_can_collect() {
    let (specs, examples, prefixes, run) = fixture();
    let dir = run.path().join("round-1");
    let all = collected(&specs, &[], &examples, &dir.join("collect"));
    let err = data(
        &settings(false),
        run.path(),
        &dir,
        1,
        &prefixes,
        all.split_at(1),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--collect-model") && err.contains("4 episodes on 2"),
        "{err}"
    );
}

#[test]
fn an_evaluation_scores_success_per_episode_and_pass_at_k_per_task() {
    let specs = train_split(2);
    let examples = Examples::fixed("An example.\n");
    let dir = tempfile::tempdir().unwrap();
    let mut all = collected(&specs, &specs[..1], &examples, dir.path());
    // One of task 0's episodes failed too: 1 success of 2 there, none on task 1.
    all[0].chains[1].success = false;
    let s = score(&all, true);
    assert_eq!((s.problems, s.answers), (2, 4));
    assert!((s.accuracy - 0.25).abs() < 1e-12, "{s:?}");
    assert_eq!(s.pass_at_k, Some(0.5));
    assert_eq!((s.parsable, s.accuracy_parsable), (1.0, s.accuracy));
    assert!(s.mean_tokens > 0.0);
    assert_eq!(score(&all[..1], false).pass_at_k, None);
    let f = collect_figures(&all, 1, None);
    assert_eq!((f.problems, f.attempts, f.correct_attempts), (2, 4, 1));
    assert_eq!((f.train_solved, f.train_first_correct), (0, 0));
}

#[test]
fn episode_figures_count_successes_by_task_type_and_failures_by_how_they_ended() {
    let specs = train_split(3);
    let examples = Examples::fixed("An example.\n");
    let dir = tempfile::tempdir().unwrap();
    let all = collected(&specs, &specs[..1], &examples, dir.path());
    let f = episode_figures(&specs, &all);
    let tally: Vec<(&str, usize, usize)> = f
        .by_type
        .iter()
        .map(|t| (t.task_type.as_str(), t.successes, t.episodes))
        .collect();
    let names: Vec<&str> = specs.iter().map(|s| s.task_type.name()).collect();
    assert_eq!(
        tally,
        vec![(names[0], 2, 2), (names[1], 0, 2), (names[2], 0, 2)]
    );
    // The model says `look` on the unsolved tasks until the episode stops it as a repeat.
    assert_eq!(
        f.failures.clone().into_iter().collect::<Vec<_>>(),
        vec![("repeated".to_string(), 4)]
    );
    let plan_len = plan(&HouseholdEnv::new(&specs[0])).unwrap().len() as f64;
    assert!((f.mean_actions_success.unwrap() - plan_len).abs() < 1e-9);
    let all_actions: usize = all
        .iter()
        .flat_map(|c| &c.chains)
        .map(|e| e.steps.len())
        .sum();
    assert!((f.mean_actions - all_actions as f64 / 6.0).abs() < 1e-9);
    assert!(
        f.line()
            .starts_with(&format!("{} 2/2, {} 0/2", names[0], names[1])),
        "{}",
        f.line()
    );
}
