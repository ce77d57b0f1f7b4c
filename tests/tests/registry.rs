//! An environment added by a test (the folder `toy/`, one registry line) is reached by
//! evaluation, the canary and the bench suite exactly as the built-in ones are.

mod toy;

use retroformer_envs::{EvalPlan, Progress, Registry};
use retroformer_lab::canary::{canary, CanaryPlan};
use retroformer_lab::eval::evaluate;
use retroformer_lab::{LabError, ModelSource};
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::target::TargetProfile;
use retroformer_llm::LanguageModel;

/// Scripted models: every name loads a generative pseudo-model (replies drawn from a hash of
/// the prompt and the adapter).
struct Scripted(TargetProfile);

impl ModelSource for Scripted {
    fn load(&self, _name: &str) -> Result<Box<dyn LanguageModel>, LabError> {
        Ok(Box::new(ScriptedModel::generative()))
    }
    fn profile(&self) -> &TargetProfile {
        &self.0
    }
    fn threads(&self) -> Option<u32> {
        Some(1)
    }
}

#[derive(Default)]
struct Quiet(u64);

impl Progress for Quiet {
    fn total(&mut self, _n: u64) {}
    fn done(&mut self, _message: &str) {
        self.0 += 1;
    }
    fn note(&mut self, _message: &str) {}
}

fn registry() -> Registry {
    Registry::builtin().with(&toy::Toy)
}

#[test]
fn an_environment_added_in_one_line_is_evaluated_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry();
    let env = registry.get("toy").unwrap();
    let plan = EvalPlan {
        out: dir.path().join("run"),
        actor: "scripted".into(),
        reflector: "actor".into(),
        trials: Some(3),
        ..EvalPlan::default()
    };
    let models = Scripted(TargetProfile::load("cpu").unwrap());
    let mut progress = Quiet::default();
    let done = evaluate(env, &plan, &models, &mut progress).unwrap();
    let r = &done.report;
    assert_eq!(r.tasks, 7);
    assert_eq!(r.success_by_trial.len(), 3);
    assert!(r.success_by_trial.windows(2).all(|w| w[0] <= w[1]));
    assert!(progress.0 >= 7);
    // The runner's files: one result per task and trial attempted, and the rating records.
    assert!(plan.out.join("run.json").is_file());
    assert!(plan.out.join("trial-00/w0.json").is_file());
    assert!(plan.out.join("records.jsonl").is_file());
    // Run again: resumed from the files, the same report.
    let again = evaluate(env, &plan, &models, &mut Quiet::default()).unwrap();
    assert_eq!(again.report, done.report);
    // The bench suite reaches it too.
    let model = ScriptedModel::generative();
    let suite =
        retroformer_benches::harness::agents::run(&registry, &model, "scripted", 1, true, &|_| {})
            .unwrap();
    assert!(
        suite.iter().any(|t| t.env == "toy" && t.task == "w0"),
        "{suite:?}"
    );
}

#[test]
fn the_canary_compares_two_reflectors_on_an_added_environment_and_applies_the_policy() {
    use retroformer_gguf::{GgufWriter, TinyModel};
    let home = tempfile::tempdir().unwrap();
    // The store lives under $RETROFORMER_HOME; this test binary's only test that sets it.
    std::env::set_var("RETROFORMER_HOME", home.path());
    let base = home.path().join("base.gguf");
    TinyModel::llama().writer().write(&base).unwrap();
    let base_name = base.display().to_string();
    let resolved = retroformer::backend::resolve(&base_name, None).unwrap();
    let (store, header) = retroformer::adapters::AdapterStore::for_model(&resolved).unwrap();
    let adapter = home.path().join("a.gguf");
    let mut w = GgufWriter::lora_adapter("llama", 4.0);
    w.kv(
        retroformer::core::records::keys::BASE_SHA256,
        store.base_sha256(),
    )
    .tensor_f32("blk.0.attn_q.weight.lora_a", &[64, 2], &[0.1; 128])
    .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 64], &[0.1; 128]);
    w.write(&adapter).unwrap();
    let policy = retroformer_gguf::BasePolicy::Recorded;
    let id = store
        .install(&adapter, &header, &base_name, policy, &|_| Ok(()))
        .unwrap()
        .id;
    let plan = CanaryPlan {
        candidate: id.clone(),
        base: base_name,
        env: "toy".into(),
        actor: Some("scripted".into()),
        skip: 0,
        limit: 4,
        split: None,
        trials: 2,
        max_steps: None,
        data: None,
        margin: 1.0,
        out: Some(home.path().join("canary")),
        first_trial_from: None,
        parallel: 1,
    };
    let models = Scripted(TargetProfile::load("cpu").unwrap());
    let done = canary(&registry(), &plan, &models, &mut Quiet::default()).unwrap();
    let r = &done.report;
    // A margin of 1 promotes any candidate; both arms ran on the held-out tasks.
    assert!(r.promoted);
    assert_eq!(store.active().unwrap().map(|m| m.id), Some(id.clone()));
    assert!(done.out.join("base/run.json").is_file());
    assert!(done.out.join(format!("{id}/run.json")).is_file());
    let m = store.manifest(&id).unwrap();
    assert_eq!(
        m.metrics.get("canary_score").copied(),
        Some(r.candidate_score)
    );
    // An unknown environment is named with the known ones.
    let mut bad = plan.clone();
    bad.env = "chess".into();
    let e = canary(&registry(), &bad, &models, &mut Quiet::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--env chess") && e.contains("toy"), "{e}");
}

#[test]
fn an_experiment_runs_each_arm_on_the_same_tasks_and_compares_them() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry();
    let env = registry.get("toy").unwrap();
    let plan = EvalPlan {
        actor: "scripted".into(),
        reflector: "actor".into(),
        trials: Some(3),
        ..EvalPlan::default()
    };
    let models = Scripted(TargetProfile::load("cpu").unwrap());
    let arms = retroformer_lab::arms::run_arms(
        env,
        &plan,
        &["none", "reflexion"],
        dir.path(),
        &models,
        &mut Quiet::default(),
    )
    .unwrap();
    assert_eq!(arms.runs.len(), 2);
    assert_eq!(arms.runs[1].1, dir.path().join("reflexion"));
    assert_eq!(arms.compare.runs.len(), 2);
    let pair = &arms.compare.pairs[0];
    assert_eq!((pair.a, pair.b), (0, 1));
    assert_eq!(pair.trials.len(), 3);
    assert!(pair.trials.iter().all(|t| t.n == 7));
    assert!(dir.path().join("compare.json").is_file());
    assert!(arms.files.iter().all(|f| f.is_file()));
    // One arm is not an experiment.
    let err = retroformer_lab::arms::run_arms(
        env,
        &plan,
        &["none"],
        dir.path(),
        &models,
        &mut Quiet::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("baseline"), "{err}");
}
