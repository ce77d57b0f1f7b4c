//! Each objective lowers its loss on a small fixed dataset and moves the model the right way;
//! a resumed run ends with the same weights as an uninterrupted one. Tiny random model.

use std::path::PathBuf;

use burn::tensor::Device;
use retroformer_gguf::TinyModel;
use retroformer_trainer::data::Tokenized;
use retroformer_trainer::lora::{to_vec2, LoraConfig};
use retroformer_trainer::model::Base;
use retroformer_trainer::objective::{
    loss_of, response_logprobs, reward_score, to_vec1, ExampleStats, Objective, RewardMode,
    Trainable,
};
use retroformer_trainer::train::{train, Run, TrainConfig};

fn device() -> Device {
    retroformer_trainer::backend_device(retroformer_trainer::Backend::Flex).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rf-objectives-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn base(dev: &Device) -> Base {
    let path = tmp("tiny.gguf");
    if !path.exists() {
        TinyModel::llama().writer().write(&path).unwrap();
    }
    Base::load(&path, dev).unwrap()
}

fn ex(prompt: &[u32], response: &[u32], reward: f64) -> Tokenized {
    let mut tokens = vec![1];
    tokens.extend_from_slice(prompt);
    let prompt_len = tokens.len();
    tokens.extend_from_slice(response);
    Tokenized {
        tokens,
        prompt_len,
        mask: None,
        reward,
        weight: 1.0,
    }
}

fn mean_logprob(base: &Base, state: Option<&Trainable>, cfg: &LoraConfig, e: &Tokenized) -> f64 {
    let v = to_vec1(response_logprobs(base, state.map(|s| (&s.lora, cfg)), e));
    v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        lr: 1e-2,
        warmup: 2,
        steps,
        batch: 2,
        clip: 1.0,
        weight_decay: 0.0,
        seed: 3,
        checkpoint_every: 0,
        checkpoint_minutes: 0,
    }
}

fn lora() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    }
}

fn run<'a>(
    base: &'a Base,
    objective: Objective,
    data: &'a [Tokenized],
    steps: u64,
    ck: &str,
) -> Run<'a> {
    let checkpoint = tmp(ck);
    let _ = std::fs::remove_dir_all(&checkpoint);
    Run {
        base,
        lora: lora(),
        objective,
        config: config(steps),
        data,
        checkpoint,
        progress: false,
        stop_after: None,
        heldout: None,
        base_sha256: String::new(),
        data_sha256: String::new(),
    }
}

/// Every LoRA B factor of `a` equals `b`'s within 1e-6 (B starts at zero, so it shows training).
fn assert_same_b_factors(a: &Trainable, b: &Trainable) {
    for (ba, bb) in a.lora.blocks.iter().zip(&b.lora.blocks) {
        for (pa, pb) in ba.proj.iter().zip(&bb.proj) {
            let (pa, pb) = (pa.as_ref().unwrap(), pb.as_ref().unwrap());
            let (va, _) = to_vec2(pa.b.val());
            let (vb, _) = to_vec2(pb.b.val());
            for (x, y) in va.iter().zip(&vb) {
                assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
            }
        }
    }
}

#[test]
fn sft_lowers_its_loss_and_raises_the_log_probability_of_the_targets() {
    let dev = device();
    let base = base(&dev);
    let data = vec![
        ex(&[270, 271], &[280, 281, 282], 1.0),
        ex(&[272, 273], &[283, 284, 285], 1.0),
    ];
    let before: Vec<f64> = data
        .iter()
        .map(|e| mean_logprob(&base, None, &lora(), e))
        .collect();
    let r = run(&base, Objective::Sft, &data, 30, "sft");
    let t = train(&r, &dev).unwrap();
    let after: Vec<f64> = data
        .iter()
        .map(|e| mean_logprob(&base, Some(&t.state), &lora(), e))
        .collect();
    let (first, last) = (t.log[0].loss, t.log.last().unwrap().loss);
    assert!(last < first * 0.5, "loss {first} -> {last}");
    for (b, a) in before.iter().zip(&after) {
        assert!(a > &(b + 1.0), "mean log p {b} -> {a}");
    }
}

