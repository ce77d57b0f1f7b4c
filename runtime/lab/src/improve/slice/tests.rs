use retroformer_core::trajectory::Step;
use retroformer_envs::household::episode::HouseholdOutcome;
use retroformer_envs::household::expert::{Collected, FORMAT_VERSION};

use super::household::{agreement, ending};
use super::{arm_line, Example, SliceArm, SliceReport, SLICE_FORMAT_VERSION, SLICE_KIND};
use crate::compare::{paired, Table};
use crate::improve::{Comparison, EpisodeFigures, Score};

fn episode(actions: &[&str], success: bool, stopped: Option<&str>) -> Collected {
    let steps = actions
        .iter()
        .map(|a| Step {
            thought: String::new(),
            action: a.to_string(),
            observation: "Nothing happens.".into(),
            reused_tokens: 0,
            evaluated_tokens: 0,
            generated_tokens: 3,
        })
        .collect();
    Collected {
        format_version: FORMAT_VERSION,
        task_id: "heat-1002000".into(),
        chains: vec![HouseholdOutcome {
            success,
            stopped: stopped.map(str::to_string),
            steps,
            scratchpad: String::new(),
        }],
    }
}

#[test]
fn a_household_episode_is_told_by_how_it_ended_and_is_the_runs_only_with_the_same_actions() {
    let won = episode(&["go to fridge 1", "open fridge 1"], true, None);
    assert_eq!(ending(&won), "reached the goal in 2 actions");
    let cycle = episode(&["look", "look", "look"], false, Some("cycle"));
    assert_eq!(ending(&cycle), "a cycle after 3 actions");
    let limit = episode(&["look"], false, Some("steps"));
    assert_eq!(ending(&limit), "the action limit after 1 action");
    let other = episode(&["go to fridge 1", "open drawer 1"], true, None);
    let here = [Some(won.clone()), Some(won.clone()), Some(cycle.clone())];
    // The second episode took other actions; the third task the run did not save.
    let run = [Some(won), Some(other), None];
    assert_eq!(agreement(&here, &run), (1, 2));
}

fn household_arm(name: &str, solved: usize, same: usize) -> SliceArm {
    SliceArm {
        name: name.into(),
        adapter: (name != "base").then(|| "round-1/s1.gguf".into()),
        score: Score {
            problems: 12,
            answers: 12,
            accuracy: solved as f64 / 12.0,
            parsable: 1.0,
            accuracy_parsable: solved as f64 / 12.0,
            pass_at_k: None,
            mean_tokens: 140.0,
            wall_s: None,
            wall_tasks: None,
            run: "eval/base-greedy".into(),
            machines: Vec::new(),
            numerics: Vec::new(),
            episodes: Some(EpisodeFigures {
                mean_actions: 24.5,
                ..EpisodeFigures::default()
            }),
            time: None,
        },
        same_as_run: Some((same, 12)),
        run_machines: Vec::new(),
    }
}

#[test]
fn the_household_demo_speaks_of_tasks_episodes_and_goals_and_prints_a_tiny_p_value_as_such() {
    let table = |only_a, only_b, n| Table {
        both: 0,
        only_a,
        only_b,
        neither: n - only_a - only_b,
    };
    // The household run's primary endpoint: 35 tasks only r1-s1 solved, 1 only the base.
    let full = Comparison {
        name: "r1-s1 - base".into(),
        metric: "greedy".into(),
        paired: paired(0, table(1, 35, 200)),
        p_holm: 5.4e-9,
        same_machine: Some(true),
        same_numerics: Some(true),
    };
    let report = SliceReport {
        format_version: SLICE_FORMAT_VERSION,
        kind: SLICE_KIND.into(),
        env: "household".into(),
        run: "benches/results/improve-household/full".into(),
        model: "qwen2.5-coder-0.5b-instruct".into(),
        skip: 0,
        run_problems: 200,
        canary: Some(true),
        arms: vec![household_arm("base", 0, 12), household_arm("r1-s1", 2, 12)],
        paired: paired(0, table(0, 2, 12)),
        full: Some(full),
        examples: vec![Example {
            problem_id: "heat-1002000".into(),
            gold: "heat some egg and put it in garbagecan".into(),
            base: Some("a cycle after 14 actions".into()),
            trained: Some("reached the goal in 9 actions".into()),
        }],
    };
    let text = report.lines().join("\n");
    for want in [
        "r1-s1      greedy success 0.167 (2 of 12), 24.5 actions and 140 tokens an episode, the same episode as the run's evaluation on 12 of 12",
        "r1-s1 - base on these 12 tasks: +16.7 points",
        "12 tasks cannot tell a difference of this size from chance",
        "The full experiment, evaluation tasks 1-200",
        "Holm-adjusted 5.4e-9",
        "Tasks where exactly one of them reaches the goal (how each episode ended):",
        "  heat-1002000 (heat some egg and put it in garbagecan): base a cycle after 14 actions; r1-s1 reached the goal in 9 actions",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    assert!(
        !text.contains("parsable") && !text.contains("problems"),
        "{text}"
    );
    assert!(!arm_line(&report.arms[0]).contains("greedy accuracy"));
}
