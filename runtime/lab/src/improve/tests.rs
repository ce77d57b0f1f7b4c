use super::arms::holm;

#[test]
fn holm_multiplies_the_smallest_p_by_the_family_size_and_keeps_the_order() {
    let adj = holm(&[0.04, 0.01, 0.03]);
    // Sorted: 0.01 * 3, 0.03 * 2, 0.04 * 1 -> max-accumulated 0.03, 0.06, 0.06.
    let want = [0.06, 0.03, 0.06];
    for (a, w) in adj.iter().zip(want) {
        assert!((a - w).abs() < 1e-12, "{adj:?}");
    }
    assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
    assert!(holm(&[]).is_empty());
}

use super::gsm8k::collect_figures;
use super::gsm8k::score;
use retroformer_envs::math::expert::Collected;
use retroformer_envs::math::rise::{Attempt, Metrics, RiseResult};

fn attempt(answer: Option<&str>, reward: f32, tokens: u32) -> Attempt {
    Attempt {
        response: String::new(),
        answer: answer.map(str::to_string),
        reward,
        evaluated_tokens: 0,
        reused_tokens: 0,
        generated_tokens: tokens,
        ms: 0.0,
    }
}

fn result(id: &str, sequential: Vec<Attempt>, parallel: Vec<Attempt>) -> RiseResult {
    RiseResult {
        format_version: 2,
        problem_id: id.into(),
        gold: "5".into(),
        sequential,
        parallel,
        metrics: Metrics::default(),
        wall_ms: 0.0,
    }
}

#[test]
fn a_greedy_score_keeps_the_parsable_rate_apart_from_accuracy() {
    let r = [
        result("a", vec![attempt(Some("5"), 1.0, 10)], vec![]),
        result("b", vec![attempt(Some("4"), 0.0, 20)], vec![]),
        result("c", vec![attempt(None, -1.0, 30)], vec![]),
        result("d", vec![attempt(None, -1.0, 40)], vec![]),
    ];
    let s = score(&r, false);
    assert_eq!((s.problems, s.answers), (4, 4));
    assert!((s.accuracy - 0.25).abs() < 1e-12);
    assert!((s.parsable - 0.5).abs() < 1e-12);
    assert!((s.accuracy_parsable - 0.5).abs() < 1e-12);
    assert!((s.mean_tokens - 25.0).abs() < 1e-12);
    assert_eq!(s.pass_at_k, None);
}

#[test]
fn a_sampled_score_is_accuracy_per_sample_and_pass_at_k_per_problem() {
    let r = [
        result(
            "a",
            vec![],
            vec![attempt(Some("5"), 1.0, 1), attempt(Some("4"), 0.0, 1)],
        ),
        result(
            "b",
            vec![],
            vec![attempt(Some("4"), 0.0, 1), attempt(None, -1.0, 1)],
        ),
    ];
    let s = score(&r, true);
    assert_eq!(s.answers, 4);
    assert!((s.accuracy - 0.25).abs() < 1e-12);
    assert!((s.pass_at_k.unwrap() - 0.5).abs() < 1e-12);
}

