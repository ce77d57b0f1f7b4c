use super::*;
use serde_json::json;

fn close(x: f64, y: f64, tol: f64) -> bool {
    (x - y).abs() <= tol
}

#[test]
fn identical_runs_differ_by_nothing_with_p_one() {
    let t = paired(
        0,
        Table {
            both: 30,
            neither: 70,
            ..Table::default()
        },
    );
    assert_eq!(t.n, 100);
    assert!(close(t.rate_a, 0.3, 1e-12) && close(t.rate_b, 0.3, 1e-12));
    assert_eq!(t.difference, 0.0);
    assert_eq!(t.p_value, 1.0);
    assert_eq!(t.interval, [0.0, 0.0]);
    assert!(t.score_interval[0] < 0.0 && t.score_interval[1] > 0.0);
}

#[test]
fn a_strong_effect_has_a_tiny_p_and_intervals_excluding_zero() {
    let table = Table {
        both: 40,
        only_a: 2,
        only_b: 30,
        neither: 28,
    };
    let t = paired(3, table);
    assert_eq!(t.trial, 3);
    assert!(close(t.difference, 0.28, 1e-12));
    assert!(close(t.rate_b - t.rate_a, t.difference, 1e-12));
    assert!(t.p_value < 0.001, "{}", t.p_value);
    let [lo, hi] = t.interval;
    assert!(lo > 0.0 && lo < 0.28 && hi > 0.28, "{lo} {hi}");
    let [lo, hi] = t.score_interval;
    assert!(lo > 0.0 && lo < 0.28 && hi > 0.28, "{lo} {hi}");
    // Reversed, the effect and the intervals change sign.
    let r = paired(
        3,
        Table {
            only_a: 30,
            only_b: 2,
            ..table
        },
    );
    assert!(close(r.difference, -0.28, 1e-12));
    assert!(r.interval[1] < 0.0 && r.score_interval[1] < 0.0);
    assert_eq!(r.p_value, t.p_value);
}

#[test]
fn the_bootstrap_interval_holds_the_difference_and_shrinks_with_n() {
    let small = Table {
        both: 20,
        only_a: 2,
        only_b: 8,
        neither: 20,
    };
    let large = Table {
        both: 200,
        only_a: 20,
        only_b: 80,
        neither: 200,
    };
    let a = bootstrap_interval(&small, RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE);
    let b = bootstrap_interval(&large, RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE);
    for [lo, hi] in [a, b] {
        assert!(lo < 0.12 && 0.12 < hi, "{lo} {hi}");
    }
    assert!(b[1] - b[0] < (a[1] - a[0]) * 0.5, "{a:?} {b:?}");
    // Ten times the tasks, about a third of the width (1 / sqrt(10)).
    let ratio = (b[1] - b[0]) / (a[1] - a[0]);
    assert!(close(ratio, 10f64.sqrt().recip(), 0.06), "{ratio}");
    // A fixed seed: the same interval every time.
    assert_eq!(
        a,
        bootstrap_interval(&small, RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE)
    );
}

#[test]
fn the_bootstrap_percentiles_are_close_to_the_normal_approximation() {
    // 100 tasks, 10 only-b and 5 only-a: the difference's standard error is
    // sqrt((0.15 - 0.05^2) / 100) = 0.0384, so the interval is about 0.05 -+ 0.075.
    let t = Table {
        both: 40,
        only_a: 5,
        only_b: 10,
        neither: 45,
    };
    let [lo, hi] = bootstrap_interval(&t, RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE);
    let se = ((0.15f64 - 0.0025) / 100.0).sqrt();
    assert!(close(lo, 0.05 - Z_95 * se, 0.012), "{lo}");
    assert!(close(hi, 0.05 + Z_95 * se, 0.012), "{hi}");
}

#[test]
fn the_newcombe_interval_matches_a_published_paired_example() {
    // Cavo et al. (2012), complete response before and after consolidation therapy: the
    // paired table (59, 6; 16, 80), whose Newcombe square-and-add interval is -0.1186 to
    // -0.0046 (Fagerland, Lydersen and Laake 2017, "Statistical Analysis of Contingency
    // Tables", chapter 8; the same in their R package `contingencytables`). Newcombe's
    // first proportion is the first row's: here run b.
    let t = Table {
        both: 59,
        only_b: 6,
        only_a: 16,
        neither: 80,
    };
    let [lo, hi] = newcombe_interval(&t, Z_95);
    assert!(close(lo, -0.1186, 5e-5), "{lo}");
    assert!(close(hi, -0.0046, 5e-5), "{hi}");
    let c = paired(0, t);
    assert!(close(c.difference, -10.0 / 161.0, 1e-12));
}