#[test]
fn a_loss_mask_averages_the_sft_loss_over_the_masked_tokens_only_and_only_sft_and_rwr_take_one() {
    let dev = device();
    let base = base(&dev);
    // An episode: action, observation, action; the loss on the actions.
    let mut e = ex(&[270, 271], &[280, 290, 291, 281], 1.0);
    e.mask = Some(vec![true, false, false, true]);
    let lp = response_logprobs(&base, None, &e);
    let v = to_vec1(lp.clone());
    let stats = ExampleStats::default();
    let loss = loss_of(&Objective::Sft, lp.clone(), &e, &stats, 2, &dev).unwrap();
    let want = -f64::from(v[0] + v[3]) / 2.0 / 2.0;
    let got: f64 = loss.into_scalar::<f64>();
    assert!((got - want).abs() < 1e-5, "{got} against {want}");
    let rwr = Objective::Rwr { tau: None };
    let got: f64 = loss_of(&rwr, lp.clone(), &e, &stats, 1, &dev)
        .unwrap()
        .into_scalar::<f64>();
    assert!((got - 2.0 * want).abs() < 1e-5, "{got}");
    let err = loss_of(&Objective::Pg { beta: 0.0 }, lp, &e, &stats, 1, &dev).unwrap_err();
    assert!(err.to_string().contains("segments"), "{err}");
}

#[test]
fn policy_gradient_raises_rewarded_responses_and_lowers_penalised_ones() {
    for objective in [
        Objective::Pg { beta: 0.01 },
        Objective::Ppo {
            clip: 0.2,
            beta: 0.01,
            epochs: 3,
        },
    ] {
        let dev = device();
        let base = base(&dev);
        let good = ex(&[270, 271], &[280, 281], 1.0);
        let bad = ex(&[270, 271], &[290, 291], -1.0);
        let data = vec![good.clone(), bad.clone()];
        let cfg = lora();
        let (g0, b0) = (
            mean_logprob(&base, None, &cfg, &good),
            mean_logprob(&base, None, &cfg, &bad),
        );
        let r = run(&base, objective, &data, 20, objective.name());
        let t = train(&r, &dev).unwrap();
        let (g1, b1) = (
            mean_logprob(&base, Some(&t.state), &cfg, &good),
            mean_logprob(&base, Some(&t.state), &cfg, &bad),
        );
        assert!(g1 > g0 + 0.5, "{}: rewarded {g0} -> {g1}", objective.name());
        assert!(
            b1 < b0 - 0.5,
            "{}: penalised {b0} -> {b1}",
            objective.name()
        );
    }
}

#[test]
fn rwr_favours_the_higher_reward_response() {
    let dev = device();
    let base = base(&dev);
    let hi = ex(&[270], &[280, 281], 1.0);
    let lo = ex(&[270], &[290, 291], 0.0);
    let data = vec![hi.clone(), lo.clone()];
    let cfg = lora();
    let r = run(&base, Objective::Rwr { tau: Some(0.2) }, &data, 20, "rwr");
    let t = train(&r, &dev).unwrap();
    let gain = |e: &Tokenized| {
        mean_logprob(&base, Some(&t.state), &cfg, e) - mean_logprob(&base, None, &cfg, e)
    };
    let (g_hi, g_lo) = (gain(&hi), gain(&lo));
    // exp(1/0.2) / exp(0) ~ 148: the high-reward response gains much more.
    assert!(g_hi > 1.0 && g_hi > g_lo + 0.5, "gains {g_hi} vs {g_lo}");
}

