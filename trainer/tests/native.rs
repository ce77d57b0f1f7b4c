//! The native engine against burn's autodiff path, on tiny random models of both families and
//! on the real SmolLM2: the same log-probabilities, and the same gradient of every LoRA factor.

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use retroformer_gguf::TinyModel;
use retroformer_trainer::data::Tokenized;
use retroformer_trainer::lora::{to_vec2, Adapters, LoraConfig};
use retroformer_trainer::model::Base;
use retroformer_trainer::native::{LoraWeights, NativeModel};
use retroformer_trainer::objective::{response_logprobs, to_vec1};

fn device() -> burn::tensor::Device {
    retroformer_trainer::backend_device(retroformer_trainer::Backend::Flex).unwrap()
}

fn tiny(t: &TinyModel, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rf-native-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    t.writer().write(&path).unwrap();
    path
}

/// Adapters whose B factors are not zero, so that every factor's gradient is.
fn adapters(base: &Base, cfg: &LoraConfig, dev: &burn::tensor::Device) -> Adapters {
    let mut ad = cfg.init(&base.lora_shapes(), 5, dev).unwrap();
    let mut k = 0u32;
    for blk in &mut ad.blocks {
        for f in blk.proj.iter_mut().flatten() {
            let [r, c] = f.b.val().dims();
            let v: Vec<f32> = (0..r * c)
                .map(|i| {
                    k += 1;
                    ((i as f32 * 0.37 + k as f32 * 0.11).sin()) * 0.05
                })
                .collect();
            f.b = Param::from_tensor(Tensor::from_data(TensorData::new(v, [r, c]), dev));
        }
    }
    ad
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max |difference| {worst} exceeds {tol} of the largest value {scale}"
    );
}

fn check_family(t: TinyModel, name: &str) {
    let path = tiny(&t, name);
    let tokens: Vec<u32> = (0..150).map(|i| (i * 7 + 3) % t.vocab()).collect();
    check(&path, name, tokens, 40, 1e-4, 2e-3);
}

/// The engine against burn on `path`: log-probabilities of `tokens[prompt_len..]` within
/// `tol_lp`, and every factor's gradient of the SFT loss within `tol_grad`, each relative to
/// the largest value of what is compared.
fn check(
    path: &std::path::Path,
    name: &str,
    tokens: Vec<u32>,
    prompt_len: usize,
    tol_lp: f32,
    tol_grad: f32,
) {
    let dev = device();
    let burn_base = Base::load(path, &dev).unwrap();
    let native_base = Base::load_native(path, &dev).unwrap();
    let native = native_base.native().unwrap();
    let cfg = LoraConfig::default();
    let ad = adapters(&burn_base, &cfg, &dev);
    let ex = Tokenized {
        tokens: tokens.clone(),
        prompt_len,
        mask: None,
        reward: 1.0,
        weight: 1.0,
    };

    // Forward: the same log-probabilities of the response.
    let want = to_vec1(response_logprobs(&burn_base, Some((&ad, &cfg)), &ex));
    let lw = LoraWeights::from_adapters(&ad, &cfg);
    let (hidden, tape) = native.forward(&tokens, Some(&lw), true).unwrap();
    let picked = native.logprobs(&hidden, &tokens, ex.prompt_len);
    close(&picked.logprobs, &want, tol_lp, "log-probabilities");

    // Backward of the SFT loss −mean(log p): the same gradient for every factor.
    let loss = response_logprobs(&burn_base, Some((&ad, &cfg)), &ex)
        .mean()
        .neg();
    let grads = GradientsParams::from_grads(loss.backward(), &ad);
    let m = picked.logprobs.len();
    let g = vec![-1.0 / m as f32; m];
    let d_hidden = native.logprobs_back(picked, &tokens, &g);
    let ours = native.backward(tape.unwrap(), &lw, &d_hidden);
    let mut checked = 0;
    for (l, blk) in ad.blocks.iter().enumerate() {
        for (i, f) in blk.proj.iter().enumerate() {
            let Some(f) = f else { continue };
            let mine = ours[l][i]
                .as_ref()
                .expect("an adapted projection has gradients");
            let ga = to_vec2(grads.get::<2>(f.a.id).unwrap()).0;
            let gb = to_vec2(grads.get::<2>(f.b.id).unwrap()).0;
            close(
                &mine.a,
                &ga,
                tol_grad,
                &format!("{name} layer {l} projection {i} dA"),
            );
            close(
                &mine.b,
                &gb,
                tol_grad,
                &format!("{name} layer {l} projection {i} dB"),
            );
            checked += 2;
        }
    }
    assert_eq!(checked, 2 * 7 * burn_base.cfg.layers);
}

#[test]
fn the_native_engine_matches_burns_logprobs_and_lora_gradients_on_a_tiny_llama() {
    check_family(TinyModel::llama(), "llama.gguf");
}