fn settings(strategy: &str, seed: Option<u64>) -> Value {
    let mut v = json!({
        "agent": "react",
        "trials": 2,
        "strategy": strategy,
        "memory": 3,
        "max_steps": 6,
        "actor": "smollm2-135m-instruct",
        "reflector": "actor",
        "actor_temperature": 0.7,
    });
    if let Some(s) = seed {
        v["actor_seed"] = json!(s);
    }
    v
}

/// A run folder: `run.json` and, per trial, the (task, success) files given.
fn write_run(dir: &Path, settings: &Value, trials: &[&[(&str, bool)]]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("run.json"), settings.to_string()).unwrap();
    for (t, tasks) in trials.iter().enumerate() {
        let folder = dir.join(format!("trial-{t:02}"));
        std::fs::create_dir_all(&folder).unwrap();
        for (id, ok) in tasks.iter() {
            let v = json!({"format_version": 1, "task_id": id, "trial": t, "success": ok});
            std::fs::write(folder.join(format!("{id}.json")), v.to_string()).unwrap();
        }
    }
}

const FOUR: [(&str, bool); 4] = [("a", true), ("b", false), ("c", false), ("d", false)];

#[test]
fn a_task_solved_in_trial_zero_counts_as_solved_in_later_trials() {
    let dir = tempfile::tempdir().unwrap();
    let (base, arm) = (dir.path().join("none"), dir.path().join("reflexion"));
    // Task a is solved in trial 0 and has no file in trial 1.
    write_run(
        &base,
        &settings("none", Some(1)),
        &[&FOUR, &[("b", true), ("c", false), ("d", false)]],
    );
    write_run(
        &arm,
        &settings("reflexion", Some(1)),
        &[&FOUR, &[("b", true), ("c", true), ("d", false)]],
    );
    let report = compare(&[base.clone(), arm.clone()]).unwrap();
    assert_eq!(report.runs[0].success_rate, vec![0.25, 0.5]);
    assert_eq!(report.runs[1].success_rate, vec![0.25, 0.75]);
    assert_eq!(report.runs[1].trials, 2);
    assert_eq!(report.runs[1].actor_seed, 1);
    assert_eq!(report.pairs.len(), 1);
    let p = &report.pairs[0];
    assert_eq!((p.a, p.b, p.trials.len()), (0, 1, 2));
    let t1 = &p.trials[1];
    let expected = Table {
        both: 2,
        only_a: 0,
        only_b: 1,
        neither: 1,
    };
    assert_eq!(t1.table, expected);
    assert!(close(t1.difference, 0.25, 1e-12));
    assert_eq!(t1.p_value, 1.0);
    assert_eq!(p.trials[0].difference, 0.0);
}

#[test]
fn a_trial_with_an_open_task_lacking_its_file_is_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Trial 1 is under way: d has not been attempted yet.
    write_run(
        &run,
        &settings("none", None),
        &[&FOUR, &[("b", true), ("c", false)]],
    );
    let r = load_run(&run).unwrap();
    assert_eq!((r.info.trials, r.info.planned_trials), (1, 2));
    assert_eq!(r.solved.len(), 1);
}

#[test]
fn runs_over_different_task_sets_are_refused_naming_the_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (base, arm) = (dir.path().join("one"), dir.path().join("two"));
    write_run(&base, &settings("none", None), &[&FOUR]);
    write_run(
        &arm,
        &settings("reflexion", None),
        &[&[("a", true), ("b", false), ("e", false)]],
    );
    let e = compare(&[base, arm]).unwrap_err().to_string();
    assert!(e.contains("different task sets"), "{e}");
    assert!(
        e.contains("only in") && e.contains("2 tasks (\"c\", \"d\")"),
        "{e}"
    );
    assert!(e.contains("1 task (\"e\")"), "{e}");
}

#[test]
fn runs_with_different_actor_seeds_are_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (base, arm) = (dir.path().join("one"), dir.path().join("two"));
    // No `actor_seed` is seed 0.
    write_run(&base, &settings("none", None), &[&FOUR]);
    write_run(&arm, &settings("reflexion", Some(3)), &[&FOUR]);
    let e = compare(&[base.clone(), arm]).unwrap_err().to_string();
    assert!(e.contains("actor_seed") && e.contains("--seed"), "{e}");
    assert!(e.contains("has 0") && e.contains("has 3"), "{e}");
    let same = dir.path().join("three");
    write_run(&same, &settings("reflexion", Some(0)), &[&FOUR]);
    compare(&[base, same]).unwrap();
}