#[test]
fn collection_figures_count_train_problems_apart_from_dev_ones() {
    let c = |id: &str, chains: Vec<Vec<Attempt>>| Collected {
        format_version: 1,
        problem_id: id.into(),
        question: "q".into(),
        gold: "5".into(),
        chains,
    };
    let all = [
        // Dev: solved, but not a train problem.
        c("dev", vec![vec![attempt(Some("5"), 1.0, 5)]]),
        c(
            "t1",
            vec![vec![attempt(Some("4"), 0.0, 5), attempt(Some("5"), 1.0, 5)]],
        ),
        c(
            "t2",
            vec![
                vec![attempt(Some("5"), 1.0, 5)],
                vec![attempt(None, -1.0, 5)],
            ],
        ),
        c(
            "t3",
            vec![vec![attempt(None, -1.0, 5), attempt(Some("3"), 0.0, 5)]],
        ),
    ];
    let timed = super::env::Timed {
        wall_s: 2.0,
        tasks: 3,
    };
    let f = collect_figures(&all, 1, Some(timed));
    assert_eq!(
        (f.problems, f.train_solved, f.train_first_correct),
        (4, 2, 1)
    );
    assert_eq!(
        (f.attempts, f.correct_attempts, f.parsable_attempts),
        (7, 3, 5)
    );
    assert_eq!(f.generated_tokens, 35);
    assert_eq!((f.wall_s, f.wall_tasks), (Some(2.0), Some(3)));

    // Read back from files by a later process: counted anew, the earlier time kept.
    let read_back = super::CollectFigures {
        episodes: Some(super::EpisodeFigures::default()),
        ..collect_figures(&all, 1, None)
    };
    let r = super::recounted(Some(f.clone()), read_back.clone());
    assert_eq!((r.wall_s, r.wall_tasks), (Some(2.0), Some(3)));
    assert!(
        r.episodes.is_some(),
        "the newer count replaces the saved one"
    );
    let timed_again = collect_figures(
        &all,
        1,
        Some(super::env::Timed {
            wall_s: 1.0,
            tasks: 1,
        }),
    );
    assert_eq!(super::recounted(Some(f), timed_again).wall_s, Some(1.0));
    assert_eq!(super::recounted(None, read_back).wall_s, None);
}

#[test]
fn a_round_collects_with_the_last_adapter_an_earlier_round_promoted() {
    use super::{incumbent, CanaryFigures, RoundFigures};
    let round = |r: u32, promoted: Option<bool>| RoundFigures {
        round: r,
        policy: None,
        collect: None,
        data: None,
        train: Vec::new(),
        installed: promoted.map(|_| format!("id{r}")),
        canary: promoted.map(|promoted| CanaryFigures {
            candidate: format!("id{r}"),
            incumbent: None,
            candidate_score: 0.5,
            incumbent_score: 0.4,
            promoted,
            wall_s: None,
            wall_tasks: None,
        }),
    };
    assert_eq!(incumbent(&[]), None);
    assert_eq!(incumbent(&[round(1, Some(true))]), Some("id1".into()));
    // A kept incumbent, or a round not canaried yet, changes nothing.
    let rounds = [round(1, Some(true)), round(2, Some(false)), round(3, None)];
    assert_eq!(incumbent(&rounds), Some("id1".into()));
    assert_eq!(incumbent(&[round(1, Some(false))]), None);
}

fn trained(name: &str) -> super::TrainFigures {
    super::TrainFigures {
        name: name.into(),
        adapter: format!("round-x/{name}.gguf").into(),
        sha256: format!("sha-{name}"),
        bytes: 1,
        samples: 1,
        steps: 1,
        best_step: None,
        loss: [0.0, 0.0],
        heldout_loss: None,
        wall_s: None,
        resumed_from: 0,
        steps_s: 0.0,
        command: String::new(),
    }
}

#[test]
fn the_demo_shows_the_last_promoted_adapter_or_else_round_ones_candidate() {
    use super::{shown_adapter, CanaryFigures, RoundFigures};
    let round = |r: u32, promoted: Option<bool>| RoundFigures {
        round: r,
        policy: None,
        collect: None,
        data: None,
        train: vec![trained("placebo"), trained(&format!("s1-of-{r}"))],
        installed: None,
        canary: promoted.map(|promoted| CanaryFigures {
            candidate: String::new(),
            incumbent: None,
            candidate_score: 0.0,
            incumbent_score: 0.0,
            promoted,
            wall_s: None,
            wall_tasks: None,
        }),
    };
    let report = |rounds: Vec<RoundFigures>| {
        let mut rounds = rounds;
        // Each round's first seed is named `s1` in the run.
        for r in &mut rounds {
            r.train[1].name = "s1".into();
        }
        report_of(rounds)
    };
    assert_eq!(shown_adapter(&report(Vec::new())), None);
    let only_collected = report(vec![round(1, None)]);
    let (name, file, sha, canary) = shown_adapter(&only_collected).unwrap();
    assert_eq!(
        (name.as_str(), sha.as_str(), canary),
        ("r1-s1", "sha-s1-of-1", None)
    );
    assert_eq!(file, std::path::Path::new("round-x/s1-of-1.gguf"));
    let two = report(vec![round(1, Some(true)), round(2, Some(false))]);
    assert_eq!(shown_adapter(&two).unwrap().0, "r1-s1");
    assert_eq!(shown_adapter(&two).unwrap().3, Some(true));
    let second = report(vec![round(1, Some(true)), round(2, Some(true))]);
    assert_eq!(shown_adapter(&second).unwrap().0, "r2-s1");
    let kept = report(vec![round(1, Some(false))]);
    assert_eq!(shown_adapter(&kept).unwrap().3, Some(false));
}

