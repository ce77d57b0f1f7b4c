//! The burn model against llama.cpp on the same GGUF and tokens: logits without and with a LoRA
//! adapter exported by the trainer.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use retroformer_core::records::AdapterProvenance;
use retroformer_gguf::TinyModel;
use retroformer_llama::{LlamaModel, LoadOptions};
use retroformer_llm::target::TargetProfile;
use retroformer_llm::LanguageModel;
use retroformer_trainer::export::export;
use retroformer_trainer::lora::{self, LoraConfig, Target};
use retroformer_trainer::model::Base;

fn device() -> Device {
    retroformer_trainer::backend_device(retroformer_trainer::Backend::Flex).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rf-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn llama(path: &Path) -> LlamaModel {
    LlamaModel::load(path, LoadOptions::new(TargetProfile::load("cpu").unwrap())).unwrap()
}

/// ||a - b|| / ||b|| and the largest |a - b|.
fn rel_err(a: &[f32], b: &[f32]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den, mut max) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let d = (*x as f64 - *y as f64).abs();
        num += d * d;
        den += (*y as f64) * (*y as f64);
        max = max.max(d);
    }
    ((num / den).sqrt(), max)
}

fn tokens(vocab: u32, n: usize) -> Vec<u32> {
    let mut t = vec![1u32];
    t.extend((0..n as u32 - 1).map(|i| (i * 37 + 11) % vocab));
    t
}

fn burn_logits(
    base: &Base,
    toks: &[u32],
    lora: Option<(&lora::Adapters, &LoraConfig)>,
) -> Vec<f32> {
    lora::to_vec2(base.logits(toks, lora)).0
}

fn check_model(m: TinyModel, file: &str) {
    let path = tmp(file);
    m.writer().write(&path).unwrap();
    let toks = tokens(m.vocab(), 48);
    let reference = llama(&path)
        .logits(&toks.iter().map(|&t| t as i32).collect::<Vec<_>>(), None, 2)
        .unwrap();
    let base = Base::load(&path, &device()).unwrap();
    let ours = burn_logits(&base, &toks, None);
    let (rel, max) = rel_err(&ours, &reference);
    eprintln!("{}: relative error {rel:.2e}, max abs {max:.2e}", m.arch);
    assert!(rel <= 1e-4, "{}: relative error {rel}", m.arch);
}

#[test]
fn the_burn_llama_model_matches_llama_cpp_on_a_tiny_f32_model() {
    check_model(TinyModel::llama(), "tiny-llama.gguf");
}

#[test]
fn the_burn_qwen2_model_matches_llama_cpp_on_a_tiny_f32_model() {
    check_model(TinyModel::qwen2(), "tiny-qwen2.gguf");
}

#[test]
fn an_exported_adapter_gives_the_same_logits_in_llama_cpp_as_in_burn() {
    for m in [TinyModel::llama(), TinyModel::qwen2()] {
        let path = tmp(&format!("tiny-{}-base.gguf", m.arch));
        m.writer().write(&path).unwrap();
        let dev = device();
        let base = Base::load(&path, &dev).unwrap();
        let cfg = LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: Target::ALL.to_vec(),
            ..LoraConfig::default()
        };
        let mut adapters = cfg.init(&base.lora_shapes(), 7, &dev).unwrap();
        // B starts at zero; give it values so that the adapter changes the logits.
        for blk in &mut adapters.blocks {
            for f in blk.proj.iter_mut().flatten() {
                let dims = f.b.val().dims();
                f.b = Param::from_tensor(Tensor::random(
                    dims,
                    Distribution::Uniform(-0.3, 0.3),
                    &dev,
                ));
            }
        }
        let out = tmp(&format!("tiny-{}-adapter.gguf", m.arch));
        let model = llama(&path);
        // The adapter records its base, as the trainer's binary writes it: llama.cpp takes
        // no other.
        let provenance = AdapterProvenance {
            base_sha256: model.sha256().unwrap().to_string(),
            ..AdapterProvenance::default()
        };
        export(&adapters, &cfg, &base, &provenance, &out).unwrap();
        let toks = tokens(m.vocab(), 40);
        let handle = model.load_adapter(&out).unwrap();
        let itoks: Vec<i32> = toks.iter().map(|&t| t as i32).collect();
        let reference = model.logits(&itoks, Some((&handle, 1.0)), 2).unwrap();
        let without = model.logits(&itoks, None, 2).unwrap();
        let ours = burn_logits(&base, &toks, Some((&adapters, &cfg)));
        let (rel, max) = rel_err(&ours, &reference);
        let (moved, _) = rel_err(&without, &reference);
        eprintln!("{} adapter: relative error {rel:.2e} (max abs {max:.2e}); the adapter moves the logits by {moved:.2e}", m.arch);
        assert!(moved > 1e-2, "the adapter should change the logits");
        assert!(rel <= 1e-3, "{}: relative error {rel}", m.arch);
    }
}

#[test]
fn the_flex_and_ndarray_backends_give_the_same_logits() {
    use retroformer_trainer::{backend_device, Backend};
    let path = tmp("tiny-backends.gguf");
    TinyModel::qwen2().writer().write(&path).unwrap();
    let toks = tokens(TinyModel::qwen2().vocab(), 32);
    let run = |b| {
        let base = Base::load(&path, &backend_device(b).unwrap()).unwrap();
        burn_logits(&base, &toks, None)
    };
    let (rel, max) = rel_err(&run(Backend::Flex), &run(Backend::Ndarray));
    eprintln!("flex vs ndarray: relative error {rel:.2e}, max abs {max:.2e}");
    assert!(rel <= 1e-5, "{rel}");
}