#[test]
fn fewer_than_two_runs_and_folders_that_are_not_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_run(&run, &settings("none", None), &[&FOUR]);
    let e = compare(std::slice::from_ref(&run)).unwrap_err().to_string();
    assert!(e.contains("at least two run folders"), "{e}");
    let e = compare(&[run.clone(), dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("run.json") && e.contains("not found"), "{e}");
    // A task file without an outcome (another environment's) is named.
    let other = dir.path().join("other");
    write_run(&other, &settings("none", None), &[]);
    std::fs::create_dir_all(other.join("trial-00")).unwrap();
    std::fs::write(other.join("trial-00/q1.json"), r#"{"task_id": "q1"}"#).unwrap();
    let e = compare(&[run, other]).unwrap_err().to_string();
    assert!(e.contains("q1.json") && e.contains("`passed`"), "{e}");
}

#[test]
fn humaneval_results_are_read_through_passed() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (name, passed) in [
        ("simple", [true, false, false]),
        ("reflexion", [true, true, false]),
    ] {
        let run = dir.path().join(name);
        let cfg = json!({"agent": "programming", "strategy": name, "max_iters": 2,
            "max_tests": 6, "max_impl_tokens": 768, "trials": 1,
            "actor": "smollm2-135m-instruct", "reflector": "actor"});
        write_run(&run, &cfg, &[]);
        std::fs::create_dir_all(run.join("trial-00")).unwrap();
        for (i, p) in passed.iter().enumerate() {
            let v = json!({"format_version": 1, "task_id": format!("HumanEval/{i}"), "passed": p});
            std::fs::write(run.join(format!("trial-00/x{i}.json")), v.to_string()).unwrap();
        }
        runs.push(run);
    }
    let report = compare(&runs).unwrap();
    let t = &report.pairs[0].trials[0];
    assert_eq!((t.n, t.table.both, t.table.only_b), (3, 1, 1));
    assert!(close(t.rate_a, 1.0 / 3.0, 1e-12) && close(t.rate_b, 2.0 / 3.0, 1e-12));
    assert_eq!(
        report.runs[1].label,
        "programming + reflexion (smollm2-135m-instruct)"
    );
}

