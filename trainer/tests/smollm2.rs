//! Parity of the burn model with llama.cpp on the real SmolLM2-135M-Instruct (Q4_1): strict on
//! an F32 copy of the file, argmax agreement on the quantised file itself.

use std::path::PathBuf;

use retroformer::fetch::{self, FetchOptions};
use retroformer::manifest::{home_dir, Manifest};
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::TargetProfile;
use retroformer_llm::LanguageModel;
use retroformer_trainer::lora::to_vec2;
use retroformer_trainer::model::{write_f32_copy, Base};

fn smollm2() -> PathBuf {
    let m = Manifest::find("smollm2-135m-instruct").unwrap();
    fetch::fetch(&m, &home_dir(), FetchOptions::default())
        .unwrap_or_else(|e| panic!("the test model is needed and could not be fetched: {e}"))
}

fn load(path: &std::path::Path) -> LlamaModel {
    LlamaModel::load(path, LoadOptions::new(TargetProfile::load("cpu").unwrap())).unwrap()
}

fn compare(ours: &[f32], theirs: &[f32], vocab: usize) -> (f64, f64) {
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in ours.iter().zip(theirs) {
        num += (*a as f64 - *b as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    let argmax = |r: &[f32]| {
        r.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0
    };
    let rows = ours.len() / vocab;
    let agree = (0..rows)
        .filter(|&i| {
            argmax(&ours[i * vocab..(i + 1) * vocab]) == argmax(&theirs[i * vocab..(i + 1) * vocab])
        })
        .count();
    ((num / den).sqrt(), agree as f64 / rows as f64)
}

#[test]
fn the_burn_model_matches_llama_cpp_on_smollm2() {
    let q4 = smollm2();
    let model = load(&q4);
    let text = "Question: What is the capital of France?\nThought 1: I need to search France and find its capital.\nAction 1: Search[France]";
    let toks = model.tokenize(text, true, false).unwrap();
    let utoks: Vec<u32> = toks.iter().map(|&t| t as u32).collect();
    let base = Base::load(
        &q4,
        &retroformer_trainer::backend_device(retroformer_trainer::Backend::Flex).unwrap(),
    )
    .unwrap();
    let vocab = base.cfg.vocab;
    let ours = to_vec2(base.logits(&utoks, None)).0;

    let quantised = model.logits(&toks, None, 2).unwrap();
    let (rel_q, agree_q) = compare(&ours, &quantised, vocab);

    let dir = std::env::temp_dir().join(format!("rf-smollm2-f32-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f32_path = dir.join("smollm2-f32.gguf");
    write_f32_copy(&q4, &f32_path).unwrap();
    let exact = load(&f32_path).logits(&toks, None, 2).unwrap();
    let (rel_f, agree_f) = compare(&ours, &exact, vocab);
    std::fs::remove_dir_all(&dir).unwrap();

    eprintln!(
        "SmolLM2, {} tokens: F32 copy: relative error {rel_f:.2e}, argmax agreement {agree_f:.3}; \
         Q4_1 file: relative error {rel_q:.2e}, argmax agreement {agree_q:.3}",
        toks.len()
    );
    assert!(rel_f <= 1e-4, "F32 relative error {rel_f}");
    assert!(agree_f >= 0.99, "F32 argmax agreement {agree_f}");
    // llama.cpp multiplies Q4_1 weights with activations quantised to Q8_1; we use f32
    // activations, so only near-ties may flip.
    assert!(agree_q >= 0.9, "Q4_1 argmax agreement {agree_q}");
}
