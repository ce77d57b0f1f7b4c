//! The wgpu backend (Vulkan or Metal) against the CPU default (flex) on a tiny random model:
//! the same logits, and the same losses and trained LoRA over a few SFT steps.
//!
//! Built only with `--features wgpu`, and it needs a Vulkan or Metal device. On a machine with
//! no GPU, Mesa's lavapipe (Debian: `mesa-vulkan-drivers`) is one:
//! `cargo test -p retroformer-trainer --features wgpu --test wgpu`. Expect a slow first run
//! (shader compilation), then seconds.
#![cfg(feature = "wgpu")]

use std::path::PathBuf;

use retroformer_gguf::TinyModel;
use retroformer_trainer::data::Tokenized;
use retroformer_trainer::lora::{to_vec2, LoraConfig};
use retroformer_trainer::model::Base;
use retroformer_trainer::objective::Objective;
use retroformer_trainer::train::{train, Run, TrainConfig};
use retroformer_trainer::{backend_device, Backend};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rf-wgpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn model() -> PathBuf {
    let path = tmp("tiny.gguf");
    if !path.exists() {
        TinyModel::qwen2().writer().write(&path).unwrap();
    }
    path
}

/// ||a - b|| / ||b||.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        num += (*x as f64 - *y as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    (num / den).sqrt()
}

fn tokens(vocab: u32, n: usize) -> Vec<u32> {
    let mut t = vec![1u32];
    t.extend((0..n as u32 - 1).map(|i| (i * 37 + 11) % vocab));
    t
}

fn ex(prompt: &[u32], response: &[u32]) -> Tokenized {
    let mut tokens = vec![1];
    tokens.extend_from_slice(prompt);
    let prompt_len = tokens.len();
    tokens.extend_from_slice(response);
    Tokenized {
        tokens,
        prompt_len,
        mask: None,
        reward: 1.0,
        weight: 1.0,
    }
}

#[test]
fn the_wgpu_backend_gives_the_same_logits_as_flex() {
    let path = model();
    let toks = tokens(TinyModel::qwen2().vocab(), 32);
    let logits = |b| {
        let base = Base::load(&path, &backend_device(b).unwrap()).unwrap();
        to_vec2(base.logits(&toks, None)).0
    };
    let rel = rel_err(&logits(Backend::Wgpu), &logits(Backend::Flex));
    eprintln!("wgpu vs flex logits: relative error {rel:.2e}");
    assert!(rel <= 1e-4, "{rel}");
}

#[test]
fn sft_on_wgpu_follows_the_same_losses_and_weights_as_on_flex() {
    let path = model();
    let data = vec![
        ex(&[270, 271], &[280, 281, 282]),
        ex(&[272, 273], &[283, 284]),
    ];
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let probe = tokens(TinyModel::qwen2().vocab(), 16);
    let run = |b: Backend| {
        let dev = backend_device(b).unwrap();
        let base = Base::load(&path, &dev).unwrap();
        let checkpoint = tmp(&format!("ck-{b:?}"));
        let _ = std::fs::remove_dir_all(&checkpoint);
        let r = Run {
            base: &base,
            lora: lora.clone(),
            objective: Objective::Sft,
            config: TrainConfig {
                lr: 1e-2,
                warmup: 1,
                steps: 6,
                batch: 2,
                clip: 1.0,
                weight_decay: 0.0,
                seed: 5,
                checkpoint_every: 0,
                checkpoint_minutes: 0,
            },
            data: &data,
            checkpoint,
            progress: false,
            stop_after: None,
            heldout: None,
            base_sha256: String::new(),
            data_sha256: String::new(),
        };
        let t = train(&r, &dev).unwrap();
        let losses: Vec<f64> = t.log.iter().map(|s| s.loss).collect();
        let logits = to_vec2(base.logits(&probe, Some((&t.state.lora, &lora)))).0;
        (losses, logits)
    };
    let (gpu_losses, gpu_logits) = run(Backend::Wgpu);
    let (cpu_losses, cpu_logits) = run(Backend::Flex);
    eprintln!("losses: wgpu {gpu_losses:?}\n        flex {cpu_losses:?}");
    assert_eq!(gpu_losses.len(), cpu_losses.len());
    assert!(
        cpu_losses.last() < cpu_losses.first(),
        "the run did not learn: {cpu_losses:?}"
    );
    for (g, c) in gpu_losses.iter().zip(&cpu_losses) {
        assert!((g - c).abs() <= 1e-3 * c.abs().max(1.0), "{g} vs {c}");
    }
    let rel = rel_err(&gpu_logits, &cpu_logits);
    eprintln!("trained logits, wgpu vs flex: relative error {rel:.2e}");
    assert!(rel <= 1e-3, "{rel}");
}
