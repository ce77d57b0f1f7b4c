//! Unit tests of the training loop's parts: the group baseline, the checkpoints' schedule and format.

use super::*;

fn ex(prompt: &[u32], response: &[u32], reward: f64) -> Tokenized {
    Tokenized {
        tokens: prompt.iter().chain(response).copied().collect(),
        prompt_len: prompt.len(),
        mask: None,
        reward,
        weight: 1.0,
    }
}

#[test]
fn a_checkpoint_is_due_every_n_steps_once_the_minutes_have_passed_and_at_the_last_step() {
    use std::time::Duration;
    let minute = Duration::from_secs(60);
    let cfg = TrainConfig {
        steps: 25,
        checkpoint_every: 10,
        checkpoint_minutes: 10,
        ..TrainConfig::default()
    };
    assert!(cfg.checkpoint_due(10, Duration::ZERO));
    assert!(!cfg.checkpoint_due(11, 9 * minute + Duration::from_secs(59)));
    assert!(cfg.checkpoint_due(11, 10 * minute));
    assert!(cfg.checkpoint_due(25, Duration::ZERO));
    let by_steps = TrainConfig {
        checkpoint_minutes: 0,
        ..cfg.clone()
    };
    assert!(!by_steps.checkpoint_due(11, 600 * minute));
    let never = TrainConfig {
        checkpoint_every: 0,
        checkpoint_minutes: 0,
        ..cfg
    };
    assert!(!never.checkpoint_due(20, 600 * minute));
    assert!(never.checkpoint_due(25, Duration::ZERO));
}

#[test]
fn a_checkpoint_written_before_the_minutes_setting_reads_back_without_it() {
    let old = r#"{"lr":0.0002,"warmup":10,"steps":100,"batch":4,"clip":1.0,
        "weight_decay":0.0,"seed":0,"checkpoint_every":10}"#;
    let cfg: TrainConfig = serde_json::from_str(old).unwrap();
    assert_eq!(cfg.checkpoint_minutes, 0);
    assert_eq!(cfg.checkpoint_every, 10);
}

#[test]
fn the_group_baseline_is_the_mean_reward_of_responses_to_the_same_prompt_only() {
    let data = [
        ex(&[1, 2], &[7], 1.0),
        ex(&[1, 2], &[8], 0.0),
        ex(&[1, 2], &[9], 0.0),
        // A longer prompt that starts like the first is another prompt.
        ex(&[1, 2, 7], &[5], 1.0),
        ex(&[3], &[4], -1.0),
    ];
    let b = group_baseline(&data, 1).unwrap();
    assert!((b - 1.0 / 3.0).abs() < 1e-12, "{b}");
    assert_eq!(group_baseline(&data, 3), None);
    assert_eq!(
        group_baseline(&data, 4),
        None,
        "a prompt seen once has none"
    );
}

#[test]
fn a_batch_of_zero_or_past_the_limit_is_refused_by_name() {
    for batch in [0, MAX_BATCH + 1, usize::MAX] {
        let cfg = TrainConfig {
            batch,
            ..TrainConfig::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("batch"), "{e}");
    }
    let ok = TrainConfig {
        batch: MAX_BATCH,
        ..TrainConfig::default()
    };
    assert!(ok.validate().is_ok());
}