#[test]
fn a_training_resumed_from_a_checkpoint_reports_its_part_and_the_steps_time_in_all() {
    use super::RoundFigures;
    let resumed = super::TrainFigures {
        steps: 168,
        wall_s: Some(3000.0),
        resumed_from: 20,
        steps_s: 5400.4,
        ..trained("s1")
    };
    let whole = super::TrainFigures {
        wall_s: Some(900.0),
        steps_s: 850.0,
        ..trained("placebo")
    };
    let round = RoundFigures {
        round: 1,
        policy: None,
        collect: None,
        data: None,
        train: vec![resumed, whole],
        installed: None,
        canary: None,
    };
    let lines = report_of(vec![round]).summary();
    let line = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("round 1 train {name}:")))
            .unwrap()
            .clone()
    };
    assert!(
        line("s1").ends_with("3000 s for steps 21-168 (resumed), steps 5400 s in all"),
        "{lines:?}"
    );
    assert!(
        line("placebo").ends_with("900 s, steps 850 s in all"),
        "{lines:?}"
    );
}

/// A report of `rounds` under [`settings`], no arm evaluated.
fn report_of(rounds: Vec<super::RoundFigures>) -> super::ImproveReport {
    super::ImproveReport {
        format_version: 1,
        kind: "improve".into(),
        settings: settings(),
        rounds,
        arms: Vec::new(),
        comparisons: Vec::new(),
    }
}

/// Settings of a run (the values do not matter to the tests that use them).
fn settings() -> super::ImproveSettings {
    serde_json::from_value(serde_json::json!({
        "model": "m", "train_data": null, "eval_data": null, "dev_problems": 1,
        "train_problems": 1, "chains": 1, "retries": 0, "per_problem": 1, "temperature": 0.7,
        "top_p": 0.95, "max_tokens": 8, "seed": 0, "rank": 4, "alpha": 8.0, "lr": 0.0002,
        "epochs": 1.0, "batch": 1, "max_len": 64, "backend": "native", "eval_every": 1,
        "patience": 1, "lora_seeds": [1], "placebo": false, "margin": 0.0, "eval_skip": 0,
        "eval_problems": 1, "eval_samples": 0, "eval_temperature": 0.7, "sampled_arms": []
    }))
    .unwrap()
}

#[test]
fn the_demo_refuses_an_adapter_whose_sha256_is_not_the_one_the_run_records() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s1.gguf");
    let err = super::slice::check_adapter(&file, "00")
        .unwrap_err()
        .to_string();
    assert!(err.contains("s1.gguf") && err.contains("missing"), "{err}");
    std::fs::write(&file, "version https://git-lfs.github.com/spec/v1\n").unwrap();
    let err = super::slice::check_adapter(&file, "00")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("s1.gguf") && err.contains("improve.json records 00"),
        "{err}"
    );
    let sha = retroformer::fetch::sha256_file(&file, &retroformer::fetch::Silent).unwrap();
    super::slice::check_adapter(&file, &sha).unwrap();
}

#[test]
fn a_run_saved_before_the_household_reads_as_gsm8k_and_each_env_refuses_the_others_flags() {
    let s = settings();
    assert_eq!(
        (s.env.as_str(), s.collect_model.as_deref()),
        ("gsm8k", None)
    );
    let refused = |s: &super::ImproveSettings| super::check_env(s).unwrap_err().to_string();
    let mut g = s.clone();
    g.collect_model = Some("teacher".into());
    assert!(refused(&g).contains("--collect-model"), "{}", refused(&g));
    let mut h = s.clone();
    h.env = "household".into();
    h.collect_model = Some("teacher".into());
    super::check_env(&h).unwrap();
    h.retries = 1;
    assert!(refused(&h).contains("--retries"), "{}", refused(&h));
    h.retries = 0;
    h.eval_data = Some("test.jsonl".into());
    assert!(refused(&h).contains("--eval-data"), "{}", refused(&h));
    h.env = "alfworld".into();
    assert!(refused(&h).contains("--env"), "{}", refused(&h));
}

