//! What a run tells the trainer: its rating records, regenerated from the task files, and who
//! wrote their reflections.

use std::path::Path;

use super::{RunConfig, RunError, TaskResult};
use retroformer_core::records::{ChatMessage, RatingRecord, ReflectorInfo};

/// Who writes the reflections of a run with `cfg`, for its rating records: the model (the
/// actor's when the reflector is `actor`) and its file's sha256 (a manifest's, else the file
/// at the path, hashed once per run), the adapter and its sha256, the sampler.
pub fn reflector_info(cfg: &RunConfig) -> ReflectorInfo {
    describe_reflector(
        &cfg.actor,
        &cfg.reflector,
        cfg.reflector_adapter.as_deref(),
        cfg.reflector_temperature,
        cfg.reflector_seed,
    )
}

/// [`reflector_info`] for runners of their own (HumanEval's): the reflector `reflector`
/// (`actor`: the actor's model), its adapter file and how it samples.
pub fn describe_reflector(
    actor: &str,
    reflector: &str,
    adapter: Option<&str>,
    temperature: f32,
    seed: u32,
) -> ReflectorInfo {
    let model = if reflector == "actor" {
        actor
    } else {
        reflector
    };
    let hash = |p: &str| {
        let p = Path::new(p);
        p.is_file()
            .then(|| crate::fetch::sha256_file(p, &crate::fetch::Silent).ok())
            .flatten()
    };
    ReflectorInfo {
        model: model.to_string(),
        base_sha256: crate::manifest::Manifest::find(model)
            .map(|m| m.sha256)
            .or_else(|| hash(model)),
        adapter: adapter.map(str::to_string),
        adapter_sha256: adapter.and_then(hash),
        temperature,
        seed,
    }
}

/// Regenerates `records.jsonl` from every task's results: one record per reflection whose next
/// trial has ended. Tasks are attempted in consecutive trials until solved, so a task's results
/// are consecutive too.
pub(super) fn write_records(
    history: &[Vec<TaskResult>],
    reflector: Option<&ReflectorInfo>,
    out: &Path,
) -> Result<(), RunError> {
    let mut records = Vec::new();
    for results in history {
        for pair in results.windows(2) {
            let (this, next) = (&pair[0], &pair[1]);
            // An empty reflection was shown to no trial: there is nothing to rate.
            let Some(refl) = this
                .reflection
                .as_ref()
                .filter(|r| !r.text.trim().is_empty())
            else {
                continue;
            };
            let mut record = RatingRecord::new(
                &this.task_id,
                this.trial,
                &refl.prompt,
                &refl.text,
                this.episode_return,
                next.episode_return,
            );
            // A chat reflection: the trainer templates it with its own model.
            record.messages = refl.message.as_ref().map(|m| {
                vec![
                    ChatMessage::new("user", m.as_str()),
                    ChatMessage::new("assistant", refl.text.as_str()),
                ]
            });
            record.reflector = reflector.cloned();
            records.push(record);
        }
    }
    // By trial, then in task order (the sort is stable).
    records.sort_by_key(|r| r.trial);
    Ok(crate::agent::files::write_jsonl(
        &out.join("records.jsonl"),
        &records,
    )?)
}