#[test]
fn the_reward_model_learns_to_separate_positive_from_negative_ratings() {
    let dev = device();
    let base = base(&dev);
    let data = vec![
        ex(&[270, 271], &[280, 281], 1.0),
        ex(&[272, 271], &[280, 282], 0.5),
        ex(&[270, 271], &[290, 291], -1.0),
        ex(&[272, 271], &[290, 292], 0.0),
    ];
    let objective = Objective::Reward {
        mode: RewardMode::Classify { threshold: 0.0 },
    };
    let r = run(&base, objective, &data, 30, "reward");
    let t = train(&r, &dev).unwrap();
    let head = t.state.head.as_ref().unwrap();
    let cfg = lora();
    let scores: Vec<f32> = data
        .iter()
        .map(|e| to_vec1(reward_score(&base, &t.state.lora, head, &cfg, &e.tokens))[0])
        .collect();
    assert!(scores[0] > 0.0 && scores[1] > 0.0, "{scores:?}");
    assert!(scores[2] < 0.0 && scores[3] < 0.0, "{scores:?}");
    assert!(t.log.last().unwrap().loss < t.log[0].loss);
}

#[test]
fn a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one() {
    let dev = device();
    let base = base(&dev);
    let data = vec![
        ex(&[270, 271], &[280, 281, 282], 1.0),
        ex(&[272, 273], &[283, 284, 285], 1.0),
        ex(&[274], &[286, 287], 1.0),
    ];
    let mut cfg = lora();
    cfg.dropout = 0.1;
    let mut straight = run(&base, Objective::Sft, &data, 8, "straight");
    straight.lora = cfg.clone();
    let a = train(&straight, &dev).unwrap();

    // The same run, stopped after step 4 (as a kill would, just after a checkpoint), then
    // started again.
    let mut resumed = run(&base, Objective::Sft, &data, 8, "resumed");
    resumed.lora = cfg.clone();
    resumed.config.checkpoint_every = 2;
    resumed.stop_after = Some(4);
    let part = train(&resumed, &dev).unwrap();
    assert_eq!(part.log.len(), 4);
    resumed.stop_after = None;
    // The same file read another way (here: one example fewer, as --max-len or --min-reward
    // would) is another run: refused, not resumed in another order.
    let fewer = data[..2].to_vec();
    let other = Run {
        data: &fewer,
        lora: cfg.clone(),
        config: resumed.config.clone(),
        checkpoint: resumed.checkpoint.clone(),
        ..run(&base, Objective::Sft, &fewer, 8, "other")
    };
    let e = train(&other, &dev).err().expect("refused").to_string();
    assert!(e.contains("another run"), "{e}");
    let b = train(&resumed, &dev).unwrap();
    assert_eq!(b.resumed_from, 4);
    assert_eq!(b.log.len(), 8);
    for (x, y) in a.log.iter().zip(&b.log) {
        assert!(
            (x.loss - y.loss).abs() <= 1e-6 * x.loss.abs().max(1.0),
            "{x:?} vs {y:?}"
        );
    }
    assert_same_b_factors(&a.state, &b.state);
}

/// Training data and a held-out set that want other responses to the same prompts: training
/// moves the prompts towards the data's, so the held-out loss rises as training goes on.
fn diverging_sets() -> (Vec<Tokenized>, Vec<Tokenized>) {
    let data = vec![
        ex(&[270, 271], &[280, 281, 282], 1.0),
        ex(&[272, 273], &[283, 284, 285], 1.0),
    ];
    let heldout = vec![
        ex(&[270, 271], &[290, 291, 292], 1.0),
        ex(&[272, 273], &[293, 294, 295], 1.0),
    ];
    (data, heldout)
}

#[test]
fn a_held_out_set_stops_training_early_and_keeps_its_lowest_loss_state() {
    use retroformer_trainer::train::{Heldout, Keep};
    let dev = device();
    let base = base(&dev);
    let (data, heldout) = diverging_sets();
    let mut r = run(&base, Objective::Sft, &data, 40, "heldout");
    r.heldout = Some(Heldout {
        data: &heldout,
        every: 2,
        patience: 2,
        keep: Keep::LowestLoss,
    });
    let t = train(&r, &dev).unwrap();
    let measured: Vec<(u64, f64)> = t
        .log
        .iter()
        .filter_map(|l| l.heldout_loss.map(|h| (l.step, h)))
        .collect();
    assert!(t.log.len() < 40, "no early stop: {} steps", t.log.len());
    let (best_step, lowest) = measured
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(t.best_step, Some(best_step));
    // The returned state is the measured one: its held-out loss is the lowest logged.
    let again: f64 = heldout
        .iter()
        .map(|e| -mean_logprob(&base, Some(&t.state), &lora(), e))
        .sum::<f64>()
        / heldout.len() as f64;
    assert!((again - lowest).abs() < 1e-4, "{again} vs {lowest}");
    // Two measurements after the best one, none lower.
    assert_eq!(measured.last().unwrap().0, best_step + 4);
}