#[test]
fn the_demo_calls_the_full_runs_difference_a_gain_only_when_its_interval_excludes_zero_and_says_when_holm_disagrees(
) {
    use super::slice::full_verdict;
    use crate::compare::{paired, Table};
    let comparison = |table, p_holm| super::Comparison {
        name: "r1-s1 - base".into(),
        metric: "greedy".into(),
        paired: paired(0, table),
        p_holm,
        same_machine: Some(true),
        same_numerics: Some(true),
    };
    // This run's primary endpoint: +1 point on 500 problems, 44 against 39, p 0.66.
    let tie = comparison(
        Table {
            both: 83,
            only_a: 39,
            only_b: 44,
            neither: 334,
        },
        1.0,
    );
    assert!(tie.paired.p_value > 0.05 && tie.paired.difference > 0.0);
    assert_eq!(
        full_verdict(&tie, "problems"),
        "The interval holds 0: on 500 problems the run cannot tell the adapter from the base"
    );
    let table = |only_a, only_b| Table {
        both: 80,
        only_a,
        only_b,
        neither: 500 - 80 - only_a - only_b,
    };
    let gain = comparison(table(20, 60), 0.001);
    assert!(gain.paired.p_value < 0.05);
    assert_eq!(
        full_verdict(&gain, "problems"),
        "The adapter is better than the base beyond chance, also after Holm's correction across the run's comparisons"
    );
    let loss = comparison(table(60, 20), 0.001);
    assert!(full_verdict(&loss, "problems")
        .starts_with("The adapter is worse than the base beyond chance"));
    // Amendment 3's figure: 32 against 52, p 0.038 alone, 0.11 after Holm over three.
    let holm_disagrees = comparison(table(32, 52), 0.11);
    assert!(holm_disagrees.paired.p_value < 0.05);
    assert_eq!(
        full_verdict(&holm_disagrees, "problems"),
        "The adapter is better than the base by this test alone (p < 0.05), not after Holm's correction across the run's comparisons: suggestive, not established"
    );
}

#[test]
fn the_trainer_is_told_to_keep_the_last_state_only_when_the_run_asks_for_it() {
    let mut s = settings();
    let a = super::train::args(&s, "round-1", "s1", "train", 8, 2);
    // A run from before --keep records the command it ran: it must stay the same.
    assert!(!a.iter().any(|x| x == "--keep"), "{a:?}");
    assert!(a.windows(2).any(|w| w[0] == "--patience" && w[1] == "1"));
    s.keep = "last".into();
    let a = super::train::args(&s, "round-1", "s1", "train", 8, 2);
    assert!(
        a.windows(2).any(|w| w[0] == "--keep" && w[1] == "last"),
        "{a:?}"
    );
    // Without held-out samples there is nothing to choose by: the trainer keeps the last.
    let a = super::train::args(&s, "round-1", "s1", "train", 8, 0);
    assert!(
        !a.iter().any(|x| x == "--keep" || x == "--eval-data"),
        "{a:?}"
    );
}

#[test]
fn a_run_written_before_the_keep_setting_reads_back_as_keeping_the_lowest_loss() {
    assert_eq!(settings().keep, "lowest-loss");
}

