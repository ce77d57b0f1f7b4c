//! The canary's policy, decided by what the reflectors do: on the toy environment, with a
//! scripted model whose reflections are right for every task under one adapter, for none under
//! another and for half of them with the base alone, the worse candidate is refused, the better
//! one is promoted, and the worse one is then refused against the new incumbent.

mod toy;

use std::path::Path;

use retroformer::adapters::{AdapterStore, CanaryReport};
use retroformer_envs::{Progress, Registry};
use retroformer_lab::canary::{canary, CanaryPlan};
use retroformer_lab::{LabError, ModelSource};
use retroformer_llm::scripted::ScriptedModel;
use retroformer_llm::target::TargetProfile;
use retroformer_llm::LanguageModel;

/// Every name loads the same responder.
struct Responder(ScriptedModel, TargetProfile);

impl ModelSource for Responder {
    fn load(&self, _name: &str) -> Result<Box<dyn LanguageModel>, LabError> {
        Ok(Box::new(self.0.clone()))
    }
    fn profile(&self) -> &TargetProfile {
        &self.1
    }
    fn threads(&self) -> Option<u32> {
        Some(1)
    }
}

struct Quiet;

impl Progress for Quiet {
    fn total(&mut self, _n: u64) {}
    fn done(&mut self, _message: &str) {}
    fn note(&mut self, _message: &str) {}
}

/// The toy task's index and answer, read from a prompt that holds its question.
fn task(prompt: &str) -> (usize, &'static str) {
    let word = prompt
        .split("Which word follows ")
        .nth(1)
        .and_then(|r| r.split('?').next())
        .unwrap_or_else(|| panic!("no toy question in {prompt:?}"));
    let i = toy::WORDS.iter().position(|w| *w == word).unwrap();
    (i, toy::WORDS[i + 1])
}

/// The reflector (prompts ending in "Plan:") says the answer when its adapter's bytes are
/// `good`'s, never with another adapter, and for even tasks with none; the actor answers what
/// a reflection told it, else a word that is never right.
fn respond(prompt: &str, adapter: Option<&Path>, good: &[u8]) -> String {
    if prompt.ends_with("Plan:") {
        let (i, answer) = task(prompt);
        let right = match adapter {
            Some(file) => std::fs::read(file).unwrap() == good,
            None => i % 2 == 0,
        };
        return format!(" say {}\n", if right { answer } else { "zulu" });
    }
    let told = prompt
        .lines()
        .find_map(|l| l.trim().strip_prefix("say "))
        .unwrap_or("zulu");
    format!(" {told}")
}

fn write_adapter(path: &Path, value: f32, base_sha256: &str) {
    let mut w = retroformer_gguf::GgufWriter::lora_adapter("llama", 4.0);
    w.kv(retroformer::core::records::keys::BASE_SHA256, base_sha256)
        .tensor_f32("blk.0.attn_q.weight.lora_a", &[64, 2], &[value; 128])
        .tensor_f32("blk.0.attn_q.weight.lora_b", &[2, 64], &[value; 128]);
    w.write(path).unwrap();
}

#[test]
// long: three canaries in order, each checked against the store.
fn the_canary_refuses_a_worse_reflector_and_promotes_a_better_one() {
    let home = tempfile::tempdir().unwrap();
    // The store lives under $RETROFORMER_HOME; this test binary's only test.
    std::env::set_var("RETROFORMER_HOME", home.path());
    let base = home.path().join("base.gguf");
    retroformer_gguf::TinyModel::llama()
        .writer()
        .write(&base)
        .unwrap();
    let base_name = base.display().to_string();
    let resolved = retroformer::backend::resolve(&base_name, None).unwrap();
    let (store, header) = AdapterStore::for_model(&resolved).unwrap();
    let install = |name: &str, value: f32| {
        let file = home.path().join(name);
        write_adapter(&file, value, store.base_sha256());
        let policy = retroformer_gguf::BasePolicy::Recorded;
        let id = store
            .install(&file, &header, &base_name, policy, &|_| Ok(()))
            .unwrap()
            .id;
        (id, std::fs::read(&file).unwrap())
    };
    let (bad, _) = install("bad.gguf", 0.1);
    let (good, good_bytes) = install("good.gguf", 0.2);
    let model = ScriptedModel::responder(move |p, a| respond(p, a, &good_bytes));
    let models = Responder(model, TargetProfile::load("cpu").unwrap());
    let registry = Registry::builtin().with(&toy::Toy);
    let run = |candidate: &str, margin: f64, out: &str| -> CanaryReport {
        let plan = CanaryPlan {
            candidate: candidate.into(),
            base: base_name.clone(),
            env: "toy".into(),
            actor: Some("scripted".into()),
            skip: 0,
            limit: 7,
            split: None,
            trials: 2,
            max_steps: None,
            data: None,
            margin,
            out: Some(home.path().join(out)),
            first_trial_from: None,
            parallel: 1,
        };
        canary(&registry, &plan, &models, &mut Quiet)
            .unwrap()
            .report
    };
    let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
    let active = || store.active().unwrap().map(|m| m.id);

    // The base alone solves the 4 even tasks of 7 at trial 2; the bad reflector none.
    let r = run(&bad, 0.25, "first");
    assert!(!r.promoted, "{r:?}");
    assert_eq!(r.incumbent, None);
    assert!(
        close(r.incumbent_score, 4.0 / 7.0) && close(r.candidate_score, 0.0),
        "{r:?}"
    );
    assert_eq!(active(), None);

    // The good reflector solves all 7: promoted, even with no margin.
    let r = run(&good, 0.0, "second");
    assert!(r.promoted, "{r:?}");
    assert!(
        close(r.incumbent_score, 4.0 / 7.0) && close(r.candidate_score, 1.0),
        "{r:?}"
    );
    assert_eq!(active(), Some(good.clone()));
    assert_eq!(
        store
            .manifest(&good)
            .unwrap()
            .metrics
            .get("canary_promoted"),
        Some(&1.0)
    );

    // Against the new incumbent the bad one is refused again, and the good one stays active.
    let r = run(&bad, 0.25, "third");
    assert!(!r.promoted, "{r:?}");
    assert_eq!(r.incumbent, Some(good.clone()));
    assert!(
        close(r.incumbent_score, 1.0) && close(r.candidate_score, 0.0),
        "{r:?}"
    );
    assert_eq!(active(), Some(good));
}