#[test]
fn a_run_resumed_after_its_best_held_out_step_still_exports_that_step() {
    use retroformer_trainer::train::{Heldout, Keep};
    let dev = device();
    let base = base(&dev);
    let (data, heldout) = diverging_sets();
    let with_heldout = |name: &str| {
        let mut r = run(&base, Objective::Sft, &data, 40, name);
        r.config.checkpoint_every = 1;
        r.heldout = Some(Heldout {
            data: &heldout,
            every: 2,
            patience: 2,
            keep: Keep::LowestLoss,
        });
        r
    };
    let straight = train(&with_heldout("heldout-straight"), &dev).unwrap();
    let best = straight.best_step.unwrap();
    assert!(straight.log.len() < 40, "no early stop");
    // Killed after the best measurement and again after the early stop, before the export:
    // each resume keeps the best step found before it, and the last one trains no further.
    let mut r = with_heldout("heldout-resumed");
    for stop in [best + 1, straight.log.len() as u64] {
        r.stop_after = Some(stop);
        let part = train(&r, &dev).unwrap();
        assert_eq!(part.log.len() as u64, stop);
    }
    r.stop_after = None;
    let resumed = train(&r, &dev).unwrap();
    assert_eq!(resumed.log.len(), straight.log.len());
    assert_eq!(resumed.best_step, Some(best));
    assert_same_b_factors(&straight.state, &resumed.state);
}

#[test]
fn a_run_that_keeps_its_last_state_returns_the_last_step_and_still_logs_the_held_out_loss() {
    use retroformer_trainer::train::{Heldout, Keep};
    let dev = device();
    let base = base(&dev);
    let (data, heldout) = diverging_sets();
    let mut r = run(&base, Objective::Sft, &data, 12, "heldout-last");
    r.heldout = Some(Heldout {
        data: &heldout,
        every: 2,
        patience: 0,
        keep: Keep::Last,
    });
    let t = train(&r, &dev).unwrap();
    assert_eq!(t.log.len(), 12, "patience 0 never stops early");
    assert_eq!(t.best_step, None, "no held-out choice was made");
    let measured: Vec<f64> = t.log.iter().filter_map(|l| l.heldout_loss).collect();
    assert_eq!(measured.len(), 6);
    let lowest = measured.iter().copied().fold(f64::INFINITY, f64::min);
    let last = *measured.last().unwrap();
    assert!(last > lowest + 1e-3, "the loss did not rise: {measured:?}");
    // The returned state is the last step's: its held-out loss is the last one logged.
    let again: f64 = heldout
        .iter()
        .map(|e| -mean_logprob(&base, Some(&t.state), &lora(), e))
        .sum::<f64>()
        / heldout.len() as f64;
    assert!((again - last).abs() < 1e-4, "{again} vs {last}");
}

#[test]
fn a_held_out_set_is_refused_for_an_objective_it_cannot_score() {
    use retroformer_trainer::train::{Heldout, Keep};
    let dev = device();
    let base = base(&dev);
    let data = vec![ex(&[270, 271], &[280], 1.0), ex(&[272, 273], &[283], -1.0)];
    let mut r = run(&base, Objective::Pg { beta: 0.0 }, &data, 2, "heldout-pg");
    r.heldout = Some(Heldout {
        data: &data,
        every: 1,
        patience: 0,
        keep: Keep::LowestLoss,
    });
    let err = train(&r, &dev).err().expect("refused").to_string();
    assert!(err.contains("eval-data"), "{err}");
}