#[test]
fn a_greedy_run_may_add_sampled_arms_later_but_no_other_setting_changes() {
    use super::{only_sampling_widened, ArmFigures, Score};
    let mut saved = report_of(Vec::new());
    let mut sampled = settings();
    sampled.eval_samples = 4;
    sampled.sampled_arms = vec!["base".into(), "last".into()];
    assert!(only_sampling_widened(&saved, &sampled));
    let mut other = sampled.clone();
    other.lr = 5e-4;
    assert!(!only_sampling_widened(&saved, &other));
    // The greedy evaluation folders record the temperature: it stays.
    let mut hotter = sampled.clone();
    hotter.eval_temperature = 0.8;
    assert!(!only_sampling_widened(&saved, &hotter));
    // Once something was evaluated sampled, its settings are fixed.
    let score = Score {
        problems: 1,
        answers: 4,
        accuracy: 0.5,
        parsable: 1.0,
        accuracy_parsable: 0.5,
        pass_at_k: Some(1.0),
        mean_tokens: 9.0,
        wall_s: None,
        wall_tasks: None,
        run: "eval/base-sampled".into(),
        machines: Vec::new(),
        numerics: Vec::new(),
        episodes: None,
        time: None,
    };
    saved.arms.push(ArmFigures {
        name: "base".into(),
        adapter: None,
        greedy: None,
        sampled: Some(score),
    });
    assert!(!only_sampling_widened(&saved, &sampled));
}

/// A greedy score evaluated on `machines` (CPU model names; empty: not recorded).
fn greedy_on(machines: &[&str]) -> super::Score {
    super::Score {
        problems: 2,
        answers: 2,
        accuracy: 0.5,
        parsable: 1.0,
        accuracy_parsable: 0.5,
        pass_at_k: None,
        mean_tokens: 9.0,
        wall_s: None,
        wall_tasks: None,
        run: "eval/x-greedy".into(),
        machines: machines
            .iter()
            .map(|m| retroformer::provenance::Machine {
                cpu_model: m.to_string(),
                arch: "x86_64".into(),
                simd: vec!["avx2".into()],
                logical_cores: 2,
            })
            .collect(),
        numerics: Vec::new(),
        episodes: None,
        time: None,
    }
}

#[test]
fn comparisons_say_whether_both_arms_ran_on_one_machine_and_the_summary_warns_when_not() {
    use super::arms::comparisons;
    use super::ArmFigures;
    let mut report = report_of(Vec::new());
    let arm = |name: &str, on: &[&str]| ArmFigures {
        name: name.into(),
        adapter: None,
        greedy: Some(greedy_on(on)),
        sampled: None,
    };
    let outcomes: std::collections::BTreeMap<(String, bool), Vec<bool>> = ["base", "r1-s1"]
        .iter()
        .map(|n| ((n.to_string(), false), vec![true, false]))
        .collect();
    let verdict = |report: &super::ImproveReport| {
        let c = comparisons(report, &outcomes);
        assert_eq!(c.len(), 1);
        c[0].same_machine
    };
    report.arms = vec![arm("base", &["EPYC"]), arm("r1-s1", &["EPYC"])];
    assert_eq!(verdict(&report), Some(true));
    report.arms = vec![arm("base", &["EPYC"]), arm("r1-s1", &["Xeon"])];
    assert_eq!(verdict(&report), Some(false));
    report.comparisons = comparisons(&report, &outcomes);
    let text = report.summary().join("\n");
    assert!(
        text.contains("r1-s1 - base: the two arms were evaluated on different machines"),
        "{text}"
    );
    assert!(text.contains("on Xeon (x86_64, avx2)"), "{text}");
    // One arm resumed on another machine is not one machine either.
    report.arms = vec![arm("base", &["EPYC", "Xeon"]), arm("r1-s1", &["EPYC"])];
    assert_eq!(verdict(&report), Some(false));
    report.arms = vec![arm("base", &[]), arm("r1-s1", &["EPYC"])];
    assert_eq!(verdict(&report), None);
}

#[test]
fn a_resumed_evaluations_time_is_printed_as_the_part_it_covers() {
    use super::ArmFigures;
    let mut report = report_of(Vec::new());
    let timed = |wall_tasks| ArmFigures {
        name: "base".into(),
        adapter: None,
        greedy: Some(super::Score {
            wall_s: Some(1206.0),
            wall_tasks,
            ..greedy_on(&["EPYC"])
        }),
        sampled: None,
    };
    report.arms = vec![timed(Some(1))];
    let text = report.summary().join("\n");
    assert!(
        text.contains(", 1206 s for 1 of 2 (resumed), on EPYC"),
        "{text}"
    );
    report.arms = vec![timed(Some(2))];
    let text = report.summary().join("\n");
    assert!(text.contains(", 1206 s, on EPYC"), "{text}");
}