#[test]
fn the_native_engine_matches_burns_logprobs_and_lora_gradients_on_a_tiny_qwen2() {
    check_family(TinyModel::qwen2(), "qwen2.gguf");
}

#[test]
fn the_native_engine_matches_burn_on_the_real_smollm2_across_two_attention_blocks() {
    use retroformer::fetch::{self, FetchOptions};
    use retroformer::manifest::{home_dir, Manifest};
    let m = Manifest::find("smollm2-135m-instruct").unwrap();
    let path = fetch::fetch(&m, &home_dir(), FetchOptions::default())
        .unwrap_or_else(|e| panic!("the test model is needed and could not be fetched: {e}"));
    // 80 tokens: the second block of query rows attends across the first.
    let tokens: Vec<u32> = (0..80u32).map(|i| (i * 7919 + 13) % 49_152).collect();
    check(&path, "smollm2", tokens, 20, 1e-3, 1e-2);
}

#[test]
fn a_token_outside_the_vocabulary_or_an_empty_sequence_is_refused_with_the_field_named() {
    let path = tiny(&TinyModel::llama(), "oov.gguf");
    let m = NativeModel::load(&path).unwrap();
    let Err(err) = m.forward(&[1, 2, 99_999], None, false) else {
        panic!("an unknown token id was accepted")
    };
    assert!(err.to_string().contains("99999"), "{err}");
    let Err(err) = m.forward(&[], None, false) else {
        panic!("an empty sequence was accepted")
    };
    assert!(err.to_string().contains("empty"), "{err}");
}

fn sft_run<'a>(
    base: &'a Base,
    data: &'a [Tokenized],
    lora: LoraConfig,
    dir: &str,
) -> retroformer_trainer::train::Run<'a> {
    use retroformer_trainer::objective::Objective;
    use retroformer_trainer::train::{Run, TrainConfig};
    let ck = std::env::temp_dir().join(format!("rf-native-{}-{dir}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ck);
    Run {
        base,
        lora,
        objective: Objective::Sft,
        config: TrainConfig {
            lr: 1e-2,
            warmup: 0,
            steps: 4,
            batch: 2,
            clip: 1.0,
            weight_decay: 0.0,
            seed: 7,
            checkpoint_every: 0,
            checkpoint_minutes: 0,
        },
        data,
        checkpoint: ck,
        progress: false,
        stop_after: None,
        heldout: None,
        base_sha256: String::new(),
        data_sha256: String::new(),
    }
}

#[test]
fn training_on_the_native_engine_takes_the_same_steps_as_on_burn_with_and_without_a_loss_mask() {
    let t = TinyModel::qwen2();
    let path = tiny(&t, "train-qwen2.gguf");
    let dev = device();
    // The third example is an episode: the loss on its actions only (a segments mask).
    let data: Vec<Tokenized> = (0..3u32)
        .map(|k| Tokenized {
            tokens: (0..40).map(|i| (i * 11 + k * 5 + 1) % t.vocab()).collect(),
            prompt_len: 10,
            mask: (k == 2).then(|| (0..30).map(|i| i % 7 < 3).collect()),
            reward: 1.0,
            weight: 1.0,
        })
        .collect();
    let losses = |base: &Base, dir: &str| -> Vec<f64> {
        let run = sft_run(base, &data, LoraConfig::default(), dir);
        let out = retroformer_trainer::train::train(&run, &dev).unwrap();
        out.log.iter().map(|l| l.loss).collect()
    };
    let burn = losses(&Base::load(&path, &dev).unwrap(), "burn");
    let native = losses(&Base::load_native(&path, &dev).unwrap(), "native");
    assert_eq!(burn.len(), 4);
    for (a, b) in native.iter().zip(&burn) {
        assert!(
            (a - b).abs() < 1e-4 * b.abs().max(1.0),
            "native {native:?} against burn {burn:?}"
        );
    }
    assert!(native[3] < native[0], "the loss falls: {native:?}");
}

#[test]
fn the_native_engine_refuses_lora_dropout_naming_the_field() {
    let path = tiny(&TinyModel::llama(), "dropout.gguf");
    let dev = device();
    let base = Base::load_native(&path, &dev).unwrap();
    let data = vec![Tokenized {
        tokens: vec![1, 2, 3, 4],
        prompt_len: 2,
        mask: None,
        reward: 1.0,
        weight: 1.0,
    }];
    let lora = LoraConfig {
        dropout: 0.1,
        ..LoraConfig::default()
    };
    let run = sft_run(&base, &data, lora, "dropout");
    let Err(err) = retroformer_trainer::train::train(&run, &dev) else {
        panic!("dropout was accepted on the native engine")
    };
    assert!(err.to_string().contains("dropout"), "{err}");
}