#[test]
fn three_runs_give_every_pair_and_the_report_and_chart_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (name, actor) in [("a", "m"), ("b", "<b>&"), ("c", "m")] {
        let run = dir.path().join(name);
        let mut cfg = settings("none", None);
        cfg["actor"] = json!(actor);
        write_run(
            &run,
            &cfg,
            &[&FOUR, &[("b", false), ("c", true), ("d", false)]],
        );
        runs.push(run);
    }
    let report = compare(&runs).unwrap();
    let pairs: Vec<(usize, usize)> = report.pairs.iter().map(|p| (p.a, p.b)).collect();
    assert_eq!(pairs, vec![(0, 1), (0, 2), (1, 2)]);
    // Runs a and c share a label: their folders tell them apart.
    assert!(
        report.runs[0].label.ends_with("[a]"),
        "{}",
        report.runs[0].label
    );
    assert!(
        !report.runs[1].label.contains('['),
        "{}",
        report.runs[1].label
    );
    let out = dir.path().join("cmp");
    let written = write_report(&report, &out).unwrap();
    assert!(written.contains(&out.join("compare.json")));
    assert!(written.contains(&out.join("compare.svg")));
    let back: CompareReport =
        serde_json::from_slice(&std::fs::read(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(back, report);
    let v: Value =
        serde_json::from_slice(&std::fs::read(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["format_version"].as_u64()),
        (Some(KIND), Some(u64::from(FORMAT_VERSION)))
    );
    assert!(v["pairs"][2]["trials"][0]["interval"].is_array());
    assert!(v["pairs"][2]["name"].as_str().unwrap().contains(" vs "));
    let svg = std::fs::read_to_string(out.join("compare.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
    assert!(
        svg.contains("&lt;b&gt;&amp;") && !svg.contains("<b>"),
        "{svg}"
    );
    let text = lines(&report).join("\n");
    assert!(
        text.contains("[2] vs [1]") && text.contains("only[2]"),
        "{text}"
    );
}

/// A RISE evaluation folder (`eval gsm8k`, `improve`): one greedy turn a problem, `right`
/// saying which are solved, written on `cpu` (`None`: no `sessions.json`).
fn rise_run(dir: &Path, right: &[bool], cpu: Option<&str>) {
    let trial = dir.join("trial-00");
    std::fs::create_dir_all(&trial).unwrap();
    let settings = json!({"agent": "rise", "strategy": "sequential", "dataset": "gsm8k",
        "turns": 1, "trials": 1, "actor": "m", "sequential_temperature": 0.0, "seed": 0});
    std::fs::write(dir.join("run.json"), settings.to_string()).unwrap();
    for (i, r) in right.iter().enumerate() {
        let reward = if *r { 1.0 } else { 0.0 };
        let task = json!({"problem_id": format!("test-{i}"), "gold": "1",
            "sequential": [{"reward": reward, "answer": "1"}], "parallel": []});
        std::fs::write(trial.join(format!("test-{i}.json")), task.to_string()).unwrap();
    }
    if let Some(cpu) = cpu {
        let mut s = retroformer::provenance::Session::now(0, Some(2));
        s.machine.cpu_model = cpu.into();
        retroformer::provenance::record_session(dir, s).unwrap();
    }
}

#[test]
fn rise_evaluations_compare_problem_by_problem_and_a_machine_change_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("base"),
        dir.path().join("trained"),
        dir.path().join("old"),
    );
    rise_run(&a, &[true, false, false, false], Some("AMD EPYC"));
    rise_run(&b, &[true, true, true, false], Some("Intel Xeon"));
    rise_run(&c, &[false, false, false, false], None);
    let report = compare(&[a.clone(), b.clone(), c]).unwrap();
    let t = &report.pairs[0].trials[0];
    assert_eq!((t.n, t.table.both, t.table.only_b), (4, 1, 2));
    assert!(close(t.difference, 0.5, 1e-12));
    let same: Vec<Option<bool>> = report.pairs.iter().map(|p| p.same_machine).collect();
    assert_eq!(same, vec![Some(false), None, None]);
    let text = lines(&report).join("\n");
    assert!(
        text.contains("[1] and [0] ran on different machines"),
        "{text}"
    );
    assert!(text.contains("[0] ran on AMD EPYC ("), "{text}");
    assert!(
        text.contains("[2] and [0]: one run's machine is not recorded"),
        "{text}"
    );
    // One machine: no warning.
    rise_run(&b, &[true, true, true, false], None);
    let mut s = retroformer::provenance::Session::now(0, Some(2));
    s.machine.cpu_model = "AMD EPYC".into();
    std::fs::remove_file(b.join("sessions.json")).unwrap();
    retroformer::provenance::record_session(&b, s).unwrap();
    let report = compare(&[a, b]).unwrap();
    assert_eq!(report.pairs[0].same_machine, Some(true));
    assert!(!lines(&report).join("\n").contains("machine"));
}

#[test]
fn runs_decoded_under_other_target_profiles_are_named_with_both_numerics() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("fast"), dir.path().join("reference"));
    rise_run(&a, &[true, false, false, false], None);
    rise_run(&b, &[true, true, false, false], None);
    for (run, numerics) in [(&a, "fast kernels"), (&b, "reference kernels")] {
        let mut s = retroformer::provenance::Session::now(0, Some(2));
        s.machine.cpu_model = "AMD EPYC".into();
        s.numerics = Some(numerics.into());
        retroformer::provenance::record_session(run, s).unwrap();
    }
    let report = compare(&[a, b.clone()]).unwrap();
    assert_eq!(report.pairs[0].same_machine, Some(true));
    assert_eq!(report.pairs[0].same_numerics, Some(false));
    assert_eq!(
        report.runs[1].numerics,
        vec!["reference kernels".to_string()]
    );
    let text = lines(&report).join("\n");
    assert!(
        text.contains("[1] and [0] were not all decoded with the same numerics ([1]: reference kernels; [0]: fast kernels)"),
        "{text}"
    );
    // The same profile on both: nothing said.
    std::fs::remove_file(b.join("sessions.json")).unwrap();
    let mut s = retroformer::provenance::Session::now(0, Some(2));
    s.machine.cpu_model = "AMD EPYC".into();
    s.numerics = Some("fast kernels".into());
    retroformer::provenance::record_session(&b, s).unwrap();
    let report = compare(&[dir.path().join("fast"), b]).unwrap();
    assert_eq!(report.pairs[0].same_numerics, Some(true));
    assert!(!lines(&report).join("\n").contains("numerics"));
}