#[test]
fn arms_decoded_under_other_target_profiles_are_flagged_in_the_summary() {
    use super::arms::comparisons;
    use super::ArmFigures;
    let mut report = report_of(Vec::new());
    let arm = |name: &str, numerics: &[&str]| ArmFigures {
        name: name.into(),
        adapter: None,
        greedy: Some(super::Score {
            numerics: numerics.iter().map(|n| n.to_string()).collect(),
            ..greedy_on(&["EPYC"])
        }),
        sampled: None,
    };
    let outcomes: std::collections::BTreeMap<(String, bool), Vec<bool>> = ["base", "r1-s1"]
        .iter()
        .map(|n| ((n.to_string(), false), vec![true, false]))
        .collect();
    report.arms = vec![arm("base", &["fast"]), arm("r1-s1", &["fast"])];
    assert_eq!(comparisons(&report, &outcomes)[0].same_numerics, Some(true));
    report.arms = vec![arm("base", &["fast"]), arm("r1-s1", &["reference"])];
    report.comparisons = comparisons(&report, &outcomes);
    assert_eq!(report.comparisons[0].same_numerics, Some(false));
    let text = report.summary().join("\n");
    assert!(
        text.contains("r1-s1 - base: the two arms were not all decoded with the same numerics"),
        "{text}"
    );
    report.arms = vec![arm("base", &[]), arm("r1-s1", &["fast"])];
    assert_eq!(comparisons(&report, &outcomes)[0].same_numerics, None);
}

#[test]
fn the_demo_names_both_machines_when_its_answers_differ_from_the_runs() {
    use super::slice::{arm_line, SliceArm};
    let arm = |same: usize, there: &[&str], here: &[&str]| SliceArm {
        name: "base".into(),
        adapter: None,
        score: greedy_on(here),
        same_as_run: Some((same, 50)),
        run_machines: greedy_on(there).machines,
    };
    let line = arm_line(&arm(32, &["AMD EPYC"], &["Intel Xeon"]));
    assert!(
        line.contains("on 32 of 50 (the run's on AMD EPYC (x86_64, avx2), this on Intel Xeon (x86_64, avx2): greedy answers may differ across CPUs, whose kernels round differently, and for a problem decoded beside other problems"),
        "{line}"
    );
    let line = arm_line(&arm(32, &[], &["Intel Xeon"]));
    assert!(line.contains("the run's machine is not recorded"), "{line}");
    // One machine and other answers: not the CPU's doing, the batch's.
    let line = arm_line(&arm(49, &["Intel Xeon"], &["Intel Xeon"]));
    assert!(
        line.contains("both on Intel Xeon (x86_64, avx2): llama.cpp's batched CPU kernels are not batch-invariant"),
        "{line}"
    );
    // All the same: nothing to explain.
    let line = arm_line(&arm(50, &["AMD EPYC"], &["Intel Xeon"]));
    assert!(line.ends_with("on 50 of 50"), "{line}");
}

#[test]
fn a_household_rounds_data_line_counts_episodes_that_reached_the_goal_not_correct_samples() {
    use super::{DataFigures, RoundFigures};
    let round = RoundFigures {
        round: 1,
        policy: None,
        collect: None,
        data: Some(DataFigures {
            samples: 71,
            from_retries: 0,
            tokens: 30_000,
            heldout: 6,
            placebo: 71,
            placebo_correct: 9,
            placebo_tokens: 90_000,
        }),
        train: Vec::new(),
        installed: None,
        canary: None,
    };
    let mut report = report_of(vec![round]);
    let gsm8k = report.summary().join("\n");
    assert!(
        gsm8k.contains("round 1 data: 71 correct samples (0 from retries, 30000 tokens)"),
        "{gsm8k}"
    );
    report.settings.env = "household".into();
    let household = report.summary().join("\n");
    assert!(
        household.contains("round 1 data: 71 episodes that reached the goal (30000 tokens), 6 held out; placebo 71 episodes (9 reached it, 90000 tokens)"),
        "{household}"
    );
    assert!(!household.contains("retries"), "{household}");
}

#[test]
fn the_summary_prints_a_canarys_time_with_the_tasks_it_covers_and_the_episodes_of_each_arm() {
    use super::{ArmFigures, CanaryFigures, EpisodeFigures, RoundFigures, TypeTally};
    let canary = |wall_s, wall_tasks| RoundFigures {
        round: 1,
        policy: None,
        collect: None,
        data: None,
        train: Vec::new(),
        installed: None,
        canary: Some(CanaryFigures {
            candidate: "id1".into(),
            incumbent: None,
            candidate_score: 0.1,
            incumbent_score: 0.05,
            promoted: true,
            wall_s,
            wall_tasks,
        }),
    };
    let text = report_of(vec![canary(Some(610.0), Some(12))])
        .summary()
        .join("\n");
    assert!(
        text.contains("promoted, 610 s for the 12 dev tasks evaluated by this process"),
        "{text}"
    );
    let text = report_of(vec![canary(None, None)]).summary().join("\n");
    assert!(text.contains("promoted, resumed"), "{text}");

    let mut report = report_of(Vec::new());
    let episodes = EpisodeFigures {
        by_type: vec![
            TypeTally {
                task_type: "put".into(),
                episodes: 4,
                successes: 1,
            },
            TypeTally {
                task_type: "clean".into(),
                episodes: 3,
                successes: 0,
            },
        ],
        failures: [("cycle".to_string(), 2), ("steps".to_string(), 4)].into(),
        mean_actions: 21.25,
        mean_actions_success: Some(9.0),
    };
    report.arms = vec![ArmFigures {
        name: "r1-s1".into(),
        adapter: None,
        greedy: Some(super::Score {
            episodes: Some(episodes),
            ..greedy_on(&["EPYC"])
        }),
        sampled: None,
    }];
    let text = report.summary().join("\n");
    assert!(
        text.contains("\n  r1-s1 greedy episodes: put 1/4, clean 0/3; failures: cycle 2, steps 4; 21.2 actions an episode (9.0 a success)"),
        "{text}"
    );
    // An arm of episodes is told as episodes: every action is admissible, nothing to parse.
    assert!(
        text.contains("r1-s1 greedy: 0.500 of 2 episodes succeeded (2 tasks), 9 tokens an episode"),
        "{text}"
    );
    assert!(!text.contains("parsable"), "{text}");
}

#[test]
fn the_summary_adds_up_the_time_of_every_session_that_wrote_a_collection_or_an_arm() {
    use super::{ArmFigures, CollectFigures, RoundFigures};
    use retroformer::provenance::SessionsTime;
    let five = Some(SessionsTime {
        seconds: 7 * 3600 + 12 * 60,
        sessions: 5,
    });
    let mut report = report_of(vec![RoundFigures {
        round: 1,
        policy: None,
        collect: Some(CollectFigures {
            problems: 300,
            train_solved: 80,
            train_first_correct: 50,
            attempts: 600,
            correct_attempts: 100,
            parsable_attempts: 600,
            generated_tokens: 190_000,
            wall_s: Some(9000.0),
            wall_tasks: Some(100),
            episodes: None,
            time: five,
        }),
        data: None,
        train: Vec::new(),
        installed: None,
        canary: None,
    }]);
    let arm = |name: &str, time| ArmFigures {
        name: name.into(),
        adapter: None,
        greedy: Some(super::Score {
            wall_s: Some(600.0),
            time,
            ..greedy_on(&["EPYC"])
        }),
        sampled: None,
    };
    let one = Some(SessionsTime {
        seconds: 600,
        sessions: 1,
    });
    report.arms = vec![arm("base", five), arm("r1-s1", one)];
    let text = report.summary().join("\n");
    assert!(
        text.contains("9000 s for 100 of 300 (resumed), 7h 12m over 5 sessions"),
        "{text}"
    );
    let base = text.lines().find(|l| l.starts_with("base greedy")).unwrap();
    assert!(base.contains("600 s, 7h 12m over 5 sessions"), "{base}");
    let r1 = text
        .lines()
        .find(|l| l.starts_with("r1-s1 greedy"))
        .unwrap();
    assert!(!r1.contains("sessions"), "{r1}");
}
